"""Who may talk to the daemon: the pure access policy over a peer's credentials.

Owns `PeerCredentials` (what the kernel told us about the process at the other end of a
Unix socket) and `AccessPolicy` (which uids and gids may connect). No I/O: reading the
credentials off a socket lives in `sessiond.peercred`; the only process state read here is
our own effective uid, as the default for `AccessPolicy.default_for`.

Rule: a peer is allowed if its uid is allowed, or its primary gid or any of its
supplementary gids is allowed. The default allows the daemon's own uid, root (uid 0), and the
group that owns the socket file, so access is granted by adding a bot's user to that group
(`sessiond-clients` under systemd) — the same rule the socket's 0660 mode expresses, checked
again in the daemon because a socket inherited or bound elsewhere may have looser permissions.
"""

from __future__ import annotations

import os
from collections.abc import Iterable
from dataclasses import dataclass

__all__ = ["ROOT_UID", "AccessPolicy", "PeerCredentials"]

ROOT_UID = 0


@dataclass(frozen=True, slots=True)
class PeerCredentials:
    """Credentials of a Unix socket peer, as of its connect() (SO_PEERCRED semantics).

    `groups` are the supplementary gids; empty when they could not be determined, which
    only ever narrows what the policy allows.
    """

    pid: int
    uid: int
    gid: int
    groups: tuple[int, ...] = ()


@dataclass(frozen=True, slots=True)
class AccessPolicy:
    """The uids and gids allowed to connect; everything else is refused."""

    allowed_uids: frozenset[int]
    allowed_gids: frozenset[int]

    @classmethod
    def default_for(
        cls,
        socket_gid: int | None,
        *,
        own_uid: int | None = None,
        extra_uids: Iterable[int] = (),
        extra_gids: Iterable[int] = (),
    ) -> AccessPolicy:
        """Our own uid, root, and the socket file's group (plus any configured extras).

        `socket_gid` is None when the socket has no file (abstract address) or its group
        is unknown; then only uids (and `extra_gids`) grant access.
        """
        uid = os.geteuid() if own_uid is None else own_uid
        gids = set(extra_gids)
        if socket_gid is not None:
            gids.add(socket_gid)
        return cls(
            allowed_uids=frozenset({uid, ROOT_UID, *extra_uids}),
            allowed_gids=frozenset(gids),
        )

    def allows(self, creds: PeerCredentials) -> bool:
        """True if the peer's uid, primary gid or any supplementary gid is allowed."""
        if creds.uid in self.allowed_uids or creds.gid in self.allowed_gids:
            return True
        return not self.allowed_gids.isdisjoint(creds.groups)
