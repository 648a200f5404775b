"""Modulated deformable convolution (DCNv2, Zhu et al. 2019) with explicit, swappable backends.

Convention (the one torchvision and the official EDVR weights use):
- ``offset``: ``(N, 2*G*K, Ho, Wo)``; channel ``g*2K + 2k`` is the row shift dy, ``g*2K + 2k + 1`` the column
  shift dx, for deformable group ``g`` and kernel tap ``k = i*kw + j``.
- ``mask``: ``(N, G*K, Ho, Wo)``, channel ``g*K + k``, already passed through a sigmoid by the caller.
- The input channels split into ``G`` contiguous blocks, one per deformable group.
- Output ``(y, x)``, tap ``(i, j)`` samples the input at ``(y*s - p + i*d + dy, x*s - p + j*d + dx)`` bilinearly;
  each of the four corners that falls outside the image counts as 0.

Backends:
- ``"torch"``: pure PyTorch (``grid_sample`` + one matrix product), runs on every device PyTorch runs on, has
  autograd, exports to ONNX. Processed in chunks of output rows so that the sampled columns stay small.
- ``"torchvision"``: ``torchvision.ops.deform_conv2d`` (compiled kernels; needs torchvision).
- ``"auto"``: the faster one available for the device: the torch backend on CPU and MPS (torchvision's CPU kernel
  is a serial scalar loop, measured ~6x slower), torchvision's CUDA kernel on CUDA when installed.

A backend is chosen by argument, by the ``use_backend`` context, or by the ``EDVR_DCN_BACKEND`` environment
variable, in that order. Asking for one that is missing fails at once, with the fix in the message.
"""

from __future__ import annotations

import contextlib
import importlib.util
import os
from collections.abc import Callable, Iterator

import torch
import torch.nn.functional as F

BACKENDS = ("auto", "torch", "torchvision")
ENV_VAR = "EDVR_DCN_BACKEND"

# Bytes of sampled columns processed at once by the torch backend: small enough to stay in the last-level cache
# of a laptop CPU, large enough that the matrix product stays efficient (measured, see perf-notes).
CHUNK_BYTES = 24 * 2**20

_context_backend: str | None = None

DeformConvFn = Callable[..., torch.Tensor]


class BackendUnavailableError(RuntimeError):
    """The requested deformable-convolution backend cannot run here."""


def torchvision_available() -> bool:
    if importlib.util.find_spec("torchvision") is None:
        return False
    try:
        import torchvision.ops  # noqa: F401
    except Exception:  # a torchvision built for another torch fails at import with various errors
        return False
    return True


@contextlib.contextmanager
def use_backend(name: str) -> Iterator[None]:
    """Models built inside this context use backend ``name`` (unless given one explicitly)."""
    global _context_backend
    _check_name(name)
    previous, _context_backend = _context_backend, name
    try:
        yield
    finally:
        _context_backend = previous


def requested_backend(name: str | None = None) -> str:
    """The backend name in force: the argument, else the ``use_backend`` context, else the env var, else auto."""
    chosen = name or _context_backend or os.environ.get(ENV_VAR) or "auto"
    _check_name(chosen)
    return chosen


def _check_name(name: str) -> None:
    if name not in BACKENDS:
        raise ValueError(f"unknown deformable-conv backend {name!r}: choose one of {', '.join(BACKENDS)}")


def resolve_backend(name: str, device: torch.device | str) -> str:
    """Turn a requested name (maybe ``auto``) into a concrete backend for ``device``; fail loudly if missing."""
    _check_name(name)
    device = torch.device(device)
    if name == "auto":
        return "torchvision" if device.type == "cuda" and torchvision_available() else "torch"
    if name == "torchvision" and not torchvision_available():
        raise BackendUnavailableError(
            "deformable-conv backend 'torchvision' needs a working torchvision matching your torch "
            f"({torch.__version__}): install it (pip install torchvision) or use backend 'torch' "
            f"(argument dcn_backend='torch' or {ENV_VAR}=torch)"
        )
    return name


def get_backend(name: str) -> DeformConvFn:
    """The function of a concrete backend ('torch' or 'torchvision')."""
    if name == "torch":
        return deform_conv2d_torch
    if name == "torchvision":
        if not torchvision_available():
            resolve_backend("torchvision", "cpu")  # raises with the fix
        return _deform_conv2d_torchvision
    raise ValueError(f"not a concrete backend: {name!r}")


def modulated_deform_conv2d(
    x: torch.Tensor,
    offset: torch.Tensor,
    mask: torch.Tensor,
    weight: torch.Tensor,
    bias: torch.Tensor | None = None,
    *,
    stride: int = 1,
    padding: int = 1,
    dilation: int = 1,
    backend: str | None = None,
) -> torch.Tensor:
    """Modulated deformable conv with the backend requested (see module docstring), resolved for ``x.device``."""
    fn = get_backend(resolve_backend(requested_backend(backend), x.device))
    return fn(x, offset, mask, weight, bias, stride=stride, padding=padding, dilation=dilation)


def _deform_conv2d_torchvision(
    x: torch.Tensor,
    offset: torch.Tensor,
    mask: torch.Tensor,
    weight: torch.Tensor,
    bias: torch.Tensor | None = None,
    *,
    stride: int = 1,
    padding: int = 1,
    dilation: int = 1,
) -> torch.Tensor:
    from torchvision.ops import deform_conv2d

    return deform_conv2d(
        x, offset, weight, bias, stride=(stride, stride), padding=(padding, padding),
        dilation=(dilation, dilation), mask=mask,
    )


def deform_conv2d_torch(
    x: torch.Tensor,
    offset: torch.Tensor,
    mask: torch.Tensor,
    weight: torch.Tensor,
    bias: torch.Tensor | None = None,
    *,
    stride: int = 1,
    padding: int = 1,
    dilation: int = 1,
    chunk_bytes: int = CHUNK_BYTES,
) -> torch.Tensor:
    """Pure-PyTorch modulated deformable conv: bilinear sampling by ``grid_sample``, then one matrix product.

    Shapes: x ``(N, Cin, H, W)``, offset ``(N, 2*G*K, Ho, Wo)``, mask ``(N, G*K, Ho, Wo)``,
    weight ``(Cout, Cin // groups, kh, kw)``; returns ``(N, Cout, Ho, Wo)``.
    """
    n, c_in, h, w = x.shape
    c_out, c_per_group, kh, kw = weight.shape
    taps = kh * kw
    groups = c_in // c_per_group
    ho, wo = offset.shape[-2:]
    dg = offset.shape[1] // (2 * taps)
    if offset.shape[1] != 2 * dg * taps or mask.shape[1] != dg * taps or c_in % dg:
        raise ValueError(
            f"deform conv: offset {tuple(offset.shape)} / mask {tuple(mask.shape)} do not fit "
            f"input {tuple(x.shape)} and a {kh}x{kw} kernel"
        )
    if c_out % groups:
        raise ValueError(f"deform conv: {c_out} output channels do not split into {groups} groups")

    # Base sampling position of every tap at every output pixel, in input pixel units.
    dt = x.dtype if x.dtype in (torch.float32, torch.float64) else torch.float32
    ys = torch.arange(ho, device=x.device, dtype=dt) * stride - padding
    xs = torch.arange(wo, device=x.device, dtype=dt) * stride - padding
    ki = torch.arange(kh, device=x.device, dtype=dt).repeat_interleave(kw) * dilation  # (K,) row of tap k
    kj = torch.arange(kw, device=x.device, dtype=dt).repeat(kh) * dilation  # (K,) column of tap k
    base_y = ki.view(1, taps, 1, 1) + ys.view(1, 1, ho, 1)  # (1, K, Ho, 1)
    base_x = kj.view(1, taps, 1, 1) + xs.view(1, 1, 1, wo)  # (1, K, 1, Wo)

    # (N, 2*G*K, Ho, Wo) -> (N*G, K, Ho, Wo) for dy and dx; mask -> (N*G, 1, K, Ho, Wo) broadcast over channels.
    off = offset.reshape(n * dg, taps, 2, ho, wo)
    msk = mask.reshape(n * dg, 1, taps, ho, wo)
    xg = x.reshape(n * dg, c_in // dg, h, w)
    w_mat = weight.reshape(groups, c_out // groups, c_per_group * taps)

    # Rows of output per chunk so that the sampled columns (N*Cin*K*rows*Wo values) stay near chunk_bytes.
    bytes_per_row = n * c_in * taps * wo * x.element_size()
    rows = max(1, min(ho, chunk_bytes // max(bytes_per_row, 1)))
    outs = []
    for r0 in range(0, ho, rows):
        r1 = min(ho, r0 + rows)
        py = base_y[:, :, r0:r1] + off[:, :, 0, r0:r1]  # (N*G, K, r, Wo)
        px = base_x + off[:, :, 1, r0:r1]
        # grid_sample with align_corners=False maps pixel centre i to (2i + 1) / size - 1; zeros padding makes every
        # corner outside the image count 0, exactly the convention above.
        grid = torch.stack(((2 * px + 1) / w - 1, (2 * py + 1) / h - 1), dim=-1)
        grid = grid.reshape(n * dg, taps * (r1 - r0), wo, 2).to(x.dtype)
        cols = F.grid_sample(xg, grid, mode="bilinear", padding_mode="zeros", align_corners=False)
        cols = cols.view(n * dg, c_in // dg, taps, r1 - r0, wo) * msk[:, :, :, r0:r1]
        # (N, Cin*K, L) with the channel order (cin, k) that weight.reshape(Cout, Cin*K) has.
        cols = cols.reshape(n, groups, c_per_group * taps, (r1 - r0) * wo)
        out = torch.matmul(w_mat, cols)  # (N, groups, Cout/groups, L)
        outs.append(out.reshape(n, c_out, r1 - r0, wo))
    out = outs[0] if len(outs) == 1 else torch.cat(outs, dim=2)
    if bias is not None:
        out = out + bias.view(1, -1, 1, 1)
    return out
