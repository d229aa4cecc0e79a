"""Real disk faults for a daemon's state directory. Does I/O (mounts, fills files).

Preferred: the state dir lives on a tiny tmpfs; "breaking" fills it to the last byte with a
filler file (writes then fail with ENOSPC), "repairing" deletes the filler. Where mounting
is not permitted (or ``SESSIOND_TEST_DISK_FAULT=rlimit`` asks for it), the daemon runs
under ``prlimit`` and the fault is a file-size limit (RLIMIT_FSIZE; CPython ignores
SIGXFSZ, so writes fail with EFBIG) set and lifted on the live process with
``prlimit --pid``.
"""

from __future__ import annotations

import contextlib
import errno
import os
import subprocess
from pathlib import Path

__all__ = ["DiskFault"]

TMPFS_SIZE = "8m"


class DiskFault:
    def __init__(self, state_dir: Path, kind: str | None = None) -> None:
        """``kind``: "tmpfs", "rlimit", or None (tmpfs where mounting works, else rlimit;
        ``SESSIOND_TEST_DISK_FAULT=rlimit`` forces the fallback)."""
        self.state_dir = state_dir
        state_dir.mkdir(parents=True, exist_ok=True)
        self.filler = state_dir / "filler"
        self.pid: int | None = None
        if kind == "rlimit" or os.environ.get("SESSIOND_TEST_DISK_FAULT") == "rlimit":
            self.kind = "rlimit"
            return
        mounted = subprocess.run(
            ["mount", "-t", "tmpfs", "-o", f"size={TMPFS_SIZE},mode=0700", "tmpfs", str(state_dir)],
            capture_output=True,
            check=False,
        )
        self.kind = "tmpfs" if mounted.returncode == 0 else "rlimit"

    @property
    def wrapper(self) -> list[str]:
        """Command prefix for the daemon (the rlimit variant needs prlimit to start it)."""
        return ["prlimit", "--fsize=unlimited"] if self.kind == "rlimit" else []

    def attach(self, pid: int) -> None:
        self.pid = pid

    def break_disk(self) -> None:
        if self.kind == "tmpfs":
            self._fill()
        else:
            self._set_fsize("1:unlimited")  # soft limit only: it can be raised again

    def repair_disk(self) -> None:
        if self.kind == "tmpfs":
            self.filler.unlink(missing_ok=True)
        else:
            self._set_fsize("unlimited:unlimited")

    def _fill(self) -> None:
        fd = os.open(self.filler, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o600)
        block = b"\0" * 65536
        try:
            while True:
                try:
                    os.write(fd, block)
                except OSError as error:
                    if error.errno != errno.ENOSPC:
                        raise
                    if len(block) == 1:
                        return
                    block = block[: len(block) // 2]
        finally:
            os.close(fd)

    def _set_fsize(self, limit: str) -> None:
        assert self.pid is not None
        subprocess.run(["prlimit", f"--pid={self.pid}", f"--fsize={limit}"], check=True)

    def close(self) -> None:
        if self.kind == "tmpfs":
            with contextlib.suppress(OSError):
                subprocess.run(["umount", "-l", str(self.state_dir)], check=False)
