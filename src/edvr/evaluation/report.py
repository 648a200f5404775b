"""Reports of an evaluation: a per-frame PSNR plot, side-by-side crops, a Markdown summary, and result comparison.

The images are drawn on numpy canvases (lines, a 5x7 bitmap font) and written as PNG by
:func:`edvr.inference.video_io.write_image`, so reports need no plotting library.
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from edvr.errors import InputError
from edvr.evaluation.evaluate import FrameOutputs, Result, Scores
from edvr.files import write_atomic

# ------------------------------------------------------------------------------------------------ drawing
# 5x7 glyphs, one string of 7 rows of 5 bits each. Lower case is drawn as upper case.
_GLYPHS: dict[str, str] = {
    "0": "01110 10001 10011 10101 11001 10001 01110", "1": "00100 01100 00100 00100 00100 00100 01110",
    "2": "01110 10001 00001 00010 00100 01000 11111", "3": "11111 00010 00100 00010 00001 10001 01110",
    "4": "00010 00110 01010 10010 11111 00010 00010", "5": "11111 10000 11110 00001 00001 10001 01110",
    "6": "00110 01000 10000 11110 10001 10001 01110", "7": "11111 00001 00010 00100 01000 01000 01000",
    "8": "01110 10001 10001 01110 10001 10001 01110", "9": "01110 10001 10001 01111 00001 00010 01100",
    "A": "01110 10001 10001 11111 10001 10001 10001", "B": "11110 10001 10001 11110 10001 10001 11110",
    "C": "01110 10001 10000 10000 10000 10001 01110", "D": "11100 10010 10001 10001 10001 10010 11100",
    "E": "11111 10000 10000 11110 10000 10000 11111", "F": "11111 10000 10000 11110 10000 10000 10000",
    "G": "01110 10001 10000 10111 10001 10001 01111", "H": "10001 10001 10001 11111 10001 10001 10001",
    "I": "01110 00100 00100 00100 00100 00100 01110", "J": "00111 00010 00010 00010 00010 10010 01100",
    "K": "10001 10010 10100 11000 10100 10010 10001", "L": "10000 10000 10000 10000 10000 10000 11111",
    "M": "10001 11011 10101 10101 10001 10001 10001", "N": "10001 10001 11001 10101 10011 10001 10001",
    "O": "01110 10001 10001 10001 10001 10001 01110", "P": "11110 10001 10001 11110 10000 10000 10000",
    "Q": "01110 10001 10001 10001 10101 10010 01101", "R": "11110 10001 10001 11110 10100 10010 10001",
    "S": "01111 10000 10000 01110 00001 00001 11110", "T": "11111 00100 00100 00100 00100 00100 00100",
    "U": "10001 10001 10001 10001 10001 10001 01110", "V": "10001 10001 10001 10001 10001 01010 00100",
    "W": "10001 10001 10001 10101 10101 10101 01010", "X": "10001 10001 01010 00100 01010 10001 10001",
    "Y": "10001 10001 10001 01010 00100 00100 00100", "Z": "11111 00001 00010 00100 01000 10000 11111",
    " ": "00000 00000 00000 00000 00000 00000 00000", ".": "00000 00000 00000 00000 00000 01100 01100",
    ",": "00000 00000 00000 00000 01100 00100 01000", "-": "00000 00000 00000 11111 00000 00000 00000",
    "+": "00000 00100 00100 11111 00100 00100 00000", ":": "00000 01100 01100 00000 01100 01100 00000",
    "/": "00001 00010 00010 00100 01000 01000 10000", "(": "00010 00100 01000 01000 01000 00100 00010",
    ")": "01000 00100 00010 00010 00010 00100 01000", "_": "00000 00000 00000 00000 00000 00000 11111",
    "=": "00000 00000 11111 00000 11111 00000 00000", "%": "11000 11001 00010 00100 01000 10011 00011",
    "[": "01110 01000 01000 01000 01000 01000 01110", "]": "01110 00010 00010 00010 00010 00010 01110",
    "<": "00010 00100 01000 10000 01000 00100 00010", ">": "01000 00100 00010 00001 00010 00100 01000",
    "?": "01110 10001 00001 00010 00100 00000 00100", "'": "00100 00100 01000 00000 00000 00000 00000",
}
_GLYPH_BITS = {c: np.array([[b == "1" for b in row] for row in g.split()], dtype=bool) for c, g in _GLYPHS.items()}

PALETTE = [(31, 119, 180), (214, 39, 40), (44, 160, 44), (255, 127, 14), (148, 103, 189), (140, 86, 75),
           (227, 119, 194), (127, 127, 127)]
BLACK, GREY, LIGHT, WHITE = (0, 0, 0), (120, 120, 120), (225, 225, 225), (255, 255, 255)


def text_size(text: str, scale: int = 2) -> tuple[int, int]:
    """(width, height) in pixels of ``text`` drawn by :func:`draw_text`."""
    return len(text) * 6 * scale - scale, 7 * scale


def draw_text(canvas: np.ndarray, text: str, x: int, y: int, color=BLACK, scale: int = 2) -> None:
    """Draw ``text`` with its top-left corner at (x, y); characters without a glyph are drawn as '?'."""
    h, w = canvas.shape[:2]
    for k, ch in enumerate(text):
        bits = _GLYPH_BITS.get(ch.upper(), _GLYPH_BITS["?"])
        big = np.repeat(np.repeat(bits, scale, 0), scale, 1)
        x0 = x + k * 6 * scale
        ys, xs = np.nonzero(big)
        ys, xs = ys + y, xs + x0
        keep = (ys >= 0) & (ys < h) & (xs >= 0) & (xs < w)
        canvas[ys[keep], xs[keep]] = color


def draw_line(canvas: np.ndarray, x0: float, y0: float, x1: float, y1: float, color=BLACK, width: int = 1) -> None:
    """A straight segment, sampled once per pixel of its longer extent, ``width`` pixels thick."""
    n = int(max(abs(x1 - x0), abs(y1 - y0))) + 1
    xs = np.rint(np.linspace(x0, x1, n)).astype(int)
    ys = np.rint(np.linspace(y0, y1, n)).astype(int)
    h, w = canvas.shape[:2]
    for dy in range(-(width // 2), width - width // 2):
        for dx in range(-(width // 2), width - width // 2):
            yy, xx = ys + dy, xs + dx
            keep = (yy >= 0) & (yy < h) & (xx >= 0) & (xx < w)
            canvas[yy[keep], xx[keep]] = color


def draw_rect(canvas: np.ndarray, x0: int, y0: int, x1: int, y1: int, color=BLACK, width: int = 1) -> None:
    for a, b, c, d in ((x0, y0, x1, y0), (x1, y0, x1, y1), (x1, y1, x0, y1), (x0, y1, x0, y0)):
        draw_line(canvas, a, b, c, d, color, width)


def nice_ticks(lo: float, hi: float, target: int = 6) -> list[float]:
    """Round tick values (1, 2 or 5 times a power of ten apart) covering [lo, hi]."""
    if hi <= lo:
        hi = lo + 1.0
    raw = (hi - lo) / target
    mag = 10 ** math.floor(math.log10(raw))
    step = next(m * mag for m in (1, 2, 5, 10) if m * mag >= raw)
    first = math.floor(lo / step) * step
    return [first + k * step for k in range(math.ceil((hi - first) / step) + 1)]


def _write_png(path: Path, canvas: np.ndarray) -> None:
    from edvr.inference.video_io import write_image

    path.parent.mkdir(parents=True, exist_ok=True)
    write_image(path, canvas.astype(np.float32) / 255.0)


# ------------------------------------------------------------------------------------------------ PSNR plot
def plot_psnr(result: Result, path: str | Path, *, methods: Sequence[str] | None = None, width: int = 1200,
              height: int = 520) -> Path:
    """Per-frame PSNR of each method, clips side by side (separated and named), as a PNG at ``path``."""
    names = list(methods) if methods is not None else list(result.methods)
    clips = result.clips
    series = {n: [v for c in clips for v in result.methods[n].psnr.get(c, [])] for n in names}
    count = len(series[names[0]])
    finite = [v for s in series.values() for v in s if math.isfinite(v)]
    if count == 0 or not finite:
        raise InputError(f"{path}: nothing to plot; the result has no finite per-frame PSNR")
    ticks = nice_ticks(min(finite), max(finite))
    lo, hi = ticks[0], ticks[-1]

    canvas = np.full((height, width, 3), 255, np.uint8)
    left, right, top, bottom = 90, 20, 70, 60 + 24 * ((len(names) + 2) // 3)
    pw, ph = width - left - right, height - top - bottom

    def px(k: float) -> float:
        return left + (k / max(count - 1, 1)) * pw

    def py(v: float) -> float:
        return top + (1 - (min(max(v, lo), hi) - lo) / (hi - lo)) * ph

    draw_text(canvas, f"per-frame PSNR (dB), protocol {result.protocol}", left, 16, scale=2)
    for v in ticks:  # horizontal grid and y labels
        y = round(py(v))
        draw_line(canvas, left, y, left + pw, y, LIGHT)
        label = f"{v:g}"
        tw, th = text_size(label, 2)
        draw_text(canvas, label, left - tw - 8, y - th // 2, scale=2)
    # Clip boundaries and names; frame-index ticks would be noise across concatenated clips.
    start = 0
    for c in clips:
        n = len(result.methods[names[0]].psnr.get(c, []))
        if start > 0:
            draw_line(canvas, px(start - 0.5), top, px(start - 0.5), top + ph, GREY)
        if len(clips) <= 20 and n:
            label = c[-12:]
            tw, _ = text_size(label, 1 if len(clips) > 8 else 2)
            draw_text(canvas, label, int(px(start + (n - 1) / 2) - tw / 2), top + 6, GREY, 1 if len(clips) > 8 else 2)
        start += n
    starts = set(np.cumsum([len(result.methods[names[0]].psnr.get(c, [])) for c in clips]).tolist())
    draw_rect(canvas, left, top, left + pw, top + ph, BLACK)
    draw_text(canvas, f"frames ({count} in {len(clips)} clips)", left, top + ph + 12, scale=2)
    for k, n in enumerate(names):
        color = PALETTE[k % len(PALETTE)]
        vals = series[n]
        pts = [(px(i), py(v if math.isfinite(v) else hi)) for i, v in enumerate(vals)]
        if len(pts) == 1:
            draw_rect(canvas, int(pts[0][0]) - 2, int(pts[0][1]) - 2, int(pts[0][0]) + 2, int(pts[0][1]) + 2, color)
        for j, ((x0, y0), (x1, y1)) in enumerate(itertools.pairwise(pts)):
            if j + 1 not in starts:  # no segment across a clip boundary: clips are not one sequence
                draw_line(canvas, x0, y0, x1, y1, color, width=2)
        # legend, three entries per row, each with its protocol mean
        mean = result.methods[n].mean()
        lx = left + (k % 3) * (pw // 3)
        ly = top + ph + 40 + 24 * (k // 3)
        canvas[ly + 4:ly + 10, lx:lx + 24] = color
        draw_text(canvas, f"{n}: {mean:.2f} dB" if mean is not None else n, lx + 32, ly, scale=2)
    out = Path(path)
    _write_png(out, canvas)
    return out


# ------------------------------------------------------------------------------------------------ crops
def _upscale_to(img: np.ndarray, shape: tuple[int, int]) -> np.ndarray:
    """Nearest-neighbour upscale by the integer factor that brings ``img`` to ``shape`` (LQ beside HR)."""
    fy, fx = shape[0] // img.shape[0], shape[1] // img.shape[1]
    if fy * img.shape[0] != shape[0] or fx * img.shape[1] != shape[1]:
        raise ValueError(f"cannot nearest-upscale {img.shape[:2]} to {shape} by an integer factor")
    return np.repeat(np.repeat(img, fy, 0), fx, 1)


def _best_box(score: np.ndarray, size: int) -> tuple[int, int]:
    """Top-left corner of the ``size`` x ``size`` square with the largest sum of ``score`` (a coarse grid search)."""
    h, w = score.shape
    size_h, size_w = min(size, h), min(size, w)
    integral = np.pad(score, ((1, 0), (1, 0))).cumsum(0).cumsum(1)
    step = max(1, size // 4)
    best, where = -1.0, (0, 0)
    for y in range(0, h - size_h + 1, step):
        for x in range(0, w - size_w + 1, step):
            s = integral[y + size_h, x + size_w] - integral[y, x + size_w] - integral[y + size_h, x] + integral[y, x]
            if s > best:
                best, where = s, (y, x)
    return where


def crops_panel(panels: dict[str, np.ndarray], path: str | Path, *, box: tuple[int, int] | None = None,
                size: int = 192, zoom: int = 4, psnr: dict[str, float] | None = None, title: str = "") -> Path:
    """Side-by-side crops of the same region, each with a zoomed inset below it, as a PNG.

    Args:
        panels: name -> HWC uint8 RGB image, in display order (e.g. LQ, bicubic, EDVR, GT). Images smaller than the
            largest by an integer factor (the LQ) are nearest-upscaled, so every pixel of the input stays visible.
        box: (top, left) of the ``size`` x ``size`` crop in the full-size frame; default: where the last panel (the
            GT) has the most detail (gradient energy).
        zoom: the inset shows the ``size // zoom`` square where the first two full-size panels after the LQ (the
            baseline and the model) differ most, enlarged ``zoom`` times.
        psnr: name -> PSNR printed under each panel.
    """
    names = list(panels)
    shape = max((p.shape[:2] for p in panels.values()), key=lambda s: s[0] * s[1])
    imgs = {n: (p if p.shape[:2] == shape else _upscale_to(p, shape)) for n, p in panels.items()}
    gt = imgs[names[-1]].astype(np.float64).mean(axis=2)
    size = min(size, *shape)
    if box is None:
        detail = np.abs(np.diff(gt, axis=0, append=gt[-1:])) + np.abs(np.diff(gt, axis=1, append=gt[:, -1:]))
        box = _best_box(detail, size)
    y0, x0 = box
    crops = {n: im[y0:y0 + size, x0:x0 + size] for n, im in imgs.items()}
    inset = max(8, size // zoom)
    zoom = size // inset
    if len(names) >= 3:
        a, b = crops[names[1]].astype(np.float64), crops[names[2]].astype(np.float64)
        iy, ix = _best_box(np.abs(a - b).mean(axis=2), inset)
    else:
        iy, ix = (size - inset) // 2, (size - inset) // 2
    gap, label_h, title_h = 12, 44, 34 if title else 0
    width = len(names) * (size + gap) + gap
    height = title_h + gap + size + gap + inset * zoom + label_h
    canvas = np.full((height, width, 3), 255, np.uint8)
    if title:
        draw_text(canvas, title, gap, 10, scale=2)
    for k, n in enumerate(names):
        x = gap + k * (size + gap)
        y = title_h + gap
        c = crops[n]
        canvas[y:y + c.shape[0], x:x + c.shape[1]] = c
        draw_rect(canvas, x + ix, y + iy, x + ix + inset - 1, y + iy + inset - 1, PALETTE[1], 2)
        zoomed = np.repeat(np.repeat(c[iy:iy + inset, ix:ix + inset], zoom, 0), zoom, 1)
        y2 = y + size + gap
        canvas[y2:y2 + zoomed.shape[0], x:x + zoomed.shape[1]] = zoomed
        draw_rect(canvas, x, y2, x + zoomed.shape[1] - 1, y2 + zoomed.shape[0] - 1, PALETTE[1], 2)
        ly = y2 + inset * zoom + 8
        draw_text(canvas, n[:size // 12], x, ly, scale=2)
        if psnr and n in psnr and math.isfinite(psnr[n]):
            draw_text(canvas, f"{psnr[n]:.2f} dB", x, ly + 20, GREY, scale=1 if size < 120 else 2)
    out = Path(path)
    _write_png(out, canvas)
    return out


def crops_for_frame(frame: FrameOutputs, path: str | Path, *, protocol: str = "", size: int = 192) -> Path:
    """:func:`crops_panel` for one scored frame: LQ (nearest), baseline, model, GT, with each panel's PSNR."""
    order = ["input" if "input" in frame.outputs else "bicubic"]
    order += [m for m in frame.outputs if m not in ("bicubic", "input", "single-frame", "edvr-stage1")]
    panels = {"LQ": frame.lq}
    panels.update({m: frame.outputs[m] for m in order if m in frame.outputs})
    panels["GT"] = frame.gt
    title = f"{protocol} {frame.clip} frame {frame.name}".strip()
    return crops_panel(panels, path, size=size, psnr=frame.psnr, title=title)


# ------------------------------------------------------------------------------------------------ markdown
def markdown(result: Result, images: Sequence[str] = ()) -> str:
    """A Markdown summary: protocol, model, per-clip table of every method, notes, published numbers, images."""
    names = list(result.methods)
    has_ssim = any(result.methods[n].mean("ssim") is not None for n in names)

    def cell(p: float | None, s: float | None) -> str:
        if p is None:
            return "-"
        return f"{p:.2f} / {s:.4f}" if has_ssim and s is not None else f"{p:.2f}"

    lines = [f"# EDVR evaluation on `{result.protocol}`", "", f"- protocol: {result.protocol_summary}",
             f"- model: `{result.model}`"]
    for k in ("ensemble", "stage2", "num_frames", "max_frames", "device"):
        if result.settings.get(k) is not None:
            lines.append(f"- {k}: {result.settings[k]}")
    if not result.complete:
        lines.append(f"- **partial**: not every frame of {result.protocol} was scored; not comparable with published "
                     "numbers")
    lines += ["", f"PSNR (dB){' / SSIM' if has_ssim else ''}, {result.settings.get('metric_space', '')}", "",
              "| clip | frames | " + " | ".join(names) + " |", "|---|---:|" + "---:|" * len(names)]
    if len(result.clips) <= 30:
        for c in result.clips:
            row = [c, str(len(result.methods[result.main].frames[c]))]
            row += [cell(result.methods[n].clip_mean(c), result.methods[n].clip_mean(c, "ssim")) for n in names]
            lines.append("| " + " | ".join(row) + " |")
    total = sum(len(v) for v in result.methods[result.main].frames.values())
    row = [f"**{result.protocol} mean**", str(total)] + [cell(result.mean(n), result.mean(n, "ssim")) for n in names]
    lines.append("| " + " | ".join(row) + " |")
    lines.append("")
    lines += [f"- {n}" for n in result.settings.get("notes") or []]
    for p in result.published:
        ssim = f" / {p['ssim']:.4f}" if p.get("ssim") is not None else ""
        lines.append(f"- published on {result.protocol}: {p['model']} {p['psnr']:.2f}{ssim} ({p['source']})")
    for img in images:
        lines += ["", f"![{Path(img).stem}]({img})"]
    return "\n".join(lines) + "\n"


def write_report(result: Result, out_dir: str | Path, frames: Sequence[FrameOutputs] = ()) -> list[Path]:
    """``report.md``, ``psnr.png`` and ``crops_<clip>.png`` for each given frame under ``out_dir``; returns paths."""
    out = Path(out_dir).expanduser()
    out.mkdir(parents=True, exist_ok=True)
    written = [plot_psnr(result, out / "psnr.png")]
    for f in frames:
        safe = f.clip.replace("/", "_")
        written.append(crops_for_frame(f, out / f"crops_{safe}.png", protocol=result.protocol))
    md = out / "report.md"
    write_atomic(md, markdown(result, [p.name for p in written]))
    return [md, *written]


# ------------------------------------------------------------------------------------------------ compare
def compare(a: Result, b: Result, *, method_a: str | None = None, method_b: str | None = None) -> str:
    """Per-clip PSNR (and SSIM) of ``b`` minus ``a`` for their main methods, on the clips they share."""
    if a.protocol != b.protocol:
        raise InputError(f"results are on different protocols ({a.protocol} vs {b.protocol}); compare like with like")
    ma, mb = method_a or a.main, method_b or b.main
    for r, m in ((a, ma), (b, mb)):
        if m not in r.methods:
            raise InputError(f"{m}: not a method of the result for {r.model} ({', '.join(r.methods)})")
    sa, sb, infinite = _shared(a.methods[ma], b.methods[mb])
    shared = list(sa.frames)
    if not shared and infinite:
        raise InputError(f"all {infinite} shared frames are exact (infinite PSNR) in both results: nothing to compare")
    if not shared:
        raise InputError("the two results share no scored frame; compare results of the same protocol and clips")
    lines = [f"protocol {a.protocol}: B - A", f"A: {a.model} [{ma}]", f"B: {b.model} [{mb}]",
             f"{'clip':<12}{'A PSNR':>9}{'B PSNR':>9}{'delta':>9}{'dSSIM':>9}"]

    def row(label: str, pa, pb, qa, qb) -> str:
        d = f"{pb - pa:+.3f}" if pa is not None and pb is not None else "-"
        ds = f"{qb - qa:+.4f}" if qa is not None and qb is not None else "-"
        return f"{label:<12}{_num(pa):>9}{_num(pb):>9}{d:>9}{ds:>9}"

    if len(shared) <= 30:
        for c in shared:
            lines.append(row(c, sa.clip_mean(c), sb.clip_mean(c), sa.clip_mean(c, "ssim"), sb.clip_mean(c, "ssim")))
    lines.append(row(a.protocol, sa.mean(), sb.mean(), sa.mean("ssim"), sb.mean("ssim")))
    full_a = sum(map(len, a.methods[ma].frames.values()))
    full_b = sum(map(len, b.methods[mb].frames.values()))
    common = sum(map(len, sa.frames.values()))
    if infinite:
        lines.append(f"note: {infinite} shared frames left out: exact (infinite PSNR) in both A and B")
    if common + infinite != full_a or common + infinite != full_b:
        lines.append(f"note: compared on the {common} frames both results scored ({full_a} in A, {full_b} in B)")
    if not (a.complete and b.complete):
        lines.append("note: at least one result is partial")
    return "\n".join(lines)


def _num(v: float | None) -> str:
    return "-" if v is None else f"{v:.2f}"


def _shared(a: Scores, b: Scores) -> tuple[Scores, Scores, int]:
    """Both score sets restricted to the frames both have (same clip, same frame name), in A's order, less those with
    an infinite PSNR in both (outputs equal to their GT: inf - inf has no value); and how many those were. A frame
    exact in one result only stays, so its clip's delta is infinite: the one result is better there."""
    out_a, out_b, infinite = Scores(), Scores(), 0
    for clip in a.frames:
        if clip not in b.frames:
            continue
        idx_b = {name: k for k, name in enumerate(b.frames[clip])}
        for k, name in enumerate(a.frames[clip]):
            if name in idx_b:
                j = idx_b[name]
                if math.isinf(a.psnr[clip][k]) and math.isinf(b.psnr[clip][j]):
                    infinite += 1
                    continue
                sa = a.ssim.get(clip) or []
                sb = b.ssim.get(clip) or []
                out_a.add(clip, name, a.psnr[clip][k], sa[k] if k < len(sa) else None)
                out_b.add(clip, name, b.psnr[clip][j], sb[j] if j < len(sb) else None)
    return out_a, out_b, infinite
