"""Training: the loop (`trainer`), evaluation (`evaluate`), the run directory, its lock and resume (`rundir`, `run`),
and what feeds them: the streaming loader and its device data, the schedule, boost, augmentation, the optimisers'
state, metrics, checkpoints, splits and data-parallel ranks."""
