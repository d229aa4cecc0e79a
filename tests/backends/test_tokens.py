"""Request tokens on every backend: a write resent with the same token (as the client
does after a broken connection) is answered with its first result, never applied twice;
a token names one write.
"""

from __future__ import annotations

import pytest

from sessiond_client import InvalidRequestError, Resolution, Session, _core
from tests.backends.conftest import Backend


def test_a_patch_resent_with_its_token_applies_once(backend: Backend) -> None:
    with backend.client() as client:
        call = _core.patch_call(
            key="k", patch={"label": "once"}, agent=None, if_revision=None, durable=False
        )
        first: Session = client._call(call)
        second: Session = client._call(call)
        assert (second.revision, second.seq, second.data) == (first.revision, first.seq, first.data)
        assert client.stats()["stores"]["main"]["seq"] == 1
        # Changed since: a resend still answers with what the first write stored.
        client.patch("k", {"label": "later"})
        third: Session = client._call(call)
        assert (third.data["label"], third.revision, third.seq) == ("once", first.revision, 1)
        assert client.stats()["stores"]["main"]["seq"] == 2


def test_resolve_and_delete_resent_with_their_tokens_apply_once(backend: Backend) -> None:
    with backend.client() as client:
        call = _core.resolve_call(
            ctx={"From": "+1555", "Body": "hi"},
            agent=None,
            authorized=True,
            scope=None,
            main_key=None,
            idle_minutes=None,
            reset_triggers=None,
            durable=False,
        )
        first: Resolution = client._call(call)
        again: Resolution = client._call(call)
        assert (again.session_id, again.is_new, again.seq) == (first.session_id, True, first.seq)
        delete = _core.delete_call(
            key=first.session_key, agent=None, if_revision=None, durable=False
        )
        assert client._call(delete) is True
        assert client._call(delete) is True  # the first answer, not "did not exist"
        assert client.stats()["stores"]["main"]["seq"] == 2


def test_a_token_reused_for_another_write_is_refused(backend: Backend) -> None:
    with backend.client() as client:
        call = _core.patch_call(key="a", patch={}, agent=None, if_revision=None, durable=False)
        client._call(call)
        other = _core.patch_call(key="b", patch={}, agent=None, if_revision=None, durable=False)
        assert isinstance(other.request, type(call.request))
        other.request.request_token = call.request.request_token  # type: ignore[union-attr]
        with pytest.raises(InvalidRequestError, match="token"):
            client._call(other)
        assert client.get("b") is None


def test_resends_answer_even_where_the_write_would_now_be_refused(backend: Backend) -> None:
    with backend.client() as client:
        first = client.patch("k", {})
        cas = _core.patch_call(
            key="k", patch={"label": "cas"}, agent=None, if_revision=first.revision, durable=False
        )
        applied: Session = client._call(cas)
        again: Session = client._call(cas)  # k is no longer at first.revision
        assert (again.revision, again.seq) == (applied.revision, applied.seq)
        update = _core.update_call(
            key="k", patch={"label": "u"}, agent=None, if_revision=None, durable=False
        )
        updated: Session = client._call(update)
        assert client.delete("k") is True
        replayed: Session | None = client._call(update)  # k is gone: still the first answer
        assert replayed is not None
        assert (replayed.data["label"], replayed.revision) == ("u", updated.revision)
        assert client.stats()["stores"]["main"]["seq"] == 4
