"""No module of the repository (both packages, the command line, the tests, the benchmarks) uses another module's
private names (a leading underscore): what is shared is public, with a docstring. Private names of a module used
inside that module, and of packages outside the repository, are not this test's business."""

from __future__ import annotations

import ast
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
SCOPE = ("spikedata", "hm2bp", "cli", "tests", "benchmarks", "scripts")
PROJECT = ("spikedata", "hm2bp", "tests")


def _private(name: str) -> bool:
    return name.startswith("_") and not (name.startswith("__") and name.endswith("__"))


def python_files() -> list[Path]:
    """Every tracked-looking Python file of the repository (virtual environments and caches left out)."""
    return sorted(p for top in SCOPE for p in (REPO / top).rglob("*.py") if "__pycache__" not in p.parts)


def private_uses(path: Path, root: Path = REPO) -> list[str]:
    """`from X import _name`, `import X._mod`, or `alias._name` where `alias` names a project module (or anything
    imported from one), as `file:line: what` strings."""
    tree = ast.parse(path.read_text(encoding="utf-8"), str(path))
    where = path.relative_to(root)
    aliases: set[str] = set()
    found = []
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom) and (node.module or "").split(".")[0] in PROJECT:
            found += [f"{where}:{node.lineno}: imports {node.module}.{a.name}" for a in node.names if _private(a.name)]
            if any(_private(p) for p in node.module.split(".")):
                found.append(f"{where}:{node.lineno}: imports from {node.module}")
            aliases.update(a.asname or a.name for a in node.names)
        elif isinstance(node, ast.Import):
            for a in node.names:
                if a.name.split(".")[0] in PROJECT:
                    aliases.add((a.asname or a.name).split(".")[0])
                    if any(_private(p) for p in a.name.split(".")):
                        found.append(f"{where}:{node.lineno}: imports {a.name}")
    for node in ast.walk(tree):
        if (isinstance(node, ast.Attribute) and isinstance(node.value, ast.Name) and node.value.id in aliases
                and _private(node.attr)):
            found.append(f"{where}:{node.lineno}: uses {node.value.id}.{node.attr}")
    return found


def test_no_private_names_across_modules():
    files = python_files()
    assert len(files) > 200
    problems = [use for path in files for use in private_uses(path)]
    assert not problems, "\n".join(problems)


def test_the_check_finds_each_kind_of_use(tmp_path):
    bad = tmp_path / "bad.py"
    bad.write_text("from spikedata.io.validate import _scan\nfrom tests.x import __doc__\nimport spikedata._hidden\n"
                   "from spikedata import transforms as T\nT._select(1, 2)\nT.__name__\nimport numpy as np\nnp._x\n")
    assert [u.split(": ", 1)[1] for u in private_uses(bad, tmp_path)] == [
        "imports spikedata.io.validate._scan", "imports spikedata._hidden", "uses T._select"]
