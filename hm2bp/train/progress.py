"""Progress callbacks of the training loop and the evaluation passes."""

from __future__ import annotations

from typing import Any


class Progress:
    """Callbacks of the training loop (no-ops here; the CLI shows a progress bar)."""

    def epoch_start(self, epoch: int, n_epochs: int, n_samples: int, lr: float) -> None: ...

    def batch_end(self, n_samples: int, loss_sum: float, n_correct: int) -> None: ...

    def evaluating(self, split: str, n_samples: int) -> None: ...

    def epoch_end(self, record: dict[str, Any]) -> None: ...
