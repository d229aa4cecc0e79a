"""sessiond: the session store daemon for hosts running several chat-bot processes.

The package is the host side (config, in-memory stores, persistence, the socket server,
systemd integration, the CLI). The wire protocol, entry shape, key and path functions
and the clients live in the ``sessiond_client`` distribution, which this one imports and
never the reverse. No I/O happens at import time.
"""

from __future__ import annotations

__all__ = ["__version__"]

__version__ = "0.1.0"
