"""The composition root: start-up → serve → ordered shutdown. Does I/O.

Start-up: lock the state directory (one daemon per state dir), load the stores found on
disk, take the listening socket (from systemd socket activation, else bind our own,
replacing a stale socket file only after a connect probe is refused), then report
``READY=1``. Serving runs until ``shutdown_trigger`` returns (SIGTERM/SIGINT in
production; tests inject their own). Shutdown, in order: ``STOPPING=1``, stop accepting,
answer new requests with ``shutting_down``, wait up to ``shutdown_timeout_s`` for
in-flight requests, final flush of every store, close connections, remove the socket
file we created (never one systemd handed us).

Exit status: 0 clean; 1 the final flush failed (data is still in the journal if it
could be written); 75 (EX_TEMPFAIL) another daemon holds the state dir or socket;
78 (EX_CONFIG) invalid configuration (see :mod:`sessiond.cli`).
"""

from __future__ import annotations

import asyncio
import contextlib
import errno
import fcntl
import logging
import os
import signal
import socket
import stat
import time
import uuid
from collections.abc import Awaitable, Callable
from pathlib import Path

from sessiond.access import AccessPolicy
from sessiond.config import Config
from sessiond.dispatch import Dispatcher
from sessiond.peercred import socket_file_gid
from sessiond.registry import StoreRegistry
from sessiond.server import Server
from sessiond.storefiles import StoreLockedError
from sessiond.systemd import Notifier, activated_listener, run_watchdog, watchdog_interval_s

__all__ = ["EXIT_FLUSH_FAILED", "EXIT_IN_USE", "AlreadyRunningError", "run_daemon"]

log = logging.getLogger("sessiond")

EXIT_OK = 0
EXIT_FLUSH_FAILED = 1
EXIT_IN_USE = 75
STATUS_INTERVAL_S = 1.0
FINAL_FLUSH_ALLOWANCE_S = 120.0


class AlreadyRunningError(RuntimeError):
    """Another sessiond owns the state directory or listens on the socket."""


def now_ms() -> int:
    return time.time_ns() // 1_000_000


def new_session_id() -> str:
    return str(uuid.uuid4())


def lock_state_dir(state_dir: Path) -> int:
    state_dir.mkdir(mode=0o700, parents=True, exist_ok=True)
    fd = os.open(state_dir, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        os.close(fd)
        raise AlreadyRunningError(
            f"another sessiond is already serving the state directory {state_dir}"
        ) from None
    return fd


def bind_socket(path: str, mode: int) -> socket.socket:
    """Bind a listening Unix socket at ``path``, replacing only a stale socket file."""
    with contextlib.suppress(FileNotFoundError):
        if not stat.S_ISSOCK(os.lstat(path).st_mode):
            raise AlreadyRunningError(f"{path} exists and is not a socket; refusing to replace it")
        probe = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        try:
            probe.connect(path)
        except ConnectionRefusedError:
            log.info("removing stale socket %s", path)
            os.unlink(path)
        except OSError as error:
            if error.errno != errno.ENOENT:
                raise
        else:
            raise AlreadyRunningError(f"another process is listening on {path}")
        finally:
            probe.close()
    Path(path).parent.mkdir(parents=True, exist_ok=True)
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    sock.bind(path)
    os.chmod(path, mode)
    sock.listen(1024)
    sock.setblocking(False)
    return sock


def access_policy_for(config: Config, sock: socket.socket) -> AccessPolicy:
    """Own uid and root always; configured gids, else the socket file's group."""
    access = config.access
    socket_gid = None if access.allowed_gids else socket_file_gid(sock)
    return AccessPolicy.default_for(
        socket_gid, extra_uids=access.allowed_uids, extra_gids=access.allowed_gids
    )


def status_line(registry: StoreRegistry) -> str:
    stats = registry.stats()["stores"]
    entries = sum(store["entries"] for store in stats.values())
    failing = [store for store in stats.values() if store["failing"]]
    if failing:
        return f"persistence failing: {failing[0]['last_error']}"
    flushed = [store["last_flush_at"] for store in stats.values() if store["last_flush_at"]]
    last = f", last flush {time.time() - max(flushed):.0f} s ago" if flushed else ""
    return f"{len(stats)} stores, {entries} entries{last}"


async def report_status(notifier: Notifier, registry: StoreRegistry) -> None:
    previous = ""
    while True:
        await asyncio.sleep(STATUS_INTERVAL_S)
        line = status_line(registry)
        if line != previous:
            notifier.status(line)
            previous = line


async def wait_for_signal() -> None:
    """Return on the first SIGTERM/SIGINT; a second one exits the process at once."""
    loop = asyncio.get_running_loop()
    received = asyncio.Event()

    def on_signal(signum: int) -> None:
        if received.is_set():
            log.warning("second signal: exiting immediately")
            os._exit(128 + signum)
        log.info("received %s, shutting down", signal.Signals(signum).name)
        received.set()

    for signum in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(signum, on_signal, signum)
    await received.wait()


async def run_daemon(
    config: Config,
    *,
    shutdown_trigger: Callable[[], Awaitable[None]] = wait_for_signal,
    notifier: Notifier | None = None,
) -> int:
    """Run the daemon until ``shutdown_trigger`` returns; the process exit status."""
    notifier = notifier or Notifier.from_environ()
    state_lock = lock_state_dir(Path(config.state_dir))
    try:
        return await _serve(config, shutdown_trigger, notifier)
    except StoreLockedError as error:
        raise AlreadyRunningError(str(error)) from error
    finally:
        os.close(state_lock)


async def _serve(
    config: Config, shutdown_trigger: Callable[[], Awaitable[None]], notifier: Notifier
) -> int:
    registry = StoreRegistry(config, clock_ms=now_ms, new_session_id=new_session_id)
    await registry.preload()
    activated = activated_listener()
    sock = activated or bind_socket(config.socket_path, config.access.socket_mode)
    server = Server(
        Dispatcher(config, registry, stats=dict, clock_ms=now_ms),
        registry,
        config.limits,
        access_policy_for(config, sock),
    )
    server.dispatcher.stats = lambda: {
        **server.stats(),
        "replayed_writes": server.dispatcher.replayed_writes,
        **registry.stats(),
    }
    listener = await asyncio.get_running_loop().create_unix_server(
        server.protocol_factory, sock=sock
    )
    background = [
        asyncio.create_task(server.sweep_forever()),
        asyncio.create_task(report_status(notifier, registry)),
    ]
    interval_s = watchdog_interval_s()
    if interval_s is not None:
        background.append(asyncio.create_task(run_watchdog(notifier, interval_s)))
    where = "socket-activated" if activated else config.socket_path
    log.info("sessiond serving on %s (state dir %s)", where, config.state_dir)
    notifier.ready(status_line(registry))
    try:
        await shutdown_trigger()
    finally:
        ok = await _shut_down(
            config,
            server=server,
            registry=registry,
            listener=listener,
            notifier=notifier,
            background=background,
        )
        if activated is None:
            with contextlib.suppress(FileNotFoundError):
                os.unlink(config.socket_path)
    return EXIT_OK if ok else EXIT_FLUSH_FAILED


async def _shut_down(
    config: Config,
    *,
    server: Server,
    registry: StoreRegistry,
    listener: asyncio.AbstractServer,
    notifier: Notifier,
    background: list[asyncio.Task[None]],
) -> bool:
    notifier.stopping("shutting down: finishing requests, final flush")
    # A large store's final flush may outlast the unit's stop timeout; ask for the time.
    notifier.extend_timeout(config.shutdown_timeout_s + FINAL_FLUSH_ALLOWANCE_S)
    listener.close()
    server.begin_shutdown()
    if not await server.drain(config.shutdown_timeout_s):
        log.warning("some requests did not finish within %.1f s", config.shutdown_timeout_s)
    ok = await registry.close()
    if not ok:
        log.error("final flush failed; the journal (if enabled) still holds the changes")
    server.close_all()
    for task in background:
        task.cancel()
    await asyncio.gather(*background, return_exceptions=True)
    log.info("sessiond stopped%s", "" if ok else " (final flush failed)")
    return ok
