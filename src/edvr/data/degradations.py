"""How the low-quality (LQ) inputs of the EDVR benchmarks are made from ground truth (GT).

* **BI** (REDS ``*_sharp_bicubic``, Vimeo90K and Vid4 ``BIx4``): MATLAB ``imresize(GT, 1/4, 'bicubic')``
  (:func:`imresize`, :func:`bi_degrade`). BasicSR's ``scripts/matlab_scripts/generate_LR_Vimeo90K.m`` reads the
  PNG, converts it with ``im2double`` (so there is *no* 8-bit rounding between the vertical and horizontal passes,
  unlike ``imresize`` on a uint8 array), mod-crops GT to a multiple of 4, resizes, and ``imwrite``s the double
  result, which saturates to [0, 1] and rounds ``255 * x`` to the nearest integer, ties away from zero (MATLAB
  ``round``).
* **BD** (Vimeo90K/Vid4 BD, from DUF): Gaussian blur, sigma 1.6, on a 13x13 kernel, then every 4th pixel starting at
  the first (:func:`bd_degrade`), following BasicSR's ``duf_downsample``.
* **Blur** (REDS ``*_blur``): the REDS authors averaged consecutive frames of high-frame-rate video, in linear
  intensity through an inverse camera response (:func:`average_frames`; a gamma curve stands in for the CRF).
* **Compression** (REDS ``*_blur_comp``: video codec; JPEG for image variants): :func:`h264`, :func:`jpeg`.

Array conventions: torch tensors are channels first, ``(..., C, H, W)``; numpy arrays are channels last,
``(..., H, W, C)``, or a plain ``(H, W)``. Float images are in [0, 1].
"""

from __future__ import annotations

import io
import math
from collections.abc import Sequence
from fractions import Fraction
from typing import TypeVar

import numpy as np
import torch

__all__ = [
    "average_frames",
    "bd_degrade",
    "bd_kernel",
    "bi_degrade",
    "cubic",
    "h264",
    "imresize",
    "imresize_matrix",
    "jpeg",
]

Image = TypeVar("Image", np.ndarray, torch.Tensor)
ScaleArg = float | tuple[float, float]


# ----------------------------------------------------------------------------------------------------------------------
# Shared machinery: a separable linear map along H and W, computed in float64


def _mirror_index(p: np.ndarray, n: int, *, repeat_edge: bool) -> np.ndarray:
    """Fold integer positions into ``[0, n)`` by mirror reflection, periodically, so any distance works.

    ``repeat_edge=True`` is MATLAB's 'symmetric' (... 1 0 | 0 1 ... n-1 | n-1 n-2 ...); False is torch's 'reflect' /
    scipy's 'mirror' (... 2 1 | 0 1 ... n-1 | n-2 ...).
    """
    if repeat_edge:
        q = np.mod(p, 2 * n)
        return np.where(q < n, q, 2 * n - 1 - q)
    if n == 1:
        return np.zeros_like(p)
    q = np.mod(p, 2 * (n - 1))
    return np.where(q < n, q, 2 * (n - 1) - q)


def _dense(rows: np.ndarray, cols: np.ndarray, weights: np.ndarray, shape: tuple[int, int]) -> np.ndarray:
    """An (out, in) matrix with ``weights`` added at (rows, cols); mirrored taps that land on one pixel accumulate."""
    m = np.zeros(shape, dtype=np.float64)
    np.add.at(m, (rows, cols), weights)
    return m


def _apply_separable(x: Image, mh: np.ndarray, mw: np.ndarray) -> Image:
    """``mh @ image @ mw.T`` per channel in float64; returns the input's kind, layout and float dtype."""
    if isinstance(x, torch.Tensor):
        if x.ndim < 2:
            raise ValueError(f"expected a (..., C, H, W) or (H, W) tensor, got shape {tuple(x.shape)}")
        if not x.is_floating_point():
            raise TypeError(f"expected a float tensor in [0, 1], got {x.dtype}; divide by 255 first")
        h = torch.from_numpy(mh).to(x.device)
        w = torch.from_numpy(mw).to(x.device)
        y = torch.matmul(torch.matmul(h, x.to(torch.float64)), w.T)
        return y.to(x.dtype)
    if isinstance(x, np.ndarray):
        if not np.issubdtype(x.dtype, np.floating):
            raise TypeError(f"expected a float array in [0, 1], got {x.dtype}; divide by 255 first")
        if x.ndim == 2:
            return (mh @ x.astype(np.float64) @ mw.T).astype(x.dtype)
        if x.ndim < 3:
            raise ValueError(f"expected an (..., H, W, C) or (H, W) array, got shape {x.shape}")
        chw = np.moveaxis(x.astype(np.float64), -1, -3)
        return np.moveaxis(mh @ chw @ mw.T, -3, -1).astype(x.dtype)
    raise TypeError(f"expected a torch tensor or a numpy array, got {type(x).__name__}")


def _hw(x: np.ndarray | torch.Tensor) -> tuple[int, int]:
    if isinstance(x, torch.Tensor) or x.ndim == 2:
        return int(x.shape[-2]), int(x.shape[-1])
    return int(x.shape[-3]), int(x.shape[-2])


# ----------------------------------------------------------------------------------------------------------------------
# BI: MATLAB imresize (bicubic)


def cubic(t: np.ndarray) -> np.ndarray:
    """Keys' cubic convolution kernel with a = -0.5, as in MATLAB's ``imresize`` (support [-2, 2])."""
    a = np.abs(t)
    a2, a3 = a * a, a * a * a
    near = (1.5 * a3 - 2.5 * a2 + 1.0) * (a <= 1)
    far = (-0.5 * a3 + 2.5 * a2 - 4.0 * a + 2.0) * ((a > 1) & (a <= 2))
    return near + far


def imresize_matrix(in_length: int, out_length: int, scale: float, *, antialias: bool = True) -> np.ndarray:
    """The (out_length, in_length) float64 matrix of MATLAB's bicubic ``imresize`` along one dimension.

    MATLAB's ``contributions``: output pixel x (1-based) sits at input coordinate u = x / scale + (1 - 1 / scale) / 2
    (pixel centres aligned, not corners). When shrinking with antialiasing the kernel is stretched by 1 / scale and
    scaled by scale, so it also low-passes. The taps are floor(u - width / 2) + 0 .. ceil(width) + 1, each row of
    weights is normalised to sum 1, and taps outside the image read the mirror image with the edge pixel repeated
    (MATLAB indexes ``[1:n, n:-1:1]`` cyclically, which also covers kernels wider than the image).
    """
    if in_length < 1 or out_length < 1:
        raise ValueError(f"imresize: lengths must be positive, got {in_length} -> {out_length}")
    if scale <= 0:
        raise ValueError(f"imresize: scale must be positive, got {scale}")
    shrink = scale < 1 and antialias
    width = 4.0 / scale if shrink else 4.0
    x = np.arange(1, out_length + 1, dtype=np.float64)
    u = x / scale + 0.5 * (1.0 - 1.0 / scale)
    left = np.floor(u - width / 2.0)
    taps = math.ceil(width) + 2
    idx = left[:, None] + np.arange(taps, dtype=np.float64)[None, :]  # 1-based input positions
    dist = u[:, None] - idx
    weights = scale * cubic(scale * dist) if shrink else cubic(dist)
    weights = weights / weights.sum(axis=1, keepdims=True)
    cols = _mirror_index(idx.astype(np.int64) - 1, in_length, repeat_edge=True)
    rows = np.broadcast_to(np.arange(out_length)[:, None], cols.shape)
    return _dense(rows, cols, weights, (out_length, in_length))


def imresize(
    x: Image,
    scale: ScaleArg | None = None,
    *,
    antialias: bool = True,
    size: tuple[int, int] | None = None,
) -> Image:
    """MATLAB-faithful bicubic ``imresize`` of a float image, up or down, by ``scale`` or to ``size``.

    Args:
        x: torch ``(..., C, H, W)`` or numpy ``(..., H, W, C)`` / ``(H, W)``, float (values are not clamped: bicubic
           overshoots, as in MATLAB). Integer images are refused: MATLAB rounds uint8 after *each* pass, which is not
           how the datasets were made (they convert to double first; see the module docstring).
        scale: one factor for both axes, or ``(scale_h, scale_w)``. Output size is ``ceil(H * scale)`` like MATLAB,
           and the coordinate mapping uses ``scale`` itself, not the size ratio.
        antialias: widen the kernel when shrinking (MATLAB's default ``'Antialiasing', true``).
        size: ``(out_h, out_w)`` instead of ``scale``; then the scale of each axis is ``out / in`` (MATLAB's
           ``imresize(A, [rows cols])``).

    Returns:
        Same kind, layout and dtype as ``x``; computed in float64.
    """
    in_h, in_w = _hw(x)
    if (scale is None) == (size is None):
        raise ValueError("imresize: give exactly one of scale and size")
    if size is not None:
        out_h, out_w = int(size[0]), int(size[1])
        sh, sw = out_h / in_h, out_w / in_w
    else:
        sh, sw = (float(scale), float(scale)) if np.ndim(scale) == 0 else (float(scale[0]), float(scale[1]))
        out_h, out_w = math.ceil(in_h * sh), math.ceil(in_w * sw)
    mh = imresize_matrix(in_h, out_h, sh, antialias=antialias)
    mw = imresize_matrix(in_w, out_w, sw, antialias=antialias)
    return _apply_separable(x, mh, mw)


def _matlab_round_uint8(v: np.ndarray | torch.Tensor) -> np.ndarray | torch.Tensor:
    """MATLAB's double -> uint8 image conversion: saturate to [0, 255], round half away from zero."""
    if isinstance(v, torch.Tensor):
        return torch.floor(v.clamp(0.0, 1.0) * 255.0 + 0.5).to(torch.uint8)
    return np.floor(np.clip(v, 0.0, 1.0) * 255.0 + 0.5).astype(np.uint8)


def bi_degrade(x: Image, *, scale: int = 4) -> Image:
    """BI low-resolution frames exactly as the datasets store them: ``uint8(imresize(double(GT) / 255, 1 / scale))``.

    Args:
        x: uint8 GT, torch ``(..., C, H, W)`` or numpy ``(..., H, W, C)`` / ``(H, W)``. H and W should be multiples of
           ``scale`` (mod-crop GT first, as the generation scripts do); otherwise the LQ is ``ceil(H / scale)`` tall.

    Returns:
        uint8, same kind and layout, ``ceil(H / scale) x ceil(W / scale)``.
    """
    if isinstance(x, torch.Tensor):
        if x.dtype != torch.uint8:
            raise TypeError(f"bi_degrade expects uint8 ground truth, got {x.dtype}")
        return _matlab_round_uint8(imresize(x.to(torch.float64) / 255.0, 1.0 / scale))
    if x.dtype != np.uint8:
        raise TypeError(f"bi_degrade expects uint8 ground truth, got {x.dtype}")
    return _matlab_round_uint8(imresize(x.astype(np.float64) / 255.0, 1.0 / scale))


# ----------------------------------------------------------------------------------------------------------------------
# BD: Gaussian blur + subsampling (DUF)


def _gaussian_1d(sigma: float, kernel_size: int) -> np.ndarray:
    """The 1-D factor of BasicSR's ``generate_gaussian_kernel``: a centred unit impulse of length ``kernel_size``
    smoothed by ``scipy.ndimage.gaussian_filter`` (radius ``int(4 sigma + 0.5)``, weights normalised over it, border
    'reflect' with the edge repeated). For sigma 1.6 and 13 taps the radius is exactly 6, so this is just a sampled,
    normalised Gaussian; for other pairs the truncation or border folding is reproduced, not assumed away."""
    radius = int(4.0 * sigma + 0.5)
    t = np.arange(-radius, radius + 1, dtype=np.float64)
    g = np.exp(-0.5 * (t / sigma) ** 2)
    g /= g.sum()
    centre = kernel_size // 2
    out = np.zeros(kernel_size, dtype=np.float64)
    # out[p] = sum_t g[t] * impulse[fold(p + t)]: the impulse is seen wherever the folded position is the centre.
    for p in range(kernel_size):
        hits = _mirror_index(p + t.astype(np.int64), kernel_size, repeat_edge=True) == centre
        out[p] = g[hits].sum()
    return out


def bd_kernel(*, sigma: float = 1.6, kernel_size: int = 13) -> np.ndarray:
    """The BD blur kernel, ``(kernel_size, kernel_size)`` float64, summing to 1 (outer product of the 1-D factor)."""
    g = _gaussian_1d(sigma, kernel_size)
    return np.outer(g, g)


def _bd_matrix(in_length: int, scale: int, g: np.ndarray) -> np.ndarray:
    """Rows of the blur-then-subsample map: output j is the blur centred on input ``scale * j`` (phase 0)."""
    k = g.shape[0]
    out_length = -(-in_length // scale)
    centres = scale * np.arange(out_length)[:, None]
    pos = centres + np.arange(k)[None, :] - k // 2
    cols = _mirror_index(pos, in_length, repeat_edge=False)
    rows = np.broadcast_to(np.arange(out_length)[:, None], cols.shape)
    return _dense(rows, cols, np.broadcast_to(g, cols.shape), (out_length, in_length))


def bd_degrade(x: Image, *, sigma: float | None = None, scale: int = 4, kernel_size: int = 13) -> Image:
    """BD degradation: Gaussian blur then ``scale``-fold subsampling, as BasicSR's ``duf_downsample``.

    Facts reproduced (BasicSR ``basicsr/data/data_util.py``): a 13x13 kernel made by Gaussian-filtering a unit impulse
    (sigma ``0.4 * scale``: 1.6 for x4, the default here too); the image is padded
    by mirror reflection *without* repeating the edge pixel (torch ``'reflect'``); the blurred image is sampled at
    rows and columns 0, scale, 2 scale, ... (the reference pads by ``k // 2 + 2 scale``, convolves with stride
    ``scale`` and drops 2 outputs per side, which lands on phase 0). Output size ``ceil(H / scale)``.

    Args:
        x: float image, torch ``(..., C, H, W)`` or numpy ``(..., H, W, C)`` / ``(H, W)``. Any size works: the mirror
           continues periodically where the reference's ``F.pad`` would refuse an image smaller than its padding.

    Returns:
        Same kind, layout and dtype; float (not rounded: quantise as the dataset you mimic does).
    """
    if scale < 1:
        raise ValueError(f"bd_degrade: scale must be a positive integer, got {scale}")
    g = _gaussian_1d(0.4 * scale if sigma is None else sigma, kernel_size)
    in_h, in_w = _hw(x)
    return _apply_separable(x, _bd_matrix(in_h, scale, g), _bd_matrix(in_w, scale, g))


# ----------------------------------------------------------------------------------------------------------------------
# Motion blur by frame averaging


def average_frames(frames: Sequence[Image] | Image, *, gamma: float | None = None) -> Image:
    """Synthetic motion blur: the mean of consecutive sharp frames, optionally in linear intensity.

    REDS blur was made this way (high-frame-rate footage, frames averaged in the signal space through an inverse
    camera response); a gamma curve is the usual stand-in for that response (GoPro dataset: gamma 2.2).

    Args:
        frames: a sequence of equally shaped images, or one array/tensor with time as the first axis. Float images in
            [0, 1], or uint8.
        gamma: if given, average ``frame ** gamma`` and map back with ``** (1 / gamma)``; None averages the stored
            values directly.

    Returns:
        One image of the frames' shape and kind: float of the input dtype, or uint8 rounded half to even.
    """
    if isinstance(frames, (np.ndarray, torch.Tensor)):
        stack = frames
    elif len(frames) == 0:
        raise ValueError("average_frames: no frames")
    elif isinstance(frames[0], torch.Tensor):
        stack = torch.stack(list(frames))
    else:
        stack = np.stack([np.asarray(f) for f in frames])
    if gamma is not None and gamma <= 0:
        raise ValueError(f"average_frames: gamma must be positive, got {gamma}")

    if isinstance(stack, torch.Tensor):
        is_u8 = stack.dtype == torch.uint8
        v = stack.to(torch.float64) / 255.0 if is_u8 else stack.to(torch.float64)
        if gamma is not None:
            v = v.clamp(min=0.0) ** gamma
        m = v.mean(dim=0)
        if gamma is not None:
            m = m ** (1.0 / gamma)
        return torch.round(m * 255.0).clamp(0, 255).to(torch.uint8) if is_u8 else m.to(stack.dtype)

    is_u8 = stack.dtype == np.uint8
    v = stack.astype(np.float64) / 255.0 if is_u8 else stack.astype(np.float64)
    if gamma is not None:
        v = np.clip(v, 0.0, None) ** gamma  # a negative value has no real power; float inputs may undershoot slightly
    m = v.mean(axis=0)
    if gamma is not None:
        m = m ** (1.0 / gamma)
    return np.clip(np.round(m * 255.0), 0, 255).astype(np.uint8) if is_u8 else m.astype(stack.dtype)


# ----------------------------------------------------------------------------------------------------------------------
# Compression


def _to_hwc_uint8_list(x: np.ndarray | torch.Tensor | Sequence, what: str) -> tuple[list[np.ndarray], object]:
    """Normalise images to a list of uint8 RGB/grey HWC arrays plus what is needed to give the caller its kind back."""
    if isinstance(x, torch.Tensor):
        if x.ndim < 3:
            raise ValueError(f"{what}: expected a (..., C, H, W) tensor, got shape {tuple(x.shape)}")
        t = x.detach().cpu()
        if t.is_floating_point():
            t = torch.round(t.to(torch.float32).clamp(0, 1) * 255.0)
        elif t.dtype != torch.uint8:
            raise TypeError(f"{what}: expected a float tensor in [0, 1] or uint8, got {t.dtype}")
        a = t.to(torch.uint8).movedim(-3, -1).reshape(-1, *t.shape[-2:], t.shape[-3]).numpy()
        return list(a), ("torch", x.shape, x.dtype, x.device)
    if isinstance(x, np.ndarray):
        a = x
        if np.issubdtype(a.dtype, np.floating):
            a = np.round(np.clip(a, 0, 1) * 255.0).astype(np.uint8)
        elif a.dtype != np.uint8:
            raise TypeError(f"{what}: expected a float array in [0, 1] or uint8, got {a.dtype}")
        if a.ndim == 2:
            return [a], ("numpy", x.shape, x.dtype)
        return list(a.reshape(-1, *a.shape[-3:])), ("numpy", x.shape, x.dtype)
    items = [np.asarray(f) for f in x]
    if not items:
        raise ValueError(f"{what}: no images")
    out = []
    for f in items:
        out += _to_hwc_uint8_list(f, what)[0]
    return out, ("list", items[0].shape, items[0].dtype)


def _from_hwc_uint8_list(images: list[np.ndarray], kind: tuple) -> np.ndarray | torch.Tensor | list[np.ndarray]:
    if kind[0] == "torch":
        _, shape, dtype, device = kind
        t = torch.from_numpy(np.stack(images)).movedim(-1, -3).reshape(shape)
        t = t.to(dtype) / 255.0 if dtype.is_floating_point else t
        return t.to(device)
    _, shape, dtype = kind
    a = np.stack(images)
    a = a.astype(dtype) / np.asarray(255.0, dtype=dtype) if np.issubdtype(dtype, np.floating) else a
    if kind[0] == "list":
        return [f.reshape(shape) for f in a]
    return a.reshape(shape)


def jpeg(x: Image, quality: int, *, subsampling: int = 2) -> Image:
    """JPEG-compress and decode images (Pillow/libjpeg, the IJG quality scale that OpenCV's ``imencode`` also uses).

    Args:
        x: uint8 or float-in-[0, 1] images, torch ``(..., C, H, W)`` or numpy ``(..., H, W, C)`` / ``(H, W)``;
           C is 3 (RGB) or 1. Float input is rounded to 8 bits first, as any saved image would be.
        quality: 1 (worst) .. 95 (Pillow advises against more).
        subsampling: chroma subsampling, Pillow's code: 0 = 4:4:4, 1 = 4:2:2, 2 = 4:2:0 (libjpeg's and OpenCV's
           default).

    Returns:
        The decoded images, same kind, shape and dtype as ``x`` (float output holds multiples of 1/255).
    """
    try:
        from PIL import Image as PILImage
    except ImportError as e:  # Pillow is not a core dependency; say how to get it
        raise ImportError("edvr.data.degradations.jpeg needs Pillow: pip install pillow") from e
    if not 1 <= quality <= 100:
        raise ValueError(f"jpeg: quality must be in 1..100, got {quality}")
    images, kind = _to_hwc_uint8_list(x, "jpeg")
    out = []
    for img in images:
        grey = img.ndim == 2 or img.shape[-1] == 1
        if not grey and img.shape[-1] != 3:
            raise ValueError(f"jpeg: expected 1 or 3 channels, got {img.shape[-1]}")
        pil = PILImage.fromarray(img.reshape(img.shape[0], img.shape[1]) if grey else img)
        buf = io.BytesIO()
        pil.save(buf, format="JPEG", quality=int(quality), subsampling=subsampling)
        dec = np.asarray(PILImage.open(io.BytesIO(buf.getvalue())).convert("L" if grey else "RGB"))
        out.append(dec.reshape(img.shape))
    return _from_hwc_uint8_list(out, kind)


def h264(
    frames: Image | Sequence[np.ndarray],
    crf: float,
    *,
    preset: str = "medium",
    threads: int = 1,
    fps: int = 25,
) -> Image | list[np.ndarray]:
    """Encode frames as one H.264 stream (libx264 through PyAV, in memory) and decode them back.

    Args:
        frames: a clip, in time order: uint8 or float-in-[0, 1] RGB, torch ``(T, 3, H, W)``, numpy ``(T, H, W, 3)``,
            or a list of ``(H, W, 3)`` arrays. Odd sizes are padded by edge replication for 4:2:0 and cropped back.
        crf: x264 constant rate factor (0 = lossless .. 51; 23 is x264's default, larger is worse).
        preset: x264 speed preset; it changes the artifacts, so record it with the CRF.
        threads: encoder threads. x264 output depends on the thread count, so the default 1 gives identical bytes on
            every machine; raise it for speed when exact reproducibility does not matter.
        fps: nominal frame rate written in the stream; it steers x264's rate control only mildly.

    Returns:
        The decoded frames, same kind, shape and dtype as the input. Colour goes RGB -> BT.601 limited-range
        YUV 4:2:0 -> RGB (FFmpeg swscale defaults), as a typical video file would.
    """
    import av  # core dependency; imported here so that importing this module stays cheap

    images, kind = _to_hwc_uint8_list(frames, "h264")
    h, w = images[0].shape[:2]
    if any(f.shape != images[0].shape for f in images):
        raise ValueError("h264: all frames must have the same shape")
    if images[0].ndim != 3 or images[0].shape[2] != 3:
        raise ValueError(f"h264: expected RGB frames, got frame shape {images[0].shape}")
    ph, pw = h + h % 2, w + w % 2

    enc = av.CodecContext.create("libx264", "w")
    enc.width, enc.height, enc.pix_fmt = pw, ph, "yuv420p"
    enc.time_base = Fraction(1, fps)
    enc.framerate = Fraction(fps, 1)
    enc.options = {"crf": str(crf), "preset": preset, "threads": str(threads)}
    packets = []
    for i, img in enumerate(images):
        if (ph, pw) != (h, w):
            img = np.pad(img, ((0, ph - h), (0, pw - w), (0, 0)), mode="edge")
        frame = av.VideoFrame.from_ndarray(np.ascontiguousarray(img), format="rgb24").reformat(format="yuv420p")
        frame.pts = i
        packets += enc.encode(frame)
    packets += enc.encode(None)

    dec = av.CodecContext.create("h264", "r")
    decoded: list[tuple[int, np.ndarray]] = []
    for packet in [*packets, None]:
        for frame in dec.decode(packet):
            decoded.append((frame.pts, frame.to_ndarray(format="rgb24")[:h, :w]))
    if len(decoded) != len(images):
        raise RuntimeError(f"h264: encoded {len(images)} frames but decoded {len(decoded)}")
    if all(pts is not None for pts, _ in decoded):
        decoded.sort(key=lambda pf: pf[0])  # the decoder emits display order already; pts makes it explicit
    return _from_hwc_uint8_list([f for _, f in decoded], kind)
