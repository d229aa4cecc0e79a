"""Which contenders a run builds: THE place where contenders are registered. No I/O here.

Every run builds all registered contenders (filtered by ``--only``) and measures them in the
same run, interleaved, on the same machine. To add one, give :meth:`Registry.register` an
instance of a :class:`~bench.contender.Contender` subclass:

- the peers are registered in :func:`register_peers`;
- sessiond's contenders are registered by ``bench.sessiond_peer.register_sessiond``, which
  :func:`build_registry` calls when the daemon and client are importable (else the run says
  why they were skipped).

The ``baselines`` are the contenders every row is compared with (ratio columns).
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Final

from bench.contender import Contender
from bench.floor import FloorContender
from bench.original_store import OriginalContender
from bench.redis_peer import WRITE_WORKLOADS, RedisContender

__all__ = ["DEFAULT_BASELINES", "Register", "Registry", "build_registry", "register_peers"]

DEFAULT_BASELINES: Final = ("original", "redis-everysec", "redis-always", "floor")

Register = Callable[[Contender], None]
"""The registration function: takes one contender instance."""


@dataclass
class Registry:
    contenders: list[Contender] = field(default_factory=list)
    skipped: dict[str, str] = field(default_factory=dict)

    def register(self, contender: Contender) -> None:
        """Add a contender; names must be unique, and it must declare its workloads."""
        if not contender.name or not contender.family:
            raise ValueError(f"{type(contender).__name__} needs a name and a family")
        if any(existing.name == contender.name for existing in self.contenders):
            raise ValueError(f"contender {contender.name!r} registered twice")
        self.contenders.append(contender)

    def select(self, only: Iterable[str]) -> list[Contender]:
        """Contenders whose name or family is in ``only`` (all when it is empty)."""
        wanted = set(only)
        if not wanted:
            return list(self.contenders)
        return [c for c in self.contenders if c.name in wanted or c.family in wanted]


def register_peers(register: Register) -> None:
    """The comparison peers of DESIGN.md section 11."""
    register(OriginalContender())
    register(OriginalContender(read_outside_lock=True))
    register(RedisContender("everysec"))
    # appendfsync only changes writes, so "always" runs the write workloads only.
    register(RedisContender("always", workloads=WRITE_WORKLOADS))
    register(FloorContender())


def build_registry() -> Registry:
    registry = Registry()
    register_peers(registry.register)
    from bench import sessiond_peer

    reason = sessiond_peer.unavailable_reason()
    if reason is None:
        sessiond_peer.register_sessiond(registry.register)
        from bench import sessiond_redis_peer

        sessiond_redis_peer.register_sessiond_redis(registry.register)
    else:
        registry.skipped["sessiond"] = reason
        registry.skipped["sessiond-redis"] = reason
    return registry
