"""Training: the loop (:mod:`ladder.train.loop`), its config, schedule and checkpoints.

Importing this package is cheap; torch is imported by the submodules that need it.
"""
