"""Winograd F(4x4, 3x3) (edvr.ops.winograd) vs oneDNN's direct 3x3 convolution, at EDVR-M's 3x3 conv shapes.

    python benchmarks/winograd.py [--threads 2] [--reps 5] [--band-values 24576]

Every 3x3 convolution of the restore path already runs near the machine's peak (benchmarks/README.md), so the one
way left to spend less time on them is fewer multiplications: :mod:`edvr.ops.winograd`, which the restore path uses
on the ``compiled`` backend for maps of at least 128x128 pixels. Printed per shape: oneDNN's direct conv and the
Winograd conv (median of interleaved runs), their ratio, and each one's largest difference from a float64
convolution. ``--band-values`` sets the band size (tiles per band x channels, :data:`edvr.ops.winograd.BAND_VALUES`).
"""

from __future__ import annotations

import argparse
import statistics
import time

import torch
import torch.nn.functional as F

from edvr.ops import winograd
from edvr.runtime import keep_freed_memory

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


def measure(cin: int, cout: int, h: int, w: int, reps: int) -> tuple[dict, dict]:
    """Median ms and max |diff| from float64 of the direct conv and of the Winograd conv."""
    gen = torch.Generator().manual_seed(0)
    x = torch.randn(1, cin, h, w, generator=gen).contiguous(memory_format=torch.channels_last)
    weight = torch.randn(cout, cin, 3, 3, generator=gen) * (2 / (9 * cin)) ** 0.5
    bias = torch.randn(cout, generator=gen)
    u = winograd.transformed(weight)
    fns = {"direct": lambda: F.conv2d(x, weight, bias, padding=1),
           "winograd": lambda: winograd.conv2d([(x, u)], bias)[0]}
    with torch.inference_mode():
        exact = F.conv2d(x.double(), weight.double(), bias.double(), padding=1)
        err = {k: (f() - exact).abs().max().item() for k, f in fns.items()}  # also compiles the transforms
        times = {k: [] for k in fns}
        for _ in range(reps):
            for k, f in fns.items():
                t = time.perf_counter()
                f()
                times[k].append(time.perf_counter() - t)
    return {k: statistics.median(v) * 1e3 for k, v in times.items()}, err


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--threads", type=int, default=torch.get_num_threads())
    p.add_argument("--reps", type=int, default=5)
    p.add_argument("--band-values", type=int, default=winograd.BAND_VALUES,
                   help="tiles per band x channels (the library's default: %(default)s)")
    args = p.parse_args()
    torch.set_num_threads(args.threads)
    keep_freed_memory()
    winograd.BAND_VALUES = args.band_values
    print(f"3x3 convs, batch 1, channels_last, float32, {args.threads} threads: oneDNN direct vs Winograd F(4x4,3x3)")
    for cin, cout, h, w, where in SHAPES:
        med, err = measure(cin, cout, h, w, args.reps)
        gflops = 2 * cin * cout * 9 * h * w / 1e9
        print(f"  {cin:>3}->{cout:<3} at {h}x{w} ({where}): direct {med['direct']:.1f} ms "
              f"({gflops / med['direct'] * 1e3:.0f} GFLOP/s), Winograd {med['winograd']:.1f} ms: "
              f"{med['direct'] / med['winograd']:.2f}x; max |diff| from float64: direct {err['direct']:.1e}, "
              f"Winograd {err['winograd']:.1e}", flush=True)


if __name__ == "__main__":
    main()
