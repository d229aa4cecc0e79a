"""Pure tests for sessiond.access (the policy over peer credentials) and the parser of
/proc/<pid>/status group lines in sessiond.peercred.

Reading credentials off real sockets, and from processes run as other users, is tested in
tests/integration/test_peercred.py; the daemon's refusal of real peers in
tests/integration/test_access_control.py.
"""

from __future__ import annotations

import os

import pytest

from sessiond.access import ROOT_UID, AccessPolicy, PeerCredentials
from sessiond.peercred import parse_status_groups

DAEMON_UID = 990
CLIENTS_GID = 991


def creds(uid: int, gid: int, *groups: int) -> PeerCredentials:
    return PeerCredentials(pid=1234, uid=uid, gid=gid, groups=groups)


# --- AccessPolicy (pure) ------------------------------------------------------------------


@pytest.fixture
def policy() -> AccessPolicy:
    return AccessPolicy.default_for(CLIENTS_GID, own_uid=DAEMON_UID)


def test_default_policy_allows_own_uid_root_and_the_socket_group(policy: AccessPolicy) -> None:
    assert policy.allowed_uids == frozenset({DAEMON_UID, ROOT_UID})
    assert policy.allowed_gids == frozenset({CLIENTS_GID})


@pytest.mark.parametrize(
    ("peer", "allowed"),
    [
        (creds(DAEMON_UID, 5000), True),
        (creds(ROOT_UID, 5000), True),
        (creds(4242, CLIENTS_GID), True),
        (creds(4242, 4242, 100, CLIENTS_GID), True),
        (creds(4242, 4242), False),
        (creds(4242, 4242, 100, 27), False),
        # root's *group* is not root: gid 0 alone grants nothing.
        (creds(4242, 0, 0), False),
        # the daemon's primary group is not implied either.
        (creds(4242, DAEMON_UID), False),
    ],
)
def test_policy_decision(policy: AccessPolicy, peer: PeerCredentials, allowed: bool) -> None:
    assert policy.allows(peer) is allowed


def test_without_a_socket_group_only_uids_are_allowed() -> None:
    policy = AccessPolicy.default_for(None, own_uid=DAEMON_UID)
    assert policy.allowed_gids == frozenset()
    assert policy.allows(creds(DAEMON_UID, 1))
    assert not policy.allows(creds(4242, CLIENTS_GID, CLIENTS_GID))


def test_extra_uids_and_gids_extend_the_default() -> None:
    policy = AccessPolicy.default_for(
        CLIENTS_GID, own_uid=DAEMON_UID, extra_uids=[1000], extra_gids=[2000]
    )
    assert policy.allows(creds(1000, 1))
    assert policy.allows(creds(4242, 1, 2000))
    assert policy.allows(creds(4242, CLIENTS_GID))
    assert not policy.allows(creds(1001, 1, 2001))


def test_default_own_uid_is_the_effective_uid() -> None:
    policy = AccessPolicy.default_for(None)
    assert os.geteuid() in policy.allowed_uids


def test_empty_policy_refuses_everyone() -> None:
    assert not AccessPolicy(frozenset(), frozenset()).allows(creds(0, 0, 0))


# --- parsing /proc/<pid>/status (pure) ---------------------------------------------------


def test_parse_status_groups() -> None:
    status = "Name:\tbot\nUid:\t4242\t4242\t4242\t4242\nGroups:\t27 100 991 \nNgid:\t0\n"
    assert parse_status_groups(status) == (27, 100, 991)


@pytest.mark.parametrize("status", ["Groups:\t\n", "Groups:\n", "Name:\tbot\n", ""])
def test_parse_status_without_groups(status: str) -> None:
    assert parse_status_groups(status) == ()
