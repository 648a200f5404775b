"""Datasets for training and evaluating EDVR, and the one registry that maps their names (configs, CLI) to classes.

Every dataset yields ``{"lq": (T, 3, h, w), "gt": (3, H, W), "key": "clip/frame"}``, float32 RGB in [0, 1]; ``gt`` is
the ground truth of the centre frame (``H = h`` for the HR-input deblurring tracks). Training datasets have
``set_epoch(epoch)``: their randomness is a function of ``(seed, epoch, index)`` only.

The model never imports this package (imports flow ``models <- data``).
"""

from __future__ import annotations

from torch.utils.data import Dataset

from edvr.data.reds import REDSDataset
from edvr.data.vid4 import Vid4Dataset
from edvr.data.videos import VideoFolderDataset
from edvr.data.vimeo90k import Vimeo90KDataset
from edvr.errors import InputError

__all__ = ["DATASETS", "REDSDataset", "Vid4Dataset", "VideoFolderDataset", "Vimeo90KDataset", "build_dataset"]

DATASETS: dict[str, type[Dataset]] = {
    "reds": REDSDataset,
    "vimeo90k": Vimeo90KDataset,
    "vid4": Vid4Dataset,
    "videos": VideoFolderDataset,
}


def build_dataset(name: str, **kwargs) -> Dataset:
    """Construct the dataset registered as ``name`` with keyword arguments (``root=...`` included)."""
    try:
        cls = DATASETS[name]
    except KeyError:
        raise InputError(f"unknown dataset {name!r}; known datasets: {', '.join(DATASETS)}") from None
    return cls(**kwargs)
