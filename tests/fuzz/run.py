"""Run the fuzz suite at full size and print the table of outcomes (the one in docs/reliability.md).

    .venv/bin/python -m tests.fuzz.run --cases 250 [--formats atis40,store] [--seed 0] [--json out.json]

Every format of `tests.fuzz.formats.FORMATS` gets `--cases` seeded mutants, then the concurrent-writer scenarios
(`tests.fuzz.concurrency`) run `--rounds` rounds. Exit status 1 when any outcome is not wanted.
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from collections import Counter
from pathlib import Path

from tests.fuzz.concurrency import run_rounds
from tests.fuzz.formats import FORMATS, foreign_samples
from tests.fuzz.harness import OUTCOMES, WANTED, Child, run_format


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--cases", type=int, default=250)
    ap.add_argument("--rounds", type=int, default=20)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--formats", default="")
    ap.add_argument("--json", type=Path)
    args = ap.parse_args()
    wanted = set(filter(None, args.formats.split(",")))
    rows, bad, started = [], 0, time.perf_counter()
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        foreign = foreign_samples(work)
        child = Child()
        try:
            for fmt in FORMATS:
                if wanted and fmt.name not in wanted:
                    continue
                if not fmt.seeds(work / "probe" / fmt.name):
                    print(f"{fmt.name}: skipped (no sample data)", file=sys.stderr)
                    continue
                report = run_format(fmt, args.cases, work / fmt.name, child=child, seed=args.seed, foreign=foreign)
                child = child if child.alive else Child()
                rows.append(report)
                bad += report.bad
                print(f"{fmt.name}: {dict(report.counts)} in {report.seconds:.0f} s", file=sys.stderr)
                for f in report.failures[:5]:
                    print(f"   {f}", file=sys.stderr)
        finally:
            child.close()
        conc = run_rounds(args.rounds, work / "concurrency", seed=args.seed) if not wanted or "writers" in wanted \
            else None
    print(f"| format | cases | {' | '.join(OUTCOMES)} | ops |")
    print("|---|---:|" + "---:|" * len(OUTCOMES) + "---|")
    for r in rows:
        ops = ", ".join(f"{op} {sum(c.values())}" for op, c in sorted(r.by_op.items()))
        print(f"| {r.name} | {sum(r.counts.values())} | " + " | ".join(str(r.counts.get(o, 0)) for o in OUTCOMES)
              + f" | {ops} |")
    if conc is not None:
        print()
        print("| concurrent writers | rounds | " + " | ".join(sorted(conc["counts"])) + " |")
        print("|---|---:|" + "---:|" * len(conc["counts"]))
        print(f"| {conc['scenario']} | {conc['rounds']} | " + " | ".join(str(v) for _, v in sorted(
            conc["counts"].items())) + " |")
        bad += conc["bad"]
    total = Counter()
    for r in rows:
        total.update(r.counts)
    print(f"\n{sum(total.values())} mutants in {time.perf_counter() - started:.0f} s: "
          + ", ".join(f"{k} {total.get(k, 0)}" for k in OUTCOMES) + f"; not wanted: {bad}", file=sys.stderr)
    if args.json:
        args.json.write_text(json.dumps({"formats": {r.name: {"counts": dict(r.counts), "failures": r.failures}
                                                     for r in rows}, "writers": conc}, indent=1))
    sys.exit(1 if bad else 0)


if __name__ == "__main__":
    assert WANTED
    main()
