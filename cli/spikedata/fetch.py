"""`spikedata fetch NAME [--dest DIR] [--mirror URL]`: download and verify a dataset's files."""

from __future__ import annotations

from pathlib import Path

import typer

from spikedata.cli.app import app as spikedata_app
from spikedata.cli.common import fail, say


@spikedata_app.command("fetch")
def fetch(
    name: str = typer.Argument(..., help="Dataset name (a manifest in data_manifests/) or a manifest .toml path."),
    dest: Path = typer.Option(None, "--dest", help="Directory for the files (default: $SPIKEDATA_DATA/NAME)."),
    mirror: str = typer.Option(None, "--mirror", help="Base URL to download from instead: MIRROR/<file name>."),
    all_files: bool = typer.Option(False, "--all", help="Also fetch the optional files (e.g. other variants)."),
    keep_archives: bool = typer.Option(False, "--keep-archives", help="Keep downloaded archives after extraction."),
    quiet: bool = typer.Option(False, "--quiet", help="No progress bar."),
) -> None:
    """Download a dataset's files (resumable), check their sha256 and put them under DEST."""
    from spikedata.fetch import FetchError
    from spikedata.fetch import fetch as fetch_dataset
    from spikedata.manifest import ManifestError

    try:
        result = fetch_dataset(
            name, dest, mirror, include_optional=all_files, progress=not quiet, keep_archives=keep_archives
        )
    except (FetchError, ManifestError) as exc:
        fail(str(exc))
    for file, status in result.files.items():
        say(f"  {status:>10}  {file}")
    say(f"{len(result.files)} file(s) verified in {result.dest}")
