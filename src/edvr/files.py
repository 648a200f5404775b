"""Files that appear whole or not at all."""

from __future__ import annotations

import os
import tempfile
from pathlib import Path

from edvr.errors import OutputError


def _umask() -> int:
    try:  # Linux: read without changing it (setting it to read it races with other threads creating files)
        with open("/proc/self/status") as f:
            for line in f:
                if line.startswith("Umask:"):
                    return int(line.split()[1], 8)
    except (OSError, ValueError):
        pass
    mask = os.umask(0o077)  # elsewhere the only way to read it is to set it
    os.umask(mask)
    return mask


def write_atomic(path: str | os.PathLike, data: bytes | str) -> None:
    """Write ``data`` to ``path`` through a temporary file beside it (unique to this call, so that several processes
    may write the same path), renamed into place: no reader, and no run killed midway, leaves half a file behind."""
    path = Path(path).expanduser()
    try:
        fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    except OSError as e:
        raise OutputError(f"{path}: cannot write ({e.strerror}); check the folder and its permissions") from None
    try:
        with os.fdopen(fd, "wb") as f:
            try:  # mkstemp makes 0600; a file written in place would get the umask's mode
                os.fchmod(f.fileno(), 0o666 & ~_umask())
            except (OSError, AttributeError):  # FAT and exFAT refuse (their mode is theirs); Windows before Python
                pass  # 3.13 has no fchmod
            f.write(data.encode() if isinstance(data, str) else data)
        os.replace(tmp, path)
    except OSError as e:
        raise OutputError(f"{path}: cannot write ({e.strerror}); check free space and permissions") from None
    finally:
        Path(tmp).unlink(missing_ok=True)
