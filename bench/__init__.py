"""Benchmarks: accuracy (clean and noisy) and speed of the default chain against the bare engine.

Scripts, not tests: ``make bench`` runs ``python -m bench.run_all``, which writes
``docs/benchmarks.md``. Results are cached per (system, condition, clip) under
``bench/results/`` (git-ignored), so a rerun only computes what changed.
"""
