"""EDVR speed and memory benchmark: every figure from one run on the same inputs, as ratios, with medians.

    python benchmarks/run.py            # EDVR-M at 180x320 (minutes on a laptop CPU)
    python benchmarks/run.py --quick    # small shapes, a smoke run (under a minute or two)
    python benchmarks/run.py --json out.json

Sections (see benchmarks/README.md for what each measures and how to read it):
  dcn      our deformable-conv backends (torch; compiled on CPU, forward) vs torchvision.ops.deform_conv2d
  model    the restore path (WindowRestorer, feature cache, the DCN backend `edvr restore` uses for a long video)
           vs the reference way (one model(x) per output frame)
  dense    a plain 3x3 conv 64->64: the machine's practical GFLOP/s, and EDVR's share of it
  memory   peak RSS restoring a short and a 10x longer video (separate processes)
  cache    frames/s with and without the per-frame feature cache
  layout   channels_last vs the default layout for a 3x3 conv, and torch.compile where it works
  cuda     float32 vs autocast fp16 / bf16 (only where CUDA is available)
  batch    the restore path restoring 1 window at a time vs 4 (--batch 4), on CUDA where available (float32 and
           --half), else on CPU

Alternatives are interleaved (A, B, A, B, ...) so that a noisy machine slows both alike; medians are quoted.
FLOPs are counted by ``torch.utils.flop_counter`` on the meta device: convolutions and matrix products (2 per
multiply-add, the DCN's product included); element-wise work and the DCN's bilinear sampling are not counted.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import resource
import statistics
import subprocess
import sys
import time
from collections.abc import Callable

import numpy as np
import torch

from edvr.inference.window import WindowRestorer
from edvr.models.edvr import EDVR
from edvr.ops import compiled, deform_conv
from edvr.runtime import keep_freed_memory

PADDING = "reflection_circle"


# ------------------------------------------------------------------------------------------------ helpers
def median(xs: list[float]) -> float:
    return float(statistics.median(xs))


def peak_rss_mb() -> float:
    # Linux: the high-water mark of this process image (VmHWM). ru_maxrss would do, but Linux carries it over exec from
    # the forking parent, so a child started by a benchmark that holds gigabytes would report the parent's peak.
    try:
        with open("/proc/self/status") as f:
            return next(int(line.split()[1]) for line in f if line.startswith("VmHWM:")) / 1024
    except (OSError, StopIteration, ValueError):
        pass
    rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss  # macOS: bytes
    return rss / 1024 if sys.platform != "darwin" else rss / 2**20


def interleaved(fns: dict[str, Callable[[], object]], reps: int, sync: Callable[[], None] = lambda: None) -> dict:
    """Run each function ``reps`` times, round-robin, after one untimed warm-up each; seconds per call."""
    for fn in fns.values():
        fn()
    sync()
    times: dict[str, list[float]] = {k: [] for k in fns}
    for _ in range(reps):
        for k, fn in fns.items():
            t = time.perf_counter()
            fn()
            sync()
            times[k].append(time.perf_counter() - t)
    return times


def edvr_m(seed: int = 0) -> EDVR:
    """EDVR-M (the REDS SR preset's architecture) with random weights; offset convs scaled so that offsets are of
    a pixel or so and the deformable convs really sample between pixels."""
    torch.manual_seed(seed)
    model = EDVR(num_feat=64, num_frames=5, deformable_groups=8, num_extract_block=5, num_reconstruct_block=10)
    for m in model.dcn_modules():
        torch.nn.init.normal_(m.conv_offset.weight, std=0.003)
    return model.eval()


def basicsr_edvr(root: str, weights: dict) -> torch.nn.Module:
    """BasicSR's own EDVR network (the reference implementation users run today), imported from a BasicSR checkout
    at ``root`` and loaded with ``weights`` (its parameter names are ours). Nothing of BasicSR ships with edvr: pass
    ``--basicsr PATH`` to measure against it. Only ``basicsr/archs/{arch_util,edvr_arch}.py`` and
    ``basicsr/ops/dcn`` are imported; the package's heavy ``__init__`` is bypassed with two small stand-ins (its
    logger and its registry decorator), so only torch and torchvision are needed."""
    import importlib
    import logging
    import types
    from pathlib import Path

    base = Path(root) / "basicsr"
    if not (base / "archs" / "edvr_arch.py").is_file():
        raise SystemExit(f"--basicsr {root}: no basicsr/archs/edvr_arch.py there; pass a BasicSR checkout")

    class Registry:
        def register(self, obj=None):
            return obj if obj is not None else (lambda o: o)

    def package(name: str, path: Path | None = None, **attrs) -> None:
        mod = types.ModuleType(name)
        if path is not None:
            mod.__path__ = [str(path)]
        mod.__dict__.update(attrs)
        sys.modules[name] = mod

    package("basicsr", base)
    package("basicsr.utils", get_root_logger=lambda *a, **k: logging.getLogger("basicsr"))
    package("basicsr.utils.registry", ARCH_REGISTRY=Registry())
    package("basicsr.archs", base / "archs")
    package("basicsr.ops", base / "ops")
    net = importlib.import_module("basicsr.archs.edvr_arch").EDVR(
        num_in_ch=3, num_out_ch=3, num_feat=64, num_frame=5, deformable_groups=8, num_extract_block=5,
        num_reconstruct_block=10, center_frame_idx=None, hr_in=False, with_predeblur=False, with_tsa=True)
    net.load_state_dict(weights, strict=True)
    return net.eval()


def synthetic_video(n: int, h: int, w: int, seed: int = 0) -> list[np.ndarray]:
    """Smooth moving patterns (sums of sinusoids drifting a pixel or so per frame), float32 HWC in [0, 1]."""
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[0:h, 0:w].astype(np.float32)
    waves = [(rng.uniform(0.02, 0.3, 2), rng.uniform(0, 6.3), rng.uniform(-1.5, 1.5, 2)) for _ in range(6)]
    frames = []
    for t in range(n):
        img = np.zeros((h, w, 3), np.float32)
        for c in range(3):
            for k, (f, phase, v) in enumerate(waves):
                if k % 3 == c or k >= 3:
                    img[..., c] += np.sin(f[0] * (yy - v[0] * t) + f[1] * (xx - v[1] * t) + phase)
        frames.append(((img - img.min()) / (img.max() - img.min() + 1e-6)).astype(np.float32))
    return frames


def window_flops(model: EDVR, h: int, w: int) -> dict[str, float]:
    """FLOPs of one naive forward, of one frame's per-frame work (encode + alignment terms) and of one window's
    shared work given cached frames (align_and_fuse + reconstruct), at input size h x w."""
    from torch.utils.flop_counter import FlopCounterMode

    cfg = model.config
    with torch.device("meta"):
        meta = EDVR(**{k: v for k, v in cfg.to_dict().items()}).eval()
    x = torch.zeros(1, cfg.num_frames, cfg.num_in_ch, h, w, device="meta")
    out = {}
    with torch.no_grad():
        with FlopCounterMode(display=False) as fc:
            meta(x)
        out["forward"] = fc.get_total_flops()
        with FlopCounterMode(display=False) as fc:
            feat = meta.encode(x[:, 0])
            terms = meta.alignment_terms(feat)
        out["per_frame"] = fc.get_total_flops()
        with FlopCounterMode(display=False) as fc:
            fused = meta.align_and_fuse([feat] * cfg.num_frames, [terms] * cfg.num_frames)
            meta.reconstruct(fused, x[:, 0])
        out["per_window"] = fc.get_total_flops()
    return out


def to_batch(frames: list[np.ndarray], idx: list[int]) -> torch.Tensor:
    return torch.stack([torch.from_numpy(frames[i]).permute(2, 0, 1) for i in idx])[None]


# ------------------------------------------------------------------------------------------------ sections
def bench_dcn(shapes: list[tuple[int, int]], reps: int, device: torch.device) -> dict:
    tv = deform_conv.torchvision_available()
    sync = torch.cuda.synchronize if device.type == "cuda" else (lambda: None)
    results = {"torchvision_available": tv, "shapes": {}}
    for h, w in shapes:
        g = torch.Generator().manual_seed(h * w)
        x = torch.rand(1, 64, h, w, generator=g).to(device)
        offset = (torch.randn(1, 2 * 8 * 9, h, w, generator=g) * 1.5).to(device)
        mask = torch.rand(1, 8 * 9, h, w, generator=g).to(device)
        weight = (torch.randn(64, 64, 3, 3, generator=g) * 0.04).to(device)
        bias = torch.randn(64, generator=g).to(device)
        fns = {"torch": deform_conv.get_backend("torch")}
        if tv:
            fns["torchvision"] = deform_conv.get_backend("torchvision")
        row: dict = {}
        with torch.inference_mode():
            inference = dict(fns)
            if device.type == "cpu":  # inference only: its backward is the torch backend's
                x, offset, mask = (t.contiguous(memory_format=torch.channels_last) for t in (x, offset, mask))
                inference["compiled"] = deform_conv.get_backend("compiled")
                t0 = time.perf_counter()
                inference["compiled"](x, offset, mask, weight, bias)
                row["compiled_first_call_s"] = time.perf_counter() - t0
                if compiled.error():
                    row["compiled_error"] = compiled.error()
                    del inference["compiled"]
            fwd = interleaved({k: (lambda f=f: f(x, offset, mask, weight, bias)) for k, f in inference.items()}, reps,
                              sync)
            outs = {k: f(x, offset, mask, weight, bias) for k, f in inference.items()}
            truth = "torchvision" if tv else "torch"
            for k, out in outs.items():
                if k != truth:
                    row[f"max_abs_diff_{k}_vs_{truth}"] = (out - outs[truth]).abs().max().item()
        leaves = [t.clone().requires_grad_(True) for t in (x, offset, mask, weight, bias)]

        def fwd_bwd(f):
            out = f(*leaves)
            out.backward(torch.ones_like(out))
            for t in leaves:
                t.grad = None

        bwd = interleaved({k: (lambda f=f: fwd_bwd(f)) for k, f in fns.items()}, max(1, reps // 2), sync)
        for k in inference:
            row[f"{k}_forward_ms"] = 1e3 * median(fwd[k])
        for k in fns:
            row[f"{k}_forward_backward_ms"] = 1e3 * median(bwd[k])
        if tv:
            for k in inference:
                if k != "torchvision":
                    row[f"speedup_forward_{k}"] = median(fwd["torchvision"]) / median(fwd[k])
            row["speedup_forward_backward_torch"] = median(bwd["torchvision"]) / median(bwd["torch"])
        elif "compiled" in inference:
            row["speedup_forward_compiled_vs_torch"] = median(fwd["torch"]) / median(fwd["compiled"])
        results["shapes"][f"{h}x{w}"] = row
        print(f"  dcn 64ch 8 groups {h}x{w}: " + ", ".join(f"{k} {v:.3g}" for k, v in row.items()), flush=True)
    return results


def bench_dense(reps: int, device: torch.device, h: int = 180, w: int = 320) -> dict:
    conv = torch.nn.Conv2d(64, 64, 3, 1, 1).to(device).eval()
    x = torch.rand(1, 64, h, w, device=device)
    xc = x.contiguous(memory_format=torch.channels_last)
    flops = 2 * 64 * 64 * 9 * h * w
    sync = torch.cuda.synchronize if device.type == "cuda" else (lambda: None)
    with torch.inference_mode():
        t = interleaved({"nchw": lambda: conv(x), "channels_last": lambda: conv(xc)}, reps, sync)
    g = {k: flops / median(v) / 1e9 for k, v in t.items()}
    best = max(g.values())
    print(f"  dense 3x3 conv 64->64 (1,64,{h},{w}): default layout {g['nchw']:.1f} GFLOP/s, channels_last "
          f"{g['channels_last']:.1f} GFLOP/s (ratio {g['channels_last'] / g['nchw']:.2f})", flush=True)
    return {"shape": [1, 64, h, w], "gflops_nchw": g["nchw"], "gflops_channels_last": g["channels_last"],
            "gflops_best": best, "channels_last_over_nchw": g["channels_last"] / g["nchw"]}


def bench_model(h: int, w: int, frames: int, ref_frames: int, basicsr: str | None = None,
                dcn_backend: str | None = None) -> dict:
    """The restore path against the reference way, frame by frame interleaved, on one synthetic video. The reference
    network is BasicSR's own (``basicsr``: a checkout) or else ours run plainly (torchvision's DCN if installed).
    The restore path's DCN backend: ``dcn_backend``, else the one ``edvr restore`` picks for a long video here."""
    from edvr.inference.restore import job_dcn_backend

    model = edvr_m()
    video = synthetic_video(frames, h, w)
    if basicsr:
        ref_backend = "basicsr"
        ref_model = basicsr_edvr(basicsr, model.state_dict())
    else:
        ref_backend = "torchvision" if deform_conv.torchvision_available() else "torch"
        ref_model = edvr_m()
        ref_model.set_dcn_backend(ref_backend)
    flops = window_flops(model, h, w)
    backend = deform_conv.resolve_backend(job_dcn_backend(dcn_backend, torch.device("cpu"), 10**6, h, w), "cpu")
    model.set_dcn_backend(backend)
    compile_s = None
    if backend == "compiled":  # compiled before the timing (once per input size), and timed on its own
        t = time.perf_counter()
        with torch.inference_mode():
            model(to_batch(video, [0] * 5))
        compile_s = time.perf_counter() - t
        if compiled.error():
            backend = f"torch (compiled failed: {compiled.error()})"
        print(f"  restore path's DCN backend: {backend}; compilation and one window took {compile_s:.1f} s", flush=True)
    restorer = WindowRestorer(model, padding=PADDING, device="cpu", cache=True)
    stream = restorer.restore(enumerate(video))
    restore_times, ref_times, outs, diffs = [], [], {}, []
    t_start = time.perf_counter()
    restore_total = 0.0
    for c in range(frames):
        t = time.perf_counter()
        idx, img = next(stream)
        dt = time.perf_counter() - t
        restore_total += dt
        restore_times.append(dt)
        outs[idx] = img
        if c < ref_frames:
            # The reference way: one plain forward per output frame, every frame's features recomputed.
            from edvr.data.frames import window_indices

            x = to_batch(video, window_indices(c, 5, frames, PADDING))
            t = time.perf_counter()
            with torch.inference_mode():
                ref = ref_model(x)[0].clamp(0, 1).permute(1, 2, 0).numpy()
            ref_times.append(time.perf_counter() - t)
            diffs.append(float(np.abs(ref - img).max()))
        print(f"  frame {c}: restore {restore_times[-1]:.2f} s" + (f", reference {ref_times[-1]:.2f} s"
                                                                      if c < ref_frames else ""), flush=True)
    wall = time.perf_counter() - t_start
    # Executed FLOPs of the restore path: every frame encoded once, plus the shared work of each window.
    executed = flops["per_frame"] * frames + flops["per_window"] * frames
    restore_fps = frames / restore_total
    ref_s = median(ref_times) if ref_times else float("nan")
    res = {
        "input": [h, w], "frames": frames, "reference_frames": len(ref_times), "reference": ref_backend,
        "restore_dcn_backend": backend, "compile_and_first_window_s": compile_s,
        "restore_fps": restore_fps, "restore_s_per_frame_median": median(restore_times),
        "reference_s_per_frame_median": ref_s, "reference_fps": 1 / ref_s,
        "speedup": restore_fps * ref_s,
        # A long video's rate: the frames after the first (which also encodes the frames its padded window repeats).
        "restore_s_per_frame_steady": median(restore_times[1:]) if frames > 1 else float("nan"),
        "speedup_steady": ref_s / median(restore_times[1:]) if frames > 1 else float("nan"),
        "flops_forward": flops["forward"], "flops_per_frame_encode": flops["per_frame"],
        "flops_per_window_shared": flops["per_window"],
        "restore_gflops_executed": executed / restore_total / 1e9,
        "restore_gflops_nominal": flops["forward"] * frames / restore_total / 1e9,
        "reference_gflops": flops["forward"] / ref_s / 1e9,
        "max_abs_diff_vs_reference": max(diffs) if diffs else None,
        "peak_rss_mb_process": peak_rss_mb(), "wall_s": wall,
    }
    ref_name = "BasicSR's EDVR" if basicsr else f"edvr's network plainly, {ref_backend} DCN"
    print(f"  restore path ({backend} DCN) {restore_fps:.3f} frames/s vs reference ({ref_name}, one forward per frame) "
          f"{1 / ref_s:.3f} frames/s: {res['speedup']:.2f}x (after the first frame: {res['speedup_steady']:.2f}x); "
          f"max |diff| {res['max_abs_diff_vs_reference']:.2e}; "
          f"restore {res['restore_gflops_executed']:.1f} GFLOP/s executed "
          f"({flops['per_frame'] / 1e9:.1f} per frame + {flops['per_window'] / 1e9:.1f} per window), "
          f"{res['restore_gflops_nominal']:.1f} GFLOP/s counting the naive {flops['forward'] / 1e9:.1f} per frame; "
          f"reference {res['reference_gflops']:.1f} GFLOP/s", flush=True)
    return res


def bench_cache(h: int, w: int, frames: int) -> dict:
    """Two restorers, with and without the feature cache, advanced alternately frame by frame."""
    model = edvr_m()
    video = synthetic_video(frames, h, w, seed=1)
    streams = {k: WindowRestorer(model, padding=PADDING, cache=k == "cache").restore(enumerate(video))
               for k in ("cache", "no_cache")}
    times: dict[str, list[float]] = {k: [] for k in streams}
    outs: dict[str, list[np.ndarray]] = {k: [] for k in streams}
    for _ in range(frames):
        for k, s in streams.items():
            t = time.perf_counter()
            outs[k].append(next(s)[1])
            times[k].append(time.perf_counter() - t)
    fps = {k: frames / sum(v) for k, v in times.items()}
    equal = all(np.array_equal(a, b) for a, b in zip(outs["cache"], outs["no_cache"]))
    print(f"  feature cache at {h}x{w}, {frames} frames: {fps['cache']:.3f} vs {fps['no_cache']:.3f} frames/s "
          f"({fps['cache'] / fps['no_cache']:.2f}x), outputs identical: {equal}", flush=True)
    return {"input": [h, w], "frames": frames, "fps_cache": fps["cache"], "fps_no_cache": fps["no_cache"],
            "ratio": fps["cache"] / fps["no_cache"], "identical": equal}


def bench_batch(h: int, w: int, frames: int, reps: int, device: torch.device, batch: int = 4) -> dict:
    """Whole-video restores (WindowRestorer) with one window per pass vs ``batch``, alternately; on CUDA also with
    ``half`` (autocast). Each variant's output is compared with one window at a time in the same precision."""
    model = edvr_m().to(device)
    video = synthetic_video(frames, h, w, seed=2)
    halves = (False, True) if device.type == "cuda" else (False,)
    outs: dict[tuple[bool, int], dict] = {}

    def run(half: bool, b: int) -> None:
        outs[(half, b)] = dict(WindowRestorer(model, padding=PADDING, device=device, half=half,
                                              batch=b).restore(enumerate(video)))

    fns = {(half, b): (lambda half=half, b=b: run(half, b)) for half in halves for b in (1, batch)}
    sync = torch.cuda.synchronize if device.type == "cuda" else (lambda: None)
    t = interleaved(fns, reps, sync)
    res: dict = {"device": str(device), "input": [h, w], "frames": frames, "batch": batch}
    for half in halves:
        name = "half" if half else "fp32"
        fps = {b: frames / median(t[(half, b)]) for b in (1, batch)}
        diff = max(float(np.abs(outs[(half, batch)][c] - outs[(half, 1)][c]).max()) for c in range(frames))
        res[name] = {"fps_batch_1": fps[1], f"fps_batch_{batch}": fps[batch], "ratio": fps[batch] / fps[1],
                     "max_abs_diff": diff}
        print(f"  {device.type} {name}, {h}x{w}, {frames} frames: batch {batch} {fps[batch]:.3g} vs batch 1 "
              f"{fps[1]:.3g} frames/s ({fps[batch] / fps[1]:.2f}x), max |difference| {diff:.2g}", flush=True)
    return res


def memory_child(n: int, h: int, w: int, tiny: bool) -> None:
    """(Run in a child process.) Restore an n-frame synthetic video through restore_frames; print peak RSS."""
    from edvr.inference.restore import restore_frames

    model = EDVR(num_feat=16, num_extract_block=1, num_reconstruct_block=1, deformable_groups=2).eval() if tiny \
        else edvr_m()
    rng = np.random.default_rng(0)
    base = rng.random((h, w, 3), dtype=np.float32)

    def frames():  # generated lazily: the input does not sit in memory either
        for i in range(n):
            yield np.roll(base, i, axis=1)

    t = time.perf_counter()
    count = sum(1 for _ in restore_frames(frames(), model, device="cpu"))
    print(json.dumps({"frames": count, "peak_rss_mb": peak_rss_mb(), "seconds": time.perf_counter() - t}))


def bench_memory(short: int, h: int, w: int, tiny: bool) -> dict:
    res = {"input": [h, w], "model": "tiny" if tiny else "EDVR-M"}
    for name, n in (("short", short), ("long", 10 * short)):
        cmd = [sys.executable, __file__, "--_memory-child", str(n), str(h), str(w), "1" if tiny else "0"]
        out = subprocess.run(cmd, capture_output=True, text=True, check=True, env=os.environ.copy())
        res[name] = json.loads(out.stdout.strip().splitlines()[-1])
    res["ratio_long_over_short"] = res["long"]["peak_rss_mb"] / res["short"]["peak_rss_mb"]
    print(f"  memory ({res['model']}, {h}x{w}): {short} frames {res['short']['peak_rss_mb']:.0f} MB, "
          f"{10 * short} frames {res['long']['peak_rss_mb']:.0f} MB (ratio {res['ratio_long_over_short']:.2f})",
          flush=True)
    return res


def tail_child(h: int, w: int, band: int, threads: int, backend: str) -> None:
    """(Run in a child process.) Restore 2 synthetic frames with the shipped default model, its x4 tail in bands of
    ``band`` pixels (EDVR.reconstruct); print peak RSS and seconds."""
    from edvr.inference.restore import restore_frames
    from edvr.models.zoo import load_model

    torch.set_num_threads(threads)
    model = load_model(device="cpu", dcn_backend=backend)
    model.tail_band_pixels = band
    frames = synthetic_video(2, h, w)
    t = time.perf_counter()
    count = sum(1 for _ in restore_frames(frames, model, device="cpu"))
    print(json.dumps({"frames": count, "peak_rss_mb": peak_rss_mb(), "seconds": time.perf_counter() - t}))


def bench_tail(h: int, w: int, reps: int, band: int, dcn_backend: str | None) -> dict:
    """The x4 tail in bands of rows (``edvr restore``'s way) vs on whole frames, with the shipped default model and
    the DCN backend (so also the tail's kernels) that ``edvr restore`` picks for a long video here: ``reconstruct``
    timed interleaved and compared, then a 2-frame restore's peak memory each way (child processes)."""
    from edvr.inference.restore import job_dcn_backend
    from edvr.models.zoo import load_model

    backend = deform_conv.resolve_backend(job_dcn_backend(dcn_backend, torch.device("cpu"), 10**6, h, w), "cpu")
    model = load_model(device="cpu", dcn_backend=backend)
    fused = torch.randn(1, model.config.num_feat, h, w)
    center = torch.rand(1, 3, h, w)
    whole_band = 1 << 40

    def tail(pixels: int) -> torch.Tensor:
        model.tail_band_pixels = pixels
        return model.reconstruct(fused, center)

    with torch.inference_mode():
        t = interleaved({"whole": lambda: tail(whole_band), "bands": lambda: tail(band)}, reps)
        diff = (tail(band) - tail(whole_band)).abs().max().item()
    res = {"input": [h, w], "band_pixels": band, "dcn_backend": backend,
           "speedup": median(t["whole"]) / median(t["bands"]), "max_abs_diff": diff}
    for name, pixels in (("whole", whole_band), ("bands", band)):
        cmd = [sys.executable, __file__, "--_tail-child", str(h), str(w), str(pixels), str(torch.get_num_threads()),
               backend]
        for _ in range(2):  # the second run: the compiled backend's kernels for these shapes come from PyTorch's
            # cache; compiling them in the first run adds gigabytes to its peak
            out = subprocess.run(cmd, capture_output=True, text=True, env=os.environ.copy())
        if out.returncode:  # e.g. whole frames killed for want of memory: that is the result
            res[f"restore_{name}"] = {"failed": f"exit status {out.returncode}",
                                      "error": (out.stderr.strip().splitlines() or [""])[-1][:300]}
        else:
            res[f"restore_{name}"] = json.loads(out.stdout.strip().splitlines()[-1])
    peaks = [res[f"restore_{n}"].get("peak_rss_mb") for n in ("bands", "whole")]
    print(f"  x4 tail in bands, {h}x{w} input (default model, {backend} backend): {res['speedup']:.2f}x the "
          f"whole-frame tail's speed, max |diff| {diff:.1e}; a 2-frame restore peaked at "
          + " MB against ".join("failed" if p is None else f"{p:.0f}" for p in peaks) + " MB on whole frames",
          flush=True)
    return res


def bench_compile(h: int, w: int, reps: int) -> dict:
    """torch.compile of the reconstruction (all convs and pixel shuffles, no DCN) vs eager, interleaved."""
    model = edvr_m()
    fused = torch.rand(1, 64, h, w).contiguous(memory_format=torch.channels_last)
    center = torch.rand(1, 3, h, w)
    try:
        compiled = torch.compile(model.reconstruct)
        with torch.inference_mode():
            t0 = time.perf_counter()
            compiled(fused, center)
            compile_s = time.perf_counter() - t0
            t = interleaved({"eager": lambda: model.reconstruct(fused, center),
                             "compiled": lambda: compiled(fused, center)}, reps)
            diff = (compiled(fused, center) - model.reconstruct(fused, center)).abs().max().item()
    except Exception as e:  # noqa: BLE001 - report why it does not work here, do not stop the benchmark
        msg = f"{type(e).__name__}: {str(e).splitlines()[0] if str(e) else ''}"[:300]
        print(f"  torch.compile: does not work here ({msg})", flush=True)
        return {"works": False, "error": msg}
    ratio = median(t["eager"]) / median(t["compiled"])
    print(f"  torch.compile of reconstruct at {h}x{w}: {ratio:.2f}x eager (compile {compile_s:.0f} s, "
          f"max |diff| {diff:.1e})" + ("" if ratio > 1.05 else ": does not pay"), flush=True)
    return {"works": True, "speedup": ratio, "compile_s": compile_s, "max_abs_diff": diff}


def bench_cuda(h: int, w: int, reps: int) -> dict:
    """float32 vs autocast fp16 / bf16 for one window on CUDA, each DCN backend available."""
    device = torch.device("cuda")
    model = edvr_m().to(device)
    x = torch.from_numpy(np.stack(synthetic_video(5, h, w))).permute(0, 3, 1, 2)[None].to(device)
    res: dict = {"device": torch.cuda.get_device_name(0), "input": [h, w]}
    backends = ["torch"] + (["torchvision"] if deform_conv.torchvision_available() else [])
    for backend in backends:
        model.set_dcn_backend(backend)

        def run(dtype):
            with torch.inference_mode(), torch.autocast("cuda", dtype=dtype, enabled=dtype is not None):
                return model(x).float()

        modes = {"fp32": None, "fp16": torch.float16}
        if torch.cuda.is_bf16_supported():
            modes["bf16"] = torch.bfloat16
        ref = run(None)
        t = interleaved({k: (lambda d=d: run(d)) for k, d in modes.items()}, reps, torch.cuda.synchronize)
        row = {}
        for k, d in modes.items():
            row[f"{k}_fps"] = 1 / median(t[k])
            row[f"{k}_max_abs_diff_vs_fp32"] = (run(d) - ref).abs().max().item()
        res[backend] = row
        print(f"  cuda {backend} DCN: " + ", ".join(f"{k} {v:.3g}" for k, v in row.items()), flush=True)
    res["peak_memory_mb"] = torch.cuda.max_memory_allocated() / 2**20
    return res


# ------------------------------------------------------------------------------------------------ main
def _size(text: str) -> tuple[int, int]:
    try:
        h, w = (int(v) for v in text.lower().split("x"))
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r}: give HEIGHTxWIDTH, e.g. 720x1280") from None
    return h, w


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--quick", action="store_true", help="small shapes and few repetitions (a smoke run)")
    p.add_argument("--json", help="write all results to this file")
    p.add_argument("--threads", type=int, default=None, help="torch threads (default: torch's choice)")
    p.add_argument("--frames", type=int, default=None, help="frames restored in the model section (default 7)")
    p.add_argument("--reference-frames", type=int, default=None,
                   help="output frames timed the reference way (default 2; each is slow)")
    p.add_argument("--basicsr", metavar="PATH",
                   help="a BasicSR checkout: the model section's reference is then BasicSR's own EDVR network")
    p.add_argument("--dcn-backend", choices=deform_conv.BACKENDS,
                   help="the restore path's DCN backend in the model section (default: what edvr restore picks for a "
                        "long video)")
    p.add_argument("--skip", default="", help="comma-separated sections to skip: " + ",".join(SECTIONS))
    p.add_argument("--compile", action="store_true", help="also try torch.compile in a --quick run")
    p.add_argument("--_memory-child", nargs=4, help=argparse.SUPPRESS)
    p.add_argument("--tail-size", default="360x640", metavar="HxW", type=_size,
                   help="input size of the tail section (default 360x640; a --quick run uses 96x160)")
    p.add_argument("--_tail-child", nargs=5, help=argparse.SUPPRESS)
    args = p.parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    # As the edvr commands do (edvr.runtime), for both paths of every comparison; EDVR_MALLOC=system to compare.
    malloc_kept = keep_freed_memory()
    if args._memory_child:
        n, h, w, tiny = args._memory_child
        memory_child(int(n), int(h), int(w), tiny == "1")
        return 0
    if args._tail_child:
        h, w, band, threads, backend = args._tail_child
        tail_child(int(h), int(w), int(band), int(threads), backend)
        return 0
    skip = {s for s in args.skip.split(",") if s}
    q = args.quick
    h, w = (36, 64) if q else (180, 320)
    frames = args.frames or (5 if q else 7)
    ref_frames = args.reference_frames if args.reference_frames is not None else (1 if q else 2)
    reps = 3 if q else 5
    results: dict = {
        "quick": q, "torch": torch.__version__, "threads": torch.get_num_threads(), "python": platform.python_version(),
        "machine": platform.machine(), "processor": platform.processor(), "cpus": os.cpu_count(),
        "torchvision_available": deform_conv.torchvision_available(), "malloc_kept": malloc_kept,
    }
    cpu = torch.device("cpu")
    print(f"edvr benchmark: torch {torch.__version__}, {torch.get_num_threads()} threads, "
          f"torchvision {'yes' if results['torchvision_available'] else 'no'}, {'quick' if q else 'full'} run", flush=True)
    if "dense" not in skip:
        print("dense conv (before):", flush=True)
        results["dense_before"] = bench_dense(reps, cpu)
    if "dcn" not in skip:
        print("dcn:", flush=True)
        shapes = [(45, 80), (23, 40)] if q else [(180, 320), (90, 160), (45, 80)]
        results["dcn"] = bench_dcn(shapes, reps, cpu)
    if "model" not in skip:
        print(f"model (EDVR-M, {h}x{w} input, {frames} frames):", flush=True)
        results["model"] = bench_model(h, w, frames, ref_frames, args.basicsr, args.dcn_backend)
    if "dense" not in skip:
        print("dense conv (after):", flush=True)
        results["dense_after"] = after = bench_dense(reps, cpu)
        best = max(results["dense_before"]["gflops_best"], after["gflops_best"])
        results["dense_gflops"] = best
        if "model" in results:
            m = results["model"]
            results["edvr_share_of_dense"] = m["restore_gflops_executed"] / best
            print(f"  EDVR restore path reaches {m['restore_gflops_executed']:.1f} / {best:.1f} GFLOP/s = "
                  f"{100 * results['edvr_share_of_dense']:.0f} % of the dense conv (executed FLOPs)", flush=True)
    if "cache" not in skip:
        print("feature cache:", flush=True)
        results["cache"] = bench_cache(*((36, 64) if q else (90, 160)), 5 if q else 7)
    if "memory" not in skip:
        print("memory:", flush=True)
        results["memory"] = bench_memory(3 if q else 6, *((32, 32) if q else (48, 80)), tiny=q)
    if "tail" not in skip:
        print("x4 tail in bands:", flush=True)
        # quick: bands of 32 rows forced on a small frame; full: the default band on --tail-size input
        th, tw = args.tail_size
        results["tail"] = bench_tail(*((96, 160, 2, 32 * 160) if q else (th, tw, reps, 1 << 16)), args.dcn_backend)
    if "layout" not in skip:
        print("layout / compile:", flush=True)
        if q and not args.compile:
            results["compile"] = {"works": None, "skipped": "quick run (pass --compile)"}
        else:
            results["compile"] = bench_compile(*((36, 64) if q else (90, 160)), reps)
    if "cuda" not in skip:
        if torch.cuda.is_available():
            print("cuda:", flush=True)
            results["cuda"] = bench_cuda(*((64, 112) if q else (180, 320)), reps)
        else:
            results["cuda"] = {"skipped": "CUDA not available"}
            print("cuda: not available here (skipped)", flush=True)
    if "batch" not in skip:
        print("batched windows:", flush=True)
        if torch.cuda.is_available():
            results["batch"] = bench_batch(*((64, 112) if q else (180, 320)), 16, reps, torch.device("cuda"))
        else:
            results["batch"] = bench_batch(*((36, 64) if q else (90, 160)), 8, 1 if not q else 2, cpu)
    results["peak_rss_mb_process"] = peak_rss_mb()
    if args.json:
        with open(args.json, "w") as f:
            json.dump(results, f, indent=2)
        print(f"results written to {args.json}")
    return 0


SECTIONS = ("dcn", "model", "dense", "memory", "tail", "cache", "layout", "cuda", "batch")

if __name__ == "__main__":
    sys.exit(main())
