"""`spikedata verify STORE`: the full integrity check of a spike store (every chunk, every invariant, content hash)."""

from __future__ import annotations

import typer

from spikedata.cli.app import app as spikedata_app
from spikedata.cli.common import echo, reported_errors


@spikedata_app.command("verify")
def verify(
    store: str = typer.Argument(..., help="Spike store (a directory written by `spikedata encode`, or an fsspec URL)."),
    quiet: bool = typer.Option(False, "--quiet", help="No progress bar."),
) -> None:
    """Check every chunk against the store's chunk manifest, every sample's order and ranges, and recompute each
    split's content hash (docs/store.md). Exit status 0 when the store is intact, 1 with the first problem."""
    from spikedata.progress import progress_bar
    from spikedata.store import verify_store

    with reported_errors(), progress_bar(not quiet) as bar:
        tasks: dict[str, object] = {}

        def progress(split: str, done: int, total: int) -> None:
            if split not in tasks:
                tasks[split] = bar.add_task(f"verify {split}", total=total)
            bar.update(tasks[split], completed=done)

        report = verify_store(store, progress)
    for name, r in report.items():
        echo(f"{store}: split {name}: {r['samples']} samples, {r['events']} events, {r['chunks']} chunks verified, "
             f"content sha256 {r['content_sha256']}")
    echo(f"{store}: intact")
