"""Training EDVR: the loop (:func:`edvr.training.loop.train`), losses, schedules, checkpoints, distributed helpers.

Nothing is imported here, so that ``import edvr.training.schedules`` stays light; use the submodules.
"""
