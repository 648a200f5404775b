"""Training configuration: typed dataclass schemas, YAML loading, ``_base_`` inheritance and dotted overrides.

A recipe is a YAML file whose sections mirror :class:`Config`::

    name: edvr_m_x4_sr_reds
    model: {num_feat: 64, num_reconstruct_block: 10}
    data: {train: {name: reds, root: datasets/REDS}, batch_size: 32}
    train: {lr: 4.0e-4, iterations: 600000}

``_base_: other.yaml`` (a path relative to the file) loads that recipe first and merges this one over it, section by
section. Overrides from the command line use dotted keys: ``train.lr=2e-4 data.train.root=/x``. Every key is checked
against the schema: an unknown key is an error that names it and lists the known ones, and every value is converted to
the type the schema declares (``"2e-4"`` becomes a float for ``train.lr``; YAML 1.1 would read it as a string).
"""

from __future__ import annotations

import dataclasses
import types
import typing
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

from edvr.errors import InputError


@dataclass
class ModelConfig:
    """The EDVR arguments (see :class:`edvr.models.edvr.EDVR`); ``dcn_backend`` picks the deformable-conv kernel."""

    num_feat: int = 64
    num_frames: int = 5
    deformable_groups: int = 8
    num_extract_block: int = 5
    num_reconstruct_block: int = 10
    center_frame_idx: int | None = None
    hr_in: bool = False
    with_predeblur: bool = False
    with_tsa: bool = True
    with_alignment: bool = True
    dcn_backend: str | None = None

    def model_kwargs(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


@dataclass
class DatasetConfig:
    """One dataset: a name of ``edvr.data.DATASETS``, its root, and any further keyword arguments of that dataset."""

    name: str = ""
    root: str = ""
    options: dict[str, Any] = field(default_factory=dict)


@dataclass
class ValDatasetConfig(DatasetConfig):
    """The held-out clips, and how they are scored (PSNR on RGB or on Y, border crop)."""

    y_channel: bool = False
    crop_border: int = 0
    max_items: int = 0  # score only the first N items (0: all); keeps validation short on a laptop


@dataclass
class DataConfig:
    train: DatasetConfig = field(default_factory=DatasetConfig)
    val: ValDatasetConfig | None = None
    batch_size: int = 32  # in total over all processes; each of N processes loads batch_size / N
    num_workers: int = 3  # loader processes per training process (0: load in the training process)


@dataclass
class TrainConfig:
    """Optimiser, schedule, loss and the run's rhythm. Iterations count optimiser updates, starting at 1."""

    iterations: int = 600_000
    lr: float = 4e-4
    betas: tuple[float, float] = (0.9, 0.99)
    weight_decay: float = 0.0
    # Cosine annealing with restarts: period lengths (sum >= iterations), the peak of each period relative to lr.
    periods: list[int] = field(default_factory=lambda: [150_000, 150_000, 150_000, 150_000])
    restart_weights: list[float] = field(default_factory=lambda: [1.0, 1.0, 1.0, 1.0])
    eta_min: float = 1e-7
    warmup_iterations: int = 0  # linear lr warm-up from 0 (BasicSR's warmup_iter; the EDVR recipes use none)
    tsa_only_iterations: int = 0  # updates 1..N-1 train only the TSA module (BasicSR's tsa_iter; the rest frozen)
    dcn_lr_mult: float = 1.0  # lr multiplier of the deformable convs (weights, offset/mask convs): BasicSR's dcn_lr_mul
    loss: Literal["charbonnier", "l1"] = "charbonnier"
    loss_reduction: Literal["sum", "mean"] = "sum"
    charbonnier_eps: float = 1e-12  # BasicSR: 1e-12; the original EDVR repo: 1e-6
    ema_decay: float = 0.0  # 0: no EMA; else e.g. 0.999, and validation and the exported weights use the EMA
    amp: Literal["off", "bf16", "fp16"] = "off"  # mixed precision, CUDA only
    grad_clip: float = 0.0  # max global gradient norm; 0: no clipping
    max_nonfinite: int = 10  # stop after this many non-finite losses in a row
    checkpoint_interval: int = 5000
    keep_checkpoints: int = 3
    val_interval: int = 5000
    seed: int = 10
    device: str = "auto"  # auto (CUDA if present, else CPU), cpu, cuda, mps
    pretrained: str | None = None  # initial weights (any format edvr reads), loaded non-strictly
    pretrained_strict: bool = False


@dataclass
class LoggingConfig:
    root: str = "experiments"  # the run writes into root/name
    print_interval: int = 100
    tensorboard: bool = True  # if torch.utils.tensorboard is importable


@dataclass
class Config:
    name: str = "edvr"
    model: ModelConfig = field(default_factory=ModelConfig)
    data: DataConfig = field(default_factory=DataConfig)
    train: TrainConfig = field(default_factory=TrainConfig)
    logging: LoggingConfig = field(default_factory=LoggingConfig)

    @property
    def run_dir(self) -> Path:
        return Path(self.logging.root) / self.name

    def to_dict(self) -> dict[str, Any]:
        """Plain data (lists, dicts, scalars): YAML-writable and loadable with ``torch.load(weights_only=True)``."""
        return _plain(dataclasses.asdict(self))

    def to_yaml(self) -> str:
        return _yaml().safe_dump(self.to_dict(), sort_keys=False)

    def validate(self) -> None:
        """Cross-field checks that a type alone cannot express."""
        t = self.train
        # (key, value, lowest allowed, lowest excluded?, highest excluded)
        bounds = [(f"train.{k}", getattr(t, k), 1, False, None) for k in
                  ("iterations", "checkpoint_interval", "val_interval", "keep_checkpoints", "max_nonfinite")]
        bounds += [(f"train.{k}", getattr(t, k), 0, False, None) for k in
                   ("weight_decay", "eta_min", "warmup_iterations", "tsa_only_iterations", "dcn_lr_mult", "grad_clip")]
        bounds += [("train.lr", t.lr, 0, True, None), ("train.ema_decay", t.ema_decay, 0, False, 1),
                   ("train.charbonnier_eps", t.charbonnier_eps, 0, True, None),
                   ("data.batch_size", self.data.batch_size, 1, False, None),
                   ("data.num_workers", self.data.num_workers, 0, False, None),
                   ("logging.print_interval", self.logging.print_interval, 1, False, None)]
        bounds += [(f"train.betas[{i}]", b, 0, False, 1) for i, b in enumerate(t.betas)]
        bounds += [("train.periods", min(t.periods, default=1), 1, False, None),
                   ("train.restart_weights", min(t.restart_weights, default=0), 0, False, None)]
        if self.data.val is not None:
            bounds.append(("data.val.crop_border", self.data.val.crop_border, 0, False, None))
        for key, value, low, open_low, high in bounds:
            if value < low or (open_low and value == low) or (high is not None and value >= high):
                allowed = f"{'>' if open_low else '>='} {low}" + (f" and < {high}" if high is not None else "")
                raise InputError(f"{key} must be {allowed}, got {value}")
        if len(t.periods) != len(t.restart_weights):
            raise InputError(
                f"train.periods has {len(t.periods)} entries but train.restart_weights has {len(t.restart_weights)}"
            )
        if sum(t.periods) < t.iterations:
            raise InputError(
                f"train.periods sum to {sum(t.periods)}, fewer than train.iterations {t.iterations}: "
                "lengthen the periods or shorten the run"
            )
        if not self.data.train.name:
            raise InputError("data.train.name is empty: name a dataset (e.g. reds, vimeo90k, videos)")
        from edvr.models.edvr import EDVRConfig
        from edvr.ops.deform_conv import requested_backend

        try:
            EDVRConfig(**{k: v for k, v in self.model.model_kwargs().items() if k != "dcn_backend"})
            if self.model.dcn_backend is not None:
                requested_backend(self.model.dcn_backend)
        except ValueError as e:
            raise InputError(f"model: {e}") from None


# ---------------------------------------------------------------------------------------------- loading


def load_config(path: str | Path | None = None, overrides: list[str] | tuple[str, ...] = ()) -> Config:
    """The recipe at ``path`` (or the defaults), with ``key=value`` overrides applied, typed and validated."""
    data: dict[str, Any] = load_yaml_with_bases(Path(path)) if path is not None else {}
    for item in overrides:
        key, sep, value = item.partition("=")
        if not sep or not key:
            raise InputError(f"override {item!r} is not of the form section.key=value (e.g. train.lr=2e-4)")
        _set_dotted(data, key.strip(), _parse_scalar(value))
    cfg = from_dict(Config, data)
    cfg.validate()
    return cfg


def load_yaml_with_bases(path: Path, _seen: tuple[Path, ...] = ()) -> dict[str, Any]:
    """A YAML mapping, merged over its ``_base_`` (recursively; a path relative to the including file)."""
    yaml = _yaml()

    path = path.resolve() if path.exists() else path
    if not path.is_file():
        raise InputError(f"{path}: no such config file")
    if path in _seen:
        raise InputError(f"{path}: _base_ chain loops back to itself")
    try:
        data = yaml.safe_load(path.read_text(encoding="utf-8")) or {}
    except UnicodeDecodeError as e:
        raise InputError(f"{path}: not UTF-8 text (byte {e.start}); save the recipe as UTF-8") from None
    except yaml.YAMLError as e:
        mark = getattr(e, "problem_mark", None)
        where = f" line {mark.line + 1}" if mark is not None else ""
        raise InputError(f"{path}:{where} not valid YAML ({getattr(e, 'problem', None) or e})") from None
    if not isinstance(data, dict):
        raise InputError(f"{path}: a config must be a mapping of sections, found {type(data).__name__}")
    base = data.pop("_base_", None)
    if base is None:
        return data
    merged = load_yaml_with_bases(path.parent / str(base), (*_seen, path))
    return _deep_merge(merged, data)


def _deep_merge(base: dict[str, Any], over: dict[str, Any]) -> dict[str, Any]:
    out = dict(base)
    for k, v in over.items():
        out[k] = _deep_merge(out[k], v) if isinstance(v, dict) and isinstance(out.get(k), dict) else v
    return out


def _set_dotted(data: dict[str, Any], key: str, value: Any) -> None:
    parts = key.split(".")
    node = data
    for part in parts[:-1]:
        child = node.get(part)
        if child is None:
            child = node[part] = {}
        if not isinstance(child, dict):
            raise InputError(f"override {key}: {part} is a value, not a section")
        node = child
    node[parts[-1]] = value


def _yaml():
    """PyYAML (the ``train`` extra), or one line that says how to get it."""
    try:
        import yaml
    except ImportError:
        raise InputError("configs are YAML and PyYAML is not installed: pip install 'edvr[train]' (or pyyaml)") \
            from None
    return yaml


def _parse_scalar(text: str) -> Any:
    """Command-line text to a YAML value (``[1, 2]``, ``null``, ``true``); the schema fixes the final type."""
    yaml = _yaml()

    try:
        return yaml.safe_load(text) if text.strip() else ""
    except yaml.YAMLError:
        return text


# ---------------------------------------------------------------------------------------------- typing


T = typing.TypeVar("T")


def from_dict(cls: type[T], data: Any, prefix: str = "") -> T:
    """Build dataclass ``cls`` from a mapping; unknown keys and values of the wrong type are InputErrors."""
    if isinstance(data, cls):
        return data
    if not isinstance(data, dict):
        raise InputError(f"{prefix or 'config'}: expected a section (mapping), got {data!r}")
    hints = typing.get_type_hints(cls)
    known = [f.name for f in dataclasses.fields(cls)]
    unknown = [k for k in data if k not in known]
    if unknown:
        where = f"{prefix}." if prefix else ""
        raise InputError(f"unknown config key {where}{unknown[0]} (known in {prefix or 'the top level'}: "
                         f"{', '.join(known)})")
    kwargs = {k: _coerce(v, hints[k], f"{prefix}.{k}" if prefix else k) for k, v in data.items()}
    return cls(**kwargs)


def _coerce(value: Any, hint: Any, key: str) -> Any:
    origin = typing.get_origin(hint)
    args = typing.get_args(hint)
    if origin in (typing.Union, types.UnionType):
        if value is None and type(None) in args:
            return None
        non_none = [a for a in args if a is not type(None)]
        errors = []
        for a in non_none:
            try:
                return _coerce(value, a, key)
            except InputError as e:
                errors.append(str(e))
        raise InputError(errors[0])
    if dataclasses.is_dataclass(hint):
        return from_dict(hint, {} if value is None else value, key)
    if origin is Literal:
        if isinstance(value, bool) and ("on" if value else "off") in args:
            value = "on" if value else "off"  # YAML 1.1 reads a bare off / no as false, on / yes as true
        if value not in args:
            raise InputError(f"{key}: {value!r} is not one of {', '.join(map(str, args))}")
        return value
    if origin in (list, tuple):
        if isinstance(value, str):  # "1,2,3" from a shell
            value = [v for v in value.replace("[", "").replace("]", "").split(",") if v.strip()]
        if not isinstance(value, (list, tuple)):
            value = [value]
        if origin is tuple and args and args[-1] is not Ellipsis:
            if len(value) != len(args):
                raise InputError(f"{key}: expected {len(args)} values, got {len(value)} ({value!r})")
            return tuple(_coerce(v, a, f"{key}[{i}]") for i, (v, a) in enumerate(zip(value, args)))
        item = args[0] if args else Any
        return (tuple if origin is tuple else list)(_coerce(v, item, f"{key}[{i}]") for i, v in enumerate(value))
    if origin is dict or hint is dict:
        if value is None:
            return {}
        if not isinstance(value, dict):
            raise InputError(f"{key}: expected a mapping, got {value!r}")
        return dict(value)
    if hint is Any:
        return value
    if hint is bool:
        if isinstance(value, bool):
            return value
        text = str(value).strip().lower()
        if text in ("true", "yes", "on", "1"):
            return True
        if text in ("false", "no", "off", "0"):
            return False
        raise InputError(f"{key}: expected true or false, got {value!r}")
    if hint is int:
        if isinstance(value, bool):
            raise InputError(f"{key}: expected an integer, got {value!r}")
        try:
            number = float(value) if isinstance(value, str) else value
            if isinstance(number, float) and number.is_integer():  # 5e3 and 5000.0 both mean 5000
                return int(number)
            if isinstance(number, int):
                return number
        except ValueError:
            pass
        raise InputError(f"{key}: expected an integer, got {value!r}")
    if hint is float:
        if isinstance(value, bool):
            raise InputError(f"{key}: expected a number, got {value!r}")
        try:
            return float(value)
        except (TypeError, ValueError):
            raise InputError(f"{key}: expected a number, got {value!r}") from None
    if hint is str:
        if isinstance(value, (dict, list)):
            raise InputError(f"{key}: expected text, got {value!r}")
        return str(value)
    return value


def _plain(obj: Any) -> Any:
    if isinstance(obj, dict):
        return {k: _plain(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [_plain(v) for v in obj]
    return obj
