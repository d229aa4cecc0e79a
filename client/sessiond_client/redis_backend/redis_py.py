"""Importing redis-py (the optional ``redis`` extra) and building its clients. Does I/O
only when a client connects.

The clients are set up the way the backend needs them: raw RESP2 replies (no response
callbacks: the operations parse what Redis sends), no retries of their own (the
backend retries whole operations, safely, with the client's
:class:`~sessiond_client.RetryPolicy`), and a blocking pool of at most
``max_connections`` connections.
"""

from __future__ import annotations

import uuid
from types import ModuleType
from typing import Any

__all__ = ["import_redis_py", "new_session_id", "pool_options"]

REDIS_EXTRA_HINT = (
    "the Redis backend needs redis-py: pip install 'sessiond-client[redis]' (redis-py with hiredis)"
)


def import_redis_py() -> ModuleType:
    try:
        import redis
        import redis.asyncio
        import redis.backoff
        import redis.retry
    except ImportError as error:
        raise ImportError(REDIS_EXTRA_HINT) from error
    return redis


def new_session_id() -> str:
    return str(uuid.uuid4())


def pool_options(
    redis: ModuleType,
    *,
    max_connections: int,
    timeout_s: float,
    socket_timeout_s: float,
    connect_timeout_s: float,
) -> dict[str, Any]:
    return {
        "max_connections": max_connections,
        "timeout": timeout_s,
        "socket_timeout": socket_timeout_s,
        "socket_connect_timeout": connect_timeout_s,
        "retry": redis.retry.Retry(redis.backoff.NoBackoff(), 0),
        "protocol": 2,  # RESP2: the replies' shapes the operations parse
    }
