"""Accuracy benchmark: the paper's MNIST MLP (`mnist-mlp`: 784-800-10, T 400) trained on the 5,000 `mnist-5k`
digits, tested after every epoch on the real 10,000-image MNIST t10k set, at batch 1 (the reference) and at larger
batch sizes (lr scaled by sqrt(batch), docs/trainer.md "Batching").

    .venv/bin/python benchmarks/bench_accuracy.py --epochs 5 --batch-sizes 1,32
    .venv/bin/python benchmarks/bench_accuracy.py --probe 8,16,32,64      # pick the fastest batch size first
    .venv/bin/python benchmarks/bench_accuracy.py --epochs 20 --batch-sizes 16 --resume-run RUN_DIR  # continue

Both sets are Poisson-encoded (algorithm.md §2.1) into one store (splits `train` = all 5,000 mnist-5k digits, which
come from the MNIST training set, and `test` = t10k from the sample data's mnist/) under --work (reused when present).
Results: one JSON line per epoch and batch size in --work/bench_accuracy.jsonl, and a table at the end.
`--max-train` / `--max-test` / `--hidden` make reduced runs; the output says exactly what was run.
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from functools import lru_cache, partial
from pathlib import Path

import numpy as np
from sample_data import SAMPLE_DATA

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from hm2bp.config import load_config  # noqa: E402
from hm2bp.presets import load_preset  # noqa: E402
from hm2bp.train.progress import Progress  # noqa: E402
from hm2bp.train.run import prepare_run  # noqa: E402
from spikedata.pipeline import SplitJob, encode_to_store  # noqa: E402
from spikedata.store import EventBlock, open_store  # noqa: E402

T10K = SAMPLE_DATA / "mnist"
STEPS = 400


@lru_cache(maxsize=2)
def _images(split: str) -> tuple[np.ndarray, np.ndarray]:
    from spikedata.datasets.mnist_5k import load_mnist_5k
    from spikedata.io.idx import read_idx

    if split == "train":
        parts = [load_mnist_5k(s) for s in ("train", "test")]
        return np.concatenate([p.images for p in parts]), np.concatenate([p.labels for p in parts])
    images = read_idx(T10K / "t10k-images-idx3-ubyte.gz")
    labels = read_idx(T10K / "t10k-labels-idx1-ubyte.gz").astype(np.int16)
    return images, labels


def encode_range(split: str, seed: int, start: int, stop: int) -> EventBlock:
    """Poisson-encode samples [start, stop) of `split` (picklable via functools.partial)."""
    from spikedata.encoders.poisson import DEFAULT_MAX_PROB, poisson_encode_events

    images, labels = _images(split)
    indptr, times, units = poisson_encode_events(images[start:stop], STEPS, DEFAULT_MAX_PROB, seed,
                                                 first_index=start)
    return EventBlock(indptr, times, units, labels[start:stop])


def build_store(path: Path) -> Path:
    if path.exists():
        return path
    from spikedata.checksum import files_sha256
    from spikedata.datasets.mnist_5k import mnist_5k_path
    from spikedata.encoders.poisson import DEFAULT_MAX_PROB

    jobs = {split: SplitJob(len(_images(split)[1]), partial(encode_range, split, seed), chunk=500)
            for split, seed in (("train", 0), ("test", 1))}
    attrs = {
        "dataset": "mnist-5k+t10k",
        "encoder": {"name": "poisson", "params": {"steps": STEPS, "max_prob": DEFAULT_MAX_PROB}},
        "n_units": 784, "unit_shape": [1, 28, 28], "n_steps": STEPS, "dt_us": 1000,
        "classes": [str(d) for d in range(10)], "seed": 0,
        "source": {"files": files_sha256([mnist_5k_path(), T10K / "t10k-images-idx3-ubyte.gz",
                                            T10K / "t10k-labels-idx1-ubyte.gz"])},
    }
    return encode_to_store(path, attrs, jobs, workers=1, progress=True)


class _Log(Progress):
    def __init__(self, batch: int, sink):
        self.batch, self.sink = batch, sink

    def epoch_end(self, record):
        record = {"batch_size": self.batch, **record}
        self.sink.write(json.dumps(record) + "\n")
        self.sink.flush()
        print(f"  batch {self.batch:>3} epoch {record['epoch']}: lr {record['lr']:.3g}  train "
              f"{100 * record['train_accuracy']:.2f} %  t10k {100 * record['test_accuracy']:.2f} %  "
              f"{record['seconds']:.0f} s train ({record['samples_per_s']:.1f} samples/s), "
              f"{record['test_seconds']:.0f} s test", flush=True)


def config_for(batch: int, epochs: int, hidden: int | None):
    cfg = load_preset("mnist-mlp")
    if hidden:
        cfg["layers"][0]["size"] = hidden
    scaling = "none" if batch == 1 else "sqrt"
    return load_config(cfg).replace_train(batch_size=batch, epochs=epochs, lr_batch_scaling=scaling)


def probe(store, sizes: list[int], n: int, hidden: int | None) -> int:
    """Train `n` samples at each batch size; return the fastest (samples/s)."""
    best, best_rate = sizes[0], 0.0
    for b in sizes:
        with tempfile.TemporaryDirectory(prefix="bench_accuracy_probe_") as tmp:
            trainer = prepare_run(store, config_for(b, 1, hidden), tmp, device="auto", max_train=n, test_split=None)
            rec = trainer.train_epoch(0)
        print(f"  probe batch {b:>3}: {rec['samples_per_s']:.1f} samples/s", flush=True)
        if rec["samples_per_s"] > best_rate:
            best, best_rate = b, rec["samples_per_s"]
    return best


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--work", type=Path, default=REPO / "runs" / "bench_accuracy")
    ap.add_argument("--epochs", type=int, default=5)
    ap.add_argument("--batch-sizes", default="1,32", help="comma-separated; 'fastest' = result of --probe")
    ap.add_argument("--probe", default="", help="batch sizes to time first (e.g. 8,16,32,64)")
    ap.add_argument("--max-train", type=int, default=None)
    ap.add_argument("--max-test", type=int, default=None)
    ap.add_argument("--hidden", type=int, default=None, help="hidden size (default: the preset's 800)")
    ap.add_argument("--device", default="auto")
    ap.add_argument("--val-fraction", type=float, default=None,
                    help="hold out this stratified fraction of the training digits; best.pt is chosen on it")
    ap.add_argument("--resume-run", type=Path, default=None,
                    help="continue this run directory (one batch size) up to --epochs instead of starting anew")
    args = ap.parse_args()
    args.work.mkdir(parents=True, exist_ok=True)
    t0 = time.perf_counter()
    store = open_store(build_store(args.work / "mnist5k_t10k.zarr"))
    print(f"store {store.path}: train {len(store['train'])} (mnist-5k), test {len(store['test'])} (t10k), "
          f"encoded/opened in {time.perf_counter() - t0:.0f} s", flush=True)
    sizes = [s for s in args.batch_sizes.split(",") if s]
    if args.probe:
        fastest = probe(store, [int(s) for s in args.probe.split(",")], 512, args.hidden)
        print(f"fastest batch size: {fastest}")
        sizes = [str(fastest) if s == "fastest" else s for s in sizes]
    results = {}
    with open(args.work / "bench_accuracy.jsonl", "a") as sink:
        for b in map(int, sizes):
            cfg = config_for(b, args.epochs, args.hidden)
            print(f"mnist-mlp 784-{cfg.layers[0].size}-10, T {STEPS}, batch {b}, lr {cfg.train.lr:g} "
                  f"({cfg.train.lr_schedule}, scaling {cfg.train.lr_batch_scaling}), {args.epochs} epochs, "
                  f"train {args.max_train or len(store['train'])}, test {args.max_test or len(store['test'])}",
                  flush=True)
            run = args.resume_run or args.work / f"run_b{b}_{time.strftime('%Y%m%d-%H%M%S')}"
            trainer = prepare_run(store, cfg, run, device=args.device, max_train=args.max_train,
                                  max_test=args.max_test, resume=args.resume_run is not None,
                                  val_fraction=args.val_fraction)
            if args.resume_run is not None:
                print(f"  resuming {run} after epoch {trainer.state.epoch}", flush=True)
            results[b] = trainer.fit(progress=_Log(b, sink))
    print("\nbatch | " + " | ".join(f"ep {r['epoch']}" for r in next(iter(results.values()))) + " | samples/s")
    for b, hist in results.items():
        rate = np.mean([r["samples_per_s"] for r in hist])
        print(f"{b:>5} | " + " | ".join(f"{100 * r['test_accuracy']:.2f}" for r in hist) + f" | {rate:.1f}")
        last = hist[-1]
        print(f"      best on {last['best_split']} at epoch {last['best_epoch']}: "
              f"test {100 * last['test_at_best']:.2f} %; final epoch {last['epoch']}: "
              f"test {100 * last['test_accuracy']:.2f} %")


if __name__ == "__main__":
    main()
