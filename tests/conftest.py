"""Shared fixtures: the directory of real sample files (set `SPIKEDATA_SAMPLE_DATA`; by default the `shared/data`
folder beside the clone). Tests that need it skip with a reason when it is absent."""

import os
from pathlib import Path

import pytest
import torch

# Without a GPU, Triton kernels run on CPU tensors under Triton's interpreter, which must be switched on before
# Triton is first imported (hm2bp.kernels.triton does the same for library users).
if not torch.cuda.is_available():
    os.environ.setdefault("TRITON_INTERPRET", "1")

REPO = Path(__file__).resolve().parents[1]
SAMPLE_DATA = Path(os.environ.get("SPIKEDATA_SAMPLE_DATA", REPO.parent / "shared" / "data"))


@pytest.fixture(scope="session")
def shared_data() -> Path:
    """The sample-data directory; skips the test when its files are not there."""
    if not (SAMPLE_DATA / "README.md").is_file():
        pytest.skip(f"real sample data not found at {SAMPLE_DATA} (set SPIKEDATA_SAMPLE_DATA to its directory)")
    return SAMPLE_DATA
