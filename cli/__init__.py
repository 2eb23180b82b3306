"""Thin Typer command-line front ends for `spikedata` and `hm2bp`."""
