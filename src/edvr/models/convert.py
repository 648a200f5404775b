"""Checkpoints in, checkpoints out: recognise a file's format from its keys, convert names, infer the architecture.

Accepted files:
- edvr's own: safetensors with the model arguments in the metadata (``edvr_config``);
- BasicSR: a dict with ``params`` and/or ``params_ema`` (``params_ema`` preferred when present);
- the original EDVR repository: a bare state dict, sometimes with a ``module.`` prefix (DataParallel);
- mmagic / mmedit: ``state_dict`` with a ``generator.`` prefix and ConvModule / PixelShufflePack wrappers;
- a bare state dict in our naming (which is BasicSR's, plus the "Stage 2" strided convs BasicSR lacks).

Pickle files are opened with ``torch.load(weights_only=True)`` only: a checkpoint that would run code is refused.
"""

from __future__ import annotations

import hashlib
import json
import re
import warnings
from collections.abc import Callable, Mapping
from dataclasses import dataclass, fields, replace
from pathlib import Path

import torch

from edvr.errors import CheckpointError, OutputError
from edvr.models.edvr import EDVRConfig

StateDict = dict[str, torch.Tensor]
Rule = tuple[str, str | Callable[[re.Match], str]]

# The original EDVR repository's names -> ours (BasicSR's). First matching rule wins; the rest of the key is kept.
ORIGINAL_RULES: list[Rule] = [
    (r"^pre_deblur\.conv_first_1\.", "predeblur.conv_first."),
    (r"^pre_deblur\.conv_first_2\.", "predeblur.stride_conv_hr1."),
    (r"^pre_deblur\.conv_first_3\.", "predeblur.stride_conv_hr2."),
    (r"^pre_deblur\.conv_first\.", "predeblur.conv_first."),
    (r"^pre_deblur\.deblur_L([23])_conv\.", r"predeblur.stride_conv_l\1."),
    (r"^pre_deblur\.RB_L3_1\.", "predeblur.resblock_l3."),
    (r"^pre_deblur\.RB_L2_([12])\.", r"predeblur.resblock_l2_\1."),
    (r"^pre_deblur\.RB_L1_([1-5])\.", lambda m: f"predeblur.resblock_l1.{int(m[1]) - 1}."),
    (r"^fea_L([23])_conv([12])\.", r"conv_l\1_\2."),
    (r"^pcd_align\.L([123])_offset_conv([123])\.", r"pcd_align.offset_conv\2.l\1."),
    (r"^pcd_align\.L([123])_dcnpack\.conv_offset_mask\.", r"pcd_align.dcn_pack.l\1.conv_offset."),
    (r"^pcd_align\.L([123])_dcnpack\.", r"pcd_align.dcn_pack.l\1."),
    (r"^pcd_align\.L([12])_fea_conv\.", r"pcd_align.feat_conv.l\1."),
    (r"^pcd_align\.cas_dcnpack\.conv_offset_mask\.", "pcd_align.cas_dcnpack.conv_offset."),
    # The original's tAtt_1 embeds all frames and tAtt_2 the centre frame; BasicSR numbered them the other way.
    (r"^tsa_fusion\.tAtt_1\.", "fusion.temporal_attn2."),
    (r"^tsa_fusion\.tAtt_2\.", "fusion.temporal_attn1."),
    (r"^tsa_fusion\.fea_fusion\.", "fusion.feat_fusion."),
    (r"^tsa_fusion\.sAtt_add_([12])\.", r"fusion.spatial_attn_add\1."),
    (r"^tsa_fusion\.sAtt_L([123])\.", r"fusion.spatial_attn_l\1."),
    (r"^tsa_fusion\.sAtt_([1-5])\.", r"fusion.spatial_attn\1."),
    (r"^tsa_fusion\.(weight|bias)$", r"fusion.\1"),
    (r"^recon_trunk\.", "reconstruction."),
    (r"^HRconv\.", "conv_hr."),
    # "Stage 2" models: HR input through conv_first and two strided convs, no PreDeblur (absent from BasicSR).
    (r"^conv_first_1\.", "conv_first."),
    (r"^conv_first_([23])\.", lambda m: f"stride_conv_hr{int(m[1]) - 1}."),
]

# mmagic's EDVRNet names -> ours, every rule applied in turn: ConvModule wraps its conv as ``.conv``,
# PixelShufflePack as ``.upsample_conv``.
MMAGIC_RULES: list[Rule] = [
    (r"^pcd_alignment\.", "pcd_align."),
    (r"^feat_l([23])_conv([12])\.conv\.", r"conv_l\1_\2."),
    (r"^upsample([12])\.upsample_conv\.", r"upconv\1."),
    (r"\.conv\.(weight|bias)$", r".\1"),
]

_ORIGINAL_MARKERS = ("tsa_fusion.", "recon_trunk.", "fea_L2_conv1.", "pcd_align.L1_", "HRconv.", "pre_deblur.")
_MMAGIC_MARKERS = ("pcd_alignment.", "upsample1.upsample_conv.", "feat_l2_conv1.")
# conv_l2_1 is there without PCD too (the ablation's with_alignment=False); the original names it fea_L2_conv1,
# mmagic feat_l2_conv1, both checked first.
_OURS_MARKERS = ("pcd_align.offset_conv1.", "pcd_align.dcn_pack.", "conv_l2_1.")


@dataclass
class LoadedCheckpoint:
    """A checkpoint read from disk: tensors in our names, the architecture, and where they came from."""

    state_dict: StateDict
    config: EDVRConfig
    format: str  # "edvr", "basicsr", "original", "mmagic", "state_dict"
    source_key: str | None = None  # which entry of a container file held the weights ("params_ema", ...)
    metadata: dict | None = None


def _rename(keys: list[str], rules: list[Rule], *, first_match_only: bool) -> dict[str, str]:
    """Apply the rules to every key: only the first that matches (original repo), or each in turn (mmagic, whose
    wrappers combine with renamed prefixes)."""
    compiled = [(re.compile(p), r) for p, r in rules]
    mapping = {}
    for key in keys:
        new = key
        for pattern, repl in compiled:
            if pattern.search(new):
                new = pattern.sub(repl, new, count=1)
                if first_match_only:
                    break
        mapping[key] = new
    return mapping


def _strip_prefix(sd: Mapping[str, torch.Tensor], prefix: str, *, keep_only: bool = False) -> StateDict:
    """Drop ``prefix`` when every key has it; with ``keep_only``, keep just the keys that have it (mmagic files hold
    a ``generator.`` and other parts, e.g. a ``step_counter`` buffer, side by side)."""
    matching = {k[len(prefix):]: v for k, v in sd.items() if k.startswith(prefix)}
    if matching and (keep_only or len(matching) == len(sd)):
        return matching
    return dict(sd)


def detect_naming(keys: list[str]) -> str:
    """Which naming a state dict uses: 'original', 'mmagic' or 'ours' (ours = BasicSR's)."""
    def has(markers: tuple[str, ...]) -> bool:
        return any(k.startswith(markers) for k in keys)

    if has(_MMAGIC_MARKERS):
        return "mmagic"
    if has(_ORIGINAL_MARKERS):
        if not has(("tsa_fusion.",)):  # MSRResNet / ESRGAN files of the same repositories have recon_trunk, HRconv
            raise CheckpointError(f"not an EDVR checkpoint: original-repository names but no EDVR fusion "
                                  f"(tsa_fusion.*); first keys: {', '.join(keys[:4])}")
        return "original"
    if has(_OURS_MARKERS):
        return "ours"
    shown = ", ".join(keys[:4]) or "no keys"
    raise CheckpointError(f"not an EDVR checkpoint: no EDVR feature-pyramid or PCD weights found (first keys: {shown})")


def to_our_names(sd: Mapping[str, torch.Tensor]) -> tuple[StateDict, str]:
    """Convert a state dict in any supported naming to ours; returns (state dict, naming detected)."""
    sd = _strip_prefix(_strip_prefix(sd, "module."), "generator.", keep_only=True)
    naming = detect_naming(list(sd))
    if naming == "ours":
        return dict(sd), naming
    if naming == "original":
        mapping = _rename(list(sd), ORIGINAL_RULES, first_match_only=True)
    else:
        mapping = _rename(list(sd), MMAGIC_RULES, first_match_only=False)
    return {mapping[k]: v for k, v in sd.items()}, naming


def _count_blocks(keys: list[str], prefix: str) -> int:
    pattern = re.compile(rf"^{re.escape(prefix)}\.(\d+)\.conv1\.weight$")
    return len({m[1] for k in keys if (m := pattern.match(k))})


def infer_config(sd: Mapping[str, torch.Tensor]) -> EDVRConfig:
    """The architecture a state dict (in our names) belongs to, from its keys and shapes alone.

    ``center_frame_idx`` cannot be seen in the weights; every official model uses the middle frame.
    """
    def need(key: str) -> torch.Tensor:
        if key not in sd:
            raise CheckpointError(f"cannot infer the EDVR architecture: key {key!r} is missing")
        return sd[key]

    with_predeblur = "predeblur.conv_first.weight" in sd
    first = need("predeblur.conv_first.weight" if with_predeblur else "conv_first.weight")
    nf, num_in_ch = first.shape[0], first.shape[1]
    with_tsa = "fusion.temporal_attn1.weight" in sd
    fusion_in = need("fusion.feat_fusion.weight" if with_tsa else "fusion.weight").shape[1]
    if fusion_in % nf:
        raise CheckpointError(f"cannot infer the number of frames: fusion takes {fusion_in} channels, not a multiple of {nf}")
    with_alignment = any(k.startswith("pcd_align.") for k in sd)
    # Without PCD the group count leaves no trace in the weights and changes nothing: 1.
    offsets = need("pcd_align.dcn_pack.l1.conv_offset.weight").shape[0] if with_alignment else 27
    if offsets % 27 or not offsets:
        raise CheckpointError(f"cannot infer the deformable groups: the offset conv has {offsets} outputs, not 27 per "
                              "group")
    groups = offsets // 27
    keys = list(sd)
    return EDVRConfig(
        num_in_ch=num_in_ch,
        num_out_ch=need("conv_last.weight").shape[0],
        num_feat=nf,
        num_frames=fusion_in // nf,
        deformable_groups=groups,  # the offset conv's outputs: 3 chunks (dx, dy, mask) x 9 taps per group
        num_extract_block=_count_blocks(keys, "feature_extraction"),
        num_reconstruct_block=_count_blocks(keys, "reconstruction"),
        hr_in="predeblur.stride_conv_hr1.weight" in sd or "stride_conv_hr1.weight" in sd,
        with_predeblur=with_predeblur,
        with_tsa=with_tsa,
        with_alignment=with_alignment,
    )


def _is_safetensors(path: Path) -> bool:
    try:
        with open(path, "rb") as f:
            head = f.read(9)
    except OSError as e:
        raise CheckpointError(f"{path}: cannot be read ({e.strerror})") from None
    # 8-byte little-endian header length, then the JSON header.
    return len(head) == 9 and head[8:9] == b"{" and int.from_bytes(head[:8], "little") < 100 * 2**20


def read_checkpoint(path: str | Path, *, param_key: str | None = None) -> LoadedCheckpoint:
    """Read any accepted checkpoint file into our names, with the inferred (or stored) architecture."""
    path = Path(path)
    if path.is_dir():
        raise CheckpointError(f"{path}: is a folder; pass a checkpoint file (.pth, .safetensors)")
    if not path.is_file():
        raise CheckpointError(f"{path}: no such file")
    metadata: dict | None = None
    source_key = None
    centre = None
    if _is_safetensors(path):
        from safetensors import SafetensorError, safe_open

        try:
            with safe_open(str(path), framework="pt") as f:
                metadata = dict(f.metadata() or {})
                raw: Mapping[str, torch.Tensor] = {k: f.get_tensor(k) for k in f.keys()}
        except SafetensorError as e:
            raise CheckpointError(f"{path}: not a readable safetensors file ({e}); an interrupted download or copy? "
                                  "fetch it again") from None
        container = "edvr" if "edvr_config" in metadata else "state_dict"
    else:
        _check_hash_prefix(path)
        raw, container, source_key, centre = _read_pickle(path, param_key)
    sd, naming = to_our_names(raw)
    if container == "state_dict" and naming != "ours":
        container = naming
    try:
        if metadata and "edvr_config" in metadata:
            config = config_from_dict(json.loads(metadata["edvr_config"]))
        else:
            config = infer_config(sd)
            if centre is not None:  # an edvr training state records the one setting that weights cannot show
                config = replace(config, center_frame_idx=centre)
    except (ValueError, TypeError, ZeroDivisionError, CheckpointError) as e:  # bad JSON, an architecture that
        # EDVRConfig rejects (e.g. groups of num_feat) or that cannot be inferred
        raise CheckpointError(f"{path}: describes no valid EDVR ({e})") from None
    return LoadedCheckpoint(sd, config, container, source_key, metadata)


def _check_hash_prefix(path: Path) -> None:
    # BasicSR names its files NAME-<first 8 hex digits of the sha256>.pth; a mismatch means a damaged download. Only
    # the official names are checked, wherever the file is (other names may end in -20241125.pth).
    from edvr.models.zoo import MODELS

    m = re.search(r"-([0-9a-f]{8})\.pth$", path.name)
    if not m or not any(path.name in record.files for record in MODELS.values()):
        return
    sha = hashlib.sha256()
    with open(path, "rb") as f:
        while chunk := f.read(1 << 22):
            sha.update(chunk)
    digest = sha.hexdigest()
    if not digest.startswith(m[1]):
        warnings.warn(f"{path}: sha256 {digest[:8]} does not match the {m[1]} in its name; the file may be damaged",
                      RuntimeWarning, stacklevel=4)


def _read_pickle(path: Path, param_key: str | None) -> tuple[StateDict, str, str | None, int | None]:
    """The weights, the container's format, the entry they came from, and an edvr training state's centre frame."""
    require_safe_unpickler(path)
    try:
        obj = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as e:  # UnpicklingError for code-carrying pickles, various errors for corrupt files
        text = str(e)
        if re.search(r"GLOBAL|global", text):  # the safe unpickler met a class/function reference: never run it
            # (a file cut short inside a class name reads as an unknown one, e.g. ``torch.FloatStora``)
            found = re.search(r"GLOBAL (\S+)", text)
            raise CheckpointError(
                f"{path}: refused: the file holds Python objects or code, not only tensors (edvr opens pickles with "
                f"weights_only=True{f'; it names {found[1]}' if found else ''}), or it is cut short; fetch the "
                "official file again, or, if you trust it (your own training run), save its weights alone: "
                f"python -c \"import torch; torch.save(torch.load('{path}', weights_only=False)['state_dict'], 'weights.pth')\""
            ) from None
        raise CheckpointError(f"{path}: not a readable checkpoint (neither safetensors nor a complete PyTorch file); "
                              "an interrupted download or copy? fetch it again") from None
    if not isinstance(obj, dict):
        raise CheckpointError(f"{path}: expected a dict of tensors, found {type(obj).__name__}")
    from edvr.training.checkpoint import FORMAT

    # edvr's own training state (iter_N.pt, latest.pt) records the centre frame, which weights cannot show
    state = obj.get("format") == FORMAT
    centre = ((obj.get("config") or {}).get("model") or {}).get("center_frame_idx") if state else None
    if param_key is not None:
        if param_key not in obj:
            raise CheckpointError(f"{path}: no entry {param_key!r} (entries: {', '.join(map(str, obj))})")
        if not isinstance(obj[param_key], dict):
            raise CheckpointError(f"{path}: entry {param_key!r} holds {type(obj[param_key]).__name__}, not weights")
        return obj[param_key], "basicsr" if param_key.startswith("params") else "state_dict", param_key, centre
    for key in ("params_ema", "params"):
        if isinstance(obj.get(key), dict):
            return obj[key], "basicsr", key, None
    if state:  # a training state: its EMA weights if it keeps them
        key = "ema" if isinstance(obj.get("ema"), dict) else "model"
        return obj[key], "state_dict", key, centre
    if isinstance(obj.get("state_dict"), dict):  # mmagic / mmedit, also generic training states
        return obj["state_dict"], "state_dict", "state_dict", None
    if obj and all(isinstance(v, torch.Tensor) for v in obj.values()):
        return obj, "state_dict", None, None
    entries = ", ".join(map(str, list(obj)[:8]))
    raise CheckpointError(f"{path}: no weights found (entries: {entries}); pick one with --param-key (param_key=)")


def require_safe_unpickler(path: Path) -> None:
    """Refuse to unpickle with a PyTorch whose ``weights_only=True`` loader can be made to run code."""
    m = re.match(r"(\d+)\.(\d+)", torch.__version__)
    if m and (int(m[1]), int(m[2])) < (2, 6):
        raise CheckpointError(f"{path}: not opened: before PyTorch 2.6 torch.load(weights_only=True) can be made to "
                              f"run code from a hostile file (CVE-2025-32434), and this is {torch.__version__}; "
                              "upgrade PyTorch, or use a .safetensors file")


def config_from_dict(d: Mapping) -> EDVRConfig:
    """EDVRConfig from our dict, also accepting BasicSR's argument names (``num_frame``)."""
    d = dict(d)
    if "num_frame" in d:
        d["num_frames"] = d.pop("num_frame")
    d.pop("num_in_frames", None)
    known = {f.name for f in fields(EDVRConfig)}
    unknown = set(d) - known
    if unknown:
        raise CheckpointError(f"unknown EDVR arguments {sorted(unknown)} (known: {sorted(known)})")
    return EDVRConfig(**d)


def check_keys(model_sd: Mapping[str, torch.Tensor], sd: Mapping[str, torch.Tensor]) -> None:
    """Raise one readable CheckpointError listing missing / unexpected / wrongly shaped keys."""
    missing = [k for k in model_sd if k not in sd]
    unexpected = [k for k in sd if k not in model_sd]
    shapes = [
        f"{k} (file {list(sd[k].shape)}, model {list(v.shape)})"
        for k, v in model_sd.items()
        if k in sd and tuple(sd[k].shape) != tuple(v.shape)
    ]
    if not (missing or unexpected or shapes):
        return

    def part(label: str, items: list[str]) -> str:
        more = f" and {len(items) - 5} more" if len(items) > 5 else ""
        return f"{len(items)} {label}: {', '.join(items[:5])}{more}" if items else ""

    parts = [p for p in (part("missing", missing), part("unexpected", unexpected), part("wrong shape", shapes)) if p]
    raise CheckpointError("weights do not fit the model: " + "; ".join(parts))


def save_checkpoint(
    state_dict: Mapping[str, torch.Tensor],
    config: EDVRConfig,
    path: str | Path,
    *,
    metadata: Mapping[str, str] | None = None,
    dtype: torch.dtype | None = None,
) -> Path:
    """Write our format: safetensors, the architecture in the metadata; atomically (:func:`edvr.files.write_atomic`)."""
    from safetensors.torch import save

    from edvr import __version__
    from edvr.files import write_atomic

    path = Path(path)
    tensors = {}
    for k, v in state_dict.items():
        v = v.detach().to("cpu")
        if dtype is not None and v.is_floating_point():
            v = v.to(dtype)
        tensors[k] = v.contiguous().clone()  # clone: safetensors refuses tensors that share storage
    meta = {"format": "edvr", "edvr_config": json.dumps(config.to_dict()), "edvr_version": __version__}
    meta.update({k: str(v) for k, v in (metadata or {}).items()})
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
    except OSError as e:
        raise OutputError(f"{path}: cannot be written ({e.strerror}); pick a folder you can write to") from None
    write_atomic(path, save(tensors, metadata=meta))
    return path
