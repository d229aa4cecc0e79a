"""The metrics textfile: when ``metrics_textfile`` is set, the daemon rewrites that file
with :func:`sessiond.metrics.render_prometheus` every ``metrics_interval_s``, for
node_exporter's textfile collector (the service may only use AF_UNIX sockets, so there is
no HTTP listener to scrape). Does I/O (through aiofiles, off the event loop).

Each rewrite goes to a temp file in the same directory, then replaces the file in one
rename, so the collector never reads half a file. The file is mode 0644 whatever the umask:
node_exporter runs as another user, and metrics hold no session data (agent ids appear as
labels). A failing write is logged once until it works again and never stops the daemon;
a clean shutdown removes the file, so ``absent(sessiond_up)`` alerts on a stopped daemon.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
from collections.abc import Callable
from typing import Any

import aiofiles
import aiofiles.os

from sessiond.config import Config
from sessiond.metrics import render_prometheus

__all__ = ["remove_metrics_file", "write_metrics_file", "write_metrics_forever"]

log = logging.getLogger("sessiond.metrics")
FILE_MODE = 0o644


def _public_opener(path: str, flags: int) -> int:
    fd = os.open(path, flags | os.O_CLOEXEC, FILE_MODE)
    os.fchmod(fd, FILE_MODE)
    return fd


async def write_metrics_file(path: str, text: str) -> None:
    """Replace ``path`` with ``text`` atomically."""
    temp_path = f"{path}.{os.getpid()}.tmp"
    try:
        async with aiofiles.open(temp_path, "w", encoding="utf-8", opener=_public_opener) as out:
            await out.write(text)
        await aiofiles.os.replace(temp_path, path)
    except BaseException:
        with contextlib.suppress(OSError):
            await aiofiles.os.remove(temp_path)
        raise


async def write_metrics_forever(
    config_now: Callable[[], Config], stats_now: Callable[[], dict[str, Any]]
) -> None:
    """Rewrite the configured file on its interval (both may change on reload)."""
    failing = False
    previous_path = ""
    while True:
        config = config_now()
        if previous_path and previous_path != config.metrics_textfile:  # changed on reload
            with contextlib.suppress(OSError):
                await aiofiles.os.remove(previous_path)
        previous_path = config.metrics_textfile
        if config.metrics_textfile:
            try:
                await write_metrics_file(config.metrics_textfile, render_prometheus(stats_now()))
            except OSError as error:
                if not failing:
                    log.error(
                        "cannot write metrics_textfile %s (logged once until it works): %s",
                        config.metrics_textfile,
                        error,
                    )
                failing = True
            else:
                if failing:
                    log.info("metrics_textfile %s written again", config.metrics_textfile)
                failing = False
        await asyncio.sleep(config.metrics_interval_s)


def remove_metrics_file(config: Config) -> None:
    if config.metrics_textfile:
        with contextlib.suppress(OSError):
            os.unlink(config.metrics_textfile)
