"""``edvr models``, ``edvr convert``, ``edvr info``."""

from __future__ import annotations

import argparse
from pathlib import Path

from edvr.errors import OutputError


PARAM_KEY_HELP = "entry of a checkpoint file to take (default: params_ema, else params, else the weights found)"


def add_arguments(p: argparse.ArgumentParser, name: str) -> None:
    if name == "convert":
        p.add_argument("input", help="checkpoint: BasicSR, original EDVR repo, mmagic, bare state dict or edvr")
        p.add_argument("output", help="where to write edvr's safetensors file")
        p.add_argument("--param-key", help=PARAM_KEY_HELP)
        p.add_argument("--half", action="store_true", help="store float16 weights (half the size)")
        p.add_argument("--overwrite", action="store_true", help="replace an existing output file")
    elif name == "info":
        p.add_argument("input", help="checkpoint file or model name")
        p.add_argument("--param-key", help=PARAM_KEY_HELP)


def run(args: argparse.Namespace) -> int:
    if args.command == "models":
        return _models()
    if args.command == "convert":
        return _convert(args)
    return _info(args)


def _models() -> int:
    from edvr.errors import CheckpointError
    from edvr.models.zoo import DEFAULT_MODEL, find_weights, list_models, weights_dirs

    rows = [("name", "task", "scale", "frames", "params", "weights", "expects (any of)")]
    for r in list_models():
        try:
            find_weights(r)
            where = "found"
        except CheckpointError:
            where = "missing"
        default = " (default)" if r.name == DEFAULT_MODEL else ""
        rows.append((r.name + default, r.task, f"x{r.scale}", str(r.config.num_frames), f"{r.num_params() / 1e6:.2f}M",
                     where, ", ".join(r.files) or (r.shipped or "(none published)")))
    widths = [max(len(row[i]) for row in rows) for i in range(len(rows[0]) - 1)]
    for row in rows:
        print("  ".join(c.ljust(w) for c, w in zip(row, widths)) + "  " + row[-1])
    print(f"official weights are looked for in {' and '.join(map(str, weights_dirs()))}")
    return 0


def _convert(args: argparse.Namespace) -> int:
    import torch

    from edvr.models.convert import check_keys, read_checkpoint, save_checkpoint
    from edvr.models.edvr import EDVR

    src, dst = Path(args.input), Path(args.output)
    if dst.exists() and not args.overwrite:
        raise OutputError(f"{dst}: already exists; pass --overwrite to replace it")
    if dst.exists() and src.exists() and dst.resolve() == src.resolve():
        raise OutputError(f"{dst}: the output would overwrite the input; choose another name")
    loaded = read_checkpoint(src, param_key=args.param_key)
    with torch.device("meta"):
        check_keys(EDVR(**loaded.config.to_dict()).state_dict(), loaded.state_dict)
    save_checkpoint(loaded.state_dict, loaded.config, dst, metadata={"converted_from": f"{src.name} ({loaded.format})"},
                    dtype=torch.float16 if args.half else None)
    print(f"{src} ({loaded.format}{', ' + loaded.source_key if loaded.source_key else ''}) -> {dst}")
    return 0


def _info(args: argparse.Namespace) -> int:
    from edvr.models.convert import read_checkpoint
    from edvr.models.zoo import MODELS, find_weights

    path = find_weights(MODELS[args.input]) if args.input in MODELS else Path(args.input)
    loaded = read_checkpoint(path, param_key=args.param_key)
    n = sum(v.numel() for v in loaded.state_dict.values())
    print(f"file: {path}")
    print(f"format: {loaded.format}" + (f" (entry {loaded.source_key})" if loaded.source_key else ""))
    print(f"parameters: {n:,}")
    for k, v in loaded.config.to_dict().items():
        print(f"  {k}: {v}")
    return 0
