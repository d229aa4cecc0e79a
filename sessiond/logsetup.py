"""Where the daemon's log lines go and what they look like: stderr, as text (journald
stamps each line itself; a terminal gets our own timestamps) or, for log shippers, one JSON
object per line (``ts``, ``level``, ``logger``, ``message``, ``exception``). Configured at
start-up and again on reload.
"""

from __future__ import annotations

import json
import logging
import os
import sys

__all__ = ["configure_logging"]


class JsonLineFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        line = {
            "ts": round(record.created, 3),
            "level": record.levelname.lower(),
            "logger": record.name,
            "message": record.getMessage(),
        }
        if record.exc_info:
            line["exception"] = self.formatException(record.exc_info)
        return json.dumps(line, ensure_ascii=False)


def configure_logging(level: str, log_format: str) -> None:
    """(Re)configure the root logger: ``level`` in any case, ``log_format`` text or json."""
    handler = logging.StreamHandler(sys.stderr)
    if log_format == "json":
        handler.setFormatter(JsonLineFormatter())
    else:
        stamp = "" if os.environ.get("JOURNAL_STREAM") else "%(asctime)s "
        handler.setFormatter(logging.Formatter(f"{stamp}%(levelname)s %(name)s: %(message)s"))
    logging.basicConfig(level=level.upper(), handlers=[handler], force=True)
