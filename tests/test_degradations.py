"""Degradations: MATLAB imresize against a per-pixel transcription of MATLAB's formula and against Pillow; BD against
scipy.ndimage; frame averaging, JPEG and H.264 on real photographs."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from scipy import ndimage

from edvr.data.degradations import (
    average_frames,
    bd_degrade,
    bd_kernel,
    bi_degrade,
    h264,
    imresize,
    imresize_matrix,
    jpeg,
)

skimage_data = pytest.importorskip("skimage.data")


def _photo() -> np.ndarray:
    return skimage_data.astronaut()  # 512 x 512 x 3 uint8, a real photograph with edges and texture


def _psnr(a: np.ndarray, b: np.ndarray) -> float:
    mse = np.mean((a.astype(np.float64) - b.astype(np.float64)) ** 2)
    return float(10 * np.log10(255.0**2 / mse))


# ----------------------------------------------------------------------------------------------------------------------
# imresize


def _keys(t: float) -> float:
    a = abs(t)
    if a <= 1:
        return 1.5 * a**3 - 2.5 * a**2 + 1
    if a <= 2:
        return -0.5 * a**3 + 2.5 * a**2 - 4 * a + 2
    return 0.0


def _matlab_taps(out_pos: int, n_in: int, scale: float, antialias: bool) -> list[tuple[int, float]]:
    """MATLAB contributions() for one 1-based output position, read off its documented algorithm, scalar code."""
    shrink = scale < 1 and antialias
    width = 4 / scale if shrink else 4
    u = out_pos / scale + 0.5 * (1 - 1 / scale)
    left = math.floor(u - width / 2)
    aux = list(range(1, n_in + 1)) + list(range(n_in, 0, -1))  # MATLAB: aux = [1:n, n:-1:1]
    taps = []
    for k in range(math.ceil(width) + 2):
        j = left + k
        w = scale * _keys(scale * (u - j)) if shrink else _keys(u - j)
        taps.append((aux[(j - 1) % len(aux)] - 1, w))
    total = sum(w for _, w in taps)
    return [(j, w / total) for j, w in taps]


def _reference_imresize(img: np.ndarray, scale: float, antialias: bool = True) -> np.ndarray:
    """Slow oracle: every output pixel as a double sum over its 2-D neighbourhood, float64."""
    h, w = img.shape[:2]
    oh, ow = math.ceil(h * scale), math.ceil(w * scale)
    rows = [_matlab_taps(i + 1, h, scale, antialias) for i in range(oh)]
    cols = [_matlab_taps(j + 1, w, scale, antialias) for j in range(ow)]
    out = np.zeros((oh, ow, img.shape[2]))
    for i in range(oh):
        for j in range(ow):
            acc = np.zeros(img.shape[2])
            for r, wr in rows[i]:
                for c, wc in cols[j]:
                    acc += wr * wc * img[r, c]
            out[i, j] = acc
    return out


@pytest.mark.parametrize(
    ("crop", "scale", "antialias"),
    [
        ((slice(180, 244), slice(200, 280)), 0.25, True),  # x4 down, the BI case
        ((slice(180, 244), slice(200, 280)), 0.25, False),
        ((slice(100, 121), slice(300, 317)), 2.0, True),  # up: antialias is irrelevant
        ((slice(60, 100), slice(60, 90)), 1 / 3, True),  # non-integer factor, odd input sizes
        ((slice(0, 3), slice(0, 5)), 0.25, True),  # kernel wider than the image: mirrored many times
    ],
)
def test_imresize_matches_per_pixel_matlab_formula(crop: tuple, scale: float, antialias: bool) -> None:
    img = _photo()[crop].astype(np.float64) / 255
    got = imresize(img, scale, antialias=antialias)
    expected = _reference_imresize(img, scale, antialias)
    assert got.shape == expected.shape
    np.testing.assert_allclose(got, expected, rtol=0, atol=1e-12)


def test_imresize_torch_numpy_and_layouts_agree() -> None:
    img = _photo()[:64, :96].astype(np.float64) / 255
    t = torch.from_numpy(img).permute(2, 0, 1)
    out_np = imresize(img, 0.25)
    out_t = imresize(t[None, None], 0.25)  # (1, 1, C, H, W): any leading dims
    assert out_np.shape == (16, 24, 3) and out_t.shape == (1, 1, 3, 16, 24)
    np.testing.assert_allclose(out_t[0, 0].permute(1, 2, 0).numpy(), out_np, atol=1e-14)
    out_f32 = imresize(t.float(), 0.25)
    assert out_f32.dtype == torch.float32
    np.testing.assert_allclose(out_f32.permute(1, 2, 0).numpy(), out_np, atol=1e-6)
    np.testing.assert_allclose(imresize(img[..., 0], 0.25), out_np[..., 0], atol=1e-14)  # (H, W)


def test_imresize_interior_matches_pillow_bicubic() -> None:
    # Pillow's BICUBIC is the same a = -0.5 kernel, widened by the factor when shrinking, with centre-aligned pixels;
    # it drops (instead of mirroring) taps outside the image, so only outputs whose support is inside are compared.
    # Pillow's 'F' mode computes in double and stores float32: hence the tolerance (on a 0..255 scale).
    from PIL import Image

    img = _photo()[:, :, 0].astype(np.float64)
    ours = imresize(img, 0.25)
    pil = np.asarray(Image.fromarray(img.astype(np.float32), mode="F").resize((128, 128), Image.BICUBIC))
    inner = slice(3, -3)  # support radius 8 input pixels = 2 output pixels; one more for safety
    np.testing.assert_allclose(ours[inner, inner], pil[inner, inner], atol=1e-4)
    assert np.abs(ours - pil).max() > 1e-3  # the borders do differ: the comparison above is not vacuous

    up = imresize(img[:64, :64], 2.0)
    pil_up = np.asarray(Image.fromarray(img[:64, :64].astype(np.float32), mode="F").resize((128, 128), Image.BICUBIC))
    np.testing.assert_allclose(up[3:-3, 3:-3], pil_up[3:-3, 3:-3], atol=1e-4)


@pytest.mark.parametrize("scale", [0.25, 0.5, 1 / 3, 2.0, 3.0])
def test_imresize_constants_stay_constant_and_size_is_ceil(scale: float) -> None:
    img = np.full((61, 83, 3), 0.37)
    out = imresize(img, scale)
    assert out.shape == (math.ceil(61 * scale), math.ceil(83 * scale), 3)
    np.testing.assert_allclose(out, 0.37, atol=1e-14)


def test_imresize_matrix_rows_sum_to_one_and_size_option() -> None:
    m = imresize_matrix(37, 10, 10 / 37)
    np.testing.assert_allclose(m.sum(axis=1), 1.0, atol=1e-14)
    img = _photo()[:40, :50].astype(np.float64) / 255
    assert imresize(img, size=(10, 20)).shape == (10, 20, 3)
    np.testing.assert_allclose(imresize(img, size=(10, 25)), imresize(img, (0.25, 0.5)), atol=1e-14)
    with pytest.raises(ValueError):
        imresize(img)
    with pytest.raises(TypeError):
        imresize(_photo(), 0.25)  # uint8 is refused (MATLAB would round between passes)


def test_bi_degrade_is_rounded_imresize() -> None:
    gt = _photo()[:64, :128]
    lq = bi_degrade(gt)
    assert lq.dtype == np.uint8 and lq.shape == (16, 32, 3)
    exact = _reference_imresize(gt[:, :, :1].astype(np.float64) / 255, 0.25)[..., 0]
    np.testing.assert_array_equal(lq[..., 0], np.floor(np.clip(exact, 0, 1) * 255 + 0.5).astype(np.uint8))
    lq_t = bi_degrade(torch.from_numpy(gt).permute(2, 0, 1))
    assert lq_t.dtype == torch.uint8
    np.testing.assert_array_equal(lq_t.permute(1, 2, 0).numpy(), lq)


# ----------------------------------------------------------------------------------------------------------------------
# BD


def _scipy_kernel(sigma: float, size: int = 13) -> np.ndarray:
    # BasicSR's definition of the DUF kernel, evaluated by scipy itself: a smoothed unit impulse.
    delta = np.zeros((size, size))
    delta[size // 2, size // 2] = 1
    return ndimage.gaussian_filter(delta, sigma)


@pytest.mark.parametrize("sigma", [1.6, 1.2, 2.5])  # exact fit, truncated (radius 5), folded (radius 10 > 6)
def test_bd_kernel_equals_scipy_smoothed_impulse(sigma: float) -> None:
    k = bd_kernel(sigma=sigma)
    np.testing.assert_allclose(k, _scipy_kernel(sigma), atol=1e-15)
    assert k.sum() == pytest.approx(1.0, abs=1e-14)
    assert k.shape == (13, 13)


def test_bd_degrade_matches_scipy_correlate() -> None:
    img = _photo()[:130, :97].astype(np.float64) / 255  # sizes not divisible by 4
    kernel = _scipy_kernel(1.6)
    expected = np.stack(
        [ndimage.correlate(img[..., c], kernel, mode="mirror")[::4, ::4] for c in range(3)], axis=-1
    )  # scipy 'mirror' = reflect without repeating the edge = torch 'reflect', as the reference pads
    got = bd_degrade(img)
    assert got.shape == (33, 25, 3) == expected.shape
    np.testing.assert_allclose(got, expected, atol=1e-12)
    got_t = bd_degrade(torch.from_numpy(img).permute(2, 0, 1).float())
    assert got_t.shape == (3, 33, 25) and got_t.dtype == torch.float32
    np.testing.assert_allclose(got_t.permute(1, 2, 0).numpy(), expected, atol=1e-6)


def test_bd_degrade_constant_and_tiny_images() -> None:
    np.testing.assert_allclose(bd_degrade(np.full((20, 24, 3), 0.6)), 0.6, atol=1e-14)
    tiny = bd_degrade(np.full((5, 3), 0.25))  # smaller than the kernel: the mirror continues periodically
    assert tiny.shape == (2, 1)
    np.testing.assert_allclose(tiny, 0.25, atol=1e-14)


# ----------------------------------------------------------------------------------------------------------------------
# Frame averaging


def test_average_frames_known_values() -> None:
    frame = _photo()[:32, :32].astype(np.float32) / 255
    np.testing.assert_allclose(average_frames([frame] * 5), frame, atol=1e-7)
    np.testing.assert_allclose(average_frames([frame] * 5, gamma=2.2), frame, atol=1e-6)
    black, white = np.zeros((2, 2, 3)), np.ones((2, 2, 3))
    np.testing.assert_allclose(average_frames([black, white]), 0.5)
    np.testing.assert_allclose(average_frames([black, white], gamma=2.0), math.sqrt(0.5))
    np.testing.assert_allclose(average_frames(np.stack([black, black, white])), 1 / 3)
    u8 = average_frames([np.zeros((1, 1, 3), np.uint8), np.full((1, 1, 3), 255, np.uint8)])
    assert u8.dtype == np.uint8 and (u8 == 128).all()  # 127.5 rounds half to even
    t = average_frames(torch.stack([torch.zeros(3, 2, 2), torch.ones(3, 2, 2)]), gamma=2.0)
    assert t.shape == (3, 2, 2) and torch.allclose(t, torch.full((3, 2, 2), math.sqrt(0.5)))


# ----------------------------------------------------------------------------------------------------------------------
# Compression


def test_jpeg_degrades_mildly_and_keeps_kind() -> None:
    img = _photo()[:128, :160]
    out = jpeg(img, 90)
    assert out.shape == img.shape and out.dtype == np.uint8
    assert not np.array_equal(out, img)
    assert 32 < _psnr(out, img) < 60
    assert _psnr(jpeg(img, 20), img) < _psnr(out, img)
    np.testing.assert_array_equal(jpeg(img, 90), out)  # deterministic

    t = torch.from_numpy(img).permute(2, 0, 1).float()[None] / 255  # (1, 3, H, W) float
    out_t = jpeg(t, 90)
    assert out_t.shape == t.shape and out_t.dtype == torch.float32
    np.testing.assert_array_equal(np.round(out_t[0].permute(1, 2, 0).numpy() * 255).astype(np.uint8), out)
    grey = jpeg(img[..., 0], 50)
    assert grey.shape == img.shape[:2] and 25 < _psnr(grey, img[..., 0]) < 60
    f32 = jpeg(img.astype(np.float32) / 255, 90)
    assert f32.dtype == np.float32 and f32.shape == img.shape


def _clip(n: int = 6, h: int = 64, w: int = 96) -> np.ndarray:
    img = _photo()[150 : 150 + h, 150 : 150 + w + 3 * n]
    return np.stack([img[:, 3 * i : 3 * i + w] for i in range(n)])  # a camera pan over a real photo


def test_h264_degrades_mildly_keeps_order_and_is_deterministic() -> None:
    clip = _clip()
    out = h264(clip, 23)
    assert out.shape == clip.shape and out.dtype == np.uint8
    assert not np.array_equal(out, clip)
    for i in range(len(clip)):
        scores = [_psnr(out[i], clip[j]) for j in range(len(clip))]
        assert int(np.argmax(scores)) == i  # frames come back in order
        assert 28 < scores[i] < 60
    np.testing.assert_array_equal(h264(clip, 23), out)
    assert _psnr(h264(clip, 40), clip) < _psnr(out, clip)


def test_h264_kinds_and_odd_sizes() -> None:
    clip = _clip(n=4, h=31, w=45)  # odd: padded to even for 4:2:0, cropped back
    out = h264(clip, 18)
    assert out.shape == clip.shape and _psnr(out, clip) > 30
    t = torch.from_numpy(clip).permute(0, 3, 1, 2).float() / 255
    out_t = h264(t, 18)
    assert out_t.shape == t.shape and out_t.dtype == torch.float32
    np.testing.assert_array_equal(np.round(out_t.permute(0, 2, 3, 1).numpy() * 255).astype(np.uint8), out)
    as_list = h264(list(clip), 18)
    assert isinstance(as_list, list) and len(as_list) == 4
    np.testing.assert_array_equal(np.stack(as_list), out)
