"""Put the trained default model into the package (``src/edvr/weights/``), in float16 only if that loses nothing.

    python configs/default_model/export.py runs/edvr_s_real_x4/edvr_s_real_x4.safetensors [--max-frames N]

Scores the float32 weights and their float16 copy (weights rounded to fp16, run in fp32) on the held-out real clips
(``heldout.py``); ships fp16 when the mean Y-PSNR differs by less than 0.005 dB and no clip by more than 0.01 dB,
else fp32. Prints both scores and the sha256 of the shipped file (for the zoo record).
"""

from __future__ import annotations

import argparse
import hashlib
import json
import sys
from pathlib import Path

import torch

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

from heldout import score  # noqa: E402

SHIPPED = HERE.parent.parent / "src" / "edvr" / "weights" / "edvr_s_real_x4.safetensors"


def main(argv: list[str] | None = None) -> int:
    from edvr.models.convert import read_checkpoint, save_checkpoint
    from edvr.models.edvr import EDVR

    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("weights", type=Path)
    parser.add_argument("--root", default="datasets/edvr_real/heldout")
    parser.add_argument("--max-frames", type=int)
    parser.add_argument("--json", type=Path, default=Path("runs/edvr_s_real_x4/export.json"))
    args = parser.parse_args(argv)
    torch.set_grad_enabled(False)

    loaded = read_checkpoint(args.weights)
    sd32 = {k: v.float() for k, v in loaded.state_dict.items()}
    sd16 = {k: v.half() for k, v in sd32.items()}
    results = {}
    for name, sd in (("fp32", sd32), ("fp16", sd16)):
        model = EDVR(**loaded.config.to_dict())
        model.load_state_dict({k: v.float() for k, v in sd.items()})
        model.eval()
        results[name] = score(model, args.root, name=f"edvr_s_real_x4 ({name} weights)", max_frames=args.max_frames)
    e32, e16 = results["fp32"]["methods"]["edvr"], results["fp16"]["methods"]["edvr"]
    worst = max(abs(e32["clips"][c][0] - e16["clips"][c][0]) for c in e32["clips"])
    use16 = abs(e32["psnr"] - e16["psnr"]) < 0.005 and worst < 0.01
    print(f"fp32 {e32['psnr']:.4f} dB / {e32['ssim']:.5f}; fp16 {e16['psnr']:.4f} dB / {e16['ssim']:.5f}; "
          f"largest per-clip difference {worst:.4f} dB -> shipping {'fp16' if use16 else 'fp32'}")
    meta = {k: v for k, v in loaded.metadata.items() if k not in ("config", "format", "edvr_version")} \
        if getattr(loaded, "metadata", None) else {}
    meta.update({"name": "edvr-s-real-x4", "data": "configs/default_model/build_data.py (real footage, BI x4)",
                 "recipe": "configs/default_model/edvr_s_real_x4.yaml", "license": "Apache-2.0"})
    SHIPPED.parent.mkdir(parents=True, exist_ok=True)
    save_checkpoint(sd16 if use16 else sd32, loaded.config, SHIPPED, metadata=meta,
                    dtype=torch.float16 if use16 else None)
    digest = hashlib.sha256(SHIPPED.read_bytes()).hexdigest()
    results.update(shipped=str(SHIPPED), dtype="fp16" if use16 else "fp32", sha256=digest,
                   bytes=SHIPPED.stat().st_size)
    args.json.parent.mkdir(parents=True, exist_ok=True)
    args.json.write_text(json.dumps(results, indent=1))
    print(f"wrote {SHIPPED} ({SHIPPED.stat().st_size / 1e6:.2f} MB, sha256 {digest})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
