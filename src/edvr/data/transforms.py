"""Training-time transforms for paired video samples: aligned random crop, flips and rot90, temporal reversal.

Every function is pure: randomness comes from an explicit ``random.Random`` that the caller derives from
``(seed, epoch, index)`` with :func:`sample_rng`. A sample therefore depends only on those three numbers, not on
which DataLoader worker drew it or how many samples came before, which is what makes training reproducible and
resumable from a checkpoint.

Tensors are ``(..., C, H, W)``: one frame ``(C, H, W)`` or a stack ``(T, C, H, W)``; any dtype (the datasets crop
and flip uint8 frames before converting to float, because that touches 4x less memory).
"""

from __future__ import annotations

import random
from collections.abc import Sequence
from typing import NamedTuple, TypeVar

import torch
from torch import Tensor

T = TypeVar("T")


def sample_rng(seed: int, epoch: int, index: int) -> random.Random:
    """The random source of one training sample.

    Seeding from a string goes through SHA-512 in CPython, so the stream is the same in every process and
    every Python run (``hash()`` of a tuple would be too, but a string says what it is made of).
    """
    return random.Random(f"edvr-sample:{seed}:{epoch}:{index}")


def crop(x: Tensor, top: int, left: int, height: int, width: int) -> Tensor:
    """The region ``[top, top + height) x [left, left + width)`` of the last two dimensions (a view)."""
    return x[..., top : top + height, left : left + width]


def paired_crop_box(
    lq_size_hw: tuple[int, int], gt_size: int, scale: int, rng: random.Random
) -> tuple[tuple[int, int, int], tuple[int, int, int]]:
    """Draw an aligned crop: ``(top, left, size)`` in LQ pixels and the matching ``(top, left, size)`` in GT pixels.

    The position is drawn on the LQ grid and multiplied by ``scale``, so the GT patch always starts on a pixel
    that an LQ pixel covers exactly (a GT offset that is not a multiple of ``scale`` would misalign the pair).
    """
    if gt_size % scale:
        raise ValueError(f"gt_size {gt_size} is not a multiple of scale {scale}")
    lq_size = gt_size // scale
    h, w = lq_size_hw
    if h < lq_size or w < lq_size:
        raise ValueError(f"LQ frame {h}x{w} is smaller than the LQ patch {lq_size}x{lq_size} (gt_size {gt_size})")
    top = rng.randint(0, h - lq_size)
    left = rng.randint(0, w - lq_size)
    return (top, left, lq_size), (top * scale, left * scale, gt_size)


def paired_random_crop(
    lqs: Sequence[Tensor], gts: Sequence[Tensor], *, gt_size: int, scale: int, rng: random.Random
) -> tuple[list[Tensor], list[Tensor]]:
    """Crop the same region from every LQ frame ``(..., C, h, w)`` and every GT frame ``(..., C, h*scale, w*scale)``.

    Raises ``ValueError`` when the frames disagree in size; the datasets check sizes first and raise
    ``InputError`` with the file names, so this only fires on programming errors.
    """
    h, w = lqs[0].shape[-2:]
    for x in lqs:
        if tuple(x.shape[-2:]) != (h, w):
            raise ValueError(f"LQ frames differ in size: {tuple(x.shape[-2:])} vs {(h, w)}")
    for x in gts:
        if tuple(x.shape[-2:]) != (h * scale, w * scale):
            raise ValueError(f"GT frame {tuple(x.shape[-2:])} is not LQ {(h, w)} x {scale}")
    (lt, ll, ls), (gt_top, gl, gs) = paired_crop_box((h, w), gt_size, scale, rng)
    return [crop(x, lt, ll, ls, ls) for x in lqs], [crop(x, gt_top, gl, gs, gs) for x in gts]


class Augment(NamedTuple):
    """One element of the 8 symmetries of the square: optional horizontal flip, vertical flip, then rot90."""

    hflip: bool = False
    vflip: bool = False
    rot90: bool = False


def sample_augment(rng: random.Random, *, flip: bool = True, rotate: bool = True) -> Augment:
    """Draw flips and rotation with probability 1/2 each (the EDVR/BasicSR recipe); all 8 symmetries are equally
    likely when both are on, since {id, hflip, vflip, both = rot180} x {id, rot90} is the whole group."""
    # Always draw three numbers so that turning an option off does not shift the rest of the random stream.
    h, v, r = rng.random() < 0.5, rng.random() < 0.5, rng.random() < 0.5
    return Augment(hflip=flip and h, vflip=flip and v, rot90=rotate and r)


def apply_augment(x: Tensor, aug: Augment) -> Tensor:
    """Apply ``aug`` to the last two dimensions of ``x`` (so a stack of frames and one frame transform alike)."""
    if aug.hflip:
        x = torch.flip(x, dims=(-1,))
    if aug.vflip:
        x = torch.flip(x, dims=(-2,))
    if aug.rot90:
        x = torch.rot90(x, 1, dims=(-2, -1))
    return x


def augment(
    tensors: Sequence[Tensor], rng: random.Random, *, flip: bool = True, rotate: bool = True
) -> list[Tensor]:
    """Draw one symmetry and apply it to every tensor: all frames and the GT must move together."""
    aug = sample_augment(rng, flip=flip, rotate=rotate)
    return [apply_augment(x, aug) for x in tensors]


def random_reverse(items: Sequence[T], rng: random.Random, p: float = 0.5) -> list[T]:
    """Reverse the temporal order with probability ``p``; for an odd window the centre frame stays the centre."""
    items = list(items)
    return items[::-1] if rng.random() < p else items
