"""`hm2bp export CHECKPOINT --format nir --out net.nir`: a trained network for other tools (docs/nir.md)."""

from __future__ import annotations

from pathlib import Path

import typer

from hm2bp.cli.app import app as hm2bp_app
from spikedata.cli.common import error_text, fail

FORMATS = ("nir",)


@hm2bp_app.command("export")
def export_cmd(
    checkpoint: Path = typer.Argument(..., help="Checkpoint written by `hm2bp fit` (best.pt, last.pt)."),
    format: str = typer.Option("nir", "--format", help="Output format: nir (the Neuromorphic Intermediate "
                               "Representation, an HDF5 file that snnTorch, Norse, Lava, SpiNNaker2, ... read)."),
    out: Path = typer.Option(..., "--out", help="File to write (e.g. net.nir)."),
    dt_us: float | None = typer.Option(None, "--dt-us", min=0.0, help="Step length in µs (default: that of the "
                                       "store the network was trained on)."),
) -> None:
    """Export a trained network: NIR graph with the neuron model, weights and what NIR cannot state as metadata."""
    if format not in FORMATS:
        raise typer.BadParameter(f"--format must be one of {', '.join(FORMATS)}; got {format!r}")
    if dt_us is not None and dt_us <= 0:
        raise typer.BadParameter(f"--dt-us must be > 0; got {dt_us:g}")
    from hm2bp.interop.nir import export_checkpoint
    from spikedata.errors import PicklableError

    try:
        graph = export_checkpoint(checkpoint, out, dt_us)
    except (PicklableError, ValueError, OSError) as exc:
        fail(error_text(exc))
    meta = graph.metadata
    print(f"wrote {out}: NIR graph of {len(graph.nodes)} nodes ({', '.join(graph.nodes)}), dt {meta['dt'] * 1e6:g} µs, "
          f"{meta['steps']} steps per sample")
