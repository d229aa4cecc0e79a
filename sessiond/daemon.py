"""The composition root: start-up → serve → ordered shutdown. Does I/O.

Start-up: check the state directory is a writable directory and lock it (one daemon per
state dir), load the stores found on disk, take the listening socket (from systemd socket
activation, else bind our own, replacing a stale socket file only after a connect probe
is refused), then report ``READY=1``. Serving runs until ``shutdown_trigger`` returns
(a stop signal in production, see :mod:`sessiond.signals`; tests inject their own).
SIGHUP reloads the configuration: what can change at run time is applied, the rest is
logged as needing a restart. Shutdown, in order: ``STOPPING=1``, stop accepting, answer
new requests with ``shutting_down``, wait up to ``shutdown_timeout_s`` for in-flight
requests, final flush of every store, close connections, remove the socket file we
created (never one systemd handed us).

Exit status: 0 clean; 1 the final flush failed; 73 (EX_CANTCREAT) the state directory
or socket cannot be created or used; 75 (EX_TEMPFAIL) another daemon holds the state dir
or socket; 78 (EX_CONFIG) invalid configuration (see :mod:`sessiond.cli`).
"""

from __future__ import annotations

import asyncio
import contextlib
import errno
import logging
import os
import socket
import stat
import time
import uuid
from collections.abc import Awaitable, Callable
from pathlib import Path

from sessiond import __version__
from sessiond.access import AccessPolicy
from sessiond.config import Config, ConfigError, config_changes, runtime_part
from sessiond.dispatch import Dispatcher
from sessiond.fileops import REAL_FILES, directory_mode_for
from sessiond.logsetup import configure_logging
from sessiond.metrics_file import remove_metrics_file, write_metrics_forever
from sessiond.peercred import socket_file_gid
from sessiond.persistence import StoreLockedError
from sessiond.registry import StoreRegistry
from sessiond.server import Server
from sessiond.signals import SignalHandlers
from sessiond.systemd import Notifier, activated_listener, run_watchdog, watchdog_interval_s

__all__ = [
    "EXIT_CANT_CREATE",
    "EXIT_FLUSH_FAILED",
    "EXIT_IN_USE",
    "AlreadyRunningError",
    "StartupError",
    "run_daemon",
]

log = logging.getLogger("sessiond")

EXIT_OK = 0
EXIT_FLUSH_FAILED = 1
EXIT_CANT_CREATE = 73
EXIT_IN_USE = 75
STATUS_INTERVAL_S = 1.0
LOAD_PROGRESS_INTERVAL_S = 1.0
LOAD_TIMEOUT_EXTENSION_S = 30.0
FINAL_FLUSH_ALLOWANCE_S = 120.0


class AlreadyRunningError(RuntimeError):
    """Another sessiond owns the state directory or listens on the socket."""


class StartupError(RuntimeError):
    """The state directory or the socket cannot be used; the message says what and where."""


def now_ms() -> int:
    return time.time_ns() // 1_000_000


def new_session_id() -> str:
    return str(uuid.uuid4())


def _describe(error: OSError) -> str:
    return error.strerror or str(error)


def prepare_state_dir(state_dir: Path, directory_mode: int = 0o700) -> int:
    """Create (``directory_mode``, default 0700) and lock the state directory after
    checking it can be written."""
    try:
        REAL_FILES.make_private_dirs(str(state_dir), directory_mode)
    except OSError as error:
        raise StartupError(
            f"cannot create the state directory {state_dir}: {_describe(error)}"
        ) from None
    if not state_dir.is_dir():
        raise StartupError(f"the state directory {state_dir} is not a directory")
    probe = state_dir / f".sessiond-probe-{os.getpid()}"
    try:
        os.close(os.open(probe, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC, 0o600))
        os.unlink(probe)
    except OSError as error:
        raise StartupError(
            f"the state directory {state_dir} is not writable: {_describe(error)}"
        ) from None
    try:
        return REAL_FILES.lock_directory(str(state_dir))
    except BlockingIOError:
        raise AlreadyRunningError(
            f"another sessiond is already serving the state directory {state_dir}"
        ) from None


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
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    try:
        Path(path).parent.mkdir(parents=True, exist_ok=True)
        sock.bind(path)
        os.chmod(path, mode)
        sock.listen(1024)
    except OSError as error:
        sock.close()
        raise StartupError(f"cannot listen on {path}: {_describe(error)}") from None
    sock.setblocking(False)
    return sock


def access_policy_for(config: Config, sock: socket.socket) -> AccessPolicy:
    """Own uid and root always; configured gids, else the socket file's group."""
    access = config.access
    socket_gid = None if access.allowed_gids else socket_file_gid(sock)
    return AccessPolicy.default_for(
        socket_gid, extra_uids=access.allowed_uids, extra_gids=access.allowed_gids
    )


def raise_descriptor_limit() -> None:
    """Lift the soft descriptor limit to the hard one: connections and stores need them."""
    try:
        import resource

        soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
        if soft != hard:
            resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
    except (ImportError, OSError, ValueError):
        pass


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


async def _load_stores(registry: StoreRegistry, notifier: Notifier) -> None:
    """Load the stores on disk; past the first second, say how far it got every second
    (log and ``STATUS=``) and ask systemd for more start-up time."""
    loading = asyncio.ensure_future(registry.preload())
    started = time.monotonic()
    while not loading.done():
        await asyncio.wait([loading], timeout=LOAD_PROGRESS_INTERVAL_S)
        if loading.done():
            break
        progress = registry.load_progress
        line = (
            f"loading stores: {progress.done} of {progress.total} loaded "
            f"({progress.entries} entries) in {time.monotonic() - started:.0f} s"
        )
        if progress.current is not None:
            line += f"; reading {progress.current} ({_megabytes(progress.current)})"
        log.info("%s", line)
        notifier.status(line)
        notifier.extend_timeout(LOAD_TIMEOUT_EXTENSION_S)
    await loading


def _megabytes(path: str) -> str:
    try:
        return f"{os.stat(path).st_size / 1e6:.1f} MB"
    except OSError:
        return "size unknown"


class Daemon:
    """The objects of one running daemon, and what a reload changes in them."""

    def __init__(
        self,
        config: Config,
        reload_config: Callable[[], Config] | None,
        notifier: Notifier | None = None,
    ) -> None:
        self.config = config
        self.reload_config = reload_config
        self.notifier = notifier or Notifier(None)
        self.registry = StoreRegistry(config, clock_ms=now_ms, new_session_id=new_session_id)
        self.dispatcher = Dispatcher(config, self.registry, stats=self.stats, clock_ms=now_ms)
        self.server: Server | None = None

    def stats(self, agent_id: str | None) -> dict[str, object]:
        server_stats = self.server.stats() if self.server is not None else {}
        return {
            **server_stats,
            "version": __version__,
            "replayed_writes": self.dispatcher.replayed_writes,
            **self.registry.stats(agent_id, on_disk=True),
        }

    def reload(self) -> None:
        """Re-read the configuration; apply what can change now, report the rest. Under
        systemd the reload is bracketed by ``RELOADING=1`` and ``READY=1``."""
        if self.reload_config is None:
            log.warning("no configuration to reload")
            return
        self.notifier.reloading()
        try:
            self._reload(self.reload_config)
        finally:
            self.notifier.ready(status_line(self.registry))

    def _reload(self, reload_config: Callable[[], Config]) -> None:
        try:
            new = reload_config()
        except ConfigError as error:
            log.error("reload refused, the running configuration stays: %s", error)
            return
        applied, pending = config_changes(self.config, new)
        self.apply(runtime_part(self.config, new))
        if applied:
            log.info("reloaded: %s", ", ".join(applied))
        else:
            log.info("reloaded: nothing that applies at run time changed")
        if pending:
            log.warning("these settings change only at the next restart: %s", ", ".join(pending))

    def apply(self, config: Config) -> None:
        if (config.log_level, config.log_format) != (self.config.log_level, self.config.log_format):
            configure_logging(config.log_level, config.log_format)
        self.config = config
        self.dispatcher.config = self.registry.config = config
        self.dispatcher.limits = config.limits
        if self.server is not None:
            self.server.limits = config.limits
        self.registry.apply_limits(config.limits)


async def run_daemon(
    config: Config,
    *,
    shutdown_trigger: Callable[[], Awaitable[None]] | None = None,
    notifier: Notifier | None = None,
    reload_config: Callable[[], Config] | None = None,
) -> int:
    """Run the daemon until ``shutdown_trigger`` returns (default: a stop signal)."""
    notifier = notifier or Notifier.from_environ()
    raise_descriptor_limit()
    state_lock = prepare_state_dir(
        Path(config.state_dir), directory_mode_for(config.persistence.file_mode)
    )
    daemon = Daemon(config, reload_config, notifier)
    if shutdown_trigger is None:
        handlers = SignalHandlers(daemon.reload)
        handlers.install(asyncio.get_running_loop())
        shutdown_trigger = handlers.wait_for_stop
    try:
        return await _serve(daemon, shutdown_trigger, notifier)
    except StoreLockedError as error:
        raise AlreadyRunningError(str(error)) from error
    finally:
        REAL_FILES.unlock_directory(state_lock)


async def _serve(
    daemon: Daemon, shutdown_trigger: Callable[[], Awaitable[None]], notifier: Notifier
) -> int:
    config, registry = daemon.config, daemon.registry
    started = time.monotonic()
    # The socket first: a bad path fails at once, and clients connecting while the
    # stores load wait in the listen queue instead of being refused.
    activated = activated_listener()
    sock = activated or bind_socket(config.socket_path, config.access.socket_mode)
    try:
        await _load_stores(registry, notifier)
    except BaseException:
        sock.close()
        if activated is None:
            with contextlib.suppress(FileNotFoundError):
                os.unlink(config.socket_path)
        raise
    server = daemon.server = Server(
        daemon.dispatcher, registry, config.limits, access_policy_for(config, sock)
    )
    listener = await asyncio.get_running_loop().create_unix_server(
        server.protocol_factory, sock=sock
    )
    background = [
        asyncio.create_task(server.sweep_forever()),
        asyncio.create_task(report_status(notifier, registry)),
        asyncio.create_task(registry.unload_idle_forever()),
        asyncio.create_task(registry.retain_forever()),
        asyncio.create_task(
            write_metrics_forever(lambda: daemon.config, lambda: daemon.stats(None))
        ),
    ]
    interval_s = watchdog_interval_s()
    if interval_s is not None:
        background.append(asyncio.create_task(run_watchdog(notifier, interval_s)))
    stores = registry.stats()["stores"]
    log.info(
        "sessiond %s serving on %s (pid %d, %s mode, state dir %s): %d stores, %d entries "
        "loaded in %.2f s",
        __version__,
        f"{sock.getsockname()} (socket-activated)" if activated else config.socket_path,
        os.getpid(),
        config.persistence.durability,
        config.state_dir,
        len(stores),
        sum(store["entries"] for store in stores.values()),
        time.monotonic() - started,
    )
    notifier.ready(status_line(registry))
    try:
        await shutdown_trigger()
    finally:
        ok = await _shut_down(daemon, listener=listener, notifier=notifier, background=background)
        if activated is None:
            with contextlib.suppress(FileNotFoundError):
                os.unlink(config.socket_path)
    return EXIT_OK if ok else EXIT_FLUSH_FAILED


async def _shut_down(
    daemon: Daemon,
    *,
    listener: asyncio.AbstractServer,
    notifier: Notifier,
    background: list[asyncio.Task[None]],
) -> bool:
    config, registry, server = daemon.config, daemon.registry, daemon.server
    assert server is not None
    notifier.stopping("shutting down: finishing requests, final flush")
    # A large store's final flush may outlast the unit's stop timeout; ask for the time.
    notifier.extend_timeout(config.shutdown_timeout_s + FINAL_FLUSH_ALLOWANCE_S)
    listener.close()
    server.begin_shutdown()
    if not await server.drain(config.shutdown_timeout_s):
        log.warning("some requests did not finish within %.1f s", config.shutdown_timeout_s)
    ok = await registry.close()
    if not ok:
        unsaved = registry.stores_losing_changes()
        if unsaved:
            log.error(
                "final flush failed and these stores' latest changes are in neither the "
                "store file nor a synced journal: %s",
                ", ".join(unsaved),
            )
        else:
            log.error("final flush failed; the journal holds every change not in the store files")
    server.close_all()
    for task in background:
        task.cancel()
    remove_metrics_file(config)
    await asyncio.gather(*background, return_exceptions=True)
    log.info("sessiond stopped%s", "" if ok else " (final flush failed)")
    return ok
