"""`python -m spikedata ...`: the same as the `spikedata` console script."""

from spikedata.cli import main

main()
