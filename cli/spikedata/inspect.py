"""`spikedata inspect STORE`: sample/class counts, spike and rate statistics, optional JSON and plot."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import typer
from rich.markup import escape
from rich.table import Table

from spikedata.cli.app import app as spikedata_app
from spikedata.cli.common import echo, fail, note_first_compilation, report, reported_errors, say
from spikedata.text import printable


def _fmt(value: Any) -> str:
    if value is None:
        return "-"
    if isinstance(value, float):
        return f"{value:.4g}"
    return str(value)


def _print_split(name: str, s: dict[str, Any]) -> None:
    table = Table(title=escape(printable(f"split {name}")), show_header=False, title_justify="left")
    table.add_column("statistic", style="bold")
    table.add_column("value")
    sps, isi, ur = s["spikes_per_sample"], s["isi_steps"], s["unit_rate_hz"]
    rows = [
        ("samples", s["n_samples"]),
        ("events", s["n_events"]),
        ("units x steps", f"{s['n_units']} {s['unit_shape']} x {s['n_steps']} (dt {s['dt_us']:g} µs)"),
        ("spikes/sample", f"mean {_fmt(sps['mean'])}, median {_fmt(sps['median'])}, p5 {_fmt(sps['p5'])}, "
                          f"p95 {_fmt(sps['p95'])}, min {_fmt(sps['min'])}, max {_fmt(sps['max'])}"),
        ("density", _fmt(s["density"])),
        ("mean rate", f"{_fmt(s['mean_rate_hz'])} Hz"),
        ("unit rate", f"mean {_fmt(ur['mean'])} Hz, median {_fmt(ur['median'])} Hz, max {_fmt(ur['max'])} Hz, "
                      f"silent units {ur['silent_units']}"),
        ("ISI (steps)", f"n {isi['count']}, mean {_fmt(isi['mean'])}, median {_fmt(isi['median'])}, "
                        f"p5 {_fmt(isi['p5'])}, p95 {_fmt(isi['p95'])}, min {_fmt(isi['min'])}"),
        ("empty samples", f"{s['empty_samples']['count']} {s['empty_samples']['first'] or ''}"),
    ]  # fmt: skip
    for key, value in rows:
        table.add_row(key, escape(str(value)))
    report.print(table)
    classes = Table(title=escape(f"split {name}: per class"), title_justify="left")
    for col in ("class", "samples", "mean spikes", "mean rate (Hz)"):
        classes.add_column(col, justify="right")
    for c, k in s["class_counts"].items():
        classes.add_row(escape(printable(c)), str(k), _fmt(s["class_mean_spikes"][c]), _fmt(s["class_mean_rate_hz"][c]))
    report.print(classes)


@spikedata_app.command("inspect")
def inspect(
    store: str = typer.Argument(..., help="Spike store: a directory written by `spikedata encode`, or an fsspec URL "
                                "(https://..., s3://...)."),
    split: list[str] = typer.Option(None, "--split", help="Split to inspect (repeatable); default: all."),
    as_json: bool = typer.Option(False, "--json", help="Print the statistics as JSON instead of tables."),
    plot: Path = typer.Option(None, "--plot", help="PNG: samples and per-unit rates of every split (with --sample: "
                              "that sample)."),
    sample: int = typer.Option(None, "--sample", min=0, help="Plot sample I of the (first) --split instead of the "
                               "statistics (PNG at --plot, default <split>_sample<I>.png)."),
    animate: Path = typer.Option(None, "--animate", help="GIF: an event-camera sample (--sample, default 0) as a "
                                 "movie of its events over time."),
) -> None:
    """Statistics of a spike store: counts, spikes per sample, rates, density, ISIs, per-class rates, integrity;
    figures."""
    from spikedata.inspect import plot_store, split_stats
    from spikedata.store import FORMAT_VERSION, open_store

    with reported_errors(OSError):
        opened = open_store(store)
        names = split or opened.splits
        unknown = [s for s in names if s not in opened.splits]
        if unknown:
            fail(f"{store} has no split(s) {unknown}; it has {opened.splits}")
        store_name = str(store).rstrip("/").rsplit("/", 1)[-1]
        if sample is not None or animate is not None:
            _one_sample(opened, names[0], 0 if sample is None else sample, plot if sample is not None else None,
                        animate, store_name)
            return
        from spikedata import inspect as inspect_mod

        note_first_compilation(inspect_mod)
        stats = {name: split_stats(opened[name]) for name in names}  # reads every event chunk: all verified
        integrity = {name: _integrity(opened[name]) for name in names}
        summary = {
            "store": str(store),
            "dataset": opened.attrs.get("dataset"),
            "encoder": opened.attrs.get("encoder"),
            "seed": opened.attrs.get("seed"),
            "fingerprint": opened.fingerprint,
            "integrity": {"format_version": FORMAT_VERSION, "attributes": "sha256 verified", "splits": integrity},
            "splits": {name: st.summary for name, st in stats.items()},
        }
        if as_json:
            print(json.dumps(summary, indent=2))
        else:
            report.print(f"[bold]{escape(printable(str(store)))}[/bold]: dataset {escape(str(summary['dataset']))}, "
                         f"encoder {escape(str(summary['encoder']))}, seed {summary['seed']}", highlight=False)
            for name, st in stats.items():
                _print_split(name, st.summary)
            for name, i in integrity.items():
                echo(integrity_line(name, i, store))
        if plot is not None:
            try:
                plot_store([opened[n] for n in names], plot, [stats[n] for n in names], opened.attrs, store_name)
            except ValueError as exc:
                fail(str(exc))
            say(f"plot of split(s) {', '.join(names)} written to {plot}")


def _integrity(split) -> dict:
    per_array = split.integrity()
    return {"chunks": sum(a["chunks"] for a in per_array.values()),
            "verified": sum(a["verified"] for a in per_array.values()), "arrays": per_array}


def integrity_line(split: str, integrity: dict, store: str) -> str:
    """What `inspect` checked of a split's chunks: the arrays it read (every chunk matched the manifest) and the
    arrays it did not read (per-sample extras), which only `spikedata verify` checks."""
    from spikedata.store import FORMAT_VERSION

    arrays = integrity["arrays"]
    read = [a for a, n in arrays.items() if n["verified"] == n["chunks"]]
    unread = {a: n for a, n in arrays.items() if n["verified"] < n["chunks"]}
    checked = sum(arrays[a]["chunks"] for a in read)
    text = (f"integrity of split {split}: format version {FORMAT_VERSION}, attribute digests verified; the {checked} "
            f"chunk(s) of the arrays read here ({', '.join(read)}) matched the chunk manifest (crc32c)")
    if unread:
        left = sum(n["chunks"] - n["verified"] for n in unread.values())
        text += (f"; {left} chunk(s) of {', '.join(unread)} were not read here (not needed for these statistics), so "
                 "not checked")
    return text + f"; `spikedata verify {store}` checks every chunk and the content hash"


def _one_sample(opened, name: str, i: int, plot: Path | None, animate: Path | None, store_name: str) -> None:
    """`--sample I` / `--animate GIF`: figures of one sample, and a one-line description of it."""
    from spikedata.plots import animate_sample, plot_sample

    data = opened[name]
    if not 0 <= i < len(data):
        fail(f"--sample {i}: split {name!r} has {len(data)} samples (0 to {len(data) - 1})")
    times, _ = data.events(i)
    say(f"split {name}, sample {i}: label {data.classes[int(data.labels[i])]}, {len(times)} spikes")
    if plot is not None or animate is None:
        out = plot or Path(f"{name}_sample{i}.png")
        plot_sample(data, i, out, opened.attrs, store_name)
        say(f"plot of sample {i} written to {out}")
    if animate is not None:
        try:
            n = animate_sample(data, i, animate, opened.attrs, store_name)
        except ValueError as exc:
            fail(str(exc))
        say(f"animation of sample {i} ({n} frames) written to {animate}")
