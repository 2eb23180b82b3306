"""Shared fixtures: the real sample files in ../shared/data, skipped with a reason when absent."""

from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
SHARED_DATA = REPO.parent / "shared" / "data"


@pytest.fixture(scope="session")
def shared_data() -> Path:
    """Path of ../shared/data; skips the test when the sample files are not beside the clone."""
    if not (SHARED_DATA / "README.md").is_file():
        pytest.skip(f"real sample data not found at {SHARED_DATA} (present in CI; absent in a bare clone)")
    return SHARED_DATA
