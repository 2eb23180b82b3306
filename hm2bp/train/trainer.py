"""The training loop: Network + optimiser + streaming loader + boost + schedule, writing a run directory.

Per epoch `e` (counted from 0), as the reference (`docs/algorithm.md` §3.9-3.15) with batches:
1. `lr = schedule(e)`; the loader serves the training samples in the seeded order of epoch `e`;
2. per batch one `Network.backward_pass` (forward + HM2-BP gradients, boost weights as sample weights); the
   prediction of that forward pass (argmax of counts, ties to the lowest index) counts for the train accuracy and
   the boost; the optimiser steps once per batch;
3. boost update (algorithm.md §3.10), then the epoch-level part (`Trainer.fit`): a pass over the validation split
   and the test split, one `metrics.jsonl` record, learning-curve PNG, `last.pt` and, when the selection accuracy
   improves, `best.pt`.

Model selection: `best.pt` is the epoch with the best accuracy on the validation split (a store's own `valid` split
or a seeded, stratified hold-out of the training split, `hm2bp.train.splits`); without one, on the test split, as the
paper and the reference implementation did (algorithm.md §3.13); without either, on the training accuracy. Every
record carries `valid_accuracy`, `test_accuracy` (the final epoch's is the final figure) and `test_at_best`, the
test accuracy of the epoch `best.pt` holds.

The run directory (`hm2bp.train.rundir`) is set up and locked by `hm2bp.train.run.prepare_run`; the trainer holds
its lock while it lives and writes `metrics.jsonl`, the learning curve, `last.pt` and `best.pt` after every epoch. A
resumed run gives the same weights as an uninterrupted one: the loader order depends only on (seed, epoch) and all
other state (weights, optimiser, boost weights, RNG, history) is in the checkpoint.

Data-parallel (`world`, see `hm2bp.train.distributed`): each rank trains on its share of every global batch of
`world_size * batch_size` samples; gradients, boost flags, losses and test predictions are reduced across ranks,
and only rank 0 writes the run directory. The learning rate's batch scaling uses the global batch.
"""

from __future__ import annotations

import dataclasses
import time
import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch

from hm2bp.config import NetworkConfig
from hm2bp.errors import SetupError, TrainingError
from hm2bp.train import boost as boost_mod
from hm2bp.train import distributed as dp
from hm2bp.train.augment import training_images
from hm2bp.train.checkpoint import CheckpointError, check_against_network, save_checkpoint
from hm2bp.train.device_data import DEFAULT_RESIDENT_FRACTION
from hm2bp.train.evaluate import EVAL_BATCH, EvalResult, evaluate_loader
from hm2bp.train.loader import DEFAULT_BUFFER, SpikeLoader, resolve_device
from hm2bp.train.metrics import plot_learning_curve, write_metrics
from hm2bp.train.optim import make_optimizer
from hm2bp.train.progress import Progress
from hm2bp.train.rundir import BEST, CURVE, LAST, METRICS
from hm2bp.train.schedule import learning_rate
from hm2bp.train.splits import SplitSource


@dataclass
class RunState:
    """Everything a checkpoint restores besides the network and the optimiser."""

    epoch: int = -1  # last completed epoch
    history: list[dict[str, Any]] = field(default_factory=list)
    best_epoch: int = -1
    best_accuracy: float = -1.0  # on the selection split `best_split`
    best_split: str | None = None  # "valid", "test" or "train": where `best.pt` was chosen
    test_at_best: float | None = None  # test accuracy of the best epoch

    def best_record(self) -> dict[str, Any]:
        return {"epoch": self.best_epoch, "accuracy": self.best_accuracy, "split": self.best_split,
                "test_accuracy": self.test_at_best}

    @classmethod
    def from_checkpoint(cls, ckpt: dict[str, Any]) -> RunState:
        best = ckpt["best"]
        return cls(int(ckpt["epoch"]), list(ckpt["history"]), int(best["epoch"]), float(best["accuracy"]),
                   best.get("split"), best.get("test_accuracy"))


class Trainer:
    """Trains `network` on a store split; writes the run directory when `run_dir` is given."""

    run_lock = None  # the run directory's lock when built by `prepare_run` (rank 0), else None

    def __init__(
        self,
        network,
        train_split: SplitSource,
        test_split: SplitSource | None = None,
        *,
        valid_split: SplitSource | None = None,
        run_title: str | None = None,
        device: str | torch.device = "cpu",
        run_dir: str | Path | None = None,
        max_train: int | None = None,
        max_test: int | None = None,
        store_info: dict[str, Any] | None = None,
        eval_batch_size: int | None = None,
        shuffle_buffer: int = DEFAULT_BUFFER,
        world: dp.World | None = None,
        report_every: int | None = None,
        resident_fraction: float = DEFAULT_RESIDENT_FRACTION,
    ):
        self.net = network
        self.config: NetworkConfig = network.config
        self.train = self.config.train
        self.device = resolve_device(device)
        self.train_split, self.test_split = train_split, test_split
        self.world = world or dp.SINGLE
        augmenting = self.config.augment.enabled
        self.loader = SpikeLoader(train_split, self.train.batch_size, device=self.device, shuffle=True,
                                  seed=self.train.seed, limit=max_train, buffer_samples=shuffle_buffer,
                                  rank=self.world.rank, world_size=self.world.world_size,
                                  resident_fraction=resident_fraction, events=not augmenting)
        self.n_classes = int(self.config.layers[-1].size)
        bad = (self.loader.labels < 0) | (self.loader.labels >= self.n_classes)
        if bad.any():  # checked once here, so that the training step need not read labels back from the device
            first = int(np.flatnonzero(bad)[0])
            raise SetupError(f"split {getattr(train_split, 'name', '?')!r}: {int(bad.sum())} labels outside "
                             f"[0, {self.n_classes - 1}] (first: {int(self.loader.labels[first])} at sample {first})")
        #: Steps between read-backs of the running loss and accuracy (and the deferred finiteness check): every
        #: step on CPU, where reading costs nothing; every 50 on a GPU, whose queue must never drain.
        self.report_every = max(1, int(report_every if report_every is not None
                                       else (1 if self.device.type == "cpu" else 50)))
        # The optimiser steps once per global batch: the batch scaling of the learning rate uses its size.
        self.lr_spec = dataclasses.replace(self.train, batch_size=self.loader.global_batch)
        # Kept for the whole run: an evaluation split that fits in one buffer is read from the store only once.
        # Data-parallel: each rank predicts one contiguous shard of the samples.
        self.valid_split = valid_split
        eval_batch = eval_batch_size or max(self.train.batch_size, EVAL_BATCH)
        self.test_loader, self.test_shard = self._eval_loader(test_split, max_test, eval_batch, shuffle_buffer)
        self.valid_loader, self.valid_shard = self._eval_loader(valid_split, None, eval_batch, shuffle_buffer)
        #: The split `best.pt` is chosen on (docs/trainer.md, "Model selection").
        self.selection = "valid" if valid_split is not None else "test" if test_split is not None else "train"
        self.run_title = run_title
        # [augment] enabled: the training batches are the split's images, augmented and re-encoded every epoch
        self.augment = training_images(self.config.augment, train_split, self.loader.n, self.config.steps,
                                       self.train.seed, self.train.batch_size, self.device)
        self.optimizer = make_optimizer(self.train.optimizer, network.weights(), self.train.lr, self.train.momentum,
                                        network.kernels)
        self.boost = boost_mod.initial_weights(self.loader.n)
        self.state = RunState()
        self.run_dir = Path(run_dir) if run_dir is not None else None
        self.store_info = dict(store_info or {})

    def _eval_loader(self, split: SplitSource | None, limit: int | None, batch: int,
                     buffer: int) -> tuple[SpikeLoader | None, dp.SplitShard | None]:
        """A sequential loader over this rank's shard of `split` (the first `limit` samples), and the shard."""
        if split is None:
            return None, None
        shard = dp.shard_split(split, self.world, limit)
        if not len(shard):
            return None, shard
        return SpikeLoader(split if not self.world.is_distributed else shard, batch, device=self.device,
                           limit=limit if not self.world.is_distributed else None, buffer_samples=buffer), shard

    # ---- checkpoints ------------------------------------------------------------------------------------------

    def checkpoint_payload(self) -> dict[str, Any]:
        return {
            "epoch": self.state.epoch,
            "weights": {k: w.detach().cpu().clone() for k, w in self.net.weights().items()},
            "config": self.config.to_dict(),
            "n_inputs": int(self.train_split.n_units),
            "input_shape": list(self.train_split.unit_shape),
            "classes": list(self.train_split.classes),
            "optimizer": self.optimizer.state_dict(),
            "boost": torch.from_numpy(self.boost.copy()),
            "rng": {"torch": torch.get_rng_state(), "seed": self.train.seed},
            "store": {**self.store_info, "n_train": self.loader.n},
            "loader": {"block_size": self.loader.block_size, "buffer_blocks": self.loader.blocks_per_buffer},
            "world_size": self.world.world_size,
            "global_batch": self.loader.global_batch,
            "history": list(self.state.history),
            "best": self.state.best_record(),
        }

    def restore(self, ckpt: dict[str, Any], path: str | Path = "checkpoint") -> None:
        """Continue from a checkpoint of this run (weights, optimiser, boost, RNG, history); everything is checked
        against this run first (CheckpointError / SetupError naming what differs)."""
        self._check_same_validation(ckpt)
        if int(ckpt["store"].get("n_train", -1)) != self.loader.n:
            raise SetupError(
                f"`resume`: the checkpoint was trained on {ckpt['store'].get('n_train')} samples, this run uses "
                f"{self.loader.n} (resume with the same `max_train`)"
            )
        layout = {"block_size": self.loader.block_size, "buffer_blocks": self.loader.blocks_per_buffer}
        if ckpt.get("loader", layout) != layout:
            raise SetupError(f"`resume`: the checkpoint's shuffle layout {ckpt['loader']} differs from this run's "
                             f"{layout} (resume with the same `shuffle_buffer`)")
        check_against_network(ckpt, path, self.net.weights(), n_train=self.loader.n)
        try:
            state = RunState.from_checkpoint(ckpt)
            self.net.load_weights({k: v.to(self.device) for k, v in ckpt["weights"].items()})
            self.optimizer = make_optimizer(self.train.optimizer, self.net.weights(), self.train.lr,
                                            self.train.momentum, self.net.kernels)
            self.optimizer.load_state_dict(ckpt["optimizer"])
            torch.set_rng_state(ckpt["rng"]["torch"])
        except (KeyError, TypeError, ValueError, RuntimeError) as exc:
            what = f"missing key {exc.args[0]!r}" if isinstance(exc, KeyError) else str(exc)
            raise CheckpointError(f"{path}: cannot restore the run from it: {what}") from exc
        self.boost = ckpt["boost"].numpy().astype(np.float64).copy()
        self.state = state

    def _check_same_validation(self, ckpt: dict[str, Any]) -> None:
        saved, now = ckpt["store"].get("validation"), self.store_info.get("validation")
        if saved != now:
            raise SetupError(f"`resume`: the checkpoint's validation split {saved} differs from this run's {now} "
                             "(resume with the same `val_fraction` and validation split)")

    # ---- one epoch --------------------------------------------------------------------------------------------

    def train_epoch(self, epoch: int, progress: Progress | None = None) -> dict[str, Any]:
        """Train one epoch; returns its metric record (without the test accuracy).

        Single process: labels, counts, errors, boost weights, correctness flags and the running loss stay on the
        device; the loss and accuracy are read back every `report_every` steps (for the progress bar, together
        with the deferred finiteness check of the gradients) and once at the end of the epoch. Under torchrun each
        step all-reduces its gradient and metrics (`hm2bp.train.distributed`)."""
        progress = progress or Progress()
        lr = learning_rate(self.lr_spec, epoch)
        progress.epoch_start(epoch, self.train.epochs, self.loader.n, lr)
        t0 = time.perf_counter()
        dev = self.device
        distributed = self.world.is_distributed
        boost = torch.from_numpy(self.boost).to(dev) if self.train.boost else None  # float64, one copy per epoch
        correct = torch.zeros(self.loader.n, dtype=torch.bool, device=dev)
        running = torch.zeros(2, dtype=torch.float64, device=dev)  # loss sum, correct count since the last report
        loss_sum, unreported, first = 0.0, 0, 0
        for k, batch in enumerate(self.loader.epoch(epoch)):
            weights = boost[batch.index_tensor] if boost is not None else None
            try:
                spikes = batch.spikes if self.augment is None else self.augment.spikes(batch.indices, epoch)
                result = self.net.backward_pass(spikes, batch.labels, sample_weights=weights, validate=False,
                                                check_finite=distributed)
            except FloatingPointError as exc:
                raise TrainingError(self._nan_message(str(exc), epoch, k, batch.indices)) from exc
            hit = result.predictions == batch.labels
            correct[batch.index_tensor] = hit
            if distributed:
                loss_sum += self._distributed_step(result, hit, len(batch), lr, epoch, k, batch.indices, progress)
                continue
            running += torch.stack([result.cost.sum().to(torch.float64), hit.sum().to(torch.float64)])
            self.optimizer.step(result.grads, lr)
            unreported += len(batch)
            if (k + 1) % self.report_every == 0:
                loss_sum += self._report(running, unreported, epoch, first, k, progress)
                unreported, first = 0, k + 1
        if not distributed and unreported:
            loss_sum += self._report(running, unreported, epoch, first, first + max(0, unreported - 1), progress)
        flags = correct.cpu().numpy()
        flags = dp.gather_flags(flags, self.world)  # every rank needs all flags for the boost update
        seconds = time.perf_counter() - t0
        if self.train.boost:
            self.boost = boost_mod.update_boost(self.boost, self.loader.labels, flags, self.n_classes)
        return {
            "epoch": epoch,
            "lr": lr,
            "train_loss": loss_sum / self.loader.n,
            "train_accuracy": float(flags.mean()),
            "test_accuracy": None,
            "seconds": seconds,
            "samples_per_s": self.loader.n / seconds if seconds > 0 else None,
        }

    def _report(self, running: torch.Tensor, n: int, epoch: int, first: int, last: int, progress: Progress) -> float:
        """Read the running loss and correct count back (one host synchronisation), check the gradients of the steps
        since the last report for non-finite values, update the progress bar; returns the loss sum."""
        loss, hits = (float(v) for v in running.cpu())
        running.zero_()
        try:
            self.net.check_finite()
        except FloatingPointError as exc:
            raise TrainingError(f"{exc} in batches {first}..{last} of epoch {epoch}; the weights are no longer "
                                f"finite{self._last_good()}; try a lower `lr`") from exc
        progress.batch_end(n, loss, int(round(hits)))
        return loss

    def _distributed_step(self, result, hit: torch.Tensor, n_local: int, lr: float, epoch: int, k: int,
                          indices: np.ndarray, progress: Progress) -> float:
        """One data-parallel step: gradient, loss and correct count of the global batch reduced over the ranks
        (backward_pass already checked this rank's gradient; the mean is checked here)."""
        batch_loss = float(result.cost.detach().to(torch.float64).sum())
        grads, n_global, (batch_loss, n_correct) = dp.reduce_step(result.grads, n_local, self.world,
                                                                  (batch_loss, float(hit.sum())))
        ok = torch.stack([torch.isfinite(g).all() for g in grads.values()]).cpu().numpy()
        if not ok.all():
            bad = [name for name, good in zip(grads, ok, strict=True) if not good][0]
            raise TrainingError(self._nan_message(f"non-finite gradient in layer {bad!r}", epoch, k, indices))
        self.optimizer.step(grads, lr)
        progress.batch_end(n_global, batch_loss, int(round(n_correct)))
        return batch_loss

    def _last_good(self) -> str:
        ckpt = self.run_dir / LAST if self.run_dir is not None else None
        return f"; the last good checkpoint is {ckpt}" if ckpt is not None and ckpt.is_file() else ""

    def _nan_message(self, what: str, epoch: int, k: int, indices: np.ndarray) -> str:
        more = "..." if len(indices) > 4 else ""
        return (f"{what} at epoch {epoch}, batch {k} (samples {indices[:4].tolist()}{more}){self._last_good()}; "
                "try a lower `lr`")

    # ---- the loop ---------------------------------------------------------------------------------------------

    def fit(self, epochs: int | None = None, progress: Progress | None = None) -> list[dict[str, Any]]:
        """Train until `epochs` epochs in total are done (default: the config's); returns the history.

        After every epoch: validation and test passes, the best-epoch bookkeeping (on `selection`), one record."""
        epochs = self.train.epochs if epochs is None else epochs
        progress = progress or Progress()
        for epoch in range(self.state.epoch + 1, epochs):
            record = self.train_epoch(epoch, progress)
            record.update(self.evaluate_epoch(progress))
            score = record[f"{self.selection}_accuracy"]
            improved = score > self.state.best_accuracy
            if improved:
                st = self.state
                st.best_epoch, st.best_accuracy, st.best_split = epoch, score, self.selection
                st.test_at_best = record["test_accuracy"]
            record.update(best_epoch=self.state.best_epoch, best_split=self.state.best_split,
                          best_accuracy=self.state.best_accuracy, test_at_best=self.state.test_at_best)
            self.state.epoch = epoch
            self.state.history.append(record)
            self._write(improved)
            progress.epoch_end(record)
        return self.state.history

    def evaluate_epoch(self, progress: Progress | None = None) -> dict[str, Any]:
        """Validation and test accuracy (None without that split) and the seconds each pass took."""
        out: dict[str, Any] = {}
        for which, split in (("valid", self.valid_split), ("test", self.test_split)):
            t0 = time.perf_counter()
            out[f"{which}_accuracy"] = self.evaluate_split(which, progress).accuracy if split is not None else None
            out[f"{which}_seconds"] = time.perf_counter() - t0
        return out

    def evaluate_test(self, progress: Progress | None = None) -> EvalResult:
        """Predictions of the test split (see `evaluate_split`)."""
        return self.evaluate_split("test", progress)

    def evaluate_split(self, which: str, progress: Progress | None = None) -> EvalResult:
        """Predictions of the "test" or "valid" split; data-parallel: each rank predicts its shard, every rank
        gets them all."""
        loader, shard = (self.test_loader, self.test_shard) if which == "test" else \
            (self.valid_loader, self.valid_shard)
        empty = np.zeros(0, np.int64)
        part = evaluate_loader(self.net, loader, progress) if loader is not None else EvalResult(empty, empty, empty)
        if not self.world.is_distributed:
            return part
        labels, preds, indices = dp.gather_disjoint(
            [part.labels, part.predictions, part.indices + shard.offset], shard.n_total, shard.offset, self.world)
        return EvalResult(labels, preds, indices, part.seconds)

    def _write(self, improved: bool) -> None:
        if self.run_dir is None or not self.world.is_main:
            return
        payload = self.checkpoint_payload()
        # The checkpoint first: it carries the history, from which a resume rewrites metrics.jsonl.
        save_checkpoint(self.run_dir / LAST, payload)
        if improved:
            save_checkpoint(self.run_dir / BEST, payload)
        write_metrics(self.run_dir / METRICS, self.state.history)
        try:
            plot_learning_curve(self.state.history, self.run_dir / CURVE, title=self.run_title or self.run_dir.name)
        except Exception as exc:  # a plotting problem must not stop training
            warnings.warn(f"learning-curve plot failed: {exc}", stacklevel=2)
