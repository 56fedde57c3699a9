"""Training: the loop, schedules, checkpoints and resume."""
