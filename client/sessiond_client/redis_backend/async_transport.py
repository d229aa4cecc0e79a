"""The Redis backend's I/O: runs the operations' commands on redis-py. I/O.

``async_transport.py`` is written by hand, on redis-py's asyncio API;
``sync_transport.py`` is generated from it by ``tools/unasync_ops.py`` (as the
operations are), on redis-py's blocking API: edit the asyncio file, then regenerate.

Concurrent calls (coroutines, or threads for the blocking client) each get a connection
from redis-py's pool (at most ``max_connections``, then calls wait for one). A call runs
its operation's generator (:mod:`.execute`), sending each command and feeding back the
reply; every command of one step goes out in one round trip. A connection that breaks mid-call fails
over to a new one and the whole operation runs again — safe, because reads are
idempotent and every write carries its request token — with the backoff and the
reconnect budget of the client's :class:`~sessiond_client.RetryPolicy`. Timeouts are not
retried. ``watch`` reads the agent's stream on connections of its own (a blocking
``XREAD`` may wait ``watch_progress_s``).
"""

from __future__ import annotations

import asyncio
import collections
import time  # async-only

# sync-only: import threading
from collections.abc import Awaitable, Callable
from typing import Any

from sessiond_client import _core
from sessiond_client.errors import (
    ClientClosedError,
    ConnectionLostError,
    DaemonUnavailableError,
    RequestTimeoutError,
    ServerError,
    SessiondError,
)
from sessiond_client.limits import DEFAULT_LIMITS
from sessiond_client.protocol import Reply, Request, WatchRequest
from sessiond_client.redis_backend import driving
from sessiond_client.redis_backend.commands import (
    Command,
    ExecContext,
    Function,
    Outcome,
    Run,
    Sleep,
    Steps,
    WaitDurable,
    encode_wire,
)
from sessiond_client.redis_backend.execute import hello_result, steps_for
from sessiond_client.redis_backend.profile import PROFILE_TTL_S, ServerProfile
from sessiond_client.redis_backend.redis_py import import_redis_py, new_session_id, pool_options
from sessiond_client.redis_backend.watching import StreamWatch
from sessiond_client.results import ServerInfo, WatchEvent
from sessiond_client.retry import RetryPolicy
from sessiond_client.targets import RedisTarget

__all__ = ["AsyncRedisTransport"]


class _Stream:
    """One watch: its position in the stream and the events not yet taken."""

    def __init__(self, call: _core.Call) -> None:
        self.call = call
        self.watch: StreamWatch | None = None
        self.error: SessiondError | None = None
        self.events: collections.deque[Any] = collections.deque()
        self.started = False


class AsyncRedisTransport:
    """Redis or Valkey behind redis-py's asyncio client, shared by coroutines."""

    def __init__(
        self, target: RedisTarget, settings: _core.ClientSettings, retry: RetryPolicy
    ) -> None:
        redis = import_redis_py()
        self.redis_module = redis
        self.target = target
        self.settings = settings
        self.retry = retry
        self.limits = DEFAULT_LIMITS
        self.clock_ms: Callable[[], int] = lambda: time.time_ns() // 1_000_000
        self.new_session_id: Callable[[], str] = new_session_id
        self.redis = self._client(settings.timeout_s)
        self.watch_redis = self._client(settings.timeout_s + self.limits.watch_progress_s)
        self.profile: ServerProfile | None = None
        self.profile_at = 0.0
        self.functions: bool | None = None
        self.setup_lock = asyncio.Lock()  # async-only
        # sync-only: self.setup_lock = threading.Lock()
        self.op_counts: collections.Counter[str] = collections.Counter()
        self.ever_connected = False
        self.closed = False

    def _client(self, socket_timeout_s: float) -> Any:
        redis = self.redis_module
        options = pool_options(
            redis,
            max_connections=self.target.max_connections,
            timeout_s=self.settings.timeout_s,
            socket_timeout_s=socket_timeout_s,
            connect_timeout_s=self.settings.connect_timeout_s,
        )
        pool = redis.asyncio.BlockingConnectionPool.from_url(self.target.url, **options)
        client = redis.asyncio.Redis(connection_pool=pool)
        client.response_callbacks.clear()  # raw replies: the operations parse them
        return client

    @property
    def server_info(self) -> ServerInfo | None:
        """What ``hello`` says of the server (None before the first call)."""
        if self.profile is None:
            return None
        return _core.to_server_info(encode_wire(hello_result(self.profile, self.limits)))

    # -- calls -----------------------------------------------------------------------------

    async def call(self, call: _core.Call, timeout_s: float) -> Any:
        request = driving.decode_as_daemon(call.request)
        op = call.op
        try:
            async with asyncio.timeout(timeout_s):  # async-only
                outcome = await self._execute(request, call.retry_safe, timeout_s)  # async-only
            # sync-only: outcome = self._execute(request, call.retry_safe, timeout_s)
        except TimeoutError:  # async-only
            raise self._timed_out(timeout_s) from None  # async-only
        except ServerError as error:
            self.op_counts[f"error:{error.code}"] += 1
            raise
        self.op_counts[op] += 1
        reply = Reply(id=0, ok=True, result=encode_wire(outcome.result), seq=outcome.seq)
        return _core.reply_result(reply, call.convert)

    async def _execute(self, request: Request, retry_safe: bool, timeout_s: float) -> Outcome:
        outcome: Outcome = await self._with_retries(
            lambda ctx: self._drive(steps_for(ctx, request, self.op_counts), timeout_s),
            retry_safe=retry_safe,
        )
        return outcome

    async def _with_retries(
        self, attempt: Callable[[ExecContext], Awaitable[Any]], *, retry_safe: bool
    ) -> Any:
        redis = self.redis_module
        lost_at: float | None = None
        failures = 0
        while True:
            if self.closed:
                raise ClientClosedError("the client is closed")
            try:
                result = await attempt(await self._context())
                self.ever_connected = True
                return result
            except redis.exceptions.AuthenticationError as error:
                raise driving.server_error_of(error, self.target.shown) from None
            except redis.exceptions.TimeoutError as error:
                raise RequestTimeoutError(f"{self.target.shown}: {error}") from None
            except redis.exceptions.ConnectionError as error:
                now = time.monotonic()
                lost_at = lost_at or now
                budget_s = self.retry.budget_s(ever_connected=self.ever_connected)
                if not retry_safe or now - lost_at >= budget_s:
                    raise self._transport_error(error) from None
                await asyncio.sleep(self.retry.backoff.delay_s(failures))
                failures += 1
            except redis.exceptions.ResponseError as error:
                raise driving.server_error_of(error, self.target.shown) from None

    def _timed_out(self, timeout_s: float) -> RequestTimeoutError:
        return RequestTimeoutError(f"no reply from {self.target.shown} within {timeout_s} s")

    def _transport_error(self, error: Exception) -> SessiondError:
        if self.ever_connected:
            return ConnectionLostError(f"lost {self.target.shown}: {error}")
        return DaemonUnavailableError(f"cannot connect to {self.target.shown}: {error}")

    async def _context(self) -> ExecContext:
        profile = self.profile
        if profile is None or time.monotonic() - self.profile_at > PROFILE_TTL_S:
            async with self.setup_lock:
                profile = await self._read_profile()
        profile.check_supported(
            allow_eviction=self.target.allow_eviction, shown_url=self.target.shown
        )
        return ExecContext(
            target=self.target,
            profile=profile,
            limits=self.limits,
            clock_ms=self.clock_ms,
            new_session_id=self.new_session_id,
            backoff=self.retry.backoff,
        )

    async def _read_profile(self) -> ServerProfile:
        redis = self.redis_module
        info = await self.redis.execute_command(*driving.INFO_COMMAND)
        try:
            appendfsync: Any = await self.redis.execute_command("CONFIG", "GET", "appendfsync")
        except redis.exceptions.ResponseError as error:
            appendfsync = error
        try:
            waitaof: Any = await self.redis.execute_command("COMMAND", "INFO", "WAITAOF")
        except redis.exceptions.ResponseError as error:
            waitaof = error
        profile = driving.profile_from(info, appendfsync, waitaof)
        if self.functions is None:
            await self._load_library()
        self.profile, self.profile_at = profile, time.monotonic()
        return profile

    async def _load_library(self) -> None:
        redis = self.redis_module
        try:
            await self.redis.execute_command(*driving.library_load_command())
            self.functions = True
        except redis.exceptions.ResponseError as error:
            # "already exists": loaded by another client. Anything else (no FUNCTION
            # command, an ACL without it): run the same code with EVALSHA.
            self.functions = "already exists" in str(error)

    # -- running one operation --------------------------------------------------------------

    async def _drive(self, steps: Steps, timeout_s: float) -> Outcome:
        try:
            command = next(steps)
            while True:
                command = steps.send(await self._run(command, timeout_s))
        except StopIteration as stop:
            outcome: Outcome = stop.value
            return outcome
        finally:
            steps.close()

    async def _run(self, command: Command, timeout_s: float) -> Any:
        match command:
            case Run(commands=commands):
                if len(commands) == 1:
                    return [await self.redis.execute_command(*commands[0])]
                return await self._pipeline(commands)
            case Function():
                return await self._function(command, timeout_s)
            case WaitDurable():
                assert self.profile is not None
                waits = driving.durable_commands(self.profile, timeout_s)
                if waits:
                    marker = ("SET", driving.FLUSH_MARKER_KEY, "1")
                    replies = await self._pipeline([marker, *waits])
                    driving.check_durable_reply(replies, self.target.shown)
                return None
            case Sleep(seconds=seconds):
                await asyncio.sleep(seconds)
                return None

    async def _pipeline(self, commands: list[tuple[Any, ...]]) -> list[Any]:
        if not commands:
            return []
        pipeline = self.redis.pipeline(transaction=False)
        for command in commands:
            pipeline.execute_command(*command)
        replies: list[Any] = await pipeline.execute()
        return replies

    async def _function(self, command: Function, timeout_s: float) -> Any:
        redis = self.redis_module
        assert self.profile is not None
        waits = driving.durable_commands(self.profile, timeout_s) if command.wait_durable else []
        for reloaded in (False, True):
            if self.functions:
                call = driving.function_command(command.name, command.keys, command.args)
            else:
                call = driving.eval_command(
                    command.name, command.keys, command.args, by_sha=not reloaded
                )
            try:
                if waits:
                    replies = await self._pipeline([call, *waits])
                else:
                    replies = [await self.redis.execute_command(*call)]
            except redis.exceptions.ResponseError as error:
                missing = isinstance(error, redis.exceptions.NoScriptError)
                if reloaded or not (missing or driving.is_missing_code(error)):
                    raise
                if self.functions:
                    await self._load_library()
                continue
            if waits:
                driving.check_durable_reply(replies, self.target.shown)
            return replies[0]
        raise AssertionError("unreachable")

    # -- watch -------------------------------------------------------------------------------

    def start_stream(self, call: _core.Call) -> _Stream:
        return _Stream(call)

    async def next_event(self, stream: _Stream) -> WatchEvent | None:
        """The watch's next event (waiting for it); its error raised."""
        while not stream.events:
            if stream.error is not None:
                raise stream.error
            try:
                await self._with_retries(lambda ctx: self._read_stream(stream), retry_safe=True)
            except SessiondError as error:
                stream.error = error
        event: WatchEvent = _core.to_watch_event(stream.events.popleft())
        return event

    async def _read_stream(self, stream: _Stream) -> None:
        if stream.watch is None:
            request = driving.decode_as_daemon(stream.call.request)
            assert isinstance(request, WatchRequest)
            stream.watch = StreamWatch(request, max_fields=self.limits.max_fields)
        watch = stream.watch
        if not stream.started:
            replies = await self._pipeline(watch.start_commands())
            stream.events.append(watch.started(replies))
            stream.started = True
            return
        block_ms = int(self.limits.watch_progress_s * 1000)
        reply = await self.watch_redis.execute_command(*watch.read_command(block_ms))
        stream.events.extend(watch.events(reply))

    async def stop_stream(self, stream: _Stream) -> None:
        stream.error = ClientClosedError("the watch has ended")

    async def close(self) -> None:
        self.closed = True
        await self.redis.connection_pool.disconnect()
        await self.watch_redis.connection_pool.disconnect()
