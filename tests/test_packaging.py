"""The wheel: only `spikedata` and `hm2bp` at the top level, and a clean install runs both console scripts.

The wheel is built from a copy of the working tree (tracked and unignored files, as a fresh clone has them), so
stale build directories cannot leak into it. The install goes into a new virtual environment outside the
repository; its dependencies (torch, numba, zarr, ...) are not downloaded again but seen through a `.pth` file
that names the test environment's site-packages (a `.pth` line adds a directory without running the `.pth` files
in it, so the project's editable install there stays out of the way).
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import sysconfig
import venv
import zipfile
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]


def _source_copy(dest: Path) -> Path:
    listed = subprocess.run(["git", "ls-files", "-co", "--exclude-standard", "-z"], cwd=REPO, check=True,
                            capture_output=True).stdout.decode().split("\0")
    for rel in filter(None, listed):
        src, out = REPO / rel, dest / rel
        out.parent.mkdir(parents=True, exist_ok=True)
        if src.is_symlink():  # e.g. spikedata/manifests -> ../data_manifests, as a clone has it
            out.symlink_to(os.readlink(src))
        elif src.is_file():
            shutil.copy2(src, out)
    return dest


@pytest.fixture(scope="module")
def wheel(tmp_path_factory) -> Path:
    if shutil.which("git") is None or not (REPO / ".git").exists():
        pytest.skip("needs a git checkout of the repository (the wheel is built from its files)")
    root = tmp_path_factory.mktemp("wheel")
    src = _source_copy(root / "src")
    subprocess.run([sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "--no-index", "-q",
                    "-w", str(root / "dist"), str(src)], check=True, capture_output=True, text=True)
    (path,) = (root / "dist").glob("*.whl")
    return path


def test_wheel_has_only_the_two_packages_at_the_top_level(wheel):
    with zipfile.ZipFile(wheel) as z:
        names = z.namelist()
    top = {n.split("/")[0] for n in names if not n.split("/")[0].endswith(".dist-info")}
    assert top == {"spikedata", "hm2bp"}
    assert "hm2bp/presets/mnist-mlp.toml" in names and "spikedata/manifests/mnist.toml" in names
    assert "spikedata/cli/app.py" in names and "hm2bp/cli/fit.py" in names
    entry_points = next(n for n in names if n.endswith(".dist-info/entry_points.txt"))
    with zipfile.ZipFile(wheel) as z:
        scripts = z.read(entry_points).decode()
    assert "spikedata = spikedata.cli:main" in scripts and "hm2bp = hm2bp.cli:main" in scripts


def _installed_name(rel: Path) -> str:
    """Where a source file of the repository lands in the wheel (`cli/X/...` installs as `X/cli/...`)."""
    parts = rel.parts
    if parts[0] == "cli":
        parts = (parts[1], "cli", *parts[2:])
    return "/".join(parts)


def test_wheel_holds_every_module_of_the_source_tree(wheel):
    # The package list in pyproject.toml is written out (the cli/ mapping needs it): a new sub-package that is not
    # added to it would be missing from installs while the editable checkout still imports it.
    with zipfile.ZipFile(wheel) as z:
        names = set(z.namelist())
    sources = [p.relative_to(REPO) for top in ("spikedata", "hm2bp", "cli") for p in (REPO / top).rglob("*.py")
               if "__pycache__" not in p.parts]
    missing = sorted(str(rel) for rel in sources if _installed_name(rel) not in names)
    assert not missing, f"not in the wheel (add their packages to pyproject.toml): {missing}"
    assert not any(n.startswith("cli/") for n in names)


@pytest.mark.slow
def test_clean_install_runs_both_command_lines(wheel, tmp_path):
    env_dir = tmp_path / "env"
    venv.create(env_dir, with_pip=False)
    bindir = env_dir / ("Scripts" if os.name == "nt" else "bin")
    python = bindir / "python"
    site = Path(subprocess.run([str(python), "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"],
                               check=True, capture_output=True, text=True).stdout.strip())
    (site / "_test_dependencies.pth").write_text(sysconfig.get_paths()["purelib"] + "\n")
    subprocess.run([sys.executable, "-m", "pip", "--python", str(python), "install", "--no-deps", "--no-index", "-q",
                    str(wheel)], check=True, capture_output=True, text=True)
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "VIRTUAL_ENV")}
    probe = ("import spikedata, hm2bp; from spikedata.manifest import load_manifest; print(spikedata.__file__, "
             "hm2bp.__file__, load_manifest('mnist').name, 'mnist-mlp' in hm2bp.preset_names())")
    where = subprocess.run([str(python), "-c", probe], cwd=tmp_path, env=env, check=True, capture_output=True,
                           text=True).stdout
    assert str(REPO) not in where and where.count(str(site)) == 2  # the installed copy, not the repository
    assert where.split()[2:] == ["mnist", "True"]  # package data: dataset manifests and network presets
    for cmd, expect in (([str(bindir / "spikedata"), "--help"], "encode"), ([str(bindir / "hm2bp"), "--help"], "fit"),
                        ([str(python), "-m", "hm2bp", "fit", "--help"], "--val-fraction")):
        out = subprocess.run(cmd, cwd=tmp_path, env=env, capture_output=True, text=True, timeout=120)
        assert out.returncode == 0, out.stderr
        assert expect in out.stdout
