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


def spectrum(y: np.ndarray) -> np.ndarray:
    """The 2-D Fourier transform of ``y`` with its mean removed, under a Hann window (both measures below use it)."""
    window = np.outer(np.hanning(y.shape[0]), np.hanning(y.shape[1]))
    return np.fft.fft2((y - y.mean()) * window)


def global_shift(fa: np.ndarray, fb: np.ndarray) -> float:
    """Length in pixels of the whole-pixel translation that best maps frame b onto frame a (phase correlation of
    their ``spectrum``s ``fa``, ``fb``)."""
    cross = fa * np.conj(fb)
    corr = np.real(np.fft.ifft2(cross / (np.abs(cross) + 1e-9)))
    dy, dx = np.unravel_index(np.argmax(corr), corr.shape)
    h, w = corr.shape
    return float(np.hypot(dy - h if dy > h // 2 else dy, dx - w if dx > w // 2 else dx))


def fine_detail(f: np.ndarray, scale: int = 4) -> float:
    """Share of the energy of a frame's ``spectrum`` ``f`` above the Nyquist frequency of its x``scale``
    downscaled version."""
    power = np.abs(f) ** 2
    fy, fx = np.abs(np.fft.fftfreq(f.shape[0]))[:, None], np.abs(np.fft.fftfreq(f.shape[1]))[None, :]
    return float(power[np.maximum(fy, fx) > 0.5 / scale].sum() / power.sum())


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("clips", nargs="+", type=Path, help="folders of frames (PNG), in frame order by name")
    args = parser.parse_args(argv)
    clips = {clip: sorted(clip.glob("*.png")) for clip in args.clips}
    for clip, paths in clips.items():
        if len(paths) < 2:
            print(f"{clip}: fewer than 2 PNG frames; point at a clip folder such as datasets/edvr_real/heldout/GT/carphone",
                  file=sys.stderr)
            return 2
    print(f"{'clip':<16}{'pairs':>6}{'shift px':>10}{'still':>7}{'|diff|':>8}{'fine detail':>13}")
    for clip, paths in clips.items():
        frames = [luma(p) for p in paths]
        spectra = [spectrum(y) for y in frames]  # one transform per frame, for both measures
        shifts = np.array([global_shift(fa, fb) for fa, fb in pairwise(spectra)])
        diffs = [np.abs(a - b).mean() for a, b in pairwise(frames)]
        detail = np.mean([fine_detail(f) for f in spectra])
        print(f"{clip.name:<16}{len(shifts):>6}{shifts.mean():>10.2f}{np.mean(shifts == 0):>7.2f}{np.mean(diffs):>8.2f}"
              f"{100 * detail:>12.1f}%")
    return 0


if __name__ == "__main__":
    sys.exit(main())
