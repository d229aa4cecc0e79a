"""What a running process holds, read from ``/proc``: open descriptors and resident memory."""

from __future__ import annotations

import os
from pathlib import Path

__all__ = ["open_descriptors", "rss_bytes"]


def open_descriptors(pid: int) -> list[str]:
    """What each open descriptor of ``pid`` names (``readlink`` of ``/proc/<pid>/fd/*``)."""
    names = []
    for fd in os.listdir(f"/proc/{pid}/fd"):
        try:
            names.append(os.readlink(f"/proc/{pid}/fd/{fd}"))
        except FileNotFoundError:  # closed while we looked
            continue
    return sorted(names)


def rss_bytes(pid: int) -> int:
    """Resident set size of ``pid`` (``VmRSS`` in ``/proc/<pid>/status``)."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) * 1024
    raise AssertionError(f"no VmRSS for pid {pid}")
