"""``edvr restore INPUT [INPUT ...] -o OUTPUT``: videos or frame folders in, restored videos or PNG folders out."""

from __future__ import annotations

import argparse
from pathlib import Path

from edvr.errors import CheckpointError, EdvrError, InputError


def add_arguments(p: argparse.ArgumentParser, name: str) -> None:
    p.add_argument("inputs", nargs="+", metavar="INPUT", help="video file (mp4, mkv, mov, avi, webm...) or folder of frames")
    p.add_argument("-o", "--output", required=True,
                   help="output video (container from the extension) or folder of PNG frames; a folder for several inputs")
    p.add_argument("--model", help="model name (see `edvr models`) or checkpoint file; default: the shipped model")
    p.add_argument("--device", default="auto", help="auto (cuda > mps > cpu), cpu, cuda, cuda:1, mps")
    p.add_argument("--half", action="store_true",
                   help="fp16 autocast on GPUs (ignored on CPU); if a window overflows, it and the rest run in float32")
    p.add_argument("--batch", type=int, default=1, metavar="N",
                   help="windows restored together (default 1); more keep a GPU busy on small frames, at more memory")
    p.add_argument("--tile", type=int, help="split frames into tiles of N x N input pixels (saves memory)", metavar="N")
    p.add_argument("--tile-overlap", type=int, default=32, help="context around each tile, input pixels (default 32)")
    p.add_argument("--padding", help="temporal padding at clip ends: replicate, reflection, reflection_circle, circle "
                                     "(default: the model's published protocol)")
    p.add_argument("--codec", help="video encoder (default: libx264, libvpx-vp9 for .webm; 10-bit when the input is)")
    p.add_argument("--crf", type=int, help="encoder quality, lower is better (default 18)")
    p.add_argument("--pix-fmt", help="output pixel format (default follows the input's bit depth)")
    p.add_argument("--ensemble", nargs="?", const="auto", choices=("auto", "flip4", "x8", "x8t"),
                   help="self-ensemble over flips/transposes (x8t: also time-reversed; flip4: the original repo's; "
                        "bare --ensemble: auto, x8t where the window is symmetric): 4-16x slower, a little better")
    p.add_argument("--stage2", metavar="MODEL", help="second-stage model (HR input) run on the first stage's output")
    p.add_argument("--segment-frames", type=int, default=100,
                   help="frames per resumable segment (default 100, at least 16)")
    p.add_argument("--resume", action="store_true", help="continue an interrupted run without redoing finished work")
    p.add_argument("--overwrite", action="store_true", help="replace an existing output")
    p.add_argument("--dcn-backend", choices=("auto", "torch", "compiled", "torchvision"),
                   help="deformable-conv implementation (default: auto; on CPU, compiled for long videos when a C++ "
                        "compiler works, see docs)")
    p.add_argument("--quiet", action="store_true", help="no progress bar")


def outputs_for(inputs: list[Path], output: Path) -> list[Path]:
    """One output path per input: OUTPUT itself for one input, OUTPUT/<name>_edvr<ext> for several (a video in
    a container that edvr does not write, such as .ts, becomes .mkv)."""
    from edvr.inference.restore import VIDEO_SUFFIXES

    if len(inputs) == 1:
        return [output]
    if output.suffix:
        raise InputError(f"{output}: with {len(inputs)} inputs the output must be a folder, not a file name")
    output.mkdir(parents=True, exist_ok=True)
    suffixes = ["" if p.is_dir() else p.suffix if p.suffix.lower() in VIDEO_SUFFIXES else ".mkv" for p in inputs]
    names = [p.stem + "_edvr" + suffix for p, suffix in zip(inputs, suffixes)]
    if len(set(names)) != len(names):
        raise InputError("several inputs have the same name; restore them into different folders")
    return [output / n for n in names]


def run(args: argparse.Namespace) -> int:
    from edvr.inference.restore import restore_video
    from edvr.runtime import pick_device

    inputs = [Path(p) for p in args.inputs]
    for p in inputs:
        if not p.exists():
            raise InputError(f"{p}: no such file or folder")
    outputs = outputs_for(inputs, Path(args.output))
    device = pick_device(args.device)
    # restore_video loads the models (a name or a file), so that under torchrun a rank that cannot load one stops
    # the others; a bad model stops the whole command, whatever the number of inputs.
    ensemble = True if args.ensemble == "auto" else args.ensemble  # True: the largest valid ensemble
    failed = 0
    for src, dst in zip(inputs, outputs):
        try:
            result = restore_video(
                src, dst, args.model, device=device, resume=args.resume, overwrite=args.overwrite, quiet=args.quiet,
                padding=args.padding, tile=args.tile, tile_overlap=args.tile_overlap, half=args.half, codec=args.codec,
                crf=args.crf, pix_fmt=args.pix_fmt, segment_frames=args.segment_frames, ensemble=ensemble,
                stage2=args.stage2, dcn_backend=args.dcn_backend, batch=args.batch,
            )
        except EdvrError as e:
            if len(inputs) == 1 or isinstance(e, CheckpointError):
                raise
            print(f"edvr restore: error: {e}")
            failed += 1
            continue
        resumed = f", {result.resumed_frames} from an earlier run" if result.resumed_frames else ""
        if not args.quiet:
            print(f"{src} -> {dst}: {result.frames} frames in {result.seconds:.1f} s{resumed}")
    return 1 if failed else 0
