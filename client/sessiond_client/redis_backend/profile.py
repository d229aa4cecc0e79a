"""What a Redis or Valkey server can promise, read from ``INFO`` and ``CONFIG GET``. Pure.

A :class:`ServerProfile` is read when a client first talks to a server and again at
most every :data:`PROFILE_TTL_S` (an operator may change ``appendfsync`` or the eviction
policy at run time). It decides three things:

- **Version.** Redis >= 7.0 (functions, ``ZRANGE ... BYLEX``, ``COPY``) or any Valkey.
- **Durability** (``durable=True``, ``flush``, an import's commit): ``WAITAOF 1 0`` where
  the server has it (Redis >= 7.2, Valkey) and the AOF is on — the reply then waits for
  the local fsync; otherwise only ``appendonly yes`` with ``appendfsync always`` (every
  write is fsynced before its reply). Anything else is refused with
  :class:`UnavailableError` before the write is applied: never a silent "ok".
- **Eviction.** Any ``maxmemory-policy`` but ``noeviction`` lets Redis drop keys under
  memory pressure: ``allkeys-*`` any session, ``volatile-*`` the request tokens (which
  expire), so a retried write could apply twice. Refused unless the target says
  ``allow_eviction=yes``.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Final

import msgspec

from sessiond_client.errors import UnavailableError

__all__ = ["PROFILE_TTL_S", "ServerProfile", "parse_info"]

PROFILE_TTL_S: Final = 60.0
MIN_REDIS_VERSION: Final = (7, 0)


def parse_info(text: str) -> dict[str, str]:
    """``INFO``'s ``name:value`` lines as a map (section headers and blanks skipped)."""
    fields: dict[str, str] = {}
    for line in text.splitlines():
        name, separator, value = line.partition(":")
        if separator and not line.startswith("#"):
            fields[name.strip()] = value.strip()
    return fields


def _version(text: str) -> tuple[int, ...]:
    return tuple(int(part) for part in text.split(".") if part.isdigit())


class ServerProfile(msgspec.Struct, frozen=True, kw_only=True):
    flavor: str
    """``redis`` or ``valkey``."""
    version: str
    uptime_s: float = 0.0
    connected_clients: int = 0
    maxmemory_policy: str = "noeviction"
    aof_enabled: bool = False
    appendfsync: str | None = None
    """None when ``CONFIG GET`` is not allowed."""
    has_waitaof: bool = False

    @classmethod
    def from_info(
        cls, info: Mapping[str, str], *, appendfsync: str | None, has_waitaof: bool
    ) -> ServerProfile:
        flavor = "valkey" if info.get("server_name") == "valkey" else "redis"
        version = info.get("valkey_version") or info.get("redis_version", "0")
        return cls(
            flavor=flavor,
            version=version,
            uptime_s=float(info.get("uptime_in_seconds", "0") or 0),
            connected_clients=int(info.get("connected_clients", "0") or 0),
            maxmemory_policy=info.get("maxmemory_policy", "noeviction"),
            aof_enabled=info.get("aof_enabled") == "1",
            appendfsync=appendfsync,
            has_waitaof=has_waitaof,
        )

    @property
    def durability(self) -> str:
        """How writes reach the disk, in words (``stats``)."""
        if not self.aof_enabled:
            return "no AOF (appendonly no): nothing is fsynced"
        fsync = self.appendfsync or "unknown"
        if self.has_waitaof:
            return f"AOF, appendfsync {fsync}; durable writes wait for WAITAOF"
        return f"AOF, appendfsync {fsync}"

    def check_supported(self, *, allow_eviction: bool, shown_url: str) -> None:
        """:class:`UnavailableError` unless the backend can serve from this server."""
        if self.flavor == "redis" and _version(self.version)[:2] < MIN_REDIS_VERSION:
            raise UnavailableError(
                f"{shown_url} runs Redis {self.version}; sessiond needs Redis 7.0 or later "
                "(or Valkey)"
            )
        if self.maxmemory_policy != "noeviction" and not allow_eviction:
            raise UnavailableError(
                f"{shown_url} has maxmemory-policy {self.maxmemory_policy}, which can "
                "evict sessions (allkeys-*) or request tokens (volatile-*) under memory "
                "pressure; set maxmemory-policy noeviction, or accept the risk with "
                "allow_eviction=yes in the target URL"
            )

    @property
    def durable_via(self) -> str | None:
        """``waitaof`` or ``always`` when durable writes are possible, else None."""
        if not self.aof_enabled:
            return None
        if self.has_waitaof:
            return "waitaof"
        return "always" if self.appendfsync == "always" else None

    def require_durability(self, shown_url: str) -> str:
        """How to make a write durable here; :class:`UnavailableError` when impossible."""
        via = self.durable_via
        if via is None:
            raise UnavailableError(
                f"durable writes are not possible on {shown_url} ({self.durability}): "
                "enable the AOF (appendonly yes) with appendfsync always, or use Redis "
                ">= 7.2 or Valkey with the AOF on (WAITAOF); nothing was written"
            )
        return via
