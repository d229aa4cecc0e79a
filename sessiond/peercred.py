"""Peer credentials of Unix socket connections, read from the kernel. Does I/O.

Owns the getsockopt calls: SO_PEERCRED for pid/uid/gid (`struct ucred`, three C ints) and
SO_PEERGROUPS (Linux >= 4.13) for the supplementary groups, falling back to the
`Groups:` line of `/proc/<pid>/status`. Also finds the group that owns a socket file, the
input of `AccessPolicy.default_for`. The policy itself is pure and lives in
`sessiond.access`.

Both kernel answers describe the peer as of its connect() (socketpair(): its creation) and
cannot be spoofed or raced. The /proc fallback is weaker: it reads the process that has the
pid *now* (pid reuse), and under the unit's `ProtectProc=invisible` it cannot see other users'
processes at all. So a failed group lookup yields no supplementary groups, which can only
narrow what the policy allows (fail closed), never widen it.
"""

from __future__ import annotations

import errno
import logging
import os
import socket
import struct
import sys
from pathlib import Path
from typing import Protocol

from sessiond.access import PeerCredentials

__all__ = [
    "ConnectedSocket",
    "parse_status_groups",
    "peer_credentials",
    "peer_groups",
    "socket_file_gid",
]

log = logging.getLogger(__name__)

_UCRED = struct.Struct("3i")
_GID = struct.Struct("I")
# Not exported by the socket module; value from <asm-generic/socket.h>.
SO_PEERGROUPS = 59
# Python's getsockopt() refuses buffers over 1024 bytes: 256 gids. Peers with more groups
# get ERANGE and are served by the /proc fallback.
_MAX_PEERGROUPS_BYTES = 1024


class ConnectedSocket(Protocol):
    """A socket.socket, or what asyncio/uvloop transports return for extra_info "socket"."""

    def getsockopt(self, level: int, optname: int, buflen: int, /) -> bytes: ...


def peer_credentials(sock: ConnectedSocket) -> PeerCredentials:
    """pid, uid, gid and supplementary groups of the process at the other end of `sock`."""
    raw = sock.getsockopt(socket.SOL_SOCKET, socket.SO_PEERCRED, _UCRED.size)
    pid, uid, gid = _UCRED.unpack(raw)
    return PeerCredentials(pid=pid, uid=uid, gid=gid, groups=peer_groups(sock, pid))


def peer_groups(sock: ConnectedSocket, pid: int) -> tuple[int, ...]:
    """Supplementary gids of the peer: SO_PEERGROUPS, else /proc/<pid>/status, else ()."""
    groups = _groups_from_sockopt(sock)
    if groups is not None:
        return groups
    return _groups_from_proc(pid)


def _groups_from_sockopt(sock: ConnectedSocket) -> tuple[int, ...] | None:
    if sys.platform != "linux":
        return None
    try:
        raw = sock.getsockopt(socket.SOL_SOCKET, SO_PEERGROUPS, _MAX_PEERGROUPS_BYTES)
    except OSError as exc:
        # ENOPROTOOPT: kernel older than 4.13. ERANGE: more than 256 groups.
        if exc.errno not in (errno.ENOPROTOOPT, errno.ERANGE):
            log.debug("SO_PEERGROUPS failed: %s", exc)
        return None
    count = len(raw) // _GID.size
    return tuple(gid for (gid,) in _GID.iter_unpack(raw[: count * _GID.size]))


def _groups_from_proc(pid: int, proc_root: Path = Path("/proc")) -> tuple[int, ...]:
    if pid <= 0:
        return ()
    try:
        status = (proc_root / str(pid) / "status").read_text(encoding="ascii", errors="replace")
    except OSError as exc:
        log.debug("cannot read groups of pid %d: %s", pid, exc)
        return ()
    return parse_status_groups(status)


def parse_status_groups(status_text: str) -> tuple[int, ...]:
    """The gids on the `Groups:` line of a /proc/<pid>/status text (pure)."""
    for line in status_text.splitlines():
        name, _, value = line.partition(":")
        if name == "Groups":
            return tuple(int(field) for field in value.split() if field.isdigit())
    return ()


def socket_file_gid(sock: socket.socket) -> int | None:
    """Group owning the file a listening Unix socket is bound to; None if it has no file.

    Abstract (`\\0`-prefixed) and unbound sockets have no file; a removed file gives None
    too. Call it right after binding (or on the activated socket at start-up): the path is
    stat()ed, so a file replaced later would answer for the replacement.
    """
    address = sock.getsockname()
    if not isinstance(address, str) or not address.startswith("/"):
        return None
    try:
        return os.stat(address).st_gid
    except OSError as exc:
        log.warning("cannot stat socket file %s: %s", address, exc)
        return None
