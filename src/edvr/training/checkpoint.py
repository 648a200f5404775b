"""Training checkpoints: everything needed to continue a run as if it had never stopped.

A training state file (``run/checkpoints/iter_000500.pt``, torch format, loadable with ``weights_only=True``)
holds the model and EMA weights, the optimiser and GradScaler states, the iteration (the learning rate is a pure
function of it, see :mod:`edvr.training.schedules`), the RNG states of every process (Python, NumPy, torch CPU and
CUDA), the data position (see :mod:`edvr.training.distributed`), the count of non-finite losses in a row and the
resolved config. Files are written to a temporary name and renamed, so a crash never leaves a half-written
checkpoint under a final name. ``latest.pt`` is a hard link to the newest one (a copy where links are refused);
only the newest ``keep`` are kept. The inference-only export is separate: safetensors with the model arguments.
"""

from __future__ import annotations

import os
import random
import re
import shutil
import tempfile
from pathlib import Path
from typing import Any

import numpy as np
import torch

from edvr.errors import CheckpointError, OutputError

FORMAT = "edvr-train-state"
VERSION = 1
LATEST = "latest.pt"
_ITER_RE = re.compile(r"^iter_(\d+)\.pt$")


def checkpoint_name(iteration: int) -> str:
    return f"iter_{iteration:07d}.pt"


def rng_state() -> dict[str, Any]:
    """This process's RNG states, as tensors and plain Python values (weights_only-loadable)."""
    kind, keys, pos, has_gauss, gauss = np.random.get_state()
    state: dict[str, Any] = {
        "python": random.getstate(),
        "numpy": {"kind": kind, "keys": torch.from_numpy(keys.astype(np.int64)), "pos": int(pos),
                  "has_gauss": int(has_gauss), "gauss": float(gauss)},
        "torch": torch.get_rng_state(),
        "cuda": torch.cuda.get_rng_state_all() if torch.cuda.is_available() else [],
    }
    return state


def set_rng_state(state: dict[str, Any]) -> None:
    py = state["python"]
    random.setstate((py[0], tuple(py[1]), py[2]))
    n = state["numpy"]
    np.random.set_state((n["kind"], n["keys"].numpy().astype(np.uint32), n["pos"], n["has_gauss"], n["gauss"]))
    torch.set_rng_state(state["torch"])
    if state["cuda"] and torch.cuda.is_available() and len(state["cuda"]) == torch.cuda.device_count():
        torch.cuda.set_rng_state_all(state["cuda"])


def atomic_torch_save(obj: Any, path: Path) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as f:
            torch.save(obj, f)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except RuntimeError as e:  # torch.save's writer reports a full disk or an I/O error as a RuntimeError
        Path(tmp).unlink(missing_ok=True)
        raise OutputError(f"{path}: cannot write the checkpoint ({str(e).splitlines()[0][:200]}); check free space "
                          "and resume with --resume auto") from None
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def save_training_state(state: dict[str, Any], ckpt_dir: Path, iteration: int, keep: int) -> Path:
    """Write ``state`` as ``iter_N.pt``, point ``latest.pt`` at it, delete all but the newest ``keep``."""
    path = ckpt_dir / checkpoint_name(iteration)
    atomic_torch_save({"format": FORMAT, "version": VERSION, "iteration": iteration, **state}, path)
    _point_latest(ckpt_dir, path)
    for old in list_checkpoints(ckpt_dir)[:-keep]:
        old.unlink(missing_ok=True)
    return path


def _point_latest(ckpt_dir: Path, target: Path) -> None:
    tmp = ckpt_dir / f".{LATEST}.{os.getpid()}.tmp"
    tmp.unlink(missing_ok=True)
    try:
        os.link(target, tmp)
    except OSError:  # file systems without hard links
        shutil.copyfile(target, tmp)
    os.replace(tmp, ckpt_dir / LATEST)


def list_checkpoints(ckpt_dir: Path) -> list[Path]:
    """``iter_*.pt`` files in ``ckpt_dir``, oldest first."""
    if not ckpt_dir.is_dir():
        return []
    found = [(int(m.group(1)), p) for p in ckpt_dir.iterdir() if (m := _ITER_RE.match(p.name))]
    return [p for _, p in sorted(found)]


def find_resume_path(resume: str, ckpt_dir: Path) -> Path | None:
    """``auto``: the run's ``latest.pt`` (None when the run has none yet); else the named file, which must exist."""
    if resume == "auto":
        latest = ckpt_dir / LATEST
        if latest.is_file():
            return latest
        found = list_checkpoints(ckpt_dir)
        return found[-1] if found else None
    path = Path(resume)
    if not path.is_file():
        raise CheckpointError(f"{path}: no such checkpoint to resume from (or pass --resume auto)")
    return path


def load_training_state(path: Path) -> dict[str, Any]:
    from edvr.models.convert import require_safe_unpickler

    require_safe_unpickler(path)
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as e:
        first = (str(e).strip().splitlines() or [type(e).__name__])[0]
        raise CheckpointError(f"{path}: not a readable training checkpoint ({first})") from None
    if not isinstance(state, dict) or state.get("format") != FORMAT:
        raise CheckpointError(
            f"{path}: not an edvr training state (to start from weights, set train.pretrained={path} instead)"
        )
    if state.get("version", 0) > VERSION:
        raise CheckpointError(f"{path}: written by a newer edvr (state version {state['version']}); upgrade edvr")
    return state


def export_weights(state_dict: dict[str, torch.Tensor], model_config: Any, path: Path,
                   metadata: dict[str, str] | None = None) -> Path:
    """Inference-only weights in edvr's own format (safetensors, the model arguments in the metadata)."""
    from edvr.models.convert import save_checkpoint

    return save_checkpoint(state_dict, model_config, path, metadata=metadata)
