"""Unit tests for sessiond_client.paths: the original's state-dir and store-path rules."""

from __future__ import annotations

from typing import TypedDict

import pytest
from hypothesis import given
from hypothesis import strategies as st

from sessiond_client.jscompat import UNDEFINED
from sessiond_client.paths import (
    resolve_default_session_store_path,
    resolve_session_file_path,
    resolve_session_transcript_path,
    resolve_session_transcripts_dir,
    resolve_session_transcripts_dir_for_agent,
    resolve_state_dir,
    resolve_store_path,
)

HOME = "/home/tester"
CWD = "/srv/cwd"


class Process(TypedDict):
    home: str
    cwd: str


AT: Process = {"home": HOME, "cwd": CWD}
NO_ENV: dict[str, object] = {}


class TestStateDir:
    def test_default_is_dot_clawdbot_in_home(self) -> None:
        assert resolve_state_dir(NO_ENV, **AT) == "/home/tester/.clawdbot"

    def test_relative_home_stays_relative(self) -> None:
        assert resolve_state_dir(NO_ENV, home="rel-home", cwd=CWD) == "rel-home/.clawdbot"

    def test_clawdbot_variable_wins_over_clawdis(self) -> None:
        env = {"CLAWDBOT_STATE_DIR": "/a", "CLAWDIS_STATE_DIR": "/b"}
        assert resolve_state_dir(env, **AT) == "/a"

    def test_blank_clawdbot_variable_falls_through(self) -> None:
        env = {"CLAWDBOT_STATE_DIR": "  ", "CLAWDIS_STATE_DIR": "/b/../c/"}
        assert resolve_state_dir(env, **AT) == "/c"

    @pytest.mark.parametrize(
        ("override", "state_dir"),
        [("~", HOME), ("~/state", "/home/tester/state"), ("~\\w", "/home/tester\\w"),
         ("~user/x", "/srv/cwd/~user/x"), ("  rel/state  ", "/srv/cwd/rel/state")],
    )  # fmt: skip
    def test_override_expansion(self, override: str, state_dir: str) -> None:
        assert resolve_state_dir({"CLAWDBOT_STATE_DIR": override}, **AT) == state_dir

    def test_home_is_a_replacement_pattern_like_in_js(self) -> None:
        env = {"CLAWDBOT_STATE_DIR": "~/s"}
        assert resolve_state_dir(env, home="/h/$&", cwd=CWD) == "/h/~/s"

    def test_non_string_variable_raises(self) -> None:
        with pytest.raises(TypeError):
            resolve_state_dir({"CLAWDBOT_STATE_DIR": 5}, **AT)

    def test_defaults_come_from_the_process(self, monkeypatch: pytest.MonkeyPatch) -> None:
        monkeypatch.setenv("HOME", "/from/env")
        monkeypatch.setenv("CLAWDBOT_STATE_DIR", "")
        monkeypatch.setenv("CLAWDIS_STATE_DIR", "")
        assert resolve_state_dir() == "/from/env/.clawdbot"
        monkeypatch.setenv("CLAWDBOT_STATE_DIR", "~/x")
        assert resolve_state_dir() == "/from/env/x"

    def test_sessions_dirs(self) -> None:
        assert resolve_session_transcripts_dir(NO_ENV, **AT) == (
            "/home/tester/.clawdbot/agents/main/sessions"
        )
        assert resolve_session_transcripts_dir_for_agent("Ops Team", NO_ENV, **AT) == (
            "/home/tester/.clawdbot/agents/ops-team/sessions"
        )
        assert resolve_default_session_store_path("../x", env=NO_ENV, **AT) == (
            "/home/tester/.clawdbot/agents/x/sessions/sessions.json"
        )


class TestStorePath:
    def test_default_store_per_agent(self) -> None:
        assert resolve_store_path(None, agent_id="Ops", env=NO_ENV, **AT) == (
            "/home/tester/.clawdbot/agents/Ops/sessions/sessions.json"
        )
        assert resolve_store_path("", env=NO_ENV, **AT).endswith(
            "/agents/main/sessions/sessions.json"
        )

    def test_agent_placeholder_is_replaced_everywhere(self) -> None:
        path = resolve_store_path("/d/{agentId}/{agentId}.json", agent_id="Ops Team", **AT)
        assert path == "/d/ops-team/ops-team.json"
        assert resolve_store_path("/d/{agentid}/x", **AT) == "/d/{agentid}/x"

    @pytest.mark.parametrize(
        ("store", "path"),
        [("~", HOME), ("~/s.json", "/home/tester/s.json"), ("~~/x", "/srv/cwd/~~/x"),
         ("~{agentId}/s", "/srv/cwd/~main/s"), (" ~/x", "/srv/cwd/ ~/x"), ("/abs//x/", "/abs/x"),
         ("../s.json", "/srv/s.json"), ("~/../../etc/passwd", "/etc/passwd"), (".", CWD)],
    )  # fmt: skip
    def test_expansion_and_resolution(self, store: str, path: str) -> None:
        assert resolve_store_path(store, **AT) == path

    @pytest.mark.parametrize("store", [5, ["x"], {"a": 1}, True])
    def test_truthy_non_strings_raise(self, store: object) -> None:
        with pytest.raises(TypeError):
            resolve_store_path(store, **AT)

    @given(st.text(alphabet=st.sampled_from("ab./~\\{}agentId "), max_size=30))
    def test_always_absolute_and_normalized(self, store: str) -> None:
        path = resolve_store_path(store, env=NO_ENV, **AT)
        assert path.startswith("/")
        assert "//" not in path
        assert not {".", ".."} & set(path.split("/"))


class TestTranscripts:
    def test_traversal_is_normalized_under_home(self) -> None:
        path = resolve_session_transcript_path("../../../../etc/passwd", env=NO_ENV, **AT)
        assert path == "/home/tester/etc/passwd.jsonl"

    def test_absolute_session_id_stays_under_sessions(self) -> None:
        path = resolve_session_transcript_path("/abs/id", "ops", env=NO_ENV, **AT)
        assert path == "/home/tester/.clawdbot/agents/ops/sessions/abs/id.jsonl"

    @pytest.mark.parametrize(
        ("topic", "suffix"),
        [(UNDEFINED, "s.jsonl"), (None, "s-topic-null.jsonl"), (5, "s-topic-5.jsonl"),
         (1e21, "s-topic-1e+21.jsonl"), (-0.0, "s-topic-0.jsonl")],
    )  # fmt: skip
    def test_topic_formatting(self, topic: object, suffix: str) -> None:
        path = resolve_session_transcript_path("s", None, topic, env=NO_ENV, **AT)
        assert path == f"/home/tester/.clawdbot/agents/main/sessions/{suffix}"

    def test_session_file_wins_verbatim_when_not_blank(self) -> None:
        assert (
            resolve_session_file_path("s", {"sessionFile": " rel/f.jsonl "}, **AT) == "rel/f.jsonl"
        )
        assert resolve_session_file_path("s", {"sessionFile": " "}, env=NO_ENV, **AT) == (
            "/home/tester/.clawdbot/agents/main/sessions/s.jsonl"
        )
        assert resolve_session_file_path("s", "not an entry", agent_id="o", env=NO_ENV, **AT) == (
            "/home/tester/.clawdbot/agents/o/sessions/s.jsonl"
        )

    def test_non_string_session_file_raises(self) -> None:
        with pytest.raises(TypeError):
            resolve_session_file_path("s", {"sessionFile": 5}, **AT)

    @given(st.text(max_size=20))
    def test_transcript_is_jsonl_inside_a_sessions_dir_or_above(self, session_id: str) -> None:
        path = resolve_session_transcript_path(session_id, env=NO_ENV, **AT)
        assert path.endswith(".jsonl")
        assert path.startswith("/")
