"""Where a steady-state window of the restore path spends its time, without a profiler.

    python benchmarks/breakdown.py [--threads 2] [--size 180x320] [--windows 3] [--dcn-backend compiled]

EDVR-M (random weights, offsets of about a pixel) restores a synthetic video through ``WindowRestorer`` with the
feature cache, as ``edvr restore`` does. The model's parts are wrapped with timers (wall time, nested parts inside
their parents) and each is printed as seconds per window and as a share of the window. The torch profiler is not
used because it distorts the large convolutions: under it the 720p ``conv_hr`` and the 360x640 ``upconv2`` ran
1.6x slower and the pixel-shuffle copy 7x slower than without it.
"""

from __future__ import annotations

import argparse
import collections
import functools
import statistics
import time

import torch

from edvr.inference.window import WindowRestorer
from edvr.models.edvr import EDVR
from edvr.ops import compiled, deform_conv, winograd
from edvr.runtime import keep_freed_memory


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--threads", type=int, default=torch.get_num_threads())
    p.add_argument("--size", default="180x320", help="input HxW")
    p.add_argument("--windows", type=int, default=3, help="windows timed after 3 warm-up windows")
    p.add_argument("--dcn-backend", default="torch", choices=deform_conv.BACKENDS, help="default: torch")
    args = p.parse_args()
    torch.set_num_threads(args.threads)
    keep_freed_memory()
    h, w = (int(v) for v in args.size.split("x"))

    torch.manual_seed(0)
    model = EDVR(num_feat=64, num_frames=5, deformable_groups=8, num_extract_block=5, num_reconstruct_block=10).eval()
    for pack in model.dcn_modules():
        torch.nn.init.normal_(pack.conv_offset.weight, std=1e-3)

    spent: dict[str, float] = collections.defaultdict(float)

    def timed(name, fn):
        @functools.wraps(fn)
        def wrapper(*a, **k):
            t = time.perf_counter()
            out = fn(*a, **k)
            spent[name] += time.perf_counter() - t
            return out
        return wrapper

    parts = [
        ("encode (one new frame)", model, "encode"),
        ("PCD neighbour terms", model, "alignment_terms"),
        ("PCD reference terms", model.pcd_align, "reference_terms"),
        ("TSA fusion", model.fusion, "fuse_frames"),
        ("reconstruction + x4 tail", model, "reconstruct"),
    ]
    for name, owner, attr in parts:
        setattr(owner, attr, timed(name, getattr(owner, attr)))
    for pack in model.dcn_modules():
        pack.offsets_and_mask = timed("DCN offset + mask convs", pack.offsets_and_mask)
    # Patched in the module, so that the dispatcher's lookup finds the timed versions.
    model.set_dcn_backend(args.dcn_backend)
    deform_conv.deform_conv2d_torch = timed("DCN sampling + product", deform_conv.deform_conv2d_torch)
    deform_conv.deform_conv2d_compiled = timed("DCN sampling + product", deform_conv.deform_conv2d_compiled)
    deform_conv._sample_columns = timed("  of which bilinear sampling", deform_conv._sample_columns)

    video = [torch.rand(3, h, w).permute(1, 2, 0).numpy() for _ in range(3 * args.windows + 6)]
    stream = WindowRestorer(model, padding="reflection_circle", cache=True).restore(enumerate(video))
    for _ in range(3):
        next(stream)
    fns = compiled._state["fns"]  # compiled by now (compiled backend): timed from here on
    for key, fn in fns.items():
        if key[0] == deform_conv._sample_taps.__name__:
            fns[key] = timed("  of which bilinear sampling", fn)
    spent.clear()
    t0 = time.perf_counter()
    for _ in range(args.windows):
        next(stream)
    window = (time.perf_counter() - t0) / args.windows
    print(f"EDVR-M, {h}x{w} input, {args.threads} threads, {args.dcn_backend} DCN: {window:.3f} s per window "
          f"(mean of {args.windows})")
    order = [name for name, _, _ in parts[:4]] + ["DCN offset + mask convs", "DCN sampling + product",
                                                  "  of which bilinear sampling", parts[4][0]]
    top = 0.0
    for name in order:
        s = spent[name]
        print(f"  {name:30s} {s / args.windows:7.3f} s  {s / args.windows / window:6.1%}")
        top += 0 if name.startswith("  ") else s
    rest = window - top / args.windows
    print(f"  {'rest (PCD convs, activations)':30s} {rest:7.3f} s  {rest / window:6.1%}")
    if args.dcn_backend == "compiled":
        compare_winograd(stream, args.windows)
        compare_tails(model, h, w)


def compare_winograd(stream, windows: int) -> None:
    """Windows of the restore path with the Winograd convs and with oneDNN's direct convs, alternated."""
    times: dict[bool, list[float]] = {True: [], False: []}
    for _ in range(windows):
        for on, seconds in times.items():
            winograd.ENABLED = on
            t = time.perf_counter()
            next(stream)
            seconds.append(time.perf_counter() - t)
    winograd.ENABLED = True
    med = {on: statistics.median(s) for on, s in times.items()}
    faster = sum(a < b for a, b in zip(times[True], times[False]))
    print(f"3x3 convs: {med[True]:.3f} s per window with Winograd (edvr.ops.winograd) against {med[False]:.3f} s "
          f"with the direct conv (median of {windows}, alternated; faster in {faster} of {windows}): "
          f"{med[False] / med[True]:.3f}x")


def compare_tails(model: EDVR, h: int, w: int, reps: int = 6) -> None:
    """``reconstruct`` with our compiled kernels (the x4 tail's compiled passes, Winograd convs) against the plain
    ops, alternated in this process."""
    reconstruct = model.reconstruct.__wrapped__  # the untimed method
    fused = torch.randn(1, 64, h, w).contiguous(memory_format=torch.channels_last)
    center = torch.rand(1, 3, h, w)
    times: dict[str, list[float]] = {"compiled": [], "torch": []}
    with torch.inference_mode():
        for _ in range(reps + 1):
            for name, seconds in times.items():
                model.dcn_backend = name  # the tail's switch; the deformable convs keep their own backend
                t = time.perf_counter()
                reconstruct(fused, center)
                seconds.append(time.perf_counter() - t)
    model.dcn_backend = "compiled"
    med = {name: sorted(s[1:])[reps // 2] for name, s in times.items()}  # the first round compiles
    faster = sum(c < t for c, t in zip(times["compiled"][1:], times["torch"][1:]))
    print(f"x4 tail: reconstruct {med['compiled'] * 1e3:.0f} ms with compiled passes and Winograd convs against "
          f"{med['torch'] * 1e3:.0f} ms plain (median of {reps}, alternated; faster in {faster} of {reps}): "
          f"{med['torch'] / med['compiled']:.3f}x")


if __name__ == "__main__":
    main()
