"""Running experiments (no Flower import): the round loop, set-up and checks, checkpoints,
results files and plots, comparisons, and the in-process vectorised engine."""
