"""What each signal does to the daemon. Does I/O (installs handlers on the event loop).

No signal that a terminal or systemd may send kills the daemon without its final flush:

- SIGTERM, SIGINT (Ctrl-C), SIGQUIT (Ctrl-\\), SIGPWR and SIGXCPU stop it gracefully
  (stop accepting, finish requests, final snapshot). A second one exits at once.
- SIGHUP reloads the configuration file (``systemctl reload``; a closed terminal too).
- SIGUSR1, SIGUSR2, SIGALRM, SIGVTALRM, SIGPROF, SIGIO and SIGSTKFLT are ignored, with
  a log line (their default action would terminate the process).
- SIGPIPE and SIGXFSZ are ignored by the Python runtime itself (a failed write is an
  error, not a death). SIGABRT (systemd's watchdog) and SIGKILL keep their meaning: the
  daemon is hung or must die now; the journal covers what was acknowledged.
"""

from __future__ import annotations

import asyncio
import logging
import os
import signal
from collections.abc import Callable

__all__ = ["IGNORED_SIGNALS", "STOP_SIGNALS", "SignalHandlers"]

log = logging.getLogger("sessiond")

STOP_SIGNALS = tuple(
    getattr(signal, name)
    for name in ("SIGTERM", "SIGINT", "SIGQUIT", "SIGPWR", "SIGXCPU")
    if hasattr(signal, name)
)
IGNORED_SIGNALS = tuple(
    getattr(signal, name)
    for name in ("SIGUSR1", "SIGUSR2", "SIGALRM", "SIGVTALRM", "SIGPROF", "SIGIO", "SIGSTKFLT")
    if hasattr(signal, name)
)


class SignalHandlers:
    """Installs the handlers; :meth:`wait_for_stop` is the daemon's shutdown trigger."""

    def __init__(self, reload: Callable[[], None]) -> None:
        self.reload = reload
        self.stop_requested = asyncio.Event()

    def install(self, loop: asyncio.AbstractEventLoop) -> None:
        for signum in STOP_SIGNALS:
            loop.add_signal_handler(signum, self._on_stop, signum)
        loop.add_signal_handler(signal.SIGHUP, self._on_reload)
        for signum in IGNORED_SIGNALS:
            loop.add_signal_handler(signum, self._on_ignored, signum)

    def _on_stop(self, signum: int) -> None:
        if self.stop_requested.is_set():
            log.warning("second %s: exiting immediately", signal.Signals(signum).name)
            os._exit(128 + signum)
        log.info("received %s, shutting down", signal.Signals(signum).name)
        self.stop_requested.set()

    def _on_reload(self) -> None:
        log.info("received SIGHUP, reloading the configuration")
        try:
            self.reload()
        except Exception:  # a reload must never take the daemon down
            log.exception("reloading the configuration failed; the old one stays in effect")

    def _on_ignored(self, signum: int) -> None:
        log.info("received %s: ignored (sessiond has no use for it)", signal.Signals(signum).name)

    async def wait_for_stop(self) -> None:
        await self.stop_requested.wait()
