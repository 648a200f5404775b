"""Would Winograd convolution beat oneDNN's direct 3x3 convolution here? Measured at EDVR-M's 3x3 conv shapes.

    python benchmarks/winograd.py [--threads 2] [--reps 5] [--rows 1,2,4]

Every 3x3 convolution of the restore path already runs near the machine's peak (benchmarks/README.md), so the one
way left to spend less time on them is fewer multiplications. Winograd's F(4x4, 3x3) (Lavin & Gray 2016;
interpolation points 0, 1, -1, 2, -2 and infinity) computes each 4x4 output tile from a 6x6 input tile with 36
multiplications per channel pair instead of 144: transform the input tiles, one matrix product per tile position
(36 of them, over all tiles and channels), transform back. It is written here with PyTorch ops only, on
channels_last tensors as the model keeps them: the transforms are two loops that ``torch.compile`` turns into C++
(vectorised over channels), the products one ``bmm``, in bands of ``rows`` tile rows so that the transformed tiles
stay in cache. Printed per shape: oneDNN's direct conv and the Winograd conv (median of interleaved runs, best band
height), their ratio, and each one's largest difference from a float64 convolution.
"""

from __future__ import annotations

import argparse
import statistics
import time

import torch
import torch.nn.functional as F

from edvr.runtime import keep_freed_memory

# F(4x4, 3x3): Y = A^T [(G g G^T) * (B^T d B)] A, for a 3x3 filter g and a 6x6 input tile d.
B_T = ((4, 0, -5, 0, 1, 0), (0, -4, -4, 1, 1, 0), (0, 4, -4, -1, 1, 0),
       (0, -2, -1, 2, 1, 0), (0, 2, -1, -2, 1, 0), (0, 4, 0, -5, 0, 1))
G = ((1 / 4, 0, 0), (-1 / 6, -1 / 6, -1 / 6), (-1 / 6, 1 / 6, -1 / 6),
     (1 / 24, 1 / 12, 1 / 6), (1 / 24, -1 / 12, 1 / 6), (0, 0, 1))
A_T = ((1, 1, 1, 1, 1, 0), (0, 1, -1, 2, -2, 0), (0, 1, 1, 4, 4, 0), (0, 1, -1, 8, -8, 1))
TILE, IN = 4, 6

# EDVR-M's 3x3 convolutions at 180x320 input: (in channels, out channels, height, width, where).
SHAPES = [
    (64, 64, 180, 320, "residual blocks, PCD and TSA convs"),
    (128, 64, 180, 320, "PCD convs over two concatenated maps"),
    (64, 216, 180, 320, "DCN offset + mask convs"),
    (64, 64, 90, 160, "pyramid level 2"),
    (64, 256, 180, 320, "upconv1"),
    (64, 256, 360, 640, "upconv2"),
    (64, 64, 720, 1280, "conv_hr"),
]


def combine(coefs: tuple, xs: list[torch.Tensor]) -> torch.Tensor:
    """sum(c * x), skipping zero coefficients and multiplications by +-1."""
    out = None
    for c, x in zip(coefs, xs):
        if c:
            term = x if c == 1 else -x if c == -1 else x * c
            out = term if out is None else out + term
    return out


def transform_weight(w: torch.Tensor) -> torch.Tensor:
    """(Cout, Cin, 3, 3) -> (36, Cin, Cout): G w G^T per channel pair, computed in float64."""
    g = torch.tensor(G, dtype=torch.float64)
    u = g @ w.double() @ g.T
    return u.permute(2, 3, 1, 0).reshape(IN * IN, w.shape[1], w.shape[0]).to(w.dtype).contiguous()


def pad(x: torch.Tensor, th: int, tw: int) -> torch.Tensor:
    """(1, C, H, W) -> (4th+2, 4tw+2, C): zero border of 1, and zeros up to whole tiles."""
    h, w = x.shape[-2:]
    return F.pad(x[0].permute(1, 2, 0), (0, 0, 1, TILE * tw - w + 1, 1, TILE * th - h + 1))


def input_tiles(xb: torch.Tensor, th: int, tw: int) -> torch.Tensor:
    """(4th+2, 4tw+2, C) -> (36, th*tw, C): B^T d B of every 6x6 tile (stride 4)."""
    rows = [xb[i:i + TILE * th:TILE] for i in range(IN)]
    out = []
    for bp in B_T:
        r = combine(bp, rows)
        cols = [r[:, j:j + TILE * tw:TILE] for j in range(IN)]
        out += [combine(bq, cols) for bq in B_T]
    return torch.stack(out).reshape(IN * IN, th * tw, xb.shape[-1])


def output_tiles(m: torch.Tensor, bias: torch.Tensor, th: int, tw: int) -> torch.Tensor:
    """(36, th*tw, Cout) -> (4th, 4tw, Cout): A^T M A of every tile, plus the bias."""
    m = m.reshape(IN, IN, th, tw, m.shape[-1])
    by_row = [combine(a, [m[i] for i in range(IN)]) for a in A_T]  # each (6, th, tw, Cout), indexed by column
    y = torch.stack([torch.stack([combine(a, list(r)) for a in A_T], 2) for r in by_row], 1)
    return y.reshape(TILE * th, TILE * tw, m.shape[-1]) + bias


_pad, _input_tiles, _output_tiles = (torch.compile(f, dynamic=False) for f in (pad, input_tiles, output_tiles))


def winograd_conv3x3(x: torch.Tensor, u: torch.Tensor, bias: torch.Tensor, rows: int) -> torch.Tensor:
    """conv2d(x, w, bias, padding=1) for channels_last x of batch 1, u = transform_weight(w), in bands of rows."""
    h, w = x.shape[-2:]
    th, tw = -(-h // TILE), -(-w // TILE)
    xp = _pad(x, th, tw)
    out = torch.empty(1, u.shape[2], TILE * th, TILE * tw, memory_format=torch.channels_last)
    hwc = out[0].permute(1, 2, 0)
    for t0 in range(0, th, rows):
        n = min(rows, th - t0)
        tiles = _input_tiles(xp[TILE * t0:TILE * (t0 + n) + 2], n, tw)
        hwc[TILE * t0:TILE * (t0 + n)] = _output_tiles(torch.bmm(tiles, u), bias, n, tw)
    return out[:, :, :h, :w]


def measure(cin: int, cout: int, h: int, w: int, band_rows: list[int], reps: int) -> tuple[dict, dict, str]:
    """Median ms and max |diff| from float64 of the direct conv and of Winograd per band height; the fastest band."""
    gen = torch.Generator().manual_seed(0)
    x = torch.randn(1, cin, h, w, generator=gen).contiguous(memory_format=torch.channels_last)
    weight = torch.randn(cout, cin, 3, 3, generator=gen) * (2 / (9 * cin)) ** 0.5
    bias = torch.randn(cout, generator=gen)
    u = transform_weight(weight)
    fns = {"direct": lambda: F.conv2d(x, weight, bias, padding=1)}
    fns |= {f"rows {r}": (lambda r=r: winograd_conv3x3(x, u, bias, r)) for r in band_rows}
    with torch.inference_mode():
        exact = F.conv2d(x.double(), weight.double(), bias.double(), padding=1)
        err = {k: (f() - exact).abs().max().item() for k, f in fns.items()}  # also compiles every band shape
        times = {k: [] for k in fns}
        for _ in range(reps):
            for k, f in fns.items():
                t = time.perf_counter()
                f()
                times[k].append(time.perf_counter() - t)
    med = {k: statistics.median(v) * 1e3 for k, v in times.items()}
    return med, err, min((k for k in med if k != "direct"), key=med.get)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--threads", type=int, default=torch.get_num_threads())
    p.add_argument("--reps", type=int, default=5)
    p.add_argument("--rows", default="1,2,4", help="band heights tried, in tile rows (4 output rows each)")
    args = p.parse_args()
    torch.set_num_threads(args.threads)
    keep_freed_memory()
    torch._dynamo.config.cache_size_limit = max(torch._dynamo.config.cache_size_limit, 64)
    torch._dynamo.config.recompile_limit = max(torch._dynamo.config.recompile_limit, 64)
    band_rows = [int(r) for r in args.rows.split(",")]
    print(f"3x3 convs, batch 1, channels_last, float32, {args.threads} threads: oneDNN direct vs Winograd F(4x4,3x3)")
    for cin, cout, h, w, where in SHAPES:
        med, err, best = measure(cin, cout, h, w, band_rows, args.reps)
        gflops = 2 * cin * cout * 9 * h * w / 1e9
        print(f"  {cin:>3}->{cout:<3} at {h}x{w} ({where}): direct {med['direct']:.1f} ms "
              f"({gflops / med['direct'] * 1e3:.0f} GFLOP/s), Winograd {med[best]:.1f} ms ({best}): "
              f"{med['direct'] / med[best]:.2f}x; max |diff| from float64: direct {err['direct']:.1e}, "
              f"Winograd {err[best]:.1e}", flush=True)

if __name__ == "__main__":
    main()
