"""The paper's ablation (EDVR, Wang et al. 2019, Table 1 and 2) on our real-footage data, at a small, equal budget.

    OMP_NUM_THREADS=1 python configs/default_model/ablation.py [--iterations 1500] [--rows single,concat,pcd,pcd_tsa]
        [--root runs/ablation] [--data datasets/edvr_real] [--set KEY=VALUE ...] [--seeds 1,2,3]
    (--rows defaults to the paper's four; single_plain, single_pcd, concat_tsa and single_tsa are asked for by name)

Every row is the recipe ``edvr_s_real_x4.yaml`` (same data, sampling seed, batch, patch, optimiser, cosine
schedule, loss) with ``train.iterations`` set to the same budget, and one architectural change:

- ``single``   num_frames=1: the same network sees only the centre frame (PCD aligns it to itself, TSA fuses one);
- ``concat``   5 frames, no alignment: PCD replaced by the identity (each frame's L1 features are concatenated as
               they are) and fused by the plain 1x1 conv of a TSA-less EDVR;
- ``pcd``      5 frames, PCD alignment, 1x1-conv fusion (with_tsa=false);
- ``pcd_tsa``  5 frames, PCD + TSA: the default model's architecture.

``single`` runs the centre frame through PCD and TSA, so it has their convolutions as extra layers: it is
``pcd_tsa``'s network without neighbours. Two more one-frame rows are the other rows' networks without neighbours,
so that each multi-frame row can also be compared with the same network fed one frame:

- ``single_plain``  num_frames=1, no PCD, 1x1-conv fusion: ``concat``'s network (0.32 M parameters);
- ``single_pcd``    num_frames=1, PCD, 1x1-conv fusion: ``pcd``'s network (0.67 M).

The issue's "5 frames without alignment, the same fusion" can also be read as unaligned frames fused by TSA, the
full model's fusion; that row and its own network fed one frame:

- ``concat_tsa``    5 frames, no alignment, TSA fusion;
- ``single_tsa``    num_frames=1, no alignment, TSA fusion: ``concat_tsa``'s network.

``concat`` is EDVR's ``with_alignment=False``. Each row is trained with edvr's own loop (``edvr.training.loop.train``;
rows resume if interrupted), then scored on the held-out real clips (``heldout.py``) and, where ``build_data.py`` made
them, on the moving photographs (``DATA/heldout_moving``); results go to ``ROOT/ablation.json`` (``--json``) and
markdown tables are printed. Running it again on a finished root re-scores every row without training.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import torch

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

from heldout import score  # noqa: E402

from edvr.models.edvr import EDVR  # noqa: E402

ROWS = {
    "single": ("1 frame (no neighbours)", {"model.num_frames": 1}),
    "concat": ("5 frames, no alignment, 1x1-conv fusion", {"model.with_tsa": False, "model.with_alignment": False}),
    "pcd": ("5 frames, PCD, 1x1-conv fusion (no TSA)", {"model.with_tsa": False}),
    "pcd_tsa": ("5 frames, PCD + TSA", {}),
    "single_plain": ("1 frame, no PCD, 1x1-conv fusion", {"model.num_frames": 1, "model.with_tsa": False,
                                                          "model.with_alignment": False}),
    "single_pcd": ("1 frame, PCD, 1x1-conv fusion", {"model.num_frames": 1, "model.with_tsa": False}),
    "concat_tsa": ("5 frames, no alignment, TSA fusion", {"model.with_alignment": False}),
    "single_tsa": ("1 frame, no PCD, TSA fusion", {"model.num_frames": 1, "model.with_alignment": False}),
}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--iterations", type=int, default=1500)
    parser.add_argument("--rows", default="single,concat,pcd,pcd_tsa")
    parser.add_argument("--root", default="runs/ablation")
    parser.add_argument("--data", default="datasets/edvr_real")
    parser.add_argument("--max-frames", type=int, help="score only the first N frames of each held-out clip")
    parser.add_argument("--json", default="ablation.json", metavar="NAME",
                        help="results file in ROOT (in each ROOT/seedS with --seeds); another name keeps the scores "
                        "of another --max-frames apart (e.g. --json ablation_all.json without --max-frames)")
    parser.add_argument("--set", nargs="*", default=[], metavar="KEY=VALUE",
                        help="recipe overrides applied to every row (e.g. model.num_feat=16 train.lr=2e-3); with "
                        "--seeds, {seed} in a value becomes the seed (train.pretrained=runs/a/seed{seed}/...)")
    parser.add_argument("--seeds", help="comma-separated training seeds: every row once per seed (in ROOT/seedS), "
                        "then a table of the means")
    args = parser.parse_args(argv)
    if not args.seeds:
        print(table(run_rows(args, Path(args.root), args.set)))
        return 0
    per_seed = {}
    for seed in args.seeds.split(","):
        overrides = [o.replace("{seed}", seed) for o in args.set] + [f"train.seed={seed}"]
        per_seed[seed] = run_rows(args, Path(args.root) / f"seed{seed}", overrides)
        print(f"seed {seed}:\n{table(per_seed[seed])}", flush=True)
    print(f"mean of seeds {args.seeds}:\n{mean_table(per_seed)}")
    return 0


def run_rows(args: argparse.Namespace, root: Path, overrides_all: list[str]) -> dict:
    """Train and score each row of ``args.rows`` under ``root``; returns (and keeps in root/``args.json``) the
    results of every row scored there so far."""
    from edvr.config import load_config
    from edvr.training.loop import train

    out_json = root / args.json
    results = json.loads(out_json.read_text()) if out_json.exists() else {}
    for row in args.rows.split(","):
        label, overrides = ROWS[row]
        n = args.iterations
        dotted = [f"{k}={v}" for k, v in overrides.items()] + [
            f"name=ablation_{row}", f"logging.root={root}", f"train.iterations={n}", f"train.periods=[{n}]",
            f"train.val_interval={n}", f"train.checkpoint_interval={max(n // 5, 1)}",
            f"data.train.root={args.data}/train", f"data.val.root={args.data}/heldout/GT", "data.val.max_items=1",
        ] + overrides_all
        cfg = load_config(HERE / "edvr_s_real_x4.yaml", dotted)
        if cfg.model.num_frames != 5:  # e.g. --set model.num_frames=1: a "5 frames" label follows
            label = label.replace("5 frames", f"{cfg.model.num_frames} frame{'s' * (cfg.model.num_frames > 1)}")
        tic = time.time()
        train(cfg, resume="auto")
        model = EDVR(**cfg.model.model_kwargs())
        latest = cfg.run_dir / "checkpoints" / "latest.pt"
        state = torch.load(latest, weights_only=True)["model"] if latest.exists() else None
        if state is None:
            from edvr.training.checkpoint import list_checkpoints

            state = torch.load(list_checkpoints(cfg.run_dir / "checkpoints")[-1], weights_only=True)["model"]
        model.load_state_dict(state)
        model.eval()
        train_s = time.time() - tic
        with torch.no_grad():
            r = score(model, f"{args.data}/heldout", name=f"ablation_{row}", max_frames=args.max_frames)
            moving = Path(args.data) / "heldout_moving"
            if moving.is_dir():
                r["moving"] = score(model, moving, name=f"ablation_{row}", max_frames=args.max_frames)
        # The loop's warning that PCD's offsets ran off the frames: then the row is a single-frame network.
        diverged = "has mean |offset|" in (cfg.run_dir / "train.log").read_text()
        r.update(label=label + (" [offsets diverged]" if diverged else ""), iterations=n,
                 params=sum(p.numel() for p in model.parameters()),
                 train_and_eval_s=round(time.time() - tic), train_s=round(train_s))
        # Re-read before writing: another process may have scored other rows of this root meanwhile (--rows split).
        results = {**(json.loads(out_json.read_text()) if out_json.exists() else {}), row: r}
        out_json.parent.mkdir(parents=True, exist_ok=True)
        out_json.write_text(json.dumps(results, indent=1))
    return results


def mean_table(per_seed: dict) -> str:
    """Rows averaged over seeds (Y-PSNR, SSIM, gain over bicubic), with each seed's Y-PSNR; the same for the moving
    photographs where they were scored."""
    seeds = list(per_seed)
    with_moving = all("moving" in r for s in seeds for r in per_seed[s].values())
    cols = ["row", "Y-PSNR (dB), mean", "SSIM, mean", "vs bicubic", *(f"seed {s}" for s in seeds)]
    if with_moving:
        cols += ["moving: Y-PSNR, mean", "SSIM, mean", "vs bicubic", *(f"seed {s}" for s in seeds)]
    lines = ["| " + " | ".join(cols) + " |", "| --- " * len(cols) + "|"]
    for row in ROWS:
        runs = [per_seed[s][row] for s in seeds if row in per_seed[s]]
        if len(runs) != len(seeds):
            continue
        line = f"| {runs[0]['label']} | " + _means(runs)
        if with_moving:
            line += " | " + _means([r["moving"] for r in runs])
        lines.append(line + " |")
    return "\n".join(lines)


def _means(runs: list[dict]) -> str:
    psnr = [r["methods"]["edvr"]["psnr"] for r in runs]
    ssim = [r["methods"]["edvr"]["ssim"] for r in runs]
    gain = [r["methods"]["edvr"]["psnr"] - r["methods"]["bicubic"]["psnr"] for r in runs]
    return (f"{sum(psnr) / len(psnr):.3f} | {sum(ssim) / len(ssim):.4f} | {sum(gain) / len(gain):+.3f} | "
            + " | ".join(f"{x:.3f}" for x in psnr))


def table(results: dict) -> str:
    """One seed's rows on the real clips; then, where they were scored, the same rows on the moving photographs."""
    moving = {row: {**r["moving"], "label": r["label"], "params": r["params"]}
              for row, r in results.items() if "moving" in r}
    if not moving:
        return _table(results)
    return _table(results) + "\n\nmoving photographs (heldout-moving-x4):\n" + _table(moving)


def _table(results: dict) -> str:
    clips = list(next(iter(results.values()))["methods"]["edvr"]["clips"]) if results else []
    lines = ["| row | params | Y-PSNR (dB) | SSIM | vs bicubic | " + " | ".join(clips) + " |",
             "| --- " * (5 + len(clips)) + "|"]
    bic = None
    for row in ROWS:
        if row not in results:
            continue
        r = results[row]
        m, b = r["methods"]["edvr"], r["methods"]["bicubic"]
        bic = b
        clips = " | ".join(f"{m['clips'][c][0]:.2f}" for c in m["clips"])
        lines.append(f"| {r['label']} | {r['params'] / 1e6:.2f} M | {m['psnr']:.3f} | {m['ssim']:.4f} | "
                     f"{m['psnr'] - b['psnr']:+.3f} | {clips} |")
    if bic is not None:
        clips = " | ".join(f"{bic['clips'][c][0]:.2f}" for c in bic["clips"])
        lines.append(f"| bicubic | - | {bic['psnr']:.3f} | {bic['ssim']:.4f} | 0 | {clips} |")
    return "\n".join(lines)


if __name__ == "__main__":
    sys.exit(main())
