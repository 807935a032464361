"""train: the two training stages - the plain-PyTorch step, the Ray Train per-worker loop, the trainer
and the layout of a run in storage."""
