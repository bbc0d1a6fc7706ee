"""One writer per folder: an exclusive, non-blocking ``flock`` on a lock file in it, released by the system
however its holder ends."""

from __future__ import annotations

import errno
import os
import socket
from pathlib import Path

from waveletflow.errors import UserInputError


class RunLock:
    """One trainer per run: an exclusive, non-blocking ``flock`` on ``RUN/.lock``, held while training.

    The operating system drops the lock when the holder ends, so a killed trainer never leaves the run locked
    (its stale ``.lock`` file is simply reused). Entering creates the run folder when absent; leaving removes the
    lock file, and the folder too when this lock created it and it is still empty. Where ``fcntl`` is missing
    (Windows) there is no lock.
    """

    def __init__(self, folder: str | Path, name: str = ".lock"):
        self.folder = Path(folder)
        self.path = self.folder / name
        self._fd: int | None = None
        self._created = False

    def __enter__(self) -> RunLock:
        try:
            import fcntl
        except ImportError:  # pragma: no cover - not POSIX
            return self
        try:
            self._created = not self.folder.exists()
            self.folder.mkdir(parents=True, exist_ok=True)
            while True:
                fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o666)
                try:
                    fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                except OSError as exc:
                    if exc.errno not in (errno.EAGAIN, errno.EACCES, errno.EWOULDBLOCK):
                        os.close(fd)
                        raise
                    holder = os.read(fd, 200).decode(errors="replace").strip() or "another process"
                    os.close(fd)
                    raise UserInputError(f"{self.folder} is being trained by {holder}; wait until it ends (or stop it) "
                                         f"and rerun the command to resume") from None
                try:
                    same = os.stat(self.path).st_ino == os.fstat(fd).st_ino
                except FileNotFoundError:
                    same = False
                if same:  # not a lock file that its holder removed meanwhile
                    break
                os.close(fd)
            os.ftruncate(fd, 0)
            os.write(fd, f"process {os.getpid()} on {socket.gethostname()}".encode())
        except OSError as exc:
            self._remove_created()
            raise UserInputError(f"cannot write in {self.folder}: {exc.strerror or exc}; make it writable or choose "
                                 f"another folder") from None
        self._fd = fd
        return self

    def __exit__(self, *exc) -> None:
        if self._fd is not None:
            try:
                os.unlink(self.path)
            except OSError:
                pass
            os.close(self._fd)
            self._fd = None
        self._remove_created()

    def _remove_created(self) -> None:
        if self._created and not any(p != self.path for p in self.folder.iterdir()):
            try:
                if self.path.exists():
                    self.path.unlink()
                self.folder.rmdir()
            except OSError:
                pass
