"""No module of the data side (spikedata, its command line, their tests) imports another module's private names
(a leading underscore): what is shared is public, with a docstring."""

from __future__ import annotations

import ast
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
SCOPE = ["spikedata", "cli/spikedata", "tests/spikedata", "tests/fuzz", "tests/writers.py",
         "tests/cli/test_encode_events.py", "tests/cli/test_encode_event_datasets.py",
         "tests/cli/test_encode_speech.py", "tests/cli/test_encode_options.py", "tests/cli/test_spikedata_cli.py"]
PROJECT = ("spikedata", "hm2bp", "tests")


def _private(name: str) -> bool:
    return name.startswith("_") and not (name.startswith("__") and name.endswith("__"))


def _files() -> list[Path]:
    out = []
    for entry in SCOPE:
        path = REPO / entry
        out += sorted(path.rglob("*.py")) if path.is_dir() else [path]
    return out


def _violations(path: Path, root: Path = REPO) -> list[str]:
    found = []
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.ImportFrom) and node.module and node.module.split(".")[0] in PROJECT:
            parts = node.module.split(".")
            names = [a.name for a in node.names if _private(a.name)]
            if parts[0] == "spikedata" and any(_private(p) for p in parts):
                names.append(node.module)
            found += [f"{path.relative_to(root)}:{node.lineno}: {node.module} {n}" for n in names]
        elif isinstance(node, ast.Import):
            found += [f"{path.relative_to(root)}:{node.lineno}: {a.name}" for a in node.names
                      if a.name.split(".")[0] == "spikedata" and any(_private(p) for p in a.name.split("."))]
    return found


def test_no_private_names_imported_across_modules():
    files = _files()
    assert len(files) > 60
    problems = [v for f in files for v in _violations(f)]
    assert not problems, "\n".join(problems)


def test_the_check_finds_a_private_import(tmp_path):
    bad = tmp_path / "bad.py"
    bad.write_text("from spikedata.io.validate import _scan\nfrom tests.x import __doc__\nimport spikedata._hidden\n")
    found = [v.split(": ", 1)[1] for v in _violations(bad, tmp_path)]
    assert found == ["spikedata.io.validate _scan", "spikedata._hidden"]
