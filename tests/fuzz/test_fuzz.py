"""The fast part of the fuzz suite (CI): a few seeded mutants of every format of `tests.fuzz.formats.FORMATS`, each
in a child process with a time and memory limit, and a few rounds of concurrent writers. `FUZZ_CASES=N` runs N
mutants per format; `python -m tests.fuzz.run` runs the full set and prints the table of docs/reliability.md."""

from __future__ import annotations

import os

import pytest

from tests.fuzz.concurrency import run_rounds
from tests.fuzz.formats import FORMATS, foreign_samples
from tests.fuzz.harness import Child, run_format

CASES = int(os.environ.get("FUZZ_CASES", "25"))


@pytest.fixture(scope="module")
def child():
    c = Child()
    yield c
    c.close()


@pytest.fixture(scope="module")
def foreign(tmp_path_factory):
    return foreign_samples(tmp_path_factory.mktemp("foreign"))


@pytest.mark.parametrize("fmt", FORMATS, ids=[f.name for f in FORMATS])
def test_every_mutant_is_a_clean_error_or_a_plausible_result(fmt, child, foreign, tmp_path):
    if not fmt.seeds(tmp_path / "probe"):
        pytest.skip(f"{fmt.name}: real sample data not found (set SPIKEDATA_SAMPLE_DATA)")
    report = run_format(fmt, CASES, tmp_path, child=child if child.alive else None, foreign=foreign)
    assert report.bad == 0, "\n".join(str(f) for f in report.failures)
    assert sum(report.counts.values()) == CASES


def test_concurrent_writers(tmp_path):
    result = run_rounds(int(os.environ.get("FUZZ_ROUNDS", "2")), tmp_path)
    assert result["bad"] == 0, "\n".join(result["problems"])
