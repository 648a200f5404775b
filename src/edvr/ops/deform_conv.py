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
    weight ``(Cout, Cin // groups, kh, kw)``; returns ``(N, Cout, Ho, Wo)`` (channels_last in memory when
    ``groups == 1``: the layout the following convs run fastest in on CPU).
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

    # In the default layout: the offset convs write channels_last, and the per-chunk passes below over strided
    # offsets and mask cost ~4x a contiguous read (measured: more than this one copy of each).
    # (Sizes from the inputs' shapes, not constants: an exported graph keeps H and W dynamic.)
    off = offset.contiguous().reshape(n, dg, taps, 2, ho, wo)  # (N, G, K, (dy, dx), Ho, Wo)
    msk = mask.contiguous().reshape(n, dg, 1, taps, ho, wo)  # (N, G, 1, K, Ho, Wo): broadcast over a group's channels
    xg = x.reshape(n * dg, c_in // dg, h, w)
    if torch.jit.is_tracing() or torch.onnx.is_in_onnx_export():
        # Export: built from the (traced) sizes in the graph, not cached, so that H and W can stay dynamic.
        base, scale = _make_base_grid(h, w, ho, wo, kh, kw, stride, padding, dilation, x.device, x.dtype, traced=True)
    else:
        base, scale = _base_grid(h, w, ho, wo, kh, kw, stride, padding, dilation, x.device, x.dtype)
    # Without autograd (and outside tracing/export, which want plain ops) results are written in place.
    no_grad = not (torch.is_grad_enabled() and any(t.requires_grad for t in (x, offset, mask, weight, bias)
                                                    if t is not None))
    no_grad = no_grad and not (torch.jit.is_tracing() or torch.onnx.is_in_onnx_export() or _compiling())

    # Rows of output per chunk so that the sampled columns (N*Cin*K*rows*Wo values) stay near chunk_bytes.
    bytes_per_row = n * c_in * taps * wo * x.element_size()
    rows = max(1, min(ho, chunk_bytes // max(bytes_per_row, 1)))
    if groups == 1:
        # Output channels_last: each chunk's (rows*Wo, Cout) product is a contiguous block of it, written in place
        # (no concatenation), with the bias fused into the product.
        w_t = weight.reshape(c_out, c_in * taps).t()
        out = None
        pieces: list[torch.Tensor] = []  # autograd / export path: (N, rows*Wo, Cout) per chunk
        for r0 in range(0, ho, rows):
            r1 = min(ho, r0 + rows)
            cols = _sample_columns(xg, off, msk, base, scale, r0, r1, no_grad)
            cols = cols.view(n, c_in * taps, (r1 - r0) * wo)  # channel order (cin, k), as weight.reshape has
            # Under autocast the columns may come out in another dtype than x: the product follows the columns.
            w_c = w_t.to(cols.dtype)
            b_c = None if bias is None else bias.to(cols.dtype)
            if not no_grad:  # plain batched ops, which autograd and exporters (any batch size) handle
                piece = torch.matmul(cols.transpose(1, 2), w_c)
                pieces.append(piece if b_c is None else piece + b_c)
                continue
            if out is None:
                out = torch.empty(n, ho, wo, c_out, device=x.device, dtype=cols.dtype)
            for i in range(n):
                target = out[i, r0:r1].view((r1 - r0) * wo, c_out)
                if b_c is None:
                    torch.mm(cols[i].t(), w_c, out=target)
                else:
                    torch.addmm(b_c, cols[i].t(), w_c, out=target)
        if out is None:
            out = (pieces[0] if len(pieces) == 1 else torch.cat(pieces, dim=1)).reshape(n, ho, wo, c_out)
        return out.permute(0, 3, 1, 2)

    w_mat = weight.reshape(groups, c_out // groups, c_per_group * taps)
    outs = []
    for r0 in range(0, ho, rows):
        r1 = min(ho, r0 + rows)
        cols = _sample_columns(xg, off, msk, base, scale, r0, r1, no_grad)
        cols = cols.view(n, groups, c_per_group * taps, (r1 - r0) * wo)
        outs.append(torch.matmul(w_mat, cols).reshape(n, c_out, r1 - r0, wo))  # (N, groups, Cout/groups, L)
    out = outs[0] if len(outs) == 1 else torch.cat(outs, dim=2)
    if bias is not None:
        out = out + bias.view(1, -1, 1, 1)
    return out


def _compiling() -> bool:
    compiler = getattr(torch, "compiler", None)
    return bool(compiler is not None and hasattr(compiler, "is_compiling") and compiler.is_compiling())


_BASE_GRIDS: dict[tuple, tuple[torch.Tensor, torch.Tensor]] = {}


def _base_grid(
    h: int, w: int, ho: int, wo: int, kh: int, kw: int, stride: int, padding: int, dilation: int,
    device: torch.device, dtype: torch.dtype,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Normalised (grid_sample, align_corners=False) position of every tap at every output pixel, ``(K, Ho, Wo, 2)``
    in (y, x) order, and the factors ``(2/h, 2/w)`` that turn pixel offsets into normalised ones. Cached per shape."""
    key = (h, w, ho, wo, kh, kw, stride, padding, dilation, device, dtype)
    hit = _BASE_GRIDS.get(key)
    if hit is not None:
        return hit
    with torch.inference_mode(False):  # a cached tensor made in inference mode could not be used with autograd
        base, scale = _make_base_grid(h, w, ho, wo, kh, kw, stride, padding, dilation, device, dtype)
    if len(_BASE_GRIDS) > 64:  # a long-running process that sees many sizes: forget the old ones
        _BASE_GRIDS.clear()
    _BASE_GRIDS[key] = (base, scale)
    return base, scale


def _make_base_grid(
    h: int, w: int, ho: int, wo: int, kh: int, kw: int, stride: int, padding: int, dilation: int,
    device: torch.device, dtype: torch.dtype, traced: bool = False,
) -> tuple[torch.Tensor, torch.Tensor]:
    dt = dtype if dtype in (torch.float32, torch.float64) else torch.float32
    # Computed in float64 and rounded once, except in an exported graph (float32 there, as ONNX runtimes prefer).
    ct = dt if traced else torch.float64
    ys = torch.arange(ho, dtype=ct, device=device) * stride - padding
    xs = torch.arange(wo, dtype=ct, device=device) * stride - padding
    ki = torch.arange(kh, dtype=ct, device=device).repeat_interleave(kw) * dilation  # (K,) row of tap k
    kj = torch.arange(kw, dtype=ct, device=device).repeat(kh) * dilation  # (K,) column of tap k
    # Pixel centre i sits at (2i + 1) / size - 1 in grid_sample's coordinates (align_corners=False).
    py = (2 * (ki.view(-1, 1, 1) + ys.view(1, -1, 1)) + 1) / h - 1  # (K, Ho, 1)
    px = (2 * (kj.view(-1, 1, 1) + xs.view(1, 1, -1)) + 1) / w - 1  # (K, 1, Wo)
    base = torch.stack(torch.broadcast_tensors(py, px), dim=-1).to(device=device, dtype=dt)
    if traced:
        scale = torch.stack([2.0 / torch.as_tensor(h, dtype=dt), 2.0 / torch.as_tensor(w, dtype=dt)]).to(device)
    else:
        scale = torch.tensor([2.0 / h, 2.0 / w], dtype=torch.float64).to(device=device, dtype=dt)
    return base, scale


def _sample_columns(
    xg: torch.Tensor, off: torch.Tensor, msk: torch.Tensor, base: torch.Tensor, scale: torch.Tensor,
    r0: int, r1: int, no_grad: bool,
) -> torch.Tensor:
    """Bilinear samples of output rows ``[r0, r1)`` times the mask: ``(N*G, Cin/G, K, rows, Wo)``."""
    n, dg, taps, _, _, wo = off.shape
    rows = r1 - r0
    o = off[..., r0:r1, :]  # (N, G, K, (dy, dx), rows, Wo)
    by, bx = base[:, r0:r1, :, 0], base[:, r0:r1, :, 1]  # (K, rows, Wo)
    # grid_sample wants (x, y) last: x = base_x + dx * 2/w, y = base_y + dy * 2/h (normalised coordinates).
    if no_grad and base.device.type == "cpu":  # written straight into the grid, one strided pass per coordinate
        # (CPU only: GPUs do not mind the copy of torch.stack, and MPS has mishandled strided outputs before)
        grid = torch.empty(n, dg, taps, rows, wo, 2, device=base.device, dtype=base.dtype)
        sy, sx = scale.tolist()  # as numbers for ``alpha`` (a CPU tensor: no device sync)
        torch.add(bx, o[:, :, :, 1], alpha=sx, out=grid[..., 0])
        torch.add(by, o[:, :, :, 0], alpha=sy, out=grid[..., 1])
    else:
        grid = torch.stack((bx + o[:, :, :, 1] * scale[1], by + o[:, :, :, 0] * scale[0]), dim=-1)
    grid = grid.view(n * dg, taps * rows, wo, 2).to(xg.dtype)
    # zeros padding makes every corner outside the image count 0, exactly the convention of the module docstring.
    cols = F.grid_sample(xg, grid, mode="bilinear", padding_mode="zeros", align_corners=False)
    cols = cols.view(n, dg, xg.shape[1], taps, rows, wo)
    m = msk[..., r0:r1, :]
    cols = cols.mul_(m) if no_grad else cols * m
    return cols.view(n * dg, xg.shape[1], taps, rows, wo)
