"""`scripts/device_check.sh --dry-run`: the GPU machine's check, run on CPU under Triton's interpreter with tiny
networks, so that the script itself (its steps, their commands and options, the offline install of this tree)
cannot rot between the runs on a GPU."""

import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]


@pytest.mark.skipif(shutil.which("bash") is None or shutil.which("timeout") is None,
                    reason="the device check is a bash script that uses coreutils' timeout")
def test_device_check_dry_run(tmp_path):
    pytest.importorskip("triton", reason="the device check runs the triton kernel set")
    env = {**os.environ, "PYTHON": sys.executable}
    env.pop("OUT", None)
    proc = subprocess.run(["bash", "scripts/device_check.sh", "--dry-run", str(tmp_path)], cwd=REPO, env=env,
                          capture_output=True, text=True, timeout=600)
    report = (tmp_path / "device_report.txt").read_text()
    assert proc.returncode == 0, report[-6000:] + proc.stderr[-2000:]
    assert report.rstrip().endswith("device check: all steps passed")
    # the GPU run's limits add up to under 7 minutes; the dry run's are the same, scaled
    total, scale = (int(v) for v in re.search(r"step limits add up to (\d+) s on the GPU machine \(dry run: (\d+) "
                                              r"times each\)", report).groups())
    limits = [int(v) for v in re.findall(r"^== .* \(limit (\d+) s\)$", report, re.MULTILINE)]
    assert len(limits) == 5 and sum(limits) == scale * total and total < 420, (limits, total)
    assert len(re.findall(r"^== .*: exit 0 after \d+ s$", report, re.MULTILINE)) == 5
    # what the dry run skips, it says: only the tests that need a GPU skip, each with the reason
    skipped = re.findall(r"^SKIPPED \[\d+\] (\S+): (.*)$", report, re.MULTILINE)
    assert skipped and all("needs a CUDA device" in reason for _, reason in skipped)
    assert "dry run: skipped as needing a GPU" in report
    assert re.search(r"launches per step: mlp triton .*'host_syncs': 0", report)
    assert re.search(r"^test: accuracy [\d.]+ %", report, re.MULTILINE)  # hm2bp eval of hm2bp fit's checkpoint
    assert not (REPO / "build").exists()  # the offline install builds in a copy, not in the tree
