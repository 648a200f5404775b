"""PSNR/SSIM against scikit-image as an independent oracle, on real photographs with realistic distortions.

scikit-image's ``structural_similarity(gaussian_weights=True, sigma=1.5, use_sample_covariance=False, data_range=255)``
filters the whole image (reflect border, truncate 3.5 -> radius 5, an 11-tap window like ours) and then averages the
SSIM map over the image *minus a 5-pixel border*. Every map value it keeps is computed from interior pixels only, so
its average is exactly our valid-region average: the two agree to rounding, no region adjustment needed.
"""

from __future__ import annotations

import io

import numpy as np
import pytest
import torch
from scipy import ndimage

skimage = pytest.importorskip("skimage")
from skimage import color, data  # noqa: E402
from skimage.metrics import peak_signal_noise_ratio, structural_similarity  # noqa: E402

from edvr.evaluation.metrics import psnr, psnr_ssim_batch, rgb_to_y, ssim, ssim_window, to_uint8  # noqa: E402


def _jpeg(img: np.ndarray, quality: int) -> np.ndarray:
    from PIL import Image

    buf = io.BytesIO()
    Image.fromarray(img).save(buf, format="JPEG", quality=quality)
    return np.asarray(Image.open(io.BytesIO(buf.getvalue())).convert("RGB"))


def _pairs() -> list[tuple[str, np.ndarray, np.ndarray]]:
    rng = np.random.default_rng(0)
    astronaut, chelsea, coffee = data.astronaut(), data.chelsea(), data.coffee()
    noisy = np.clip(chelsea.astype(np.float64) + rng.normal(0, 8, chelsea.shape), 0, 255).round().astype(np.uint8)
    blurred = ndimage.gaussian_filter(coffee.astype(np.float64), sigma=(1.2, 1.2, 0)).round().astype(np.uint8)
    return [
        ("astronaut_jpeg30", astronaut, _jpeg(astronaut, 30)),
        ("chelsea_noise8", chelsea, noisy),
        ("coffee_blur", coffee, blurred),
    ]


PAIRS = _pairs()
IDS = [name for name, _, _ in PAIRS]


def _y_oracle(img: np.ndarray) -> np.ndarray:
    # scikit-image's rgb2ycbcr takes RGB in [0, 1] (uint8 is rescaled) and returns MATLAB's studio-swing YCbCr.
    return color.rgb2ycbcr(img)[..., 0]


@pytest.mark.parametrize(("name", "gt", "out"), PAIRS, ids=IDS)
def test_psnr_matches_skimage(name: str, gt: np.ndarray, out: np.ndarray) -> None:
    expected = peak_signal_noise_ratio(gt, out, data_range=255)
    got = psnr(out, gt)
    assert 20 < got < 45  # the distortion is real, not a no-op
    assert got == pytest.approx(expected, abs=1e-6)
    # Crop: skimage on the cropped arrays.
    c = 4
    assert psnr(out, gt, crop_border=c) == pytest.approx(
        peak_signal_noise_ratio(gt[c:-c, c:-c], out[c:-c, c:-c], data_range=255), abs=1e-6
    )
    # Y channel: skimage's own BT.601 conversion, compared on [0, 255] float luma.
    y_expected = peak_signal_noise_ratio(_y_oracle(gt[c:-c, c:-c]), _y_oracle(out[c:-c, c:-c]), data_range=255)
    assert psnr(out, gt, crop_border=c, y_channel=True) == pytest.approx(y_expected, abs=1e-6)


@pytest.mark.parametrize(("name", "gt", "out"), PAIRS, ids=IDS)
def test_ssim_matches_skimage(name: str, gt: np.ndarray, out: np.ndarray) -> None:
    kwargs = {"gaussian_weights": True, "sigma": 1.5, "use_sample_covariance": False, "data_range": 255}
    expected = structural_similarity(gt, out, channel_axis=-1, **kwargs)
    got = ssim(out, gt)
    assert 0.3 < got < 0.999
    assert got == pytest.approx(expected, abs=1e-7)
    c = 4
    g, o = gt[c:-c, c:-c], out[c:-c, c:-c]
    expected_crop = structural_similarity(g, o, channel_axis=-1, **kwargs)
    assert ssim(out, gt, crop_border=c) == pytest.approx(expected_crop, abs=1e-7)
    y_expected = structural_similarity(_y_oracle(g), _y_oracle(o), **kwargs)
    assert ssim(out, gt, crop_border=c, y_channel=True) == pytest.approx(y_expected, abs=1e-7)


def test_ssim_matches_brute_force_valid_region() -> None:
    # A second oracle with no filtering library: every valid-region map value from its 11x11 patch, weights built as a
    # 2-D Gaussian directly (not as a product of 1-D ones).
    rng = np.random.default_rng(1)
    gt = data.coffee()[100:124, 200:227, 1].astype(np.float64)
    out = np.clip(gt + rng.normal(0, 10, gt.shape), 0, 255)
    yy, xx = np.mgrid[-5:6, -5:6]
    w = np.exp(-(yy**2 + xx**2) / (2 * 1.5**2))
    w /= w.sum()
    c1, c2 = (0.01 * 255) ** 2, (0.03 * 255) ** 2
    vals = []
    for i in range(gt.shape[0] - 10):
        for j in range(gt.shape[1] - 10):
            p, q = gt[i : i + 11, j : j + 11], out[i : i + 11, j : j + 11]
            mp, mq = (w * p).sum(), (w * q).sum()
            vp, vq = (w * (p - mp) ** 2).sum(), (w * (q - mq) ** 2).sum()
            cov = (w * (p - mp) * (q - mq)).sum()
            vals.append((2 * mp * mq + c1) * (2 * cov + c2) / ((mp**2 + mq**2 + c1) * (vp + vq + c2)))
    assert ssim(out, gt) == pytest.approx(np.mean(vals), abs=1e-10)


def test_ssim_window_is_the_matlab_gaussian() -> None:
    g = ssim_window()
    assert g.shape == (11,)
    assert g.sum() == pytest.approx(1.0, abs=1e-15)
    assert g[5] / g[4] == pytest.approx(np.exp(1 / (2 * 1.5**2)))
    np.testing.assert_allclose(g, g[::-1])


def test_rgb_to_y_matches_skimage_and_range() -> None:
    img = data.astronaut()
    np.testing.assert_allclose(rgb_to_y(img), _y_oracle(img), atol=1e-9)
    assert rgb_to_y(np.zeros((1, 1, 3))) == pytest.approx(16.0)
    assert rgb_to_y(np.full((1, 1, 3), 255.0)) == pytest.approx(235.0)
    assert rgb_to_y(np.array([255.0, 0.0, 0.0])) == pytest.approx(16 + 65.481)
    assert rgb_to_y(img).dtype == np.float64


def test_identical_images() -> None:
    img = data.chelsea()
    assert psnr(img, img) == float("inf")
    assert ssim(img, img) == pytest.approx(1.0, abs=1e-12)
    # The documented averaging rule: a mean that includes a perfect frame is inf.
    assert np.mean([psnr(img, img), 30.0]) == float("inf")


def test_uint8_and_float_inputs_agree() -> None:
    _, gt, out = PAIRS[0]
    assert psnr(out.astype(np.float32), gt) == pytest.approx(psnr(out, gt), abs=1e-12)
    assert ssim(out.astype(np.float64), gt.astype(np.float64)) == pytest.approx(ssim(out, gt), abs=1e-12)


def test_grey_images_and_bad_inputs() -> None:
    gt = data.camera()[:64, :64]
    out = np.clip(gt.astype(np.int16) + 3, 0, 255).astype(np.uint8)
    assert psnr(out, gt) == pytest.approx(peak_signal_noise_ratio(gt, out, data_range=255), abs=1e-6)
    assert psnr(out, gt, y_channel=True) == psnr(out, gt)  # grey is its own luma
    with pytest.raises(ValueError, match="differ"):
        psnr(gt, gt[:-1])
    with pytest.raises(ValueError, match="crop_border"):
        psnr(gt, gt, crop_border=32)
    with pytest.raises(ValueError, match="window"):
        ssim(gt[:10, :20], gt[:10, :20])
    with pytest.raises(ValueError, match="channels"):
        psnr(np.zeros((3, 8, 8)), np.zeros((3, 8, 8)))


def test_to_uint8_quantises_like_tensor2img() -> None:
    # Every 8-bit level survives the trip through float32 [0, 1].
    levels = np.arange(256, dtype=np.float32) / np.float32(255)
    np.testing.assert_array_equal(to_uint8(levels[None, :, None]).ravel(), np.arange(256))
    # Clamping.
    np.testing.assert_array_equal(to_uint8(np.array([-0.3, 1.7], dtype=np.float64)), [0, 255])
    # Ties go to even, decided on the float32 product (the reference multiplies in float32).
    tie = np.float32(2.5) / np.float32(255)
    assert np.float32(tie) * np.float32(255) == np.float32(2.5)
    assert to_uint8(np.array([tie])) == 2
    tie = np.float32(3.5) / np.float32(255)
    if np.float32(tie) * np.float32(255) == np.float32(3.5):
        assert to_uint8(np.array([tie])) == 4


def test_to_uint8_layouts() -> None:
    rng = torch.Generator().manual_seed(0)
    t = torch.rand(2, 3, 5, 7, generator=rng)
    u = to_uint8(t)
    assert u.shape == (2, 5, 7, 3) and u.dtype == np.uint8
    np.testing.assert_array_equal(u[1], to_uint8(t[1]))
    assert to_uint8(t[0, 0]).shape == (5, 7)
    expected = np.round(np.clip(t.numpy(), 0, 1) * np.float32(255)).astype(np.uint8).transpose(0, 2, 3, 1)
    np.testing.assert_array_equal(u, expected)
    with pytest.raises(TypeError):
        to_uint8(np.zeros((2, 2), dtype=np.uint8))


def test_psnr_ssim_batch_equals_per_image_scores() -> None:
    _, gt, out = PAIRS[1]
    gt_t = torch.from_numpy(gt[:64, :80]).permute(2, 0, 1).float() / 255
    out_t = torch.from_numpy(out[:64, :80]).permute(2, 0, 1).float() / 255
    batch_out = torch.stack([out_t, gt_t, out_t])[None]  # (1, 3, C, H, W): leading dims flattened
    batch_gt = torch.stack([gt_t, gt_t, gt_t])[None]
    psnrs, ssims = psnr_ssim_batch(batch_out, batch_gt, y_channel=True)
    assert psnrs[0] == pytest.approx(psnr(out[:64, :80], gt[:64, :80], y_channel=True), abs=1e-9)
    assert psnrs[1] == float("inf") and psnrs[2] == psnrs[0]
    assert ssims[0] == pytest.approx(ssim(out[:64, :80], gt[:64, :80], y_channel=True), abs=1e-12)
    assert ssims[1] == pytest.approx(1.0)
    assert psnr_ssim_batch(batch_out, batch_gt, compute_ssim=False)[1] == []
