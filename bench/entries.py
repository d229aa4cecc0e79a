"""Synthetic session stores for the benchmarks: keys, ~1 KB entries and patches. Pure: no I/O.

Every contender is filled from the same deterministic generator, so they all serve the same
data. An entry looks like one a busy gateway writes: a uuid ``sessionId``, ``updatedAt`` in
ms, a transcript path, token counts, model, routing fields and a ``skillsSnapshot`` of a few
hundred characters. Its compact JSON is about 1 KB (:data:`TARGET_ENTRY_BYTES`).
"""

from __future__ import annotations

import json
import random
import uuid
from collections.abc import Iterator
from typing import Any, Final

__all__ = [
    "COUNTER_FIELD",
    "COUNTER_KEY",
    "TARGET_ENTRY_BYTES",
    "iter_store",
    "make_entry",
    "make_patches",
    "random_keys",
    "session_key",
]

TARGET_ENTRY_BYTES: Final = 1024
BASE_TIME_MS: Final = 1_760_000_000_000
COUNTER_KEY: Final = "agent:main:bench:counter"
"""The one entry every process of the lost-update workload increments."""
COUNTER_FIELD: Final = "compactionCount"
"""A known numeric field, so every contender (typed or not) can carry the counter."""

_PROVIDERS: Final = ("whatsapp", "telegram", "discord", "slack", "signal", "imessage")
_MODELS: Final = ("claude-opus-4-5", "claude-sonnet-4-5", "gpt-5.1", "gemini-3-pro")
_SKILLS: Final = ("weather", "calendar", "github", "notion", "spotify", "summarize", "camsnap")
_SKILL_PROMPT: Final = (
    "You can use these skills. Each skill lives in a folder with a SKILL.md describing when "
    "to use it and which binaries it needs; read it before the first use and follow its "
    "instructions exactly. Prefer the cheapest skill that answers the request, never run "
    "more than one long-running skill at a time, and tell the user when a skill needs a "
    "credential that is missing."
)


def session_key(index: int) -> str:
    """The key of entry ``index``: every key is in agent ``main``, groups and DMs mixed."""
    provider = _PROVIDERS[index % len(_PROVIDERS)]
    if index % 3 == 0:
        return f"agent:main:{provider}:group:1203634{index:09d}@g.us"
    return f"agent:main:{provider}:dm:+1555{index:07d}"


def make_entry(index: int, rng: random.Random) -> dict[str, Any]:
    """One realistic ~1 KB entry for ``session_key(index)``."""
    provider = _PROVIDERS[index % len(_PROVIDERS)]
    session_id = str(uuid.UUID(int=rng.getrandbits(128), version=4))
    input_tokens = rng.randrange(1_000, 400_000)
    output_tokens = rng.randrange(100, 50_000)
    is_group = index % 3 == 0
    entry: dict[str, Any] = {
        "sessionId": session_id,
        "updatedAt": BASE_TIME_MS + rng.randrange(0, 30 * 86_400_000),
        "sessionFile": f"/var/lib/clawdbot/agents/main/sessions/{session_id}.jsonl",
        "systemSent": True,
        "abortedLastRun": False,
        "chatType": "group" if is_group else "direct",
        "thinkingLevel": rng.choice(("off", "low", "medium", "high")),
        "verboseLevel": "on",
        "inputTokens": input_tokens,
        "outputTokens": output_tokens,
        "totalTokens": input_tokens + output_tokens,
        "contextTokens": 200_000,
        "compactionCount": rng.randrange(0, 8),
        "modelProvider": "anthropic",
        "model": rng.choice(_MODELS),
        "displayName": f"{provider}:g-project-room-{index}" if is_group else f"+1555{index:07d}",
        "provider": provider,
        "lastProvider": provider,
        "lastTo": f"1203634{index:09d}@g.us" if is_group else f"+1555{index:07d}",
        "lastAccountId": "default",
        "skillsSnapshot": _skills_snapshot(rng),
    }
    if is_group:
        entry["subject"] = f"Project room {index}"
        entry["groupActivation"] = "mention"
    return entry


def _skills_snapshot(rng: random.Random) -> dict[str, Any]:
    names = rng.sample(_SKILLS, 4)
    return {
        "prompt": _SKILL_PROMPT,
        "skills": [{"name": name} for name in names],
        "version": rng.randrange(1, 50),
    }


def iter_store(store_size: int, seed: int = 1) -> Iterator[tuple[str, dict[str, Any]]]:
    """Yield ``(key, entry)`` for a store of ``store_size`` entries, the same for every seed."""
    rng = random.Random(seed)
    for index in range(store_size):
        yield session_key(index), make_entry(index, rng)


def random_keys(store_size: int, count: int, seed: int) -> list[str]:
    """``count`` keys drawn uniformly from a store of ``store_size`` entries."""
    rng = random.Random(seed)
    return [session_key(rng.randrange(store_size)) for _ in range(count)]


def make_patches(count: int, seed: int) -> list[dict[str, Any]]:
    """Small patches like the ones a bot writes after a run (token counts, model, abort flag)."""
    rng = random.Random(seed)
    patches = []
    for _ in range(count):
        input_tokens = rng.randrange(1_000, 400_000)
        output_tokens = rng.randrange(100, 50_000)
        patches.append(
            {
                "inputTokens": input_tokens,
                "outputTokens": output_tokens,
                "totalTokens": input_tokens + output_tokens,
                "model": rng.choice(_MODELS),
                "abortedLastRun": False,
            }
        )
    return patches


def entry_json_bytes(entry: dict[str, Any]) -> int:
    """Size of the compact JSON encoding (what "~1 KB entry" refers to)."""
    return len(json.dumps(entry, separators=(",", ":")).encode())
