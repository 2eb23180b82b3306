"""Learning-rate schedule (`docs/algorithm.md` §3.9) and the batch-size scaling of the learning rate.

Epochs are counted from 0. "inv_sqrt_epoch" is the reference's: epoch `e` uses `lr / sqrt(max(e, 1))`
(0.001, 0.001, 0.000707, 0.000577, ... for lr = 1e-3). "constant" uses `lr` in every epoch.
`lr_batch_scaling = "sqrt"` multiplies the rate by sqrt(batch_size): with batches the weights are updated 1/B as
often per epoch, and sqrt(B) was found to keep the accuracy per epoch of batch 1 (`docs/trainer.md`, "Batching").
"""

from __future__ import annotations

import math

SCHEDULES = ("inv_sqrt_epoch", "constant")
BATCH_SCALINGS = ("none", "sqrt")


def batch_scaled_lr(lr: float, batch_size: int, scaling: str = "none") -> float:
    """Base learning rate after batch-size scaling ("none": lr, "sqrt": lr * sqrt(batch_size))."""
    if batch_size < 1:
        raise ValueError(f"batch_size must be >= 1; got {batch_size}")
    if scaling == "none":
        return float(lr)
    if scaling == "sqrt":
        return float(lr) * math.sqrt(batch_size)
    raise ValueError(f"unknown lr_batch_scaling {scaling!r}; known: {', '.join(BATCH_SCALINGS)}")


def epoch_lr(lr: float, epoch: int, schedule: str = "inv_sqrt_epoch") -> float:
    """Learning rate of epoch `epoch` (counted from 0) under `schedule`."""
    if epoch < 0:
        raise ValueError(f"epoch must be >= 0; got {epoch}")
    if schedule == "inv_sqrt_epoch":
        return float(lr) / math.sqrt(max(epoch, 1))
    if schedule == "constant":
        return float(lr)
    raise ValueError(f"unknown lr_schedule {schedule!r}; known: {', '.join(SCHEDULES)}")


def learning_rate(train_spec, epoch: int) -> float:
    """Learning rate of `epoch` for a `TrainSpec` (lr, lr_schedule, batch_size, lr_batch_scaling)."""
    base = batch_scaled_lr(train_spec.lr, train_spec.batch_size, train_spec.lr_batch_scaling)
    return epoch_lr(base, epoch, train_spec.lr_schedule)
