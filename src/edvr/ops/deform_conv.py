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
- ``"compiled"``: CPU inference only. The sampling is one loop that ``torch.compile`` (inductor) turns into C++ at
  the first call for each input size: per sample point, the four corners' weights and the mask once, then each
  corner's channels of a deformable group read as one contiguous vector (channels_last input), written straight in
  the order the matrix product reads. ~2x faster than the torch backend at EDVR's shapes, but it needs a working
  C++ compiler at run time and costs seconds of compilation per input size (cached on disk by PyTorch). Where it
  cannot run (autograd, export, other devices or dtypes, no compiler) it falls back to the torch backend, which
  gives the same numbers up to float rounding. An EDVR model on this backend also runs its large 3x3 convs with
  Winograd (:mod:`edvr.ops.winograd`) and two passes of its x4 tail compiled
  (:meth:`edvr.models.edvr.EDVR.fast_kernels`); the compiling itself is :mod:`edvr.ops.compiled`.
- ``"torchvision"``: ``torchvision.ops.deform_conv2d`` (compiled kernels; needs torchvision).
- ``"auto"``: the faster one available for the device without compiling: the torch backend on CPU and MPS
  (torchvision's CPU kernel is a serial scalar loop, measured ~6x slower), torchvision's CUDA kernel on CUDA when
  installed. ``edvr restore`` upgrades it to ``compiled`` for long CPU jobs (``edvr.inference.restore``).

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

from edvr.ops import compiled

BACKENDS = ("auto", "torch", "compiled", "torchvision")
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
    if name == "compiled" and device.type != "cpu":
        raise BackendUnavailableError(
            f"deformable-conv backend 'compiled' runs on CPU only, not {device.type}: use 'auto' or 'torch'"
        )
    if name == "torchvision" and device.type == "mps":
        raise BackendUnavailableError("deformable-conv backend 'torchvision' has no Apple MPS kernel: use 'auto' or "
                                      "'torch'")
    if name == "torchvision" and not torchvision_available():
        raise BackendUnavailableError(
            "deformable-conv backend 'torchvision' needs a working torchvision matching your torch "
            f"({torch.__version__}): install it (pip install torchvision) or use backend 'torch' "
            f"(argument dcn_backend='torch' or {ENV_VAR}=torch)"
        )
    return name


def get_backend(name: str) -> DeformConvFn:
    """The function of a concrete backend ('torch', 'compiled' or 'torchvision')."""
    if name == "torch":
        return deform_conv2d_torch
    if name == "compiled":
        return deform_conv2d_compiled
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
    groups, dg = _groups(x, offset, mask, weight)
    ho, wo = offset.shape[-2:]

    # In the default layout: the offset convs write channels_last, and the per-chunk passes below over strided
    # offsets and mask cost ~4x a contiguous read (measured: more than this one copy of each).
    # (Sizes from the inputs' shapes, not constants: an exported graph keeps H and W dynamic.)
    off = offset.contiguous().reshape(n, dg, taps, 2, ho, wo)  # (N, G, K, (dy, dx), Ho, Wo)
    msk = mask.contiguous().reshape(n, dg, 1, taps, ho, wo)  # (N, G, 1, K, Ho, Wo): broadcast over a group's channels
    xg = x.reshape(n * dg, c_in // dg, h, w)
    # Half-precision input is sampled in float32, then rounded back: grid_sample takes the positions in the input's
    # dtype, and in bf16 a normalised coordinate near 1 has steps of 2^-8, 2.5 px on a 1280-wide map (fp16: 2^-11).
    half = x.dtype if x.dtype in (torch.float16, torch.bfloat16) else None
    if half is not None:
        xg = xg.float()
    if torch.jit.is_tracing() or torch.onnx.is_in_onnx_export():
        # Export: built from the (traced) sizes in the graph, not cached, so that H and W can stay dynamic; and one
        # chunk of rows, since the tracer would keep the example's chunk bounds (an input with fewer rows broke them).
        base, scale = _make_base_grid(h, w, ho, wo, kh, kw, stride, padding, dilation, x.device, x.dtype, traced=True)
        chunk_bytes = 2**62
    else:
        base, scale = _base_grid(h, w, ho, wo, kh, kw, stride, padding, dilation, x.device, x.dtype)
    # Without autograd (and outside tracing/export, which want plain ops) results are written in place.
    no_grad = compiled.plain_inference(x, offset, mask, weight, bias)

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
            cols = _sample_columns(xg, off, msk, base, scale, r0, r1, no_grad, half)
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
        cols = _sample_columns(xg, off, msk, base, scale, r0, r1, no_grad, half)
        cols = cols.view(n, groups, c_per_group * taps, (r1 - r0) * wo)
        outs.append(torch.matmul(w_mat, cols).reshape(n, c_out, r1 - r0, wo))  # (N, groups, Cout/groups, L)
    out = outs[0] if len(outs) == 1 else torch.cat(outs, dim=2)
    if bias is not None:
        out = out + bias.view(1, -1, 1, 1)
    return out


def _groups(x: torch.Tensor, offset: torch.Tensor, mask: torch.Tensor, weight: torch.Tensor) -> tuple[int, int]:
    """(conv groups, deformable groups) of a call, after checking that the shapes fit together."""
    c_in = x.shape[1]
    c_out, c_per_group, kh, kw = weight.shape
    taps = kh * kw
    groups = c_in // c_per_group
    dg = offset.shape[1] // (2 * taps)
    if offset.shape[1] != 2 * dg * taps or mask.shape[1] != dg * taps or c_in % dg:
        raise ValueError(
            f"deform conv: offset {tuple(offset.shape)} / mask {tuple(mask.shape)} do not fit "
            f"input {tuple(x.shape)} and a {kh}x{kw} kernel"
        )
    if c_out % groups:
        raise ValueError(f"deform conv: {c_out} output channels do not split into {groups} groups")
    return groups, dg


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
    # Computed in float64 on the CPU (Apple MPS has no float64) and rounded once, then moved; in an exported graph
    # in float32 on the graph's device (as ONNX runtimes prefer).
    ct, cdev = (dt, device) if traced else (torch.float64, torch.device("cpu"))
    ys = torch.arange(ho, dtype=ct, device=cdev) * stride - padding
    xs = torch.arange(wo, dtype=ct, device=cdev) * stride - padding
    ki = torch.arange(kh, dtype=ct, device=cdev).repeat_interleave(kw) * dilation  # (K,) row of tap k
    kj = torch.arange(kw, dtype=ct, device=cdev).repeat(kh) * dilation  # (K,) column of tap k
    # Pixel centre i sits at (2i + 1) / size - 1 in grid_sample's coordinates (align_corners=False).
    py = (2 * (ki.view(-1, 1, 1) + ys.view(1, -1, 1)) + 1) / h - 1  # (K, Ho, 1)
    px = (2 * (kj.view(-1, 1, 1) + xs.view(1, 1, -1)) + 1) / w - 1  # (K, 1, Wo)
    base = torch.stack(torch.broadcast_tensors(py, px), dim=-1).to(dt).to(device)  # rounded before it moves
    if traced:
        scale = torch.stack([2.0 / torch.as_tensor(h, dtype=dt), 2.0 / torch.as_tensor(w, dtype=dt)]).to(device)
    else:
        scale = torch.tensor([2.0 / h, 2.0 / w], dtype=dt).to(device)
    return base, scale


def _sample_columns(
    xg: torch.Tensor, off: torch.Tensor, msk: torch.Tensor, base: torch.Tensor, scale: torch.Tensor,
    r0: int, r1: int, no_grad: bool, half: torch.dtype | None = None,
) -> torch.Tensor:
    """Bilinear samples of output rows ``[r0, r1)`` times the mask: ``(N*G, Cin/G, K, rows, Wo)``, rounded to
    ``half`` where given."""
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
    cols = cols.view(n * dg, xg.shape[1], taps, rows, wo)
    return cols if half is None else cols.to(half)


# ------------------------------------------------------------------------------------------ the compiled backend
# Sampled columns per call of the compiled sampler: 6 rows of 320 points at EDVR-M's 64 channels, which stay in the
# last-level cache until the matrix product reads them (a 180x320 call: 53.9 ms, against 55.8 with 9 MB chunks and
# 59.0 with 14 MB).
COMPILED_CHUNK_BYTES = 9 * 2**19


def _sample_taps(
    table: torch.Tensor, off: torch.Tensor, msk: torch.Tensor, by: torch.Tensor, bx: torch.Tensor
) -> torch.Tensor:
    """Bilinear samples of every tap of some output rows, times the mask: ``(R, Wo, G, K, C/G)``.

    ``table`` ``(H + 4, W + 4, G, C/G)``: the input, channels last, with 2 rows and columns of zeros on every side;
    ``off`` ``(R, Wo, G, K, 2)`` (dy, dx in pixels) and ``msk`` ``(R, Wo, G, K)``: those rows' offsets and mask,
    channels last; ``by`` ``(R, 1, 1, K)``, ``bx`` ``(1, Wo, 1, K)``: each tap's position before its offset. Plain
    tensor ops for torch.compile, which fuses them into one loop over the points (run eagerly they would
    materialise every intermediate: slow).
    """
    h, w, groups = table.shape[0] - 4, table.shape[1] - 4, table.shape[2]
    y, x = by + off[..., 0], bx + off[..., 1]
    # Moved to [-2, size], where every corner of a point outside the image is a zero of the padding, as it counts 0
    # by definition; NaN too (so that every index below is inside the table, without per-corner checks).
    y = torch.where(torch.isnan(y), -2.0, y).clamp(-2, h)
    x = torch.where(torch.isnan(x), -2.0, x).clamp(-2, w)
    y0, x0 = torch.floor(y), torch.floor(x)
    ly, lx = y - y0, x - x0
    hy, hx = 1 - ly, 1 - lx
    y0, x0 = y0.to(torch.int64) + 2, x0.to(torch.int64) + 2
    group = torch.arange(groups, device=table.device).view(1, 1, groups, 1)
    out = None
    for dy, dx, corner_weight in ((0, 0, hy * hx), (0, 1, hy * lx), (1, 0, ly * hx), (1, 1, ly * lx)):
        # A group's channels are contiguous in the table: one vector read per corner, not one gather per channel.
        term = (corner_weight * msk).unsqueeze(-1) * table[y0 + dy, x0 + dx, group]
        out = term if out is None else out + term
    return out


_TAP_POSITIONS: dict[tuple, tuple[torch.Tensor, torch.Tensor]] = {}


def _tap_positions(
    ho: int, wo: int, kh: int, kw: int, stride: int, padding: int, dilation: int, dtype: torch.dtype
) -> tuple[torch.Tensor, torch.Tensor]:
    """Row ``(Ho, 1, 1, K)`` and column ``(1, Wo, 1, K)`` in pixels of every tap before its offset (CPU, cached)."""
    key = (ho, wo, kh, kw, stride, padding, dilation, dtype)
    hit = _TAP_POSITIONS.get(key)
    if hit is None:
        ki = torch.arange(kh).repeat_interleave(kw) * dilation
        kj = torch.arange(kw).repeat(kh) * dilation
        by = (torch.arange(ho).view(-1, 1) * stride - padding + ki).to(dtype).view(ho, 1, 1, kh * kw)
        bx = (torch.arange(wo).view(-1, 1) * stride - padding + kj).to(dtype).view(1, wo, 1, kh * kw)
        if len(_TAP_POSITIONS) > 64:
            _TAP_POSITIONS.clear()
        hit = _TAP_POSITIONS[key] = (by, bx)
    return hit


def deform_conv2d_compiled(
    x: torch.Tensor,
    offset: torch.Tensor,
    mask: torch.Tensor,
    weight: torch.Tensor,
    bias: torch.Tensor | None = None,
    *,
    stride: int = 1,
    padding: int = 1,
    dilation: int = 1,
    chunk_bytes: int = COMPILED_CHUNK_BYTES,
) -> torch.Tensor:
    """The ``compiled`` backend (see the module docstring): same shapes and result as :func:`deform_conv2d_torch`,
    to which it falls back where it cannot run. Output channels_last in memory."""
    groups, dg = _groups(x, offset, mask, weight)
    out = None
    if groups == 1 and compiled.eligible(x, offset, mask, weight, bias):
        out = _compiled_product(x, offset, mask, weight, bias, dg, stride, padding, dilation, chunk_bytes)
    if out is None:  # declined (see compiled.eligible / compiled.run)
        return deform_conv2d_torch(x, offset, mask, weight, bias, stride=stride, padding=padding, dilation=dilation)
    return out


def _compiled_product(
    x: torch.Tensor, offset: torch.Tensor, mask: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor | None,
    dg: int, stride: int, padding: int, dilation: int, chunk_bytes: int,
) -> torch.Tensor | None:
    """The compiled backend's work, chunk by chunk; None if :func:`compiled.run` declines (at the first chunk, as
    every chunk shares one compiled variant)."""
    n, c_in, h, w = x.shape
    c_out, _, kh, kw = weight.shape
    taps = kh * kw
    ho, wo = offset.shape[-2:]
    cg = c_in // dg
    rows = max(1, min(ho, chunk_bytes // max(c_in * taps * wo * x.element_size(), 1)))
    by, bx = _tap_positions(ho, wo, kh, kw, stride, padding, dilation, x.dtype)
    # The product's weight rows in the columns' (group, tap, channel) order.
    w_t = weight.reshape(c_out, dg, cg, taps).permute(1, 3, 2, 0).reshape(dg * taps * cg, c_out)
    out = torch.empty(n, ho, wo, c_out, dtype=x.dtype)
    for i in range(n):
        table = F.pad(x[i].permute(1, 2, 0), (0, 0, 2, 2, 2, 2)).view(h + 4, w + 4, dg, cg)
        # Views of channels_last tensors (what EDVR's offset convs produce); a copy otherwise.
        off = offset[i].permute(1, 2, 0).contiguous().view(ho, wo, dg, taps, 2)
        msk = mask[i].permute(1, 2, 0).contiguous().view(ho, wo, dg, taps)
        # Every chunk has ``rows`` rows (the last one overlaps the one before): one compiled variant per input size.
        for r0 in range(0, ho, rows):
            r0 = min(r0, ho - rows)
            cols = compiled.run(_sample_taps, table, off[r0:r0 + rows], msk[r0:r0 + rows], by[r0:r0 + rows], bx)
            if cols is None:
                return None
            target = out[i, r0:r0 + rows].view(rows * wo, c_out)
            if bias is None:
                torch.mm(cols.view(rows * wo, -1), w_t, out=target)
            else:
                torch.addmm(bias, cols.view(rows * wo, -1), w_t, out=target)
    return out.permute(0, 3, 1, 2)
