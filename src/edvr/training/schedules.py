"""Learning-rate schedules as pure functions of the iteration (no optimiser, no hidden state to save or resume).

:func:`cosine_restart_lr` is BasicSR's ``CosineAnnealingRestartLR`` at scheduler step ``e``: within period ``i`` (of
length ``P_i``, starting after step ``R_i``), ``lr = eta_min + w_i * (lr_0 - eta_min) * (1 + cos(pi * (e - R_i) /
P_i)) / 2``; step ``R_i + P_i`` is exactly ``eta_min`` and the next one restarts near ``w_i * lr_0``.

:func:`learning_rate` is the rate of update ``k`` (the k-th optimiser update, counted from 1). BasicSR's training loop
steps the scheduler before every update but the first (``update_learning_rate``: ``if current_iter > 1``), so update
``k`` runs at step ``k - 1``: update 1 at ``lr_0``, update 50001 at ``eta_min``, update 50002 restarted. A linear
warm-up, where asked for, scales ``lr_0`` by ``k / warmup`` for the updates ``k < warmup`` instead.
"""

from __future__ import annotations

import math
from collections.abc import Sequence


def cosine_restart_lr(iteration: int, base_lr: float, periods: Sequence[int], restart_weights: Sequence[float],
                      eta_min: float = 1e-7) -> float:
    """Cosine annealing with warm restarts at iteration ``iteration`` (past the last period: ``eta_min``)."""
    if len(periods) != len(restart_weights):
        raise ValueError(f"{len(periods)} periods but {len(restart_weights)} restart weights")
    start = 0
    for period, weight in zip(periods, restart_weights):
        if iteration <= start + period:
            progress = (iteration - start) / period
            return eta_min + weight * 0.5 * (base_lr - eta_min) * (1.0 + math.cos(math.pi * progress))
        start += period
    return eta_min


def linear_warmup_factor(iteration: int, warmup_iterations: int) -> float:
    """BasicSR's linear warm-up: the rate is scaled by k / warmup for the first ``warmup`` iterations."""
    if warmup_iterations <= 0 or iteration >= warmup_iterations:
        return 1.0
    return iteration / warmup_iterations


def learning_rate(iteration: int, *, lr: float, periods: Sequence[int], restart_weights: Sequence[float],
                  eta_min: float, warmup_iterations: int = 0) -> float:
    """The rate used by update ``iteration`` (counted from 1; both rules together, as BasicSR applies them)."""
    if warmup_iterations > 0 and iteration < warmup_iterations:
        return lr * linear_warmup_factor(iteration, warmup_iterations)
    return cosine_restart_lr(max(0, iteration - 1), lr, periods, restart_weights, eta_min)
