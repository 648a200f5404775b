"""The ``edvr`` command line: thin subcommands that parse arguments and call the library.

Each subcommand lives in a module with ``add_arguments(parser, name)`` and ``run(args) -> int``. Those modules keep
heavy imports (video, training, datasets) inside ``run``, so that ``edvr models`` never imports the training stack.
"""

from __future__ import annotations

import argparse
import importlib
import sys

from edvr import __version__
from edvr.errors import EdvrError

# name -> (module, one-line help). The one registry of commands.
COMMANDS: dict[str, tuple[str, str]] = {
    "demo": ("edvr.demo", "restore a real sample clip with the shipped model and compare with bicubic"),
    "restore": ("edvr.inference.command", "restore videos or frame folders with an EDVR model"),
    "eval": ("edvr.evaluation.command", "score a model on a named protocol (REDS4, Vid4, Vimeo90K-T)"),
    "compare": ("edvr.evaluation.command", "per-clip PSNR/SSIM deltas of two edvr eval results"),
    "train": ("edvr.training.command", "train EDVR from a YAML recipe (torchrun for several GPUs)"),
    "prepare": ("edvr.data.prepare", "make LQ/GT dataset folders (REDS, Vimeo90K, Vid4 layouts) from videos or frames"),
    "export": ("edvr.export", "export a model to ONNX with pure-PyTorch deformable convs"),
    "models": ("edvr.models.commands", "list the named models (presets and shipped weights)"),
    "convert": ("edvr.models.commands", "convert any EDVR checkpoint to edvr's safetensors format"),
    "info": ("edvr.models.commands", "show the format and architecture inferred from a checkpoint"),
}


def _positive_int(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r}: not an integer") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"{value}: give 1 or more")
    return value


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="edvr", description="EDVR video restoration")
    parser.add_argument("--version", action="version", version=f"edvr {__version__}")
    parser.add_argument("--threads", type=_positive_int, metavar="N",
                        help="CPU threads for PyTorch (default: all cores; 1 is faster for small frames or a busy machine)")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    for name, (module_name, help_text) in COMMANDS.items():
        p = sub.add_parser(name, help=help_text, description=help_text)
        p.set_defaults(_module=module_name)
        _module(module_name).add_arguments(p, name)
    return parser


def _module(module_name: str):
    return importlib.import_module(module_name)


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args, extra = parser.parse_known_args(argv)
    overrides = getattr(args, "overrides", None)
    if extra and overrides is not None and all("=" in e and not e.startswith("-") for e in extra):
        args.overrides += extra  # `edvr train CONFIG --resume auto KEY=VALUE`: overrides after an option
    elif extra:
        parser.error(f"unrecognized arguments: {' '.join(extra)}")
    if not args.command:
        parser.print_help()
        return 1
    if args.threads:
        import torch

        torch.set_num_threads(args.threads)
    from edvr.runtime import keep_freed_memory

    keep_freed_memory()
    if hasattr(sys.stdout, "reconfigure"):  # a path the console's code page cannot show (Windows, piped): escaped,
        sys.stdout.reconfigure(errors="backslashreplace")  # not a UnicodeEncodeError after the work is done
    try:
        return int(_module(args._module).run(args) or 0)
    except EdvrError as e:
        print(f"edvr {args.command}: error: {e}", file=sys.stderr)
        return e.exit_code
    except KeyboardInterrupt:
        print(f"edvr {args.command}: interrupted", file=sys.stderr)
        return 130
    except BrokenPipeError:  # the reader of our output went away (`edvr models | head`)
        return 1
    except OSError as e:  # one the command did not foresee: a read-only or full disk, a path through a file
        if e.filename is None:
            raise
        print(f"edvr {args.command}: error: {e.filename}: {e.strerror or e}; check the path, its permissions and free "
              "space", file=sys.stderr)
        return 1
