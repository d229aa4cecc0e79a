"""What a client's ``target`` names: the daemon's socket, or a Redis/Valkey server. Pure.

- a path, or ``unix://PATH``: the sessiond daemon's Unix socket (``None``: the default
  path, ``$SESSIOND_SOCKET`` first, which may itself hold a URL below);
- ``redis://[user:password@]host[:port][/db]``, ``rediss://...`` (TLS),
  ``redis+unix:///path/redis.sock?db=N``, and the same with ``valkey`` in place of
  ``redis`` (``valkey://``, ``valkeys://``, ``valkey+unix://``): Redis >= 7.0 or Valkey.

Options of the Redis backend ride in the URL's query, so one string (in an environment
variable, say) says everything; they are removed before the URL reaches redis-py:

- ``allow_eviction=yes``: accept a ``maxmemory-policy`` other than ``noeviction`` (which
  can silently drop sessions and request tokens; refused by default);
- ``state_dir=PATH``: the state directory ``resolve`` names transcript files after
  (``<state_dir>/agents/<agent>/sessions/<sessionId>.jsonl``), as the daemon would on
  this host (default: the daemon's default state directory here);
- ``max_connections=N``: connections one client opens at most (default 32; calls wait
  for a free one).
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from typing import Final
from urllib.parse import parse_qsl, urlencode, urlsplit

import msgspec

from sessiond_client.locations import default_socket_path, default_state_dir

__all__ = ["REDIS_SCHEMES", "RedisTarget", "SocketTarget", "parse_target"]

REDIS_SCHEMES: Final = {
    "redis": "redis",
    "rediss": "rediss",
    "redis+unix": "unix",
    "valkey": "redis",
    "valkeys": "rediss",
    "valkey+unix": "unix",
}
"""Accepted URL schemes → the scheme redis-py understands."""
DEFAULT_MAX_CONNECTIONS: Final = 32
_TRUE: Final = frozenset({"1", "yes", "true", "on"})
_FALSE: Final = frozenset({"0", "no", "false", "off"})


class SocketTarget(msgspec.Struct, frozen=True):
    """The sessiond daemon behind a Unix socket."""

    path: str


class RedisTarget(msgspec.Struct, frozen=True, kw_only=True):
    """A Redis or Valkey server: ``url`` as redis-py takes it, and the backend's options."""

    url: str
    shown: str
    """The URL without its password, for messages."""
    allow_eviction: bool = False
    state_dir: str
    max_connections: int = DEFAULT_MAX_CONNECTIONS


def _flag(name: str, text: str) -> bool:
    if text.lower() in _TRUE:
        return True
    if text.lower() in _FALSE:
        return False
    raise ValueError(f"{name}={text!r} in the target URL: expected yes or no")


def _redis_target(target: str, scheme: str, environ: Mapping[str, str], home: str) -> RedisTarget:
    parts = urlsplit(target)
    query = parse_qsl(parts.query, keep_blank_values=True)
    options = {name: value for name, value in query if name in _OPTION_NAMES}
    passed = [(name, value) for name, value in query if name not in _OPTION_NAMES]
    query_text = f"?{urlencode(passed)}" if passed else ""
    url = f"{REDIS_SCHEMES[scheme]}://{parts.netloc}{parts.path}{query_text}"
    shown = f"{scheme}://{parts.netloc.rpartition('@')[2]}{parts.path}{query_text}"
    max_connections = int(options.get("max_connections", DEFAULT_MAX_CONNECTIONS))
    if max_connections < 1:
        raise ValueError("max_connections in the target URL must be at least 1")
    return RedisTarget(
        url=url,
        shown=shown,
        allow_eviction=_flag("allow_eviction", options.get("allow_eviction", "no")),
        state_dir=options.get("state_dir") or default_state_dir(environ, home=home),
        max_connections=max_connections,
    )


_OPTION_NAMES: Final = frozenset({"allow_eviction", "state_dir", "max_connections"})


def parse_target(
    target: str | None, environ: Mapping[str, str] | None = None, home: str | None = None
) -> SocketTarget | RedisTarget:
    """What ``target`` names (see the module's docstring); ValueError for a bad URL."""
    environ = os.environ if environ is None else environ
    home = os.path.expanduser("~") if home is None else home
    chosen = target or default_socket_path(environ, home=home)
    scheme, separator, _ = chosen.partition("://")
    if separator and scheme.lower() in REDIS_SCHEMES:
        return _redis_target(chosen, scheme.lower(), environ, home)
    if separator and scheme.lower() != "unix":
        raise ValueError(
            f"unknown target scheme {scheme!r}: use a socket path, unix://, redis://, "
            "rediss://, redis+unix:// or valkey://"
        )
    return SocketTarget(chosen.removeprefix("unix://"))
