"""``edvr train``: train EDVR from a YAML recipe, with dotted overrides; also runs under torchrun.

    edvr train configs/tiny_cpu.yaml data.train.root=clips/ train.iterations=200
    edvr train configs/edvr_m_x4_sr_reds.yaml --resume auto
    torchrun --nproc-per-node 8 -m edvr train configs/edvr_m_x4_sr_reds.yaml

``python -m edvr.training.command ...`` is the same command without the CLI wrapper (handy under torchrun).
"""

from __future__ import annotations

import argparse
import sys


def add_arguments(parser: argparse.ArgumentParser, name: str = "train") -> None:
    parser.add_argument("config", help="recipe YAML (see configs/)")
    parser.add_argument("overrides", nargs="*", metavar="KEY=VALUE",
                        help="dotted overrides, typed by the schema: train.lr=2e-4 data.train.root=/data/REDS")
    parser.add_argument("--resume", metavar="auto|PATH",
                        help="continue a run: 'auto' takes the run's latest checkpoint (if any), or give a file")
    parser.add_argument("--print-config", action="store_true", help="print the resolved config and exit")


def run(args: argparse.Namespace) -> int:
    from edvr.config import load_config

    cfg = load_config(args.config, args.overrides)
    if args.print_config:
        print(cfg.to_yaml(), end="")
        return 0
    from edvr.errors import InputError
    from edvr.training.loop import train

    try:
        train(cfg, resume=args.resume)
    except NotImplementedError as e:  # an op that PyTorch's Apple MPS backend lacks (grid_sample's backward, ...)
        if "MPS" not in str(e):
            raise
        what = str(e).split(". ")[0].strip()  # "The operator 'aten::...' is not currently implemented for the MPS ..."
        raise InputError(f"train.device={cfg.train.device}: {what}; set PYTORCH_ENABLE_MPS_FALLBACK=1 (such ops then "
                         "run on the CPU, slower) or train on cuda or cpu") from None
    return 0


def main(argv: list[str] | None = None) -> int:
    """``python -m edvr.training.command ...``: the same as ``edvr train ...``."""
    from edvr.cli import main as cli_main

    return cli_main(["train", *(sys.argv[1:] if argv is None else argv)])


if __name__ == "__main__":
    sys.exit(main())
