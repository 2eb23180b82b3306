"""The errors hm2bp raises: one base class, `Hm2bpError`.

Every message says what is wrong and where (config key, checkpoint file, store, rank). Errors pickle by state,
so they cross process boundaries (data-parallel ranks, worker processes) unchanged.
"""

from spikedata.errors import PicklableError


class Hm2bpError(PicklableError):
    """Base of every hm2bp error about its input or a run that cannot continue."""


class SetupError(Hm2bpError, ValueError):
    """The store, config or run directory do not fit together; the message says what and where."""


class TrainingError(Hm2bpError, RuntimeError):
    """Training cannot continue (non-finite gradient, inconsistent resume, ...); the message says why."""
