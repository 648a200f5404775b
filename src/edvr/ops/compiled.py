"""Small loops that ``torch.compile`` (inductor) turns into C++, for CPU inference: the deformable conv's bilinear
sampling (:mod:`edvr.ops.deform_conv`, backend ``compiled``) and, on the same runs, the transforms of the Winograd
convs (:mod:`edvr.ops.winograd`) and two passes of the x4 tail (:mod:`edvr.models.blocks`). Each is written as
plain tensor ops, which run eagerly would materialise every intermediate; compiled, they become one loop each.

Every function gets one compiled copy per input shape (static shapes: with symbolic sizes the C++ compiler
optimised the index arithmetic less, 30-33 ms against 19.5 ms per 180x320 sampling call), each from a fresh copy of
the function's code, because PyTorch stops recompiling one function after 8 variants and would then run it eagerly.
Past :data:`MAX_VARIANTS` in one process, :func:`run` declines and callers take their eager path. Compilation
needs a working C++ compiler at run time: if it fails, the failure is recorded (:func:`error`), one warning says so,
and every later :func:`run` declines at once.
"""

from __future__ import annotations

import types
import warnings
from collections.abc import Callable

import torch

MAX_VARIANTS = 96  # EDVR-M at one input size needs ~20

_state: dict = {"fns": {}, "error": None}


def error() -> str | None:
    """Why compiling failed in this process (None: it has not failed)."""
    return _state["error"]


def variants(fn: Callable | None = None) -> int:
    """How many compiled copies exist (of ``fn`` only, if given)."""
    return sum(fn is None or key[0] == fn.__name__ for key in _state["fns"])


def eligible(*tensors: torch.Tensor | None) -> bool:
    """Plain CPU inference in float32/float64, where our compiled loops may replace eager ops: no autograd records
    the tensors, no tracer, exporter, torch.compile or autocast is active, and compiling has not failed."""
    present = [t for t in tensors if t is not None]
    if _state["error"] is not None or not present or _cpu_autocast():
        return False
    dtype = present[0].dtype
    if dtype not in (torch.float32, torch.float64) or any(t.dtype != dtype or t.device.type != "cpu" for t in present):
        return False
    return plain_inference(*present)


def plain_inference(*tensors: torch.Tensor | None) -> bool:
    """No autograd records these tensors, and no tracer, exporter or torch.compile is looking: free to write results
    in place or to run our own compiled code."""
    if torch.is_grad_enabled() and any(t is not None and t.requires_grad for t in tensors):
        return False
    return not (torch.jit.is_tracing() or torch.onnx.is_in_onnx_export() or _compiling())


def run(fn: Callable[..., torch.Tensor], *args: torch.Tensor) -> torch.Tensor | None:
    """``fn(*args)`` through its compiled copy for these arguments' shapes and strides, compiled at the first call;
    None where it declines (too many variants, or the compiler failed: then warned once), for the caller's eager
    path. Call it only where :func:`eligible` holds."""
    key = (fn.__name__, torch.is_inference_mode_enabled(), *((tuple(a.shape), a.stride(), a.dtype) for a in args))
    compiled = _state["fns"].get(key)
    if compiled is not None:
        return compiled(*args)
    if _state["error"] is not None or len(_state["fns"]) >= MAX_VARIANTS:
        return None
    try:
        with warnings.catch_warnings():  # PyTorch's compiler uses its own deprecated APIs
            warnings.filterwarnings("ignore", category=DeprecationWarning, module=r"torch\.")
            compiled = _compile(fn)
            out = compiled(*args)
    except Exception as e:  # noqa: BLE001 - whatever the compiler's failure, every caller has an eager path
        lines = str(e).strip().splitlines()
        _state["error"] = f"{type(e).__name__}: {lines[0] if lines else ''}"[:300]
        warnings.warn(
            f"compiled CPU kernels cannot run here ({_state['error']}); using PyTorch's own ops instead (same "
            "results, slower)", RuntimeWarning, stacklevel=3,
        )
        return None
    _state["fns"][key] = compiled
    return out


def _compile(fn: Callable[..., torch.Tensor]) -> Callable[..., torch.Tensor]:
    """A compiled copy of ``fn`` from a fresh copy of its code (so that it counts as a new function for PyTorch's
    recompilation limit). Our loops index only inside their tensors by construction, so no bounds check per read."""
    code = fn.__code__.replace()
    copy = types.FunctionType(code, fn.__globals__, fn.__name__, fn.__defaults__, fn.__closure__)
    return torch.compile(copy, dynamic=False, options={"assert_indirect_indexing": False})


def _cpu_autocast() -> bool:
    try:
        return torch.is_autocast_enabled("cpu")
    except TypeError:  # torch < 2.4
        return torch.is_autocast_cpu_enabled()


def _compiling() -> bool:
    compiler = getattr(torch, "compiler", None)
    return bool(compiler is not None and hasattr(compiler, "is_compiling") and compiler.is_compiling())
