"""Process-wide runtime settings that the ``edvr`` commands apply before they start work.

``keep_freed_memory``: EDVR at video sizes allocates the same large tensors over and over (every window of a 720p
restore makes three 236 MB maps for the x4 tail, 33 MB offsets per deformable conv, ...). glibc's malloc serves
any block above 32 MB with a fresh ``mmap`` and returns it to the system on free, so each such tensor is
page-faulted in again (the kernel zeroes every 4 KB page), which on the development machine made a 236 MB copy
take 206 ms instead of 26 ms. With glibc told to serve those blocks from its heap and to keep freed memory, the
second and later windows reuse pages that are already mapped: EDVR-M at 180x320 restored 12-14 % faster there
(benchmarks/README.md). The price is that the process keeps its peak memory until it exits, which a restore or
training run does anyway. It is what tcmalloc or jemalloc preloads do, with nothing to install.
"""

from __future__ import annotations

import ctypes
import os
import sys
from typing import TYPE_CHECKING

from edvr.errors import InputError

if TYPE_CHECKING:
    import torch

ENV_VAR = "EDVR_MALLOC"  # "system" leaves the C allocator as it is

_M_TRIM_THRESHOLD = -1  # glibc's mallopt parameter numbers (malloc.h)
_M_MMAP_THRESHOLD = -3


def keep_freed_memory() -> bool:
    """Ask glibc's malloc to serve large blocks from its heap and keep freed memory; True if it took effect.

    Does nothing (returns False) off Linux, with a C library that is not glibc, or with ``EDVR_MALLOC=system``.
    """
    if sys.platform != "linux" or os.environ.get(ENV_VAR, "").lower() == "system":
        return False
    try:
        mallopt = ctypes.CDLL("libc.so.6").mallopt
    except (OSError, AttributeError):  # musl and other C libraries
        return False
    mallopt.argtypes = [ctypes.c_int, ctypes.c_int]
    # Blocks up to 1 GiB from the heap (not mmap), and freed memory never trimmed back to the system.
    return bool(mallopt(_M_MMAP_THRESHOLD, 1 << 30)) and bool(mallopt(_M_TRIM_THRESHOLD, 2**31 - 1))


def pick_device(name: str | torch.device | None = "auto") -> torch.device:
    """``auto``: CUDA, then Apple MPS, then CPU. An explicit device that is missing is an error with the reason."""
    import torch  # on first use: importing this module stays light

    name = "auto" if name is None else str(name)
    if name == "auto":
        if torch.cuda.is_available():
            return torch.device("cuda")
        if getattr(torch.backends, "mps", None) is not None and torch.backends.mps.is_available():
            return torch.device("mps")
        return torch.device("cpu")
    try:
        device = torch.device(name)
    except (RuntimeError, ValueError):
        raise InputError(f"--device {name}: not a device; use auto, cpu, cuda, cuda:N or mps") from None
    if device.type not in ("cpu", "cuda", "mps"):
        raise InputError(f"--device {name}: edvr runs on cpu, cuda, cuda:N or mps")
    if device.type == "cuda" and not torch.cuda.is_available():
        raise InputError(f"--device {name}: this PyTorch sees no CUDA GPU (torch {torch.__version__}); use --device cpu")
    if device.type == "cuda" and device.index is not None and device.index >= torch.cuda.device_count():
        raise InputError(f"--device {name}: there are {torch.cuda.device_count()} CUDA GPUs, numbered from 0")
    if device.type == "mps" and not torch.backends.mps.is_available():
        raise InputError(f"--device {name}: Apple MPS is not available here; use --device cpu")
    return device
