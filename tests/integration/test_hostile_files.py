"""Files that are not what they seem, planted where the daemon keeps its own.

- A journal record with a valid checksum but unusable contents: the changes before it
  and those of later segments are served, the segment is moved aside with its bytes,
  and ``stats`` and the log say so.
- A FIFO or a symbolic link (to ``/dev/zero``, to another file) where a store file or a
  segment belongs: the daemon neither hangs nor reads it; that store answers
  ``unavailable`` naming the problem, the other stores are served, and the planted files
  are left as they were.
- A symbolic link planted at the name of the next journal segment is never written
  through.
- A segment copied from another store is refused (moved aside, reported) and changes
  nothing in this store.
- Whatever the umask, the directories the daemon creates are 0700 and its files 0600.
"""

from __future__ import annotations

import contextlib
import os
import re
import shutil
import stat
import time
from collections.abc import Callable
from pathlib import Path

import pytest

from sessiond.journal import ChangeRecord, HeaderRecord, encode_record, segment_path
from sessiond_client import Client, UnavailableError
from tests.support.daemon import DaemonProcess
from tests.support.procstat import rss_bytes

NO_SNAPSHOTS = {"persistence": {"flush_delay_s": 60.0, "flush_max_delay_s": 60.0}}
MAIN_STORE_ID = "agents/main/sessions/sessions.json"
AS_LIMIT = ["prlimit", f"--as={2048 * 1024 * 1024}"]  # reading /dev/zero must fail, not swap
CORRUPT_STAMP = r"\.corrupt-[0-9]{8}T[0-9]{6}Z(\.[0-9]+)?$"


def segments(store_path: Path) -> list[Path]:
    return sorted(store_path.parent.glob(f"{store_path.name}.journal.[0-9]*[0-9]"))


def labels(client: Client, agent: str | None = None) -> dict[str, str]:
    return {s.key: s.data.get("label") for s in client.list(agent=agent, limit=100).items}


def entry_json(label: str, updated_at: int = 1_700_000_000_000) -> bytes:
    return f'{{"sessionId":"s-{label}","updatedAt":{updated_at},"label":"{label}"}}'.encode()


# -- C1: a checksum-valid record that does not decode ------------------------------------


def test_unusable_record_keeps_what_is_before_it_and_later_segments(
    make_daemon: Callable[..., DaemonProcess],
) -> None:
    daemon = make_daemon(NO_SNAPSHOTS).start()
    with daemon.client() as client:
        for index in range(5):
            client.patch(f"agent:main:k{index}", {"label": f"v{index}"}, durable=True)
    daemon.kill()
    (first,) = segments(daemon.store_path)
    assert first.name == "sessions.json.journal.00000001"
    with first.open("ab") as journal:
        journal.write(encode_record(ChangeRecord("agent:main:bad", b"not json", seq=6)))
    damaged = first.read_bytes()
    later = segment_path(daemon.store_path, 2)
    later.write_bytes(
        encode_record(HeaderRecord(MAIN_STORE_ID, 2))
        + encode_record(ChangeRecord("agent:main:later", entry_json("later"), seq=7))
        + encode_record(ChangeRecord("agent:main:k0", entry_json("v0-later"), seq=8))
    )
    daemon.start()
    expected = {f"agent:main:k{index}": f"v{index}" for index in range(1, 5)}
    expected |= {"agent:main:k0": "v0-later", "agent:main:later": "later"}
    with daemon.client() as client:
        assert labels(client) == expected
        assert client.get("agent:main:bad") is None
        corruption = client.stats()["stores"]["main"]["journal_corruption"]
    assert corruption is not None
    assert str(first) in corruption and "unusable record" in corruption
    assert not first.exists()
    (kept,) = first.parent.glob(first.name + ".corrupt-*")
    assert re.search(r"sessions\.json\.journal\.00000001" + CORRUPT_STAMP, kept.name), kept
    assert kept.read_bytes() == damaged
    assert str(kept) in corruption
    assert "is damaged" in daemon.log() and str(kept) in daemon.log()
    # What was served is kept: a restart (final snapshot, then a fresh load) serves it too.
    assert daemon.stop() == 0
    daemon.start()
    with daemon.client() as client:
        assert labels(client) == expected
    assert kept.read_bytes() == damaged


# -- C2: FIFOs and symbolic links where files belong ----------------------------------------

HOSTILE_AGENTS = {
    "fifosnap": "FIFO",
    "fifoseg": "FIFO",
    "zero": "symbolic link",
    "linkseg": "symbolic link",
    # planted after start-up: opened on first use while serving, not by the preload
    "latefifo": "FIFO",
    "latezero": "symbolic link",
}


def store_of(daemon: DaemonProcess, agent: str) -> Path:
    return daemon.state_dir / "agents" / agent / "sessions" / "sessions.json"


def plant_hostile_files(daemon: DaemonProcess, outside: Path) -> None:
    for agent in (*HOSTILE_AGENTS, "good"):
        store_of(daemon, agent).parent.mkdir(parents=True)
    os.mkfifo(store_of(daemon, "fifosnap"))
    os.mkfifo(store_of(daemon, "latefifo"))
    os.mkfifo(segment_path(store_of(daemon, "fifoseg"), 1))
    for agent in ("zero", "latezero"):
        store_of(daemon, agent).symlink_to("/dev/zero")
    segment_path(store_of(daemon, "linkseg"), 1).symlink_to(outside)
    store_of(daemon, "good").write_text(
        '{"agent:good:k": {"sessionId": "s-good", "updatedAt": 1700000000000, "label": "good"}}'
    )


def listing(directory: Path) -> dict[str, tuple[int, str | None]]:
    """Names, file types and link targets in ``directory`` (nothing is followed)."""
    found: dict[str, tuple[int, str | None]] = {}
    for entry in directory.iterdir():
        mode = entry.lstat().st_mode
        found[entry.name] = (
            stat.S_IFMT(mode),
            os.readlink(entry) if stat.S_ISLNK(mode) else None,
        )
    return found


def test_fifos_and_symlinks_make_only_their_store_unavailable(
    make_daemon: Callable[..., DaemonProcess], short_tmp: Path
) -> None:
    outside = short_tmp / "outside.bin"
    outside.write_bytes(b"not a journal segment")
    daemon = make_daemon(wrapper=AS_LIMIT)
    plant_hostile_files(daemon, outside)
    planted = {agent: listing(store_of(daemon, agent).parent) for agent in HOSTILE_AGENTS}
    late = {agent: daemon.root / f"{agent}.later" for agent in ("latefifo", "latezero")}
    for agent, parked in late.items():  # out of sight until the daemon serves
        store_of(daemon, agent).parent.parent.rename(parked)
    started = time.monotonic()
    daemon.start(wait=False)
    daemon.wait_ready(timeout_s=10.0)  # a blocked open or an endless read would hang here
    assert time.monotonic() - started < 10.0
    for agent, parked in late.items():
        parked.rename(store_of(daemon, agent).parent.parent)
    with daemon.client(timeout_s=5.0) as client:
        for agent, problem in HOSTILE_AGENTS.items():
            for op in ("get", "list", "patch"):
                began = time.monotonic()
                with pytest.raises(UnavailableError, match=problem):
                    if op == "get":
                        client.get(f"agent:{agent}:k")
                    elif op == "list":
                        client.list(agent=agent)
                    else:
                        client.patch(f"agent:{agent}:k", {"label": "x"})
                assert time.monotonic() - began < 2.0, f"{op} of {agent} was slow"
        # Other agents are served as usual.
        session = client.get("agent:good:k")
        assert session is not None and session.data["label"] == "good"
        assert client.patch("agent:good:k", {"label": "good2"}).data["label"] == "good2"
        assert client.patch("agent:main:k", {"label": "main"}, durable=True).data["label"] == "main"
        assert client.patch("agent:fresh:k", {"label": "fresh"}).data["label"] == "fresh"
        unavailable = client.stats()["unavailable_stores"]
        for agent, problem in HOSTILE_AGENTS.items():
            assert problem in unavailable[agent], unavailable
        assert client.flush() is True
    assert rss_bytes(daemon.pid) < 256 * 1024 * 1024  # /dev/zero was not read into memory
    assert daemon.stop() == 0
    for agent in HOSTILE_AGENTS:  # nothing moved, replaced, removed or added
        assert listing(store_of(daemon, agent).parent) == planted[agent]
    assert outside.read_bytes() == b"not a journal segment"


# -- C3: a symlink at the next segment's name ----------------------------------------------


def test_symlink_at_the_next_segment_name_is_never_written_through(
    make_daemon: Callable[..., DaemonProcess], short_tmp: Path
) -> None:
    target = short_tmp / "target.bin"
    target.write_bytes(b"precious, not a journal")
    daemon = make_daemon().start()
    with daemon.client() as client:
        client.patch("agent:main:k", {"label": "first"}, durable=True)
    assert daemon.stop() == 0  # final snapshot; the journal keeps one marker segment
    daemon.start()
    highest = max(int(path.name.rsplit(".", 1)[1]) for path in segments(daemon.store_path))
    link = segment_path(daemon.store_path, highest + 1)  # the segment the next write opens
    link.symlink_to(target)
    with daemon.client() as client:
        for index in range(5):
            client.patch(f"agent:main:w{index}", {"label": f"w{index}"})
        # The journal cannot be written there: refusing durability is acceptable, as long
        # as nothing goes through the link.
        with contextlib.suppress(UnavailableError):
            client.patch("agent:main:durable", {"label": "d"}, durable=True)
        with contextlib.suppress(UnavailableError):
            client.flush()
        session = client.get("agent:main:w4")
        assert session is not None and session.data["label"] == "w4"
    assert target.read_bytes() == b"precious, not a journal"
    assert link.is_symlink() and os.readlink(link) == str(target)


# -- C4: a segment of another store ------------------------------------------------------------


def test_segment_copied_from_another_store_is_refused(
    make_daemon: Callable[..., DaemonProcess],
) -> None:
    daemon = make_daemon(NO_SNAPSHOTS).start()
    with daemon.client() as client:
        client.patch("agent:main:k", {"label": "mine"}, durable=True)
        # The same key in agent "other"'s store, with another value.
        client.patch("agent:main:k", {"label": "theirs"}, agent="other", durable=True)
        client.patch("agent:main:extra", {"label": "theirs"}, agent="other", durable=True)
    daemon.kill()
    (theirs,) = segments(store_of(daemon, "other"))
    copied = segment_path(daemon.store_path, 99_999_999)  # sorts after every segment of main
    shutil.copyfile(theirs, copied)
    copied_bytes = copied.read_bytes()
    daemon.start()
    with daemon.client() as client:
        assert labels(client) == {"agent:main:k": "mine"}
        assert labels(client, "other") == {"agent:main:k": "theirs", "agent:main:extra": "theirs"}
        corruption = client.stats()["stores"]["main"]["journal_corruption"]
    assert corruption is not None and "agents/other/sessions/sessions.json" in corruption
    assert not copied.exists()
    (kept,) = copied.parent.glob(copied.name + ".corrupt-*")
    assert re.search(r"sessions\.json\.journal\.99999999" + CORRUPT_STAMP, kept.name), kept
    assert kept.read_bytes() == copied_bytes
    assert "is damaged" in daemon.log()
    assert daemon.stop() == 0
    daemon.start()  # and the refused changes did not reach the snapshot either
    with daemon.client() as client:
        assert labels(client) == {"agent:main:k": "mine"}


# -- C5: private modes whatever the umask -----------------------------------------------------


def assert_private(state_dir: Path, file_mode: int = 0o600, dir_mode: int = 0o700) -> None:
    assert stat.S_IMODE(state_dir.lstat().st_mode) == dir_mode, "state dir"
    checked = 0
    for path in [state_dir, *state_dir.rglob("*")]:
        mode = path.lstat().st_mode
        if stat.S_ISDIR(mode):
            assert stat.S_IMODE(mode) == dir_mode, f"{path}: {stat.S_IMODE(mode):o}"
        elif stat.S_ISREG(mode):
            assert stat.S_IMODE(mode) == file_mode, f"{path}: {stat.S_IMODE(mode):o}"
        else:
            raise AssertionError(f"{path} is neither a file nor a directory")
        checked += 1
    assert checked > 6


def test_directories_and_files_are_private_under_umask_000(
    make_daemon: Callable[..., DaemonProcess],
) -> None:
    umask_000 = ["sh", "-c", 'umask 000; exec "$@"', "sh"]
    daemon = make_daemon(wrapper=umask_000).start()
    assert Path(f"/proc/{daemon.pid}/status").read_text().count("Umask:\t0000") == 1
    with daemon.client() as client:
        client.patch("agent:main:k", {"label": "a"}, durable=True)
        client.patch("agent:other:k", {"label": "b"}, durable=True)
        client.flush()
        client.patch("agent:other:k", {"label": "c"}, durable=True)  # a new segment
    for name in ("agents", "agents/main", "agents/main/sessions", "agents/other/sessions"):
        assert (daemon.state_dir / name).is_dir()
    assert_private(daemon.state_dir)
    assert stat.S_IMODE(os.lstat(daemon.socket_path).st_mode) == 0o660  # access.socket_mode
    assert daemon.stop() == 0
    assert daemon.store_path.is_file()
    assert_private(daemon.state_dir)


def test_file_mode_gives_the_group_read_access_whatever_the_umask(
    make_daemon: Callable[..., DaemonProcess],
) -> None:
    umask_077 = ["sh", "-c", 'umask 077; exec "$@"', "sh"]
    config = {"persistence": {"file_mode": 0o640}, "retention": {"prune_after_days": 1}}
    daemon = make_daemon(config, wrapper=umask_077).start()
    old_ms = int((time.time() - 10 * 86400) * 1000)
    with daemon.client() as client:
        client.import_entries(
            {"agent:main:old": {"sessionId": "s", "updatedAt": old_ms}}, commit=True
        )
        client.patch("agent:other:k", {"label": "b"}, durable=True)
        client.flush()
        client.patch("agent:other:k", {"label": "c"}, durable=True)  # a new segment
        assert [p.key for p in client.prune().pruned] == ["agent:main:old"]  # the archive file
    assert daemon.store_path.with_name("sessions.pruned.jsonl").is_file()
    assert_private(daemon.state_dir, file_mode=0o640, dir_mode=0o750)
    assert daemon.stop() == 0
    assert_private(daemon.state_dir, file_mode=0o640, dir_mode=0o750)
