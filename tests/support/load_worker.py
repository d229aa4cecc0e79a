"""A bot-like client process for restart-under-load tests. Does I/O.

Run as ``python -m tests.support.load_worker SOCKET RESULT_JSON WORKER_ID STOP_FILE``. Until
STOP_FILE exists it mixes ``get`` of a shared key, ``patch`` of its own key and
``update_with`` increments of a shared counter, then writes a JSON summary: how many calls
of each kind succeeded, how many increments were reported successful, and every error.
"""

from __future__ import annotations

import json
import os
import random
import sys
from collections import Counter

from sessiond_client import Client, RetryPolicy, SessiondError

COUNTER_KEY = "agent:main:counter"


def increment(session: object) -> dict[str, int]:
    data = getattr(session, "data", {})
    return {"inputTokens": int(data.get("inputTokens", 0)) + 1}


def main(socket_path: str, result_path: str, worker_id: int, stop_file: str) -> None:
    rng = random.Random(worker_id)
    done: Counter[str] = Counter()
    errors: list[str] = []
    retry = RetryPolicy(reconnect_timeout_s=30.0)
    with Client(socket_path, timeout_s=30.0, retry=retry) as client:
        while not os.path.exists(stop_file):
            choice = rng.random()
            try:
                if choice < 0.4:
                    client.get(COUNTER_KEY)
                    done["get"] += 1
                elif choice < 0.7:
                    client.patch(f"agent:main:worker{worker_id}", {"label": str(done["patch"])})
                    done["patch"] += 1
                elif client.update_with(COUNTER_KEY, increment) is not None:
                    done["increment"] += 1
            except SessiondError as error:
                errors.append(f"{type(error).__name__}: {error}")
    with open(result_path, "w") as file:
        json.dump({"done": done, "errors": errors}, file)


if __name__ == "__main__":
    main(sys.argv[1], sys.argv[2], int(sys.argv[3]), sys.argv[4])
