"""Hyper-parameter studies: search spaces, study storage and workers (Optuna, the ``tune`` extra)."""
