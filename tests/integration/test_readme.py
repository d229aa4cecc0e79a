"""The README's client example runs as written, against a real daemon (found through
SESSIOND_SOCKET, as a bot deployed by the README finds it)."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

from tests.support.daemon import DaemonProcess

README = Path(__file__).resolve().parents[2] / "README.md"


def python_blocks() -> list[str]:
    return re.findall(r"^```python\n(.*?)^```", README.read_text(encoding="utf-8"), re.S | re.M)


def test_the_client_example_runs_as_written(daemon: DaemonProcess) -> None:
    (example,) = [block for block in python_blocks() if "asyncio.run(" in block]
    assert "asyncio.run(" in example
    result = subprocess.run(
        [sys.executable, "-c", example],
        env={**os.environ, "SESSIOND_SOCKET": daemon.socket_path},
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert result.returncode == 0, result.stderr
    with daemon.client() as client:
        session = client.get("agent:main:main")
    assert session is not None and session.data["totalTokens"] == 42
    assert "agent:main:main" in result.stdout
