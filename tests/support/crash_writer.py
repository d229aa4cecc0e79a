"""A writer process for the crash harness: patches and deletes its own keys through a real
client forever, logging each acknowledged write. Does I/O.

Run as ``python -m tests.support.crash_writer SOCKET LOG WRITER_ID``. Every write of key
``w<id>-<n>`` stores ``seq`` three times (``seq``, ``seqCopy``, ``tag``) so a half-applied
entry would show; the log line for a write is appended (one ``os.write``) only after the
daemon acknowledged it: ``ack <durable 0|1> <op> <key> <seq> <ack wall ms>``; before sending,
it logs ``try <durable 0|1> <op> <key> <seq> 0`` so the harness knows the one write per
writer that may be in flight when the daemon dies.
"""

from __future__ import annotations

import os
import random
import sys
import time

from sessiond_client import Client, RetryPolicy, SessiondError

KEYS_PER_WRITER = 40


def main(socket_path: str, log_path: str, writer_id: int) -> None:
    rng = random.Random(writer_id)
    log_fd = os.open(log_path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o600)
    retry = RetryPolicy(reconnect_timeout_s=30.0)
    with Client(socket_path, timeout_s=10.0, retry=retry) as client:
        for seq in range(1, 10**9):
            key = f"agent:main:w{writer_id}-{rng.randrange(KEYS_PER_WRITER)}"
            durable = rng.random() < 0.4
            deleting = rng.random() < 0.15
            op = "del" if deleting else "put"
            os.write(log_fd, f"try {int(durable)} {op} {key} {seq} 0\n".encode())
            try:
                if deleting:
                    client.delete(key, durable=durable)
                else:
                    fields = {"seq": seq, "seqCopy": seq, "tag": f"{key}#{seq}", "wallMs": _now()}
                    client.patch(key, fields, durable=durable)
            except SessiondError:
                continue  # not acknowledged: the harness may see it applied or not
            line = f"ack {int(durable)} {op} {key} {seq} {_now()}\n"
            os.write(log_fd, line.encode())


def _now() -> int:
    return time.time_ns() // 1_000_000


if __name__ == "__main__":
    main(sys.argv[1], sys.argv[2], int(sys.argv[3]))
