"""TI46 spoken letters and words (LDC93S9, licensed: never downloaded here): the corpus layouts.

Layout (`data_manifests/ti46.toml`; names' case and suffix vary between copies, so matching ignores case)::

    <subset>/train/<spk>/<code><spk>set<k>.<ext>     k = 0-9 enrollment tokens (session "set")
    <subset>/test/<spk>/<code><spk>s<k>t<j>.<ext>    k = 1-8 sessions, j = 0, 1

with `<subset>` `ti_alpha` (26 letters, prompt codes `0a`-`0z`) or `ti20` (the digits `00`-`09` and ten command
words `en` enter, `er` erase, `go`, `hp` help, `no`, `rb` rubout, `rp` repeat, `sp` stop, `st` start, `ys` yes),
`<spk>` f1-f8 / m1-m8 and `<ext>` `.sph` (LDC's download, under `ti46_LDC93S9/`), `.wav` / `.WAV` (the 1991 CDs,
copies like `TI46/ti_alpha/...`; ISO 9660 `;1` versions are accepted). The files are NIST SPHERE whatever their
suffix. Any other copy can be described by a regular expression with named groups `label`, `speaker` and `split`
(and optionally `take`), searched, ignoring case, in each file's path relative to the source, with `/` separators.

Encoded with the paper's speech front end (:class:`spikedata.encoders.speech.SpeechFrontEnd`) by
:func:`spikedata.datasets.shared.speech.speech_jobs`; each sample keeps its speaker, session, token and path.
"""

from __future__ import annotations

import os
import re
from collections import Counter
from pathlib import Path
from typing import TYPE_CHECKING, NamedTuple

from spikedata.datasets.shared.declaration import Dataset, EncodeRun, Option
from spikedata.datasets.shared.options import SOURCE, speech_front_end
from spikedata.datasets.shared.speech import SPLITS, Utterance
from spikedata.errors import DatasetError

if TYPE_CHECKING:
    from spikedata.encoders.speech import SpeechFrontEnd

__all__ = ["SUBSETS", "Ti46Copy", "expected_counts", "parse_take", "prompt_codes", "scan_ti46", "ti46_classes"]

SUBSETS = ("ti_alpha", "ti20")
_AUDIO_SUFFIXES = (".wav", ".sph", ".flac")
_LAYOUT = "<subset>/train|test/<spk>/<code><spk>set<k>|s<k>t<j>.wav|.sph"


class Ti46Copy(NamedTuple):
    """What :func:`scan_ti46` found: utterances (sorted by split, then path), class names in label order,
    per-utterance extras (same order), and the audio files that match neither subset's layout (count, example)."""

    utterances: list[Utterance]
    classes: list[str]
    extras: dict[str, list]
    ignored: int
    ignored_example: str | None


def _manifest():
    from spikedata.manifest import load_manifest

    return load_manifest("ti46")


def _check_subset(subset: str) -> None:
    if subset not in SUBSETS:
        raise DatasetError(f"unknown TI46 subset {subset!r}; expected one of {SUBSETS}")


def layout_pattern(subset: str) -> str:
    """The regular expression of the real TI46 layout for `subset` (from data_manifests/ti46.toml)."""
    _check_subset(subset)
    return _manifest().layout["pattern"].replace("{subset}", re.escape(subset))


def prompt_codes(subset: str) -> dict[str, str]:
    """Prompt code -> class name of `subset`, in label order (from data_manifests/ti46.toml)."""
    _check_subset(subset)
    return dict(_manifest().layout["prompts"][subset])


def ti46_classes(subset: str = "ti_alpha") -> list[str]:
    """The class names of `subset` in label order: 26 letters, or the ten digits then the ten command words."""
    return list(prompt_codes(subset).values())


def expected_counts(subset: str) -> dict[str, int]:
    """Utterances per split of the corpus (data_manifests/ti46.toml; see there what each count rests on)."""
    _check_subset(subset)
    return {s: spec[f"n_{subset}"] for s, spec in _manifest().splits.items() if f"n_{subset}" in spec}


def parse_take(take: str) -> tuple[str, int]:
    """(session, token) of a TI46 take: `set3` -> ("set", 3) (enrollment), `s5t1` -> ("s5", 1)."""
    take = take.lower()
    m = re.fullmatch(r"(set)([0-9])|(s[1-8])t([01])", take)
    if m is None:
        raise DatasetError(f"TI46 take {take!r} is neither set<k> (k = 0-9) nor s<k>t<j> (k = 1-8, j = 0, 1)")
    return (m[1], int(m[2])) if m[1] else (m[3], int(m[4]))


def _walk(root: Path) -> list[str]:
    names = []
    for dirpath, _dirs, files in os.walk(root):
        rel_dir = Path(dirpath).relative_to(root).as_posix()
        for f in files:
            names.append(f if rel_dir == "." else f"{rel_dir}/{f}")
    return sorted(names)


def _suffix(name: str) -> str:
    base = name.rsplit("/", 1)[-1].split(";", 1)[0]
    return ("." + base.rsplit(".", 1)[1].lower()) if "." in base else "(none)"


def _nothing_matches(root: Path, names: list[str], subset: str, pattern: str | None) -> DatasetError:
    """The error when no file matches: what was found (counts by suffix, examples) and what would match."""
    what = f"pattern {pattern!r}" if pattern else f"the TI46 layout {_LAYOUT.replace('<subset>', subset)}"
    if not names:
        return DatasetError(f"{root}: no files at all, so no recordings match {what} (see data_manifests/ti46.toml)")
    by_suffix = Counter(_suffix(n) for n in names)
    counts = ", ".join(f"{n:,} {s}" for s, n in by_suffix.most_common(6))
    audio = [n for n in names if _suffix(n) in _AUDIO_SUFFIXES] or names
    examples = ", ".join(audio[: 3])
    hint = ""
    if pattern is None:
        prefix = root.resolve().name + "/"
        for other in SUBSETS:
            regex = re.compile(layout_pattern(other), re.IGNORECASE)
            n = sum(regex.search(prefix + name) is not None for name in audio)
            if other != subset and n:
                hint = f"; {n:,} of them match `subset` {other}"
    return DatasetError(
        f"{root}: no recordings match {what} (see data_manifests/ti46.toml); found {len(names):,} files: {counts}; "
        f"e.g. {examples}{hint}"
    )


def scan_ti46(source: str | os.PathLike, subset: str = "ti_alpha", pattern: str | None = None) -> Ti46Copy:
    """Utterances of TI46 `subset` under `source`, in any of its layouts (module docstring).

    Without `pattern`, the real layout of `subset` ("ti_alpha" or "ti20") is matched; `source` may be the corpus
    directory, its parent or the subset directory itself. With `pattern`, a regular expression with named groups
    `label` (prompt code or class name), `speaker`, `split` and optionally `take` is searched in each file's path
    relative to `source`. Extras: `session` and `token` (from the take), `speaker` and `path` are added by
    :func:`spikedata.datasets.shared.speech.speech_jobs`. An unknown prompt code is an error naming the file.
    """
    root = Path(source)
    if not root.is_dir():
        raise DatasetError(f"{root}: not a directory (expected the TI46 corpus, see data_manifests/ti46.toml)")
    codes = prompt_codes(subset)
    names_of_class = set(codes.values())
    others: list[re.Pattern] = []  # files of the other subset are not "ignored": they are understood
    if pattern is None:
        regex = re.compile(layout_pattern(subset), re.IGNORECASE)
        others = [re.compile(layout_pattern(s), re.IGNORECASE) for s in SUBSETS if s != subset]
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
    has_take = "take" in regex.groupindex
    names = _walk(root)
    found: list[tuple[Utterance, tuple[str, int] | None]] = []
    ignored, ignored_example = 0, None
    for name in names:
        m = regex.search(prefix + name)
        if m is None:
            if _suffix(name) in _AUDIO_SUFFIXES and not any(o.search(prefix + name) for o in others):
                ignored += 1
                ignored_example = ignored_example or name
            continue
        split = m["split"].lower()
        if split not in SPLITS:
            raise DatasetError(f"{root / name}: split {m['split']!r} from `pattern` is not one of {SPLITS}")
        label = m["label"].lower()
        if label in codes:
            label = codes[label]
        elif label not in names_of_class:
            raise DatasetError(
                f"{root / name}: unknown TI46 prompt code {m['label']!r} for {subset} (known: "
                f"{', '.join(f'{c} {n}' if c[0] != '0' else c for c, n in codes.items())})"
            )
        take = None
        if has_take and m["take"] is not None:
            try:
                take = parse_take(m["take"])
            except DatasetError as exc:
                raise DatasetError(f"{root / name}: {exc}") from None
        found.append((Utterance(root / name, label, m["speaker"].lower(), split, name), take))
    if not found:
        raise _nothing_matches(root, names, subset, pattern)
    found.sort(key=lambda ut: (SPLITS.index(ut[0].split), ut[0].name.lower()))
    extras: dict[str, list] = {}
    if all(take is not None for _, take in found):
        extras = {"session": [t[0] for _, t in found], "token": [t[1] for _, t in found]}
    return Ti46Copy([u for u, _ in found], ti46_classes(subset), extras, ignored, ignored_example)


def encode(dataset: Dataset, run: EncodeRun, source: Path, subset: str, pattern: str | None,
           front_end: SpeechFrontEnd) -> Path:
    """Encode the recordings of TI46 `subset` under `source` (found by its layout or by `pattern`)."""
    from spikedata.datasets.shared.speech import encode_speech

    copy = scan_ti46(source, subset, pattern)
    if copy.ignored:
        run.report.note(f"{copy.ignored} audio files under {source} do not match and are ignored, e.g. "
                        f"{copy.ignored_example}")
    return encode_speech(f"ti46-{subset}", run, source, copy.utterances, copy.classes, front_end, copy.extras,
                         expected_counts(subset))


DATASET = Dataset(
    "ti46",
    "Encode TI46 (LDC93S9, obtained by the user; any of its layouts, see data_manifests/ti46.toml) into a store; "
    "speaker, session, token and path kept per sample.",
    encode,
    options=(
        SOURCE.but(help="Directory holding the recordings."),
        Option("subset", str, "ti_alpha", "ti_alpha (26 letters) or ti20 (10 digits and 10 command words)."),
        Option("pattern", str, None, "Regex with named groups label, speaker, split (and optionally take), searched "
               "in each file's path relative to --source (instead of the TI46 layout)."),
        speech_front_end(),
    ),
    manifest="ti46",
    reader=scan_ti46,
    preset="ti46-mlp",
)
