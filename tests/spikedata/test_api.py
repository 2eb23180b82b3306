"""The public names of the README and docs resolve, and the data side never imports torch."""

import subprocess
import sys

import spikedata

DESIGN_NAMES = ["read_events", "poisson_encode", "lyon_passive_ear", "bsa_encode", "open_store"]


def test_public_names_resolve():
    for name in spikedata.__all__:
        assert callable(getattr(spikedata, name)) or getattr(spikedata, name) is not None, name
    assert set(DESIGN_NAMES) <= set(spikedata.__all__)


def test_spikedata_never_imports_torch():
    code = (
        "import sys, spikedata\n"
        "for n in spikedata.__all__: getattr(spikedata, n)\n"
        "import spikedata.datasets.mnist, spikedata.datasets.nmnist, spikedata.datasets.ti46, spikedata.inspect\n"
        "print('torch' in sys.modules)"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False"
