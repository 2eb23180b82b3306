"""TI46 spoken letters and words (LDC93S9, licensed: never downloaded here): the corpus layout.

Layout (`data_manifests/ti46.toml`; names' case varies between copies, so matching ignores case)::

    TI46/ti_alpha/train/<spk>/<code><spk>set<k>.wav     k = 0-9   enrollment tokens
    TI46/ti_alpha/test/<spk>/<code><spk>s<k>t<j>.wav    k = 1-8 sessions, j = 0, 1
    TI46/ti20/...                                       the same for the 20-word subset

`<spk>` is f1-f8 / m1-m8; `<code>` is the prompt code, `0a`-`0z` for the letters (class names "a"-"z"), `00`-`09`
for the digits. The files are NIST SPHERE despite the `.wav` suffix. Any other copy can be described by a regular
expression with named groups `label`, `speaker` and `split` (searched, ignoring case, in each file's path
relative to the source directory, with `/` separators).

Encoded with the paper's speech front end (:class:`spikedata.encoders.speech.SpeechFrontEnd`) by
:func:`spikedata.datasets.speech.speech_jobs`.
"""

from __future__ import annotations

import os
import re
from pathlib import Path

from spikedata.datasets.speech import SPLITS, Utterance
from spikedata.errors import DatasetError

__all__ = ["scan_ti46", "ti46_classes"]

SUBSETS = ("ti_alpha", "ti20")



def layout_pattern(subset: str) -> str:
    """The regular expression of the real TI46 layout for `subset` (from data_manifests/ti46.toml)."""
    from spikedata.manifest import load_manifest

    return load_manifest("ti46").layout["pattern"].replace("{subset}", re.escape(subset))




def _class_name(code: str) -> str:
    """TI46 prompt code -> class name: `0a` -> `a`, `03` -> `3`; anything else stays as it is (lowercase)."""
    code = code.lower()
    if len(code) == 2 and code[0] == "0":
        return code[1]
    return code


def ti46_classes(labels: list[str]) -> list[str]:
    """Class names in label order: the 26 letters when every label is a letter, else the sorted labels found."""
    letters = [chr(c) for c in range(ord("a"), ord("z") + 1)]
    found = sorted(set(labels))
    if found and all(lab in letters for lab in found):
        return letters
    return found


def _walk(root: Path) -> list[str]:
    names = []
    for dirpath, _dirs, files in os.walk(root):
        rel_dir = Path(dirpath).relative_to(root).as_posix()
        for f in files:
            names.append(f if rel_dir == "." else f"{rel_dir}/{f}")
    return sorted(names)


def scan_ti46(
    source: str | os.PathLike, subset: str = "ti_alpha", pattern: str | None = None
) -> tuple[list[Utterance], list[str], int]:
    """Utterances of TI46 under `source` (sorted by split, then relative path), the class names, and how many
    `.wav` files did not match (ignored).

    Without `pattern`, the real layout of `subset` ("ti_alpha" or "ti20") is matched; `source` may be the TI46
    directory, its parent or the subset directory itself. With `pattern`, a regular expression with named groups
    `label`, `speaker`, `split` is searched in each file's path relative to `source`.
    """
    root = Path(source)
    if not root.is_dir():
        raise DatasetError(f"{root}: not a directory (expected the TI46 corpus, see data_manifests/ti46.toml)")
    if pattern is None:
        if subset not in SUBSETS:
            raise DatasetError(f"unknown TI46 subset {subset!r}; expected one of {SUBSETS}")
        regex = re.compile(layout_pattern(subset), re.IGNORECASE)
        prefix = root.resolve().name + "/"  # lets `source` be the subset directory itself
    else:
        try:
            regex = re.compile(pattern, re.IGNORECASE)
        except re.error as exc:
            raise DatasetError(f"`pattern` is not a valid regular expression: {exc}") from None
        missing = {"label", "speaker", "split"} - set(regex.groupindex)
        if missing:
            raise DatasetError(f"`pattern` lacks the named group(s) {sorted(missing)}; e.g. (?P<label>...)")
        prefix = ""
    found: list[Utterance] = []
    ignored = 0
    for name in _walk(root):
        m = regex.search(prefix + name)
        if m is None:
            ignored += name.lower().endswith((".wav", ".sph", ".flac"))
            continue
        split = m["split"].lower()
        if split not in SPLITS:
            raise DatasetError(f"{root / name}: split {m['split']!r} from `pattern` is not one of {SPLITS}")
        found.append(Utterance(root / name, _class_name(m["label"]), m["speaker"].lower(), split, name))
    if not found:
        what = f"pattern {pattern!r}" if pattern else f"the TI46 layout <{subset}>/train|test/<spk>/<code><spk>..."
        raise DatasetError(f"{root}: no recordings match {what} (see data_manifests/ti46.toml)")
    found.sort(key=lambda u: (SPLITS.index(u.split), u.name.lower()))
    return found, ti46_classes([u.label for u in found]), ignored


