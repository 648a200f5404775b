"""The EDVR training loop: one function, read top to bottom.

:func:`train` takes a resolved :class:`edvr.config.Config` and returns the path of the exported weights. What it
does, in order: join the process group (if started by torchrun) and seed; find the checkpoint to resume from;
build the data stream (a deterministic, resumable order, see :mod:`edvr.training.distributed`); build the model,
optionally initialised from a shallower or TSA-less checkpoint; build Adam with an optional DCN-offset param group;
restore the training state; then iterate: learning rate (a pure function of the iteration), TSA-only warm-up,
forward (autocast on CUDA), Charbonnier loss summed over the batch, skip non-finite losses, backward, clip, step,
EMA; log, validate, checkpoint. At the end it saves the last state and exports inference weights.

EDVR-specific tricks and where they are: the TSA-only warm-up trains ``model.tsa_parameters()`` alone for the
updates before update ``train.tsa_only_iterations`` (BasicSR's ``tsa_iter``: 50000 means updates 1-49999), the
other parameters having ``requires_grad`` False (as BasicSR does: they get no gradient, so Adam neither moves them
nor builds state for them); the DCN lr multiplier puts the deformable convs' parameters (``model.dcn_parameters()``:
each DCN's weights and its offset/mask conv, BasicSR's ``dcn_lr_mul`` group) in their own param group; the loss is
summed, not averaged.

Gradient scale with several processes: each process sums the loss over its share of the batch and multiplies it by
the world size, so that DDP's averaging yields the gradient of the loss summed over the whole batch - the same as
one process with the whole batch, whatever the number of processes. (BasicSR's per-GPU sum averaged by DDP is 1/8
of that on 8 GPUs; Adam is insensitive to such a constant factor, gradient clipping is not.)
"""

from __future__ import annotations

import contextlib
import copy
import inspect
import math
import random
import sys
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import torch
import torch.nn.functional as F
from torch.utils.data import DataLoader, Dataset

from edvr.config import Config, DatasetConfig
from edvr.errors import CheckpointError, EdvrError, InputError
from edvr.models.blocks import OFFSET_WARN_THRESHOLD
from edvr.training import checkpoint as ckpt
from edvr.training import distributed
from edvr.training.distributed import DistInfo, ResumableSampler, SeededDataset
from edvr.training.losses import charbonnier_loss, l1_loss
from edvr.training.schedules import learning_rate

if TYPE_CHECKING:
    from edvr.models.edvr import EDVRConfig


class TrainingDiverged(EdvrError):
    """Too many non-finite losses in a row."""


def train(cfg: Config, *, resume: str | None = None, train_set: Dataset | None = None,
          val_set: Dataset | None = None) -> Path:
    """Train EDVR as ``cfg`` says; returns the exported weights (safetensors) of the final model (EMA if enabled).

    ``resume``: ``"auto"`` (the run's latest checkpoint, if any) or a checkpoint path. ``train_set`` / ``val_set``
    replace the datasets named in ``cfg.data`` (programmatic use and tests); items are dicts with ``lq``
    ``(T, 3, h, w)`` and ``gt`` ``(3, H, W)`` tensors in [0, 1].
    """
    t = cfg.train
    cfg.validate()

    # ---- 1. processes, device, seeds --------------------------------------------------------------------
    info = distributed.setup(t.device)
    device = info.device
    if cfg.data.batch_size % info.world_size:
        raise InputError(f"data.batch_size {cfg.data.batch_size} is not divisible by the {info.world_size} processes")
    batch_per_rank = cfg.data.batch_size // info.world_size
    if device.type == "cuda":
        torch.backends.cudnn.benchmark = True  # fixed patch size: let cuDNN pick its fastest kernels once
    amp_dtype = {"off": None, "bf16": torch.bfloat16, "fp16": torch.float16}[t.amp]

    run_dir, ckpt_dir = cfg.run_dir, cfg.run_dir / "checkpoints"
    log = _Log(run_dir if info.is_main else None)
    if amp_dtype is not None and device.type != "cuda":
        log.info(f"train.amp={t.amp} applies on CUDA only; training in float32 on {device.type}")
        amp_dtype = None

    # ---- 2. resume, or start fresh in an empty run directory ------------------------------------------------
    resume_path = ckpt.find_resume_path(resume, ckpt_dir) if resume else None
    if resume_path is None and ckpt.list_checkpoints(ckpt_dir):
        raise InputError(f"{run_dir} already holds checkpoints: pass --resume auto to continue that run, "
                         "or choose another name / logging.root")
    state = ckpt.load_training_state(resume_path) if resume_path else None
    start_iter = int(state["iteration"]) if state else 0
    if resume and resume_path is None:
        log.info(f"--resume {resume}: no checkpoint in {ckpt_dir} yet, starting from iteration 0")

    # ---- 3. data: a deterministic, resumable, sharded stream of samples -------------------------------------
    if train_set is None:
        train_set = build_dataset_from_config(cfg.data.train, cfg)
    if val_set is None and cfg.data.val is not None and cfg.data.val.name:
        val_set = build_dataset_from_config(cfg.data.val, cfg)
    position = int(state["data"]["position"]) if state else 0  # global samples consumed before this start
    sampler = ResumableSampler(len(train_set), seed=t.seed, batch_size=batch_per_rank, rank=info.rank,
                               world_size=info.world_size, start=position)
    loader = DataLoader(SeededDataset(train_set), batch_size=batch_per_rank, sampler=sampler,
                        num_workers=cfg.data.num_workers, collate_fn=_collate, pin_memory=device.type == "cuda")

    # ---- 4. model, EMA copy, optimiser -------------------------------------------------------------------
    from edvr.models.edvr import EDVR

    random.seed(t.seed)
    np.random.seed(t.seed % 2**32)
    torch.manual_seed(t.seed)  # just before the model: the same initial weights on every rank, whatever came before
    model = EDVR(**cfg.model.model_kwargs()).to(device)
    if t.pretrained and state is None:
        init_from_pretrained(model, t.pretrained, strict=t.pretrained_strict, log=log)
    ema = copy.deepcopy(model).requires_grad_(False) if t.ema_decay > 0 else None

    dcn_params = model.dcn_parameters() if t.dcn_lr_mult != 1.0 else []
    dcn_ids = {id(p) for p in dcn_params}
    groups = [{"params": [p for p in model.parameters() if id(p) not in dcn_ids], "lr_mult": 1.0}]
    if dcn_params:
        groups.append({"params": dcn_params, "lr_mult": t.dcn_lr_mult})
    optimizer = torch.optim.Adam(groups, lr=t.lr, betas=t.betas, weight_decay=t.weight_decay)
    fp16 = amp_dtype == torch.float16
    # torch.amp.GradScaler is torch >= 2.3; the package supports 2.1, which has the CUDA one (fp16 is CUDA-only here).
    scaler = (torch.amp.GradScaler(device.type, enabled=fp16) if hasattr(torch.amp, "GradScaler")
              else torch.cuda.amp.GradScaler(enabled=fp16))
    loss_fn = _loss_function(cfg)
    loss_scale = info.world_size if t.loss_reduction == "sum" else 1  # see the module docstring
    has_tsa = bool(model.tsa_parameters())

    nonfinite_streak = 0
    offsets_warned = False
    if state is not None:
        _check_compatible(state, cfg, resume_path, log)
        model.load_state_dict(state["model"])
        if ema is not None:
            ema.load_state_dict(state["ema"] if state.get("ema") is not None else state["model"])
        try:
            optimizer.load_state_dict(state["optimizer"])
        except ValueError:  # group sizes: the dcn_lr_mult group once held the offset convs alone
            raise CheckpointError(f"{resume_path}: its optimiser state does not fit this version's parameter groups "
                                  "(train.dcn_lr_mult now covers the whole deformable convs, as BasicSR's "
                                  f"dcn_lr_mul); start a new run from its weights: train.pretrained={resume_path}"
                                  ) from None
        for group, mult in zip(optimizer.param_groups, [1.0, t.dcn_lr_mult]):  # the config's, not the checkpoint's
            group.update(lr_mult=mult, betas=t.betas, weight_decay=t.weight_decay)
        if state.get("scaler"):
            scaler.load_state_dict(state["scaler"])
        rngs = state["rng"]
        ckpt.set_rng_state(rngs[info.rank] if len(rngs) == info.world_size else rngs[0])
        nonfinite_streak = int(state.get("nonfinite_streak", 0))
        log.info(f"resumed from {resume_path} at iteration {start_iter} (data epoch {state['data']['epoch']}, "
                 f"offset {state['data']['offset']})")

    n_params = sum(p.numel() for p in model.parameters())
    log.info(f"{cfg.name}: EDVR {n_params / 1e6:.2f} M parameters on {device}, {info.world_size} process(es) x "
             f"batch {batch_per_rank}, {len(train_set)} training items, iterations {start_iter + 1}..{t.iterations}")
    if info.is_main:
        run_dir.mkdir(parents=True, exist_ok=True)
        (run_dir / "config.yaml").write_text(cfg.to_yaml())
    writer = _open_tensorboard(run_dir, log) if info.is_main and cfg.logging.tensorboard else None
    baseline: dict[str, float] | None = None
    last_saved: Path | None = resume_path
    if resume_path is not None and resume_path.name == ckpt.LATEST:  # name the file itself, not the link
        named = ckpt_dir / ckpt.checkpoint_name(start_iter)
        last_saved = named if named.is_file() else resume_path

    # ---- 5. the loop ----------------------------------------------------------------------------------
    tsa_only_phase: bool | None = None  # unknown until the first iteration decides
    net = model
    bar = _progress_bar(t.iterations, start_iter, info)
    batches = iter(loader)
    tic, tic_iter, loss_sum, loss_count = time.perf_counter(), start_iter, 0.0, 0
    for it in range(start_iter + 1, t.iterations + 1):
        # The learning rate is a pure function of the iteration: nothing to save, nothing to drift on resume.
        lr = learning_rate(it, lr=t.lr, periods=t.periods, restart_weights=t.restart_weights, eta_min=t.eta_min,
                           warmup_iterations=t.warmup_iterations)
        for group in optimizer.param_groups:
            group["lr"] = lr * group["lr_mult"]

        # TSA-only warm-up: freeze all but TSA for the first updates, then everything trains. DDP tracks the
        # parameters that require grad when it is built, so it is rebuilt when the set changes.
        tsa_only = has_tsa and it < t.tsa_only_iterations  # BasicSR's tsa_iter: update N trains everything
        if tsa_only != tsa_only_phase:
            set_tsa_only(model, tsa_only)
            net = distributed.wrap(model, info)
            tsa_only_phase = tsa_only
            if it > 1 or tsa_only:
                log.info(f"iteration {it}: " + ("training TSA only" if tsa_only else "training all parameters"))

        batch = next(batches)
        position += cfg.data.batch_size
        lq = batch["lq"].to(device, non_blocking=True)  # (B, T, 3, h, w)
        gt = batch["gt"].to(device, non_blocking=True)  # (B, 3, H, W)
        with _autocast(device, amp_dtype):
            out = net(lq)
        if out.shape != gt.shape:
            raise InputError(f"the model makes {out.shape[-1]}x{out.shape[-2]} from {lq.shape[-1]}x{lq.shape[-2]} "
                             f"LQ, but the GT is {gt.shape[-1]}x{gt.shape[-2]}: model.hr_in={cfg.model.hr_in} "
                             f"(x{1 if cfg.model.hr_in else 4}) does not fit the data's scale; set model.hr_in "
                             "(true for deblurring tracks, false for x4 SR) or the dataset's scale")
        loss = loss_fn(out, gt)

        # A non-finite loss is skipped on every rank (they must agree, or DDP would hang), never stepped on; the
        # iteration still counts, and still logs, validates and saves where it is due.
        global_loss = _sum_over_ranks(loss.detach(), info) / (1 if t.loss_reduction == "sum" else info.world_size)
        if not math.isfinite(global_loss):
            nonfinite_streak += 1
            optimizer.zero_grad(set_to_none=True)
            log.warn(f"iteration {it}: non-finite loss ({global_loss}), update skipped "
                     f"({nonfinite_streak} in a row, stop at {t.max_nonfinite})")
            if nonfinite_streak >= t.max_nonfinite:
                distributed.cleanup()
                where = f"the last good checkpoint is {last_saved}" if last_saved else "no checkpoint was saved"
                raise TrainingDiverged(f"training stopped at iteration {it}: {nonfinite_streak} non-finite losses "
                                       f"in a row; {where} (lower train.lr or set train.grad_clip)")
        else:
            nonfinite_streak = 0
            scaler.scale(loss * loss_scale).backward()
            if t.grad_clip > 0:
                scaler.unscale_(optimizer)
                torch.nn.utils.clip_grad_norm_([p for p in model.parameters() if p.requires_grad], t.grad_clip)
            scaler.step(optimizer)
            scaler.update()
            optimizer.zero_grad(set_to_none=True)
            if ema is not None:
                with torch.no_grad():
                    for e, p in zip(ema.parameters(), model.parameters()):
                        e.lerp_(p, 1.0 - t.ema_decay)
            loss_sum, loss_count = loss_sum + global_loss, loss_count + 1

        # ---- logging, validation, checkpoints --------------------------------------------------------------
        bar.update(1)
        if it % cfg.logging.print_interval == 0 or it == t.iterations:
            rate = (it - tic_iter) / max(time.perf_counter() - tic, 1e-9)
            eta = (t.iterations - it) / max(rate, 1e-9)
            mean_loss = loss_sum / loss_count if loss_count else math.nan  # nan: every update of the interval skipped
            offsets = model.largest_offset()
            log.info(f"iter {it}/{t.iterations}  loss {mean_loss:.5g}  lr {lr:.3g}  {rate:.2f} it/s  "
                     f"eta {_hms(eta)}" + (f"  |offset| {offsets[1]:.3g}" if offsets else ""))
            if offsets and offsets[1] > OFFSET_WARN_THRESHOLD and not offsets_warned:
                offsets_warned = True
                log.warn(f"iteration {it}: {offsets[0]} has mean |offset| {offsets[1]:.3g} px: the deformable convs "
                         "sample ever farther from where they should, and once they sample outside the frames they "
                         "get no gradient back, so alignment stops carrying the neighbours' information; restart "
                         "with a lower train.dcn_lr_mult (e.g. 0.1) or train.lr")
            if writer is not None:
                if loss_count:
                    writer.add_scalar("train/loss", mean_loss, it)
                writer.add_scalar("train/lr", lr, it)
                if offsets:
                    writer.add_scalar("train/max_mean_abs_offset", offsets[1], it)
            tic, tic_iter, loss_sum, loss_count = time.perf_counter(), it, 0.0, 0

        if val_set is not None and (it % t.val_interval == 0 or it == t.iterations):
            if info.is_main:
                eval_model = ema if ema is not None else model
                if baseline is None:  # printed once, so that every later number has its reference beside it
                    baseline = validate(None, val_set, cfg, device, baseline=True)
                    log.info(f"validation {_val_name(cfg)}: bicubic baseline PSNR {baseline['psnr']:.3f} dB "
                             f"({baseline['items']} items)")
                result = validate(eval_model, val_set, cfg, device, amp_dtype=amp_dtype, writer=writer, step=it)
                log.info(f"iter {it}: validation {_val_name(cfg)} PSNR {result['psnr']:.3f} dB "
                         f"({result['psnr'] - baseline['psnr']:+.3f} vs bicubic){' (EMA)' if ema else ''}")
                if writer is not None:
                    writer.add_scalar("val/psnr", result["psnr"], it)
            distributed.barrier(info)

        if it % t.checkpoint_interval == 0 or it == t.iterations:
            last_saved = _save_state(ckpt_dir, it, cfg, info, model, ema, optimizer, scaler, position, len(train_set),
                                     nonfinite_streak)

    bar.close()
    # ---- 6. export inference weights ---------------------------------------------------------------------
    final = run_dir / f"{cfg.name}.safetensors"
    if info.is_main:
        weights = (ema if ema is not None else model).state_dict()
        ckpt.export_weights(weights, model.config, final, metadata={
            "recipe": cfg.name, "iterations": str(t.iterations), "weights": "ema" if ema is not None else "model"})
        log.info(f"done: weights {final}, training state {last_saved}")
    distributed.barrier(info)
    if writer is not None:
        writer.close()
    del batches  # stop loader workers before the process group goes
    distributed.cleanup()
    return final


# ============================================================================================== helpers


def set_tsa_only(model: torch.nn.Module, tsa_only: bool) -> None:
    """``tsa_only``: only ``model.tsa_parameters()`` require grad; else all parameters do."""
    for p in model.parameters():
        p.requires_grad_(not tsa_only)
    for p in model.tsa_parameters():
        p.requires_grad_(True)


def init_from_pretrained(model: torch.nn.Module, path: str, *, strict: bool, log: _Log) -> None:
    """Load weights of any format edvr reads, non-strictly, reporting what did not fit in one block."""
    from edvr.models.convert import read_checkpoint

    loaded = read_checkpoint(path)
    own = model.state_dict()
    sd = loaded.state_dict
    missing = [k for k in own if k not in sd]
    unexpected = [k for k in sd if k not in own]
    mismatched = [k for k, v in own.items() if k in sd and sd[k].shape != v.shape]
    if strict and (missing or unexpected or mismatched):
        raise CheckpointError(f"{path}: does not fit the model exactly (train.pretrained_strict is true): "
                              f"{len(missing)} missing, {len(unexpected)} unexpected, {len(mismatched)} mismatched")
    usable = {k: v for k, v in sd.items() if k in own and v.shape == own[k].shape}
    widened = {k: w for k in mismatched if (w := _widen_frames(sd[k], own[k], loaded.config, model.config)) is not None}
    ignored = [f"{k} {list(sd[k].shape)} vs {list(own[k].shape)}" for k in mismatched if k not in widened]
    model.load_state_dict({**usable, **widened}, strict=False)

    def listing(items: list[str]) -> str:
        return ", ".join(items[:6]) + (f", ... ({len(items) - 6} more)" if len(items) > 6 else "")

    lines = [f"initialised from {path} ({loaded.format}): {len(usable) + len(widened)}/{len(own)} tensors loaded"]
    if widened:
        lines.append(f"  widened from {loaded.config.num_frames} to {model.config.num_frames} frames ({len(widened)}, "
                     f"the file's frames in the centre slots, zeros for the others): {listing(list(widened))}")
    if missing:
        lines.append(f"  kept at initialisation ({len(missing)}, not in the file): {listing(missing)}")
    if unexpected:
        lines.append(f"  ignored ({len(unexpected)}, not in the model): {listing(unexpected)}")
    if ignored:
        lines.append(f"  ignored ({len(ignored)}, shape differs): {listing(ignored)}")
    log.info("\n".join(lines))


def _widen_frames(weight: torch.Tensor, own: torch.Tensor, file_cfg: EDVRConfig,
                  model_cfg: EDVRConfig) -> torch.Tensor | None:
    """A fusion conv's weight from a model with fewer frames, fitted to this one's (``None`` if it is not one).

    The fusion convs take the T frames' features concatenated, ``T * num_feat`` input channels. The file's frames go to
    the slots at the same distance from the centre and the new frames' slots get zeros, so the model starts out
    computing exactly what the file's did, and training teaches it to use the new neighbours: e.g. a 5-frame EDVR
    from a single-frame one (the way I3D inflated 2-D weights; here the new weights are zero, not copies)."""
    nf, old_t, new_t = model_cfg.num_feat, file_cfg.num_frames, model_cfg.num_frames
    first = model_cfg.center - file_cfg.center  # the slot of the file's first frame
    if not (weight.dim() == own.dim() == 4 and weight.shape[0] == own.shape[0] and weight.shape[2:] == own.shape[2:]
            and weight.shape[1] == old_t * nf and own.shape[1] == new_t * nf and 0 <= first <= new_t - old_t):
        return None
    out = torch.zeros_like(own)
    out[:, first * nf:(first + old_t) * nf] = weight
    return out


def build_dataset_from_config(dcfg: DatasetConfig, cfg: Config) -> Dataset:
    """``edvr.data.build_dataset(name, root=..., num_frames=..., **options)``, failing early with the path named."""
    from edvr import data as data_module

    registry = getattr(data_module, "DATASETS", {})
    if dcfg.name not in registry:
        raise InputError(f"unknown dataset {dcfg.name!r} (known: {', '.join(sorted(registry)) or 'none installed'})")
    for key, value in {"root": dcfg.root, **dcfg.options}.items():
        if (key == "root" or key.endswith(("_root", "_path", "_dir"))) and value and not Path(str(value)).exists():
            raise InputError(f"{value}: no such file or folder (dataset {dcfg.name}, option {key})")
    if not dcfg.root:
        raise InputError(f"dataset {dcfg.name}: root is empty (set data.train.root / data.val.root)")
    params = inspect.signature(registry[dcfg.name]).parameters
    kwargs = {"root": dcfg.root, "num_frames": cfg.model.num_frames, **dcfg.options}
    if "seed" in params and "seed" not in kwargs:  # the dataset's random stream is (seed, epoch, index)
        kwargs["seed"] = cfg.train.seed
    if not any(p.kind is p.VAR_KEYWORD for p in params.values()):
        unknown = [k for k in kwargs if k not in params]
        if unknown:
            raise InputError(f"dataset {dcfg.name}: unknown option {unknown[0]} (known: {', '.join(params)})")
    dataset = data_module.build_dataset(dcfg.name, **kwargs)
    if len(dataset) == 0:
        raise InputError(f"dataset {dcfg.name} at {dcfg.root}: no usable items")
    return dataset


@torch.no_grad()
def validate(model: torch.nn.Module | None, val_set: Dataset, cfg: Config, device: torch.device, *,
             baseline: bool = False, amp_dtype: torch.dtype | None = None, writer: Any = None, step: int = 0
             ) -> dict[str, float]:
    """PSNR of the model (or, with ``baseline``, of bicubic upsampling of the centre frame) on the held-out items,
    on RGB or Y as ``cfg.data.val`` says: the mean over each clip's frames, then over clips (as the published
    protocols and ``edvr eval`` average; Vid4's clips differ in length). Items are loaded with fixed per-item seeds
    (deterministic)."""
    from edvr.evaluation.metrics import psnr

    vcfg = cfg.data.val
    y_channel, crop = (vcfg.y_channel, vcfg.crop_border) if vcfg is not None else (False, 0)
    limit = vcfg.max_items if vcfg is not None and vcfg.max_items > 0 else len(val_set)
    seeded = SeededDataset(val_set)
    center = cfg.model.center_frame_idx if cfg.model.center_frame_idx is not None else cfg.model.num_frames // 2
    if model is not None:
        model.eval()
    scores: dict[str, list[float]] = {}  # clip -> its frames' PSNRs
    for i in range(min(limit, len(val_set))):
        item = seeded[(i, 0, distributed._derive_seed(cfg.train.seed, 0x7A1, i))]
        lq, gt = item["lq"].to(device), item["gt"].to(device)  # (T, 3, h, w), (3, H, W)
        if baseline:
            frame = lq[center][None]
            out = frame if cfg.model.hr_in else F.interpolate(frame, scale_factor=4, mode="bicubic",
                                                              align_corners=False)
        else:
            with _autocast(device, amp_dtype):
                out = model(lq[None])
        out = out[0].float().clamp(0, 1)[:, : gt.shape[-2], : gt.shape[-1]]
        clip = str(item.get("key", "")).rsplit("/", 1)[0]
        scores.setdefault(clip, []).append(psnr(_hwc255(out), _hwc255(gt), crop_border=crop, y_channel=y_channel))
        if writer is not None and i == 0:
            up = F.interpolate(lq[center][None], size=gt.shape[-2:], mode="bicubic", align_corners=False)[0]
            writer.add_image("val/bicubic_output_gt", torch.cat([up.clamp(0, 1), out, gt], dim=-1).cpu(), step)
    if model is not None:
        model.train()
    return {"psnr": float(np.mean([np.mean(v) for v in scores.values()])), "items": sum(map(len, scores.values()))}


def _autocast(device: torch.device, amp_dtype: torch.dtype | None):
    """Mixed precision when asked for; else no autocast context at all (torch < 2.5 refuses one for MPS even when
    disabled)."""
    if amp_dtype is None:
        return contextlib.nullcontext()
    return torch.autocast(device.type, dtype=amp_dtype)


def _hwc255(x: torch.Tensor) -> np.ndarray:
    """(3, H, W) in [0, 1] -> (H, W, 3) float64 in [0, 255], rounded as an 8-bit image would be."""
    return (x.clamp(0, 1) * 255.0).round().permute(1, 2, 0).cpu().double().numpy()


def _val_name(cfg: Config) -> str:
    v = cfg.data.val
    if v is None:
        return "(given set)"
    return f"{v.name or 'given set'} ({'Y' if v.y_channel else 'RGB'}, crop {v.crop_border})"


def _loss_function(cfg: Config):
    t = cfg.train
    if t.loss == "charbonnier":
        return lambda out, gt: charbonnier_loss(out, gt, eps=t.charbonnier_eps, reduction=t.loss_reduction)
    return lambda out, gt: l1_loss(out, gt, reduction=t.loss_reduction)


def _sum_over_ranks(loss: torch.Tensor, info: DistInfo) -> float:
    if info.enabled:
        loss = loss.clone()
        torch.distributed.all_reduce(loss)
    return float(loss.item())


def _collate(items: list[dict[str, Any]]) -> dict[str, Any]:
    out: dict[str, Any] = {"lq": torch.stack([x["lq"] for x in items]), "gt": torch.stack([x["gt"] for x in items])}
    out["key"] = [x.get("key", "") for x in items]
    return out


def _check_compatible(state: dict[str, Any], cfg: Config, path: Path | None, log: _Log) -> None:
    saved = state.get("config", {})
    old_model, new_model = (dict(m or {}) for m in (saved.get("model"), cfg.to_dict()["model"]))
    for m in (old_model, new_model):
        m.pop("dcn_backend", None)  # how the deformable convs are computed, not what they are: free to change
    if old_model != new_model:
        run_config = path.parent.parent / "config.yaml" if path else "config.yaml"
        raise CheckpointError(f"{path}: saved with model {saved.get('model')}, but the config asks for "
                              f"{cfg.to_dict()['model']}; resume with the run's own config ({run_config})")
    if saved.get("data", {}).get("batch_size") != cfg.data.batch_size:
        log.warn(f"resuming with total batch {cfg.data.batch_size} (was {saved.get('data', {}).get('batch_size')}): "
                 "the run will not match an uninterrupted one")
    old_train = saved.get("train", {})
    old_mult = old_train.get("dcn_lr_mult", 1.0)
    if (old_mult == 1.0) != (cfg.train.dcn_lr_mult == 1.0):  # the deformable convs have their own Adam group or not
        raise CheckpointError(f"{path}: saved with train.dcn_lr_mult={old_mult}, the config asks for "
                              f"{cfg.train.dcn_lr_mult}: resume with {old_mult}, or start a new run from its weights "
                              f"(train.pretrained={path})")
    now = cfg.to_dict()["train"]  # the form the checkpoint saved (betas as a list)
    for key in ("dcn_lr_mult", "betas", "weight_decay"):
        old, new = old_train.get(key), now[key]
        if old is not None and old != new:
            log.warn(f"resuming with train.{key}={new} (was {old}): the run will not match an uninterrupted one")


def _save_state(ckpt_dir: Path, it: int, cfg: Config, info: DistInfo, model, ema, optimizer, scaler, position: int,
                num_items: int, nonfinite_streak: int) -> Path:
    rngs = distributed.gather_objects(ckpt.rng_state(), info)  # every rank's RNGs, so each resumes its own
    path = ckpt_dir / ckpt.checkpoint_name(it)
    if info.is_main:
        path = ckpt.save_training_state({
            "model": model.state_dict(),
            "ema": ema.state_dict() if ema is not None else None,
            "optimizer": optimizer.state_dict(),
            "scaler": scaler.state_dict() if scaler.is_enabled() else None,
            "rng": rngs,
            "data": distributed.data_position(position, num_items),
            "nonfinite_streak": nonfinite_streak,
            "world_size": info.world_size,
            "config": cfg.to_dict(),
        }, ckpt_dir, it, keep=cfg.train.keep_checkpoints)
    distributed.barrier(info)  # nobody runs ahead (or exits) before the file is complete
    return path


def _open_tensorboard(run_dir: Path, log: _Log) -> Any:
    try:
        from torch.utils.tensorboard import SummaryWriter
    except ImportError:
        log.info("tensorboard is not installed (pip install 'edvr[train]'): scalars go to train.log only")
        return None
    return SummaryWriter(str(run_dir / "tensorboard"))


def _progress_bar(total: int, initial: int, info: DistInfo):
    from tqdm import tqdm

    quiet = not info.is_main or not sys.stderr.isatty()  # log lines carry the progress in files and CI
    return tqdm(total=total, initial=initial, disable=quiet, unit="it", dynamic_ncols=True, leave=False)


def _hms(seconds: float) -> str:
    s = int(seconds)
    return f"{s // 3600}:{s // 60 % 60:02d}:{s % 60:02d}"


class _Log:
    """Lines to stdout and to ``run_dir/train.log`` (rank 0 only; other ranks pass None and stay silent)."""

    def __init__(self, run_dir: Path | None) -> None:
        self.path = run_dir / "train.log" if run_dir is not None else None

    def info(self, msg: str) -> None:
        self._write(msg)

    def warn(self, msg: str) -> None:
        self._write(f"warning: {msg}")

    def _write(self, msg: str) -> None:
        if self.path is None:
            return
        from tqdm import tqdm

        tqdm.write(msg, file=sys.stdout)
        sys.stdout.flush()
        self.path.parent.mkdir(parents=True, exist_ok=True)
        with open(self.path, "a", encoding="utf-8") as f:
            f.write(msg + "\n")
