"""How far each model's deformable convs sample: the largest mean |offset| (pixels) over its DCNs on one window.

    python configs/default_model/offsets.py WEIGHTS [WEIGHTS ...] [--root datasets/edvr_real/heldout] [--clip bikes_tail]

One window of a held-out clip (its first frames, the top-left 64x96 LQ pixels). Healthy models of this project
measure 0.3-1.2 px; a model whose alignment collapsed in training measures thousands or more: its DCNs sample far
outside the frames, where there is nothing but zeros, so that branch no longer carries information (the training
loop warns about it as it happens: README, "Evaluate and train"). A value between the two (say 5-50) is worth a
look. Works for any weights ``edvr`` reads, with any number of frames.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import torch

from edvr.models.edvr import EDVR


def largest_mean_offset(model: EDVR, window: torch.Tensor) -> float:
    """``window``: ``(1, T, 3, h, w)``; the largest mean |offset| over the model's DCNs (nan without DCNs)."""
    model.train()  # DCNs record their offsets in training mode only (the statistics, not the weights, change)
    with torch.no_grad():
        model(window)
    largest = model.largest_offset()
    return largest[1] if largest else float("nan")


def main(argv: list[str] | None = None) -> int:
    from edvr.inference.video_io import read_image
    from edvr.models.zoo import load_model

    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("weights", nargs="+")
    parser.add_argument("--root", default="datasets/edvr_real/heldout")
    parser.add_argument("--clip", default="bikes_tail")
    args = parser.parse_args(argv)
    frames = sorted((Path(args.root) / "BIx4" / args.clip).glob("*.png"))[:7]
    lq = torch.stack([torch.from_numpy(read_image(f)).permute(2, 0, 1) for f in frames])[None, ..., :64, :96]
    for path in args.weights:
        model = load_model(path, device="cpu")
        t = model.config.num_frames
        first = len(frames) // 2 - t // 2  # the window centred on the same frame, whatever T
        print(f"{largest_mean_offset(model, lq[:, first:first + t].contiguous()):10.3g} px  {path}", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
