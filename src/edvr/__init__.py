"""edvr: EDVR video restoration (Wang et al., CVPRW 2019) in plain PyTorch.

Public API: :func:`load_model`, :func:`list_models`, :func:`restore_video`, :class:`EDVR`, ``__version__``.
Submodules are imported on first use, so ``import edvr`` stays light.
"""

from __future__ import annotations

__version__ = "0.1.0"

__all__ = ["EDVR", "__version__", "list_models", "load_model", "restore_video", "restore_frames"]

_LAZY = {
    "EDVR": ("edvr.models.edvr", "EDVR"),
    "load_model": ("edvr.models.zoo", "load_model"),
    "list_models": ("edvr.models.zoo", "list_models"),
    "restore_video": ("edvr.inference.restore", "restore_video"),
    "restore_frames": ("edvr.inference.restore", "restore_frames"),
}


def __getattr__(name: str):
    if name in _LAZY:
        import importlib

        module, attr = _LAZY[name]
        return getattr(importlib.import_module(module), attr)
    raise AttributeError(f"module 'edvr' has no attribute {name!r}")
