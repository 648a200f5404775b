"""What neighbouring frames can add in a clip: how much its camera moves, and how much detail x4 SR must restore.

    python configs/default_model/motion.py datasets/edvr_real/heldout/GT/* datasets/edvr_real/heldout_moving/GT/*

Neighbouring frames can only add detail that the centre frame lacks where the scene moved against the pixel grid
(a still camera samples the static background at the same places in every frame), and only where the GT has detail
finer than the x4 LQ can hold (which the downscaling folds into the LQ, differently in each shifted frame). For each
clip folder this prints the mean whole-pixel shift of the luma between consecutive frames (the peak of the phase
correlation of Hann-windowed frames), the share of frame pairs with no shift, the mean absolute luma difference
(0-255) between them, and the share of the luma's spectral energy (Hann window, mean removed) above the LQ's Nyquist
frequency (1/8 cycle per GT pixel in either direction), averaged over the frames.
"""

from __future__ import annotations

import argparse
import sys
from itertools import pairwise
from pathlib import Path

import numpy as np
from PIL import Image


def luma(path: Path) -> np.ndarray:
    rgb = np.asarray(Image.open(path).convert("RGB"), dtype=np.float64)
    return rgb @ np.array([0.299, 0.587, 0.114])


def global_shift(a: np.ndarray, b: np.ndarray) -> float:
    """Length in pixels of the whole-pixel translation that best maps ``b`` onto ``a`` (phase correlation)."""
    window = np.outer(np.hanning(a.shape[0]), np.hanning(a.shape[1]))
    cross = np.fft.fft2((a - a.mean()) * window) * np.conj(np.fft.fft2((b - b.mean()) * window))
    corr = np.real(np.fft.ifft2(cross / (np.abs(cross) + 1e-9)))
    dy, dx = np.unravel_index(np.argmax(corr), corr.shape)
    h, w = corr.shape
    return float(np.hypot(dy - h if dy > h // 2 else dy, dx - w if dx > w // 2 else dx))


def fine_detail(y: np.ndarray, scale: int = 4) -> float:
    """Share of the spectral energy of ``y`` above the Nyquist frequency of its x``scale`` downscaled version."""
    window = np.outer(np.hanning(y.shape[0]), np.hanning(y.shape[1]))
    power = np.abs(np.fft.fft2((y - y.mean()) * window)) ** 2
    fy, fx = np.abs(np.fft.fftfreq(y.shape[0]))[:, None], np.abs(np.fft.fftfreq(y.shape[1]))[None, :]
    return float(power[np.maximum(fy, fx) > 0.5 / scale].sum() / power.sum())


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("clips", nargs="+", type=Path, help="folders of frames (PNG), in frame order by name")
    args = parser.parse_args(argv)
    for clip in args.clips:
        if len(list(clip.glob("*.png"))) < 2:
            print(f"{clip}: fewer than 2 PNG frames; point at a clip folder such as datasets/edvr_real/heldout/GT/carphone",
                  file=sys.stderr)
            return 2
    print(f"{'clip':<16}{'pairs':>6}{'shift px':>10}{'still':>7}{'|diff|':>8}{'fine detail':>13}")
    for clip in args.clips:
        frames = [luma(p) for p in sorted(clip.glob("*.png"))]
        shifts = np.array([global_shift(a, b) for a, b in pairwise(frames)])
        diffs = [np.abs(a - b).mean() for a, b in pairwise(frames)]
        detail = np.mean([fine_detail(y) for y in frames])
        print(f"{clip.name:<16}{len(shifts):>6}{shifts.mean():>10.2f}{np.mean(shifts == 0):>7.2f}{np.mean(diffs):>8.2f}"
              f"{100 * detail:>12.1f}%")
    return 0


if __name__ == "__main__":
    sys.exit(main())
