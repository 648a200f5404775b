"""3x3 convolutions with Winograd's F(4x4, 3x3), for CPU inference on the ``compiled`` backend.

Every 3x3 conv of EDVR already runs near this machine's peak in oneDNN's direct kernel (~190 GFLOP/s on 2 cores,
benchmarks/README.md), so the one way left to spend less time on them is fewer multiplications. F(4x4, 3x3)
(Lavin & Gray 2016; interpolation points 0, 1, -1, 2, -2 and infinity) computes each 4x4 output tile from a 6x6
input tile with 36 products per channel pair instead of 144: transform the input tiles (``B^T d B``), one matrix
product per tile position (36 of them, over all tiles and channels), transform back (``A^T m A``). Here the
transforms are two loops that ``torch.compile`` turns into C++ (:mod:`edvr.ops.compiled`), vectorised over the
channels of channels_last maps, and the products one ``bmm``, in bands of tile rows so that the transformed tiles
stay in cache. A conv over a concatenation of maps (EDVR's split-weight convs) sums its products before the one
output transform; the transformed weights (``G g G^T``, in float64 then rounded) are kept until the weights change.

Measured with ``python benchmarks/winograd.py`` at EDVR-M's shapes: 1.1-1.35x oneDNN's direct conv on 180x320 maps
(the most for 216 and 256 outputs), 1.0-1.25x on the 360x640 and 720x1280 maps of the x4 tail, slower on 90x160
(so smaller maps keep the direct conv: :data:`MIN_PIXELS`); the whole restore path of EDVR-M at 180x320 runs
1.08-1.18x faster. The results differ from the direct conv's by rounding only: ~5e-5 per conv on unit-sized random
data against ~1e-5 for the direct conv (both measured from float64), 1e-7 on a whole EDVR-M.
"""

from __future__ import annotations

import contextlib
import contextvars
import os
from collections.abc import Callable, Iterator, Sequence

import torch
import torch.nn.functional as F
from torch import nn
from torch.utils.weak import WeakIdKeyDictionary

from edvr.ops import compiled

# F(4x4, 3x3): Y = A^T [(G g G^T) * (B^T d B)] A, for a 3x3 filter g and a 6x6 input tile d.
B_T = ((4, 0, -5, 0, 1, 0), (0, -4, -4, 1, 1, 0), (0, 4, -4, -1, 1, 0),
       (0, -2, -1, 2, 1, 0), (0, 2, -1, -2, 1, 0), (0, 4, 0, -5, 0, 1))
G = ((1 / 4, 0, 0), (-1 / 6, -1 / 6, -1 / 6), (-1 / 6, 1 / 6, -1 / 6),
     (1 / 24, 1 / 12, 1 / 6), (1 / 24, -1 / 12, 1 / 6), (0, 0, 1))
A_T = ((1, 1, 1, 1, 1, 0), (0, 1, -1, 2, -2, 0), (0, 1, 1, 4, 4, 0), (0, 1, -1, 8, -8, 1))
TILE, IN = 4, 6

# EDVR_WINOGRAD=0 turns it off (every conv then runs oneDNN's direct kernel, as on the other backends).
ENABLED = os.environ.get("EDVR_WINOGRAD", "1") != "0"
# Maps smaller than this keep oneDNN's direct conv (at 90x160 Winograd was no faster), and so do convs over fewer
# input channels (a matrix product over 3 channels runs far below peak).
MIN_PIXELS = 128 * 128
MIN_CHANNELS = 16
# Tiles per band, times the larger channel count: the transformed input and the products of a band stay in cache.
# Measured best band heights at 180x320 (80 tiles per row): 4 tile rows for 64 channels, 2 for 144, 1 for 216-256.
BAND_VALUES = 24576

_active: contextvars.ContextVar[bool] = contextvars.ContextVar("edvr_winograd", default=False)
_transformed: WeakIdKeyDictionary = WeakIdKeyDictionary()  # weight -> {key: (state, transformed weight)}


@contextlib.contextmanager
def enabled(on: bool = True) -> Iterator[None]:
    """Within this context, :func:`conv2d` and the model's convs use Winograd where :func:`applies` (the model turns
    it on for plain CPU inference on the ``compiled`` backend)."""
    token = _active.set(on)
    try:
        yield
    finally:
        _active.reset(token)


def applies(conv: nn.Conv2d, x: torch.Tensor) -> bool:
    """Whether ``conv(x)`` runs with Winograd here: :data:`ENABLED`, inside :func:`enabled`, a 3x3 conv with
    stride 1, padding 1 and no groups, over one large channels_last map (batch 1, at least :data:`MIN_CHANNELS`
    channels and :data:`MIN_PIXELS` pixels)."""
    return (
        ENABLED and _active.get()
        and conv.kernel_size == (3, 3) and conv.stride == (1, 1) and conv.padding == (1, 1)
        and conv.dilation == (1, 1) and conv.groups == 1 and conv.padding_mode == "zeros"
        and x.dim() == 4 and x.shape[0] == 1 and x.shape[1] >= MIN_CHANNELS
        and x.shape[2] * x.shape[3] >= MIN_PIXELS and x.is_contiguous(memory_format=torch.channels_last)
    )


def transformed(weight: torch.Tensor, key: str = "", prepare: Callable[[torch.Tensor], torch.Tensor] | None = None,
                ) -> torch.Tensor:
    """``(Cout, Cin, 3, 3)`` -> ``(36, Cin, Cout)``: ``G g G^T`` of every filter, computed in float64. Kept per
    weight tensor (and ``key``, for a ``prepare``d form such as permuted outputs) until it changes in place (an
    optimizer step, ``load_state_dict``) or gets new storage."""
    state = (weight._version, weight.data_ptr(), weight.dtype, weight.shape)
    per_weight = _transformed.setdefault(weight, {})
    hit = per_weight.get(key)
    if hit is not None and hit[0] == state:
        return hit[1]
    with torch.no_grad():
        w = (weight if prepare is None else prepare(weight)).double()
        g = torch.tensor(G, dtype=torch.float64)
        u = (g @ w @ g.T).permute(2, 3, 1, 0).reshape(IN * IN, w.shape[1], w.shape[0])
        u = u.to(weight.dtype).contiguous()
    per_weight[key] = (state, u)
    return u


def conv2d(parts: Sequence[tuple[torch.Tensor, torch.Tensor]], bias: torch.Tensor | None,
           split: Sequence[int] | None = None) -> list[torch.Tensor] | None:
    """``sum_i conv2d(x_i, w_i) + bias`` (padding 1) for ``parts = [(x_i, transformed(w_i)), ...]``: channels_last
    maps of one size, batch 1. Returns the result as one channels_last map, or as several when ``split`` gives
    their channel counts (a conv whose outputs serve as two tensors, without a copy). None where
    :func:`edvr.ops.compiled.run` declines: then compute it the direct way."""
    x0 = parts[0][0]
    h, w = x0.shape[-2:]
    th, tw = -(-h // TILE), -(-w // TILE)
    cout = parts[0][1].shape[2]
    split = [cout] if split is None else list(split)
    most = max(1, min(th, BAND_VALUES // (tw * max(cout, x0.shape[1]))))
    bands = -(-th // most)
    rows = -(-th // bands)  # as few bands as the cache allows, as even as can be
    padded = [compiled.run(_pad, x) for x, _ in parts]
    bias = x0.new_zeros(cout) if bias is None else bias
    if any(p is None for p in padded):
        return None
    outs = [torch.empty(1, c, h, w, dtype=x0.dtype, memory_format=torch.channels_last) for c in split]
    hwc = [o[0].permute(1, 2, 0) for o in outs]
    for t0 in range(0, th, rows):
        t0 = min(t0, th - rows)  # every band has `rows` tile rows (one compiled variant): the last one overlaps
        y0, y1 = TILE * t0, min(TILE * (t0 + rows), h)
        m = None
        for xp, (_, u) in zip(padded, parts):
            tiles = compiled.run(_input_tiles, xp[y0:TILE * (t0 + rows) + 2])
            if tiles is None:
                return None
            m = torch.bmm(tiles, u) if m is None else torch.baddbmm(m, tiles, u)
        band = compiled.run(_output_tiles, m.view(IN, IN, rows, tw, cout), bias)
        if band is None:
            return None
        start = 0
        for dst, c in zip(hwc, split):
            dst[y0:y1] = band[:y1 - y0, :w, start:start + c]
            start += c
    return outs


def _combine(coefs: tuple, xs: list[torch.Tensor]) -> torch.Tensor:
    """sum(c * x), skipping zero coefficients and multiplications by +-1."""
    out = None
    for c, x in zip(coefs, xs):
        if c:
            term = x if c == 1 else -x if c == -1 else x * c
            out = term if out is None else out + term
    return out


def _pad(x: torch.Tensor) -> torch.Tensor:
    """``(1, C, H, W)`` -> ``(4th + 2, 4tw + 2, C)``: a zero border of 1, and zeros up to whole tiles."""
    h, w = x.shape[-2:]
    th, tw = -(-h // TILE), -(-w // TILE)
    return F.pad(x[0].permute(1, 2, 0), (0, 0, 1, TILE * tw - w + 1, 1, TILE * th - h + 1))


def _input_tiles(xb: torch.Tensor) -> torch.Tensor:
    """``(4n + 2, 4tw + 2, C)`` -> ``(36, n * tw, C)``: ``B^T d B`` of every 6x6 tile (stride 4)."""
    n, tw = (xb.shape[0] - 2) // TILE, (xb.shape[1] - 2) // TILE
    rows = [xb[i:i + TILE * n:TILE] for i in range(IN)]
    out = []
    for bp in B_T:
        r = _combine(bp, rows)
        cols = [r[:, j:j + TILE * tw:TILE] for j in range(IN)]
        out += [_combine(bq, cols) for bq in B_T]
    return torch.stack(out).reshape(IN * IN, n * tw, xb.shape[-1])


def _output_tiles(m: torch.Tensor, bias: torch.Tensor) -> torch.Tensor:
    """``(6, 6, n, tw, Cout)`` products -> ``(4n, 4tw, Cout)``: ``A^T m A`` of every tile, plus the bias."""
    _, _, n, tw, cout = m.shape
    by_row = [_combine(a, [m[i] for i in range(IN)]) for a in A_T]  # each (6, n, tw, Cout), indexed by column
    y = torch.stack([torch.stack([_combine(a, list(r)) for a in A_T], 2) for r in by_row], 1)
    return y.reshape(TILE * n, TILE * tw, cout) + bias
