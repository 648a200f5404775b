"""PSNR and SSIM exactly as the EDVR papers and their successors report them.

The published numbers (EDVR, BasicVSR, ...) come from BasicSR's ``calculate_psnr`` / ``calculate_ssim``
(``basicsr/metrics/psnr_ssim.py``), which reproduce the MATLAB evaluation code. What that means, and what we do:

* Images are 8-bit. A network output in [0, 1] is quantised like BasicSR's ``tensor2img``: cast to float32 (its
  ``.float()``), clamp to [0, 1], multiply by 255 in float32, round half to even (``numpy.round``), cast to uint8
  (:func:`to_uint8`). Ground truth is read as uint8 from PNG. Metrics are then computed in float64 on [0, 255].
* ``crop_border`` pixels are removed on every side before anything else (0 for REDS4; Vid4 tables often use the scale).
* Y channel: ITU-R BT.601 "studio swing" luma, MATLAB's ``rgb2ycbcr``: Y = 16 + (65.481 R + 128.553 G + 24.966 B)
  with R, G, B in [0, 1], so Y lies in [16, 235] (65.481 = 0.299 * 219, 128.553 = 0.587 * 219, 24.966 = 0.114 * 219).
  The value is *not* rounded (BasicSR's ``to_y_channel`` keeps it float; MATLAB on uint8 input would round). BasicSR
  does this arithmetic in float32, we in float64: on the test photographs the scores differ by ~2e-7 dB and ~4e-9
  SSIM.
* PSNR = 10 log10(255^2 / MSE), MSE over all pixels and channels together. Identical images give ``inf``, as in
  BasicSR. We keep ``inf`` instead of capping it: a mean over frames that contains an ``inf`` is ``inf`` (plain
  IEEE arithmetic), which makes a perfect frame visible instead of hiding it behind an arbitrary cap (100 dB, ...).
  Real restoration outputs never reach it.
* SSIM (Wang et al. 2004, the authors' MATLAB ``ssim_index``): 11x11 Gaussian window with sigma 1.5 (normalised to sum
  1, separable), C1 = (0.01 * 255)^2, C2 = (0.03 * 255)^2, statistics on [0, 255], the SSIM map over the *valid*
  region only (no padding: an H x W image gives an (H - 10) x (W - 10) map), its mean per channel, then the mean over
  channels for RGB. Population (not sample) variances.
"""

from __future__ import annotations

import numpy as np
import torch

__all__ = [
    "SSIM_C1",
    "SSIM_C2",
    "SSIM_SIGMA",
    "SSIM_WINDOW",
    "Y_COEFFS",
    "psnr",
    "psnr_ssim_batch",
    "rgb_to_y",
    "ssim",
    "ssim_window",
    "to_uint8",
]

ArrayLike = np.ndarray | torch.Tensor

# BT.601 studio-swing luma for RGB in [0, 1]: the MATLAB rgb2ycbcr first row, offset 16.
Y_COEFFS: tuple[float, float, float] = (65.481, 128.553, 24.966)
Y_OFFSET: float = 16.0

SSIM_WINDOW: int = 11
SSIM_SIGMA: float = 1.5
SSIM_C1: float = (0.01 * 255.0) ** 2
SSIM_C2: float = (0.03 * 255.0) ** 2


def to_uint8(x: ArrayLike) -> np.ndarray:
    """Quantise an image in [0, 1] to uint8 the way the reference evaluation does.

    Args:
        x: a torch tensor, channels first: ``(..., C, H, W)`` becomes ``(..., H, W, C)`` (so ``(3, H, W)`` -> HWC and
           ``(N, 3, H, W)`` -> NHWC); a 2-D ``(H, W)`` tensor stays ``(H, W)``. Or a numpy float array, which is taken
           as already channels last and keeps its layout.

    Returns:
        A uint8 numpy array: ``round_half_even(clamp(float32(x), 0, 1) * 255)``. The float32 cast first matches
        BasicSR's ``tensor2img`` (it calls ``.float()`` before scaling, so float64 inputs are narrowed too); the
        product is taken in float32 because that is where its rounding ties fall.
    """
    if isinstance(x, torch.Tensor):
        t = x.detach().to(device="cpu", dtype=torch.float32)
        if t.ndim >= 3:
            t = t.movedim(-3, -1)
        a = t.numpy()
    elif isinstance(x, np.ndarray):
        if x.dtype == np.uint8:
            raise TypeError("to_uint8 expects a float image in [0, 1]; this one is already uint8")
        if not np.issubdtype(x.dtype, np.floating):
            raise TypeError(f"to_uint8 expects a float image in [0, 1], got dtype {x.dtype}")
        a = x.astype(np.float32)
    else:
        raise TypeError(f"to_uint8 expects a torch tensor or a numpy array, got {type(x).__name__}")
    a = np.clip(a, 0.0, 1.0) * np.float32(255.0)
    return np.round(a).astype(np.uint8)  # np.round rounds half to even, as BasicSR's ndarray.round()


def rgb_to_y(img: np.ndarray) -> np.ndarray:
    """BT.601 luma in [16, 235] (MATLAB ``rgb2ycbcr``, first channel, unrounded) of an RGB image in [0, 255].

    Args:
        img: ``(..., 3)`` channels-last RGB, uint8 or float in [0, 255].

    Returns:
        float64 array of shape ``img.shape[:-1]``.
    """
    if img.ndim < 1 or img.shape[-1] != 3:
        raise ValueError(f"rgb_to_y expects channels-last RGB (..., 3), got shape {img.shape}")
    rgb = np.asarray(img, dtype=np.float64)
    r, g, b = rgb[..., 0], rgb[..., 1], rgb[..., 2]
    # Dividing by 255 after the weighted sum is the formula for [0, 255] input written out; it equals MATLAB's
    # Y = 16 + 65.481 R' + 128.553 G' + 24.966 B' for R' = R / 255 up to float64 rounding.
    return Y_OFFSET + (Y_COEFFS[0] * r + Y_COEFFS[1] * g + Y_COEFFS[2] * b) / 255.0


def _prepare(a: np.ndarray, b: np.ndarray, crop_border: int, y_channel: bool, name: str) -> tuple[np.ndarray, ...]:
    """Validate a pair of images, crop, optionally take luma; return float64 (H, W, C) arrays."""
    a = np.asarray(a)
    b = np.asarray(b)
    if a.shape != b.shape:
        raise ValueError(f"{name}: image shapes differ: {a.shape} vs {b.shape}")
    if a.ndim == 2:
        a, b = a[..., None], b[..., None]
    if a.ndim != 3:
        raise ValueError(f"{name}: expected an HWC or HW image, got shape {a.shape}")
    if a.shape[2] not in (1, 3):
        raise ValueError(f"{name}: expected 1 or 3 channels last (HWC), got shape {a.shape}; transpose CHW first")
    if crop_border < 0:
        raise ValueError(f"{name}: crop_border must be >= 0, got {crop_border}")
    if crop_border:
        if min(a.shape[0], a.shape[1]) <= 2 * crop_border:
            raise ValueError(f"{name}: crop_border {crop_border} leaves nothing of a {a.shape[0]}x{a.shape[1]} image")
        a = a[crop_border:-crop_border, crop_border:-crop_border]
        b = b[crop_border:-crop_border, crop_border:-crop_border]
    if y_channel and a.shape[2] == 3:
        # A grey image is its own luma: BasicSR's to_y_channel also leaves 1-channel images alone.
        a, b = rgb_to_y(a)[..., None], rgb_to_y(b)[..., None]
    return a.astype(np.float64, copy=False), b.astype(np.float64, copy=False)


def psnr(a: np.ndarray, b: np.ndarray, *, crop_border: int = 0, y_channel: bool = False) -> float:
    """Peak signal-to-noise ratio in dB of two images in [0, 255] (HWC or HW, uint8 or float).

    ``crop_border`` pixels are dropped on each side; ``y_channel`` scores BT.601 luma (see the module docstring).
    Identical images give ``float('inf')``.
    """
    x, y = _prepare(a, b, crop_border, y_channel, "psnr")
    mse = float(np.mean((x - y) ** 2))
    if mse == 0.0:
        return float("inf")
    return float(10.0 * np.log10(255.0 * 255.0 / mse))


def ssim_window(size: int = SSIM_WINDOW, sigma: float = SSIM_SIGMA) -> np.ndarray:
    """The 1-D Gaussian of the SSIM window (float64, sums to 1); the 2-D window is its outer product."""
    x = np.arange(size, dtype=np.float64) - (size - 1) / 2.0
    g = np.exp(-(x**2) / (2.0 * sigma * sigma))
    return g / g.sum()


def _filter_valid(img: np.ndarray, g: np.ndarray) -> np.ndarray:
    """Correlate a 2-D array with outer(g, g), valid region only, as two 1-D passes (the window is separable)."""
    k = g.shape[0]
    rows = np.lib.stride_tricks.sliding_window_view(img, k, axis=0) @ g  # (H-k+1, W)
    return np.lib.stride_tricks.sliding_window_view(rows, k, axis=1) @ g  # (H-k+1, W-k+1)


def _ssim_channel(x: np.ndarray, y: np.ndarray, g: np.ndarray) -> float:
    mu_x = _filter_valid(x, g)
    mu_y = _filter_valid(y, g)
    mu_xx, mu_yy, mu_xy = mu_x * mu_x, mu_y * mu_y, mu_x * mu_y
    var_x = _filter_valid(x * x, g) - mu_xx
    var_y = _filter_valid(y * y, g) - mu_yy
    cov = _filter_valid(x * y, g) - mu_xy
    numerator = (2.0 * mu_xy + SSIM_C1) * (2.0 * cov + SSIM_C2)
    ssim_map = numerator / ((mu_xx + mu_yy + SSIM_C1) * (var_x + var_y + SSIM_C2))
    return float(ssim_map.mean())


def ssim(a: np.ndarray, b: np.ndarray, *, crop_border: int = 0, y_channel: bool = False) -> float:
    """Structural similarity of two images in [0, 255] (HWC or HW), MATLAB/BasicSR style (module docstring).

    RGB images are scored per channel and the three values averaged. After cropping, both sides must be at least
    11 pixels (the window).
    """
    x, y = _prepare(a, b, crop_border, y_channel, "ssim")
    if min(x.shape[0], x.shape[1]) < SSIM_WINDOW:
        raise ValueError(f"ssim: a {x.shape[0]}x{x.shape[1]} image is smaller than the {SSIM_WINDOW}-pixel window")
    g = ssim_window()
    return float(np.mean([_ssim_channel(x[..., c], y[..., c], g) for c in range(x.shape[2])]))


def psnr_ssim_batch(
    output: torch.Tensor,
    gt: torch.Tensor,
    *,
    crop_border: int = 0,
    y_channel: bool = False,
    compute_ssim: bool = True,
) -> tuple[list[float], list[float]]:
    """Per-image PSNR and SSIM of tensors in [0, 1], quantised first exactly as a saved output would be.

    Args:
        output, gt: ``(..., 3, H, W)`` (or ``(..., 1, H, W)``) tensors in [0, 1], RGB; leading dimensions (batch,
            time) are flattened, one score per image, in order.
        compute_ssim: SSIM costs about 10x PSNR; pass False for quick validation and get an empty SSIM list.

    Returns:
        ``(psnrs, ssims)`` lists of floats.
    """
    if output.shape != gt.shape:
        raise ValueError(f"psnr_ssim_batch: shapes differ: {tuple(output.shape)} vs {tuple(gt.shape)}")
    if output.ndim < 3:
        raise ValueError(f"psnr_ssim_batch: expected (..., C, H, W), got {tuple(output.shape)}")
    out_u8 = to_uint8(output).reshape(-1, *output.shape[-2:], output.shape[-3])
    gt_u8 = to_uint8(gt).reshape(-1, *gt.shape[-2:], gt.shape[-3])
    pairs = list(zip(out_u8, gt_u8, strict=True))
    psnrs = [psnr(o, g, crop_border=crop_border, y_channel=y_channel) for o, g in pairs]
    ssims = [ssim(o, g, crop_border=crop_border, y_channel=y_channel) for o, g in pairs] if compute_ssim else []
    return psnrs, ssims
