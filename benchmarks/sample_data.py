"""Where the benchmarks find real sample files: `SPIKEDATA_SAMPLE_DATA`, by default the `shared/data` folder beside
the clone (the same directory the tests use)."""

import os
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
SAMPLE_DATA = Path(os.environ.get("SPIKEDATA_SAMPLE_DATA", REPO.parent / "shared" / "data"))


def sample_path(relative: str, must_exist: bool = True) -> Path:
    """`SAMPLE_DATA / relative`; exits with a clear message when it is missing and `must_exist`."""
    path = SAMPLE_DATA / relative
    if must_exist and not path.exists():
        sys.exit(f"sample data {path} not found: set SPIKEDATA_SAMPLE_DATA to the directory of the real sample files")
    return path
