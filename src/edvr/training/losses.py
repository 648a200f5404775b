"""Pixel losses of the EDVR recipes.

EDVR trains with the Charbonnier penalty ``sqrt((x - y)^2 + eps)`` summed over every pixel of the batch (not
averaged): with Adam the scale of the loss hardly matters, but the sum is what the published recipes used, and the
logged values are comparable with theirs. ``eps`` is 1e-12 in BasicSR and 1e-6 in the original EDVR repository; at
eps 1e-12 the loss is L1 for any visible error, and eps only keeps the gradient finite at 0.
"""

from __future__ import annotations

import torch


def charbonnier_loss(pred: torch.Tensor, target: torch.Tensor, *, eps: float = 1e-12, reduction: str = "sum"
                     ) -> torch.Tensor:
    """Charbonnier (smooth L1) loss of ``pred`` vs ``target`` (same shape), summed or averaged over all elements."""
    diff = pred.float() - target.float()  # in float32 even under autocast: a sum over 256x256x3x32 overflows fp16
    return _reduce(torch.sqrt(diff * diff + eps), reduction)


def l1_loss(pred: torch.Tensor, target: torch.Tensor, *, reduction: str = "sum") -> torch.Tensor:
    return _reduce((pred.float() - target.float()).abs(), reduction)


def _reduce(x: torch.Tensor, reduction: str) -> torch.Tensor:
    if reduction == "sum":
        return x.sum()
    if reduction == "mean":
        return x.mean()
    raise ValueError(f"unknown reduction {reduction!r}: choose sum or mean")
