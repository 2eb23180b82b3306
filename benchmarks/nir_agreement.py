"""How a NIR consumer from the registry (snnTorch's `import_from_nir`) agrees with hm2bp on an exported network.

    .venv/bin/python benchmarks/nir_agreement.py --store demo_out/mnist5k.zarr --checkpoint demo_out/run/best.pt

(after `make demo`). Exports the checkpoint's network to NIR, runs snnTorch's import of it and our network on the
same rasters of a split (`--split test`, the first `--max-n` samples), and prints the share of samples with the same
predicted class, of output neurons with the same spike count (also against our network without refractoriness,
which NIR cannot carry), the mean output counts and both accuracies. docs/nir.md records the figures. Needs snnTorch
and nirtorch (test-only peers, installed by make).
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import numpy as np
import torch

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from hm2bp.train.checkpoint import load_checkpoint  # noqa: E402
from hm2bp.train.evaluate import load_network_from_checkpoint  # noqa: E402
from spikedata.store import open_store  # noqa: E402
from tests.hm2bp.nir_consumer import agreement  # noqa: E402


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--store", required=True)
    parser.add_argument("--checkpoint", required=True)
    parser.add_argument("--split", default="test")
    parser.add_argument("--max-n", type=int, default=None)
    args = parser.parse_args()
    net = load_network_from_checkpoint(load_checkpoint(args.checkpoint))
    split = open_store(args.store)[args.split]
    n = len(split) if args.max_n is None else min(args.max_n, len(split))
    x = torch.from_numpy(split.dense(np.arange(n)))
    labels = torch.from_numpy(split.labels[:n].astype(np.int64))
    t0 = time.perf_counter()
    a = agreement(net, x, labels)
    print(f"{args.checkpoint} on {n} samples of split {args.split!r} ({time.perf_counter() - t0:.0f} s):")
    print(f"  same predicted class: {100 * a['same_class']:.1f} %  (against hm2bp without refractoriness: "
          f"{100 * a['same_class_without_refractoriness']:.1f} %)")
    print(f"  same output spike count: {100 * a['same_count']:.1f} % of the output neurons  (without refractoriness: "
          f"{100 * a['same_count_without_refractoriness']:.1f} %)")
    print(f"  mean output count: hm2bp {a['mean_count_ours']:.2f}, snnTorch {a['mean_count_snntorch']:.2f}")
    print(f"  accuracy: hm2bp {100 * a['accuracy_ours']:.2f} %, snnTorch {100 * a['accuracy_snntorch']:.2f} %")


if __name__ == "__main__":
    main()
