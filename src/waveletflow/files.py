"""Files written whole or not at all: a temporary file renamed over the old one (so a crash never leaves half a
file), with the permissions the umask allows, and one clear line when the system refuses."""

from __future__ import annotations

import errno
import json
import os
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import Any

from waveletflow.errors import UserInputError

TMP_SUFFIX = ".tmp"


def _umask() -> int:
    """The process's umask, read without changing it where the system tells it (Linux), else set and reset."""
    try:
        with open("/proc/self/status") as fh:
            for line in fh:
                if line.startswith("Umask:"):
                    return int(line.split()[1], 8)
    except OSError:
        pass
    mask = os.umask(0o022)
    os.umask(mask)
    return mask


def write_failure(path: str | Path, exc: OSError) -> UserInputError:
    """The one-line error for a file that could not be written (disk full, read-only, no permission)."""
    reason = exc.strerror or str(exc) or type(exc).__name__
    if exc.errno in (errno.ENOSPC, errno.EDQUOT):
        reason += "; free some space and rerun the command"
    elif exc.errno in (errno.EACCES, errno.EPERM, errno.EROFS):
        reason += f"; make {Path(path).parent} writable or choose another folder"
    return UserInputError(f"cannot write {path}: {reason} (what was there before is unchanged)")


def atomic_write(path: str | Path, write: Callable[[str], None]) -> None:
    """Write through ``write(tmp_path)`` into a temporary file next to ``path``, then rename over it.

    The file gets the permissions of a newly created file (those the umask allows). A failure to write (a full
    disk, a read-only folder) raises :class:`UserInputError` and leaves the old file as it was.
    """
    path = Path(path)
    tmp = None
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=TMP_SUFFIX, dir=path.parent)
        os.close(fd)
        write(tmp)
        os.chmod(tmp, 0o666 & ~_umask())  # after the write: a writer may replace the file (safetensors does)
        with open(tmp, "rb") as fh:
            os.fsync(fh.fileno())
        os.replace(tmp, path)
    except OSError as exc:
        raise write_failure(path, exc) from None
    except RuntimeError as exc:  # torch.save reports a failed write as a RuntimeError
        if "write" not in str(exc).lower() and "file" not in str(exc).lower():
            raise
        raise write_failure(path, OSError(errno.EIO, str(exc).splitlines()[0])) from None
    finally:
        if tmp is not None and os.path.exists(tmp):
            os.unlink(tmp)


def write_files(contents: dict[Path, bytes]) -> None:
    """Write several files all or none: each into a temporary file next to it first, then all renamed into place;
    a failure (a full disk, a read-only folder) leaves every path as it was and raises :class:`UserInputError`."""
    temps: dict[Path, str] = {}
    try:
        for path, data in contents.items():
            fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=TMP_SUFFIX, dir=path.parent)
            temps[path] = tmp
            with os.fdopen(fd, "wb") as fh:
                fh.write(data)
            os.chmod(tmp, 0o666 & ~_umask())
        for path, tmp in temps.items():
            os.replace(tmp, path)
    except OSError as exc:
        failed = next((p for p in contents if p not in temps), next(iter(contents)))
        raise write_failure(getattr(exc, "filename", None) or failed, exc) from None
    finally:
        for tmp in temps.values():
            if os.path.exists(tmp):
                os.unlink(tmp)


def write_json_atomic(path: str | Path, obj: Any) -> None:
    """Write ``obj`` as indented JSON atomically."""
    def write(tmp: str) -> None:
        with open(tmp, "w") as fh:
            json.dump(obj, fh, indent=2)
            fh.write("\n")

    atomic_write(path, write)


def read_json(path: Path) -> Any:
    """The JSON in ``path``; None when the file is absent; UserInputError when it is unreadable."""
    if not path.is_file():
        return None
    try:
        with open(path) as fh:
            return json.load(fh)
    except (OSError, ValueError) as exc:
        raise UserInputError(f"corrupt {path} ({type(exc).__name__})") from None
