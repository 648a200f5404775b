"""``edvr eval`` (score a model on a named protocol) and ``edvr compare`` (per-clip deltas of two results).

The model zoo, the datasets and the evaluation code are imported inside :func:`run`, when the command runs.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from edvr.errors import InputError, OutputError
from edvr.files import write_atomic


def add_arguments(parser: argparse.ArgumentParser, name: str) -> None:
    if name == "compare":
        parser.add_argument("a", metavar="A.json", help="result written by edvr eval --json (the reference)")
        parser.add_argument("b", metavar="B.json", help="result to compare with A (deltas are B - A)")
        parser.add_argument("--method-a", help="method of A to compare (default: its model)")
        parser.add_argument("--method-b", help="method of B to compare (default: its model)")
        return
    from edvr.evaluation.protocols import PROTOCOLS

    parser.add_argument("--model", "-m", required=True, help="model name (edvr models) or checkpoint file")
    parser.add_argument("--protocol", "-p", required=True,
                        help=f"one of {', '.join(PROTOCOLS)} (vimeo90k-t:fast|medium|slow for a motion subset)")
    parser.add_argument("--root", required=True, help="dataset root, e.g. datasets/REDS, datasets/Vid4")
    parser.add_argument("--ensemble", nargs="?", const="auto", choices=("auto", "flip4", "x8", "x8t"),
                        help="self-ensemble: x8 flips/transposes, x8t adds the time reversal (auto: x8t where the "
                             "window is symmetric), flip4 is the original repo's flip test")
    parser.add_argument("--stage2", metavar="MODEL", help="stage-2 model (HR input) restoring the stage-1 outputs")
    parser.add_argument("--json", metavar="FILE", help="write the full result (per-frame scores) as JSON")
    parser.add_argument("--report", metavar="DIR", help="write report.md, psnr.png and crops_<clip>.png")
    parser.add_argument("--save-images", metavar="DIR", help="write the model's outputs as DIR/<clip>/<frame>.png")
    parser.add_argument("--max-frames", type=int, metavar="N",
                        help="score only the first N frames of each clip (a partial, quick check)")
    parser.add_argument("--clips", help="comma-separated clips of the protocol (fewer than all: a partial result)")
    parser.add_argument("--baselines", default="bicubic,single-frame",
                        help="comma-separated baselines to score alongside: bicubic, single-frame, or none (default "
                        "%(default)s)")
    parser.add_argument("--no-ssim", action="store_true", help="skip SSIM (about 10x the cost of PSNR on a CPU)")
    parser.add_argument("--device", default="auto", help="auto (cuda > mps > cpu), cpu, cuda, cuda:1, mps")


def run(args: argparse.Namespace) -> int:
    if args.command == "compare":
        return _compare(args)
    return _eval(args)


def _compare(args: argparse.Namespace) -> int:
    from edvr.evaluation.evaluate import Result
    from edvr.evaluation.report import compare

    print(compare(Result.load(args.a), Result.load(args.b), method_a=args.method_a, method_b=args.method_b))
    return 0


def _eval(args: argparse.Namespace) -> int:
    from edvr.evaluation.evaluate import BASELINES, evaluate
    from edvr.evaluation.protocols import get_protocol
    from edvr.evaluation.report import write_report
    from edvr.models.zoo import load_model
    from edvr.runtime import pick_device

    protocol = get_protocol(args.protocol)  # fail on a bad name before loading weights
    if args.max_frames is not None and args.max_frames < 1:
        raise InputError(f"--max-frames {args.max_frames}: must be at least 1")
    baselines = tuple(b.strip() for b in args.baselines.split(",") if b.strip() and b.strip() != "none")
    for b in baselines:
        if b not in BASELINES:
            raise InputError(f"--baselines {b}: unknown; choose from {', '.join(BASELINES)} or none")
    for flag, path, kind in (("--json", args.json, "file"), ("--report", args.report, "folder")):
        if path and not Path(path).expanduser().resolve().parent.is_dir():
            raise OutputError(f"{path}: its folder does not exist; create it or pick another {flag} path")
        if path and Path(path).expanduser().exists() and Path(path).expanduser().is_dir() != (kind == "folder"):
            raise OutputError(f"{path}: is a {'folder' if kind == 'file' else 'file'}; {flag} names a {kind}")
    device = pick_device(args.device)
    model = load_model(args.model, device=device)
    stage2 = load_model(args.stage2, device=device) if args.stage2 else None
    ensemble = True if args.ensemble == "auto" else args.ensemble
    try:
        from edvr.evaluation.ensemble import resolve_mode

        resolve_mode(model, ensemble)
    except ValueError as e:
        raise InputError(f"--ensemble {args.ensemble}: {e}") from None

    picks: dict[str, object] = {}

    def on_frame(f) -> None:
        # One frame per clip for the crops: the middle scored one, away from the padded clip ends; at most 8 clips
        # (Vimeo90K-T has thousands).
        if f.position == f.count // 2 and len(picks) < 8:
            picks[f.clip] = f

    result = evaluate(
        model, protocol, args.root, device=device, ensemble=ensemble, stage2=stage2, max_frames=args.max_frames,
        save_dir=args.save_images, baselines=baselines, compute_ssim=not args.no_ssim,
        clips=[c.strip() for c in args.clips.split(",")] if args.clips else None,
        on_frame=on_frame if args.report else None, progress=sys.stderr.isatty(), model_name=str(args.model),
    )
    print(result.table())
    if args.json:
        write_atomic(args.json, result.to_json())
        print(f"wrote {args.json}")
    if args.report:
        paths = write_report(result, args.report, list(picks.values()))
        print(f"wrote {paths[0]}")
    return 0

