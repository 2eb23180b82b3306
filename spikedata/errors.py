"""The errors spikedata raises on bad input: one base class, `SpikedataError`.

Every message says what is wrong and where (file, byte offset, store, array, key). Each error survives pickling
unchanged (attributes included), so an error raised in an encoding worker process reaches the parent as itself.
"""

from __future__ import annotations

from typing import Any


def _rebuild(cls: type[BaseException], args: tuple, state: dict[str, Any]) -> BaseException:
    exc = cls.__new__(cls)
    BaseException.__init__(exc, *args)
    exc.__dict__.update(state)
    return exc


class PicklableError(Exception):
    """Mixin base: pickles by state, not by re-calling `__init__` (which subclasses may define freely)."""

    def __reduce__(self):
        return _rebuild, (type(self), self.args, dict(self.__dict__))


class SpikedataError(PicklableError):
    """Base of every spikedata error about its input (files, stores, manifests, parameters)."""


class DatasetError(SpikedataError, ValueError):
    """Dataset files are missing, do not follow the expected layout or their manifest, or are inconsistent with
    each other; the message says which file and where."""


class OptionError(SpikedataError, ValueError):
    """An encoding option has a value it cannot take; the message names the option as a parameter in backticks
    (`steps`), which the command line shows as its flag (`--steps`)."""
