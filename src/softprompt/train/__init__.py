"""Training: the recipe (accelerate), batching, the frozen-state cache, checkpoints, tuning and inference."""
