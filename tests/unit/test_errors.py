"""Unit tests for sessiond_client.errors: the exception tree and the wire-code table.

Pure: exceptions are built, pickled and compared in memory.
"""

from __future__ import annotations

import builtins
import pickle

import pytest

from sessiond_client import errors
from sessiond_client.errors import (
    BusyError,
    CompactedError,
    ConflictError,
    ConnectionLostError,
    DaemonUnavailableError,
    ForbiddenError,
    FrameTooLargeError,
    InternalError,
    InvalidRequestError,
    LaggedError,
    NotFoundError,
    ProtocolError,
    RequestTimeoutError,
    ServerError,
    SessiondError,
    ShuttingDownError,
    TransportError,
    UnavailableError,
    UnknownOpError,
    error_code_of,
    server_error_for,
)

# DESIGN.md §5: the wire codes, one class each.
CODE_TO_CLASS: dict[str, type[ServerError]] = {
    "invalid_request": InvalidRequestError,
    "unknown_op": UnknownOpError,
    "frame_too_large": FrameTooLargeError,
    "not_found": NotFoundError,
    "conflict": ConflictError,
    "forbidden": ForbiddenError,
    "unavailable": UnavailableError,
    "busy": BusyError,
    "shutting_down": ShuttingDownError,
    "internal": InternalError,
    "compacted": CompactedError,
    "lagged": LaggedError,
}


@pytest.mark.parametrize(("code", "cls"), sorted(CODE_TO_CLASS.items()))
def test_each_wire_code_maps_to_its_own_class(code: str, cls: type[ServerError]) -> None:
    error = server_error_for(code, "the message")
    assert type(error) is cls
    assert error.code == code
    assert cls.code == code
    assert error_code_of(error) == code
    assert error.message == "the message"
    assert str(error) == "the message"


def test_the_code_table_lists_exactly_the_designed_codes() -> None:
    assert set(errors.ERROR_CODES) == set(CODE_TO_CLASS)


def test_classes_are_distinct_per_code() -> None:
    assert len(set(CODE_TO_CLASS.values())) == len(CODE_TO_CLASS)


def test_unknown_code_maps_to_the_base_class_and_keeps_its_code() -> None:
    error = server_error_for("rate_limited", "slow down")
    assert type(error) is ServerError
    assert error.code == "rate_limited"
    assert error_code_of(error) == "rate_limited"
    assert error.message == "slow down"
    # The class attribute is not changed by one instance's code.
    assert ServerError.code != "rate_limited"
    assert server_error_for("other", "").code == "other"


def test_the_tree_is_rooted_at_sessiond_error() -> None:
    for server_error in CODE_TO_CLASS.values():
        assert issubclass(server_error, ServerError)
    for transport_error in (DaemonUnavailableError, ConnectionLostError, RequestTimeoutError):
        assert issubclass(transport_error, TransportError)
    for branch in (ServerError, TransportError, ProtocolError):
        assert issubclass(branch, SessiondError)
    assert issubclass(SessiondError, Exception)
    assert not issubclass(ProtocolError, ServerError | TransportError)
    assert not issubclass(TransportError, ServerError)


@pytest.mark.parametrize(
    "error",
    [
        *(cls("pickled") for cls in CODE_TO_CLASS.values()),
        ServerError("from a newer daemon", code="rate_limited"),
        ServerError("plain"),
        ConflictError("", code="conflict"),
    ],
    ids=repr,
)
def test_server_errors_survive_pickling(error: ServerError) -> None:
    copy = pickle.loads(pickle.dumps(error))
    assert type(copy) is type(error)
    assert copy.code == error.code
    assert copy.message == error.message
    assert copy.args == error.args


@pytest.mark.parametrize(
    "error",
    [
        TransportError("t"),
        DaemonUnavailableError("no daemon"),
        ConnectionLostError("lost"),
        RequestTimeoutError("slow"),
        ProtocolError("bad bytes"),
    ],
    ids=repr,
)
def test_other_errors_survive_pickling(error: SessiondError) -> None:
    copy = pickle.loads(pickle.dumps(error))
    assert type(copy) is type(error)
    assert copy.args == error.args


def test_no_builtin_name_is_shadowed() -> None:
    builtin_names = set(dir(builtins))
    exported = set(errors.__all__)
    assert not exported & builtin_names
    assert "ConnectionError" not in vars(errors)
    assert "TimeoutError" not in vars(errors)
    # The builtins do not catch our transport errors by accident either.
    assert not issubclass(RequestTimeoutError, builtins.TimeoutError)
    assert not issubclass(ConnectionLostError, builtins.ConnectionError)


def test_all_lists_every_public_class_of_the_module() -> None:
    public_classes = {
        name
        for name, value in vars(errors).items()
        if isinstance(value, type)
        and issubclass(value, BaseException)
        and value.__module__ == errors.__name__
    }
    assert public_classes <= set(errors.__all__)
