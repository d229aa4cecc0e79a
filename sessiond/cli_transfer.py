"""Moving sessions in and out of a running daemon: ``export`` (JSON lines), ``import``
(JSON lines, atomic per store) and ``backup`` (a restorable state directory). Does I/O.

The JSON lines format is one object per line, ``{"agent": ..., "key": ..., "entry": ...}``,
UTF-8, with the entry exactly as stored (unknown fields, unicode and every digit of a
number kept): an export imported again gives the same entries.

- ``export`` copies each store at one instant (the daemon's export views), store by store.
- ``import`` reads and checks the whole file first (a malformed line, or a key twice for one
  agent, is refused with its line number and nothing is imported), stages every store's
  entries with the daemon (which checks keys, sizes and the value model), and only then
  commits store after store; each commit is atomic and durable. Keys absent from the file
  are left alone.
- ``backup DIR`` writes every store, each copied at one instant, to
  ``DIR/agents/<agent>/sessions/sessions.json`` (the default layout, files written
  atomically and fsynced), plus ``DIR/sessiond-backup.json`` describing it. Restore by
  serving that directory: ``sessiond serve --state-dir DIR``, or by stopping the daemon and
  copying the files into the state directory.
"""

from __future__ import annotations

import argparse
import sys
import time
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import Any, BinaryIO

import msgspec

from sessiond import __version__
from sessiond.cli_common import EXIT_FAILURE, Subcommands, add_agent_option, print_json
from sessiond.entries import encode_entry
from sessiond.fileops import REAL_FILES, FileOps
from sessiond.snapshotter import commit_snapshot, new_temp_path, write_snapshot_file
from sessiond_client import Client, Session, SessiondError

__all__ = ["add_transfer_commands"]

EXPORT_PAGE = 1000
MANIFEST_NAME = "sessiond-backup.json"


class ExportLine(msgspec.Struct, forbid_unknown_fields=True):
    agent: str
    key: str
    entry: dict[str, Any]


_line_decoder = msgspec.json.Decoder(ExportLine)
_encoder = msgspec.json.Encoder()


def all_agents(client: Client) -> list[str]:
    """Every agent with a store: open, on disk, or unavailable (in Redis: every agent)."""
    stats = client.stats()
    return sorted(
        {
            *stats.get("stores", {}),
            *stats.get("stores_on_disk", []),
            *stats.get("unavailable_stores", {}),
        }
    )


def export_store(client: Client, agent: str) -> tuple[list[Session], int]:
    """Every entry of one store, copied at one instant, and the store's seq then."""
    sessions: list[Session] = []
    cursor: str | None = None
    seq = 0
    while True:
        page = client.export(agent=agent, cursor=cursor, limit=EXPORT_PAGE)
        sessions.extend(page.items)
        seq = page.seq
        cursor = page.cursor
        if cursor is None:
            return sessions, seq


def run_export(client: Client, args: argparse.Namespace) -> int:
    agents = [args.agent] if args.agent else all_agents(client)
    out = sys.stdout.buffer
    total = 0
    for agent in agents:
        sessions, _ = export_store(client, agent)
        for session in sessions:
            out.write(_encoder.encode(ExportLine(agent, session.key, session.data)) + b"\n")
        total += len(sessions)
    out.flush()
    print(f"exported {total} session(s) from {len(agents)} store(s)", file=sys.stderr)
    return 0


# -- import -----------------------------------------------------------------------------


class ImportFileError(ValueError):
    """The file cannot be imported as a whole; the message names the line."""


def read_import_lines(stream: BinaryIO, name: str) -> dict[str, dict[str, tuple[int, Any]]]:
    """The file's entries by agent, then key, with their line numbers; every line checked."""
    by_agent: dict[str, dict[str, tuple[int, Any]]] = {}
    for number, line in enumerate(stream, start=1):
        if not line.strip():
            continue
        try:
            parsed = _line_decoder.decode(line)
        except msgspec.DecodeError as error:
            raise ImportFileError(
                f"{name}:{number}: not an export line ({error}); expected "
                '{"agent": "...", "key": "...", "entry": {...}}'
            ) from None
        entries = by_agent.setdefault(parsed.agent, {})
        if parsed.key in entries:
            first = entries[parsed.key][0]
            raise ImportFileError(
                f"{name}:{number}: key {parsed.key!r} of agent {parsed.agent!r} again "
                f"(first on line {first})"
            )
        entries[parsed.key] = (number, parsed.entry)
    return by_agent


def check_entry_sizes(
    by_agent: dict[str, dict[str, tuple[int, Any]]], max_bytes: int, name: str
) -> None:
    """Refuse, by line, an entry the daemon would refuse for its size (before staging)."""
    for entries in by_agent.values():
        for key, (number, entry) in entries.items():
            size = len(_encoder.encode(entry))
            if size > max_bytes:
                raise ImportFileError(
                    f"{name}:{number}: the entry of {key!r} has {size} bytes, which exceeds "
                    f"the {max_bytes} bytes the daemon accepts (max_entry_bytes, max_frame_bytes)"
                )


def _batches(
    entries: dict[str, tuple[int, Any]], max_batch_bytes: int, max_batch_keys: int
) -> Iterator[dict[str, tuple[int, Any]]]:
    batch: dict[str, tuple[int, Any]] = {}
    batch_bytes = 0
    for key, item in entries.items():
        size = len(key.encode()) + len(_encoder.encode(item[1])) + 16
        if batch and (batch_bytes + size > max_batch_bytes or len(batch) >= max_batch_keys):
            yield batch
            batch, batch_bytes = {}, 0
        batch[key] = item
        batch_bytes += size
    if batch:
        yield batch


def _line_of(error: SessiondError, batch: dict[str, tuple[int, Any]]) -> str:
    for key, (number, _) in batch.items():
        if repr(key) in str(error):
            return f"line {number}: "
    return ""


def run_import(client: Client, args: argparse.Namespace) -> int:
    name = "<stdin>" if args.file == "-" else args.file
    try:
        if args.file == "-":
            by_agent = read_import_lines(sys.stdin.buffer, name)
        else:
            with open(args.file, "rb") as stream:
                by_agent = read_import_lines(stream, name)
    except (ImportFileError, OSError) as error:
        print(f"sessiond: {error}; nothing imported", file=sys.stderr)
        return EXIT_FAILURE
    limits = client.hello()
    max_batch_bytes = limits.max_frame_bytes // 2
    try:
        check_entry_sizes(by_agent, min(limits.max_entry_bytes, max_batch_bytes), name)
    except ImportFileError as error:
        print(f"sessiond: {error}; nothing imported", file=sys.stderr)
        return EXIT_FAILURE
    staged: dict[str, str] = {}
    for agent, entries in sorted(by_agent.items()):
        import_id: str | None = None
        for batch in _batches(entries, max_batch_bytes, limits.max_keys_per_request):
            values = {key: value for key, (_, value) in batch.items()}
            try:
                result = client.import_entries(values, agent=agent, import_id=import_id)
            except SessiondError as error:
                print(
                    f"sessiond: {name}: agent {agent!r}: {_line_of(error, batch)}{error}; "
                    "nothing imported",
                    file=sys.stderr,
                )
                return EXIT_FAILURE
            import_id = result.import_id
        if import_id is not None:
            staged[agent] = import_id
    imported: dict[str, int] = {}
    for agent, import_id in staged.items():
        try:
            result = client.import_entries({}, agent=agent, import_id=import_id, commit=True)
        except SessiondError as error:
            done = ", ".join(f"{a} ({n})" for a, n in imported.items()) or "none"
            print(
                f"sessiond: committing agent {agent!r} failed: {error}; stores imported "
                f"before it: {done}",
                file=sys.stderr,
            )
            return EXIT_FAILURE
        imported[agent] = result.imported
    if args.json:
        print_json({"imported": imported})
    else:
        for agent, count in imported.items():
            print(f"imported {count} session(s) into agent {agent}")
    return 0


# -- backup -----------------------------------------------------------------------------


def write_backup_store(
    directory: Path, agent: str, sessions: list[Session], *, fs: FileOps = REAL_FILES
) -> Path:
    """One store's copy in the default layout, written atomically and durably."""
    path = directory / "agents" / agent / "sessions" / "sessions.json"
    fs.make_private_dirs(str(path.parent))
    entries = {session.key: encode_entry(session.data) for session in sessions}
    written = write_snapshot_file(fs, new_temp_path(path), entries, pretty=True)
    commit_snapshot(fs, written, path)
    return path


def write_backup(
    directory: Path,
    exported: Iterable[tuple[str, list[Session], int]],
    *,
    fs: FileOps = REAL_FILES,
) -> dict[str, Any]:
    """Write each exported store ``(agent, sessions, seq)`` (consumed one at a time), then
    the manifest listing them; returns the manifest's ``stores``.

    The manifest comes last, fsynced before it is renamed into place, and the directory is
    fsynced after: a manifest that survives a power loss lists only complete stores, and a
    backup that returned survives one whole."""
    fs.make_private_dirs(str(directory))
    stores: dict[str, Any] = {}
    for agent, sessions, seq in exported:
        path = write_backup_store(directory, agent, sessions, fs=fs)
        stores[agent] = {"entries": len(sessions), "seq": seq, "path": str(path)}
    manifest = {"created_at": time.time(), "sessiond_version": __version__, "stores": stores}
    manifest_path = directory / MANIFEST_NAME
    temp_path = f"{manifest_path}.tmp"
    fd = fs.create(temp_path)
    try:
        fs.write(fd, msgspec.json.format(_encoder.encode(manifest), indent=2) + b"\n")
        fs.fsync(fd)
    finally:
        fs.close(fd)
    fs.rename(temp_path, str(manifest_path))
    fs.fsync_directory(str(directory))
    return stores


def run_backup(client: Client, args: argparse.Namespace) -> int:
    directory = Path(args.directory).absolute()
    if directory.exists() and (not directory.is_dir() or any(directory.iterdir())):
        print(
            f"sessiond: {directory} exists and is not an empty directory; "
            "back up into a new one (e.g. with the date in its name)",
            file=sys.stderr,
        )
        return EXIT_FAILURE
    exported = ((agent, *export_store(client, agent)) for agent in all_agents(client))
    stores = write_backup(directory, exported)
    if args.json:
        print_json({"directory": str(directory), "stores": stores})
    else:
        for agent, store in stores.items():
            print(f"backed up agent {agent}: {store['entries']} session(s) (seq {store['seq']})")
        print(f"restore with: sessiond serve --state-dir {directory}")
    return 0


def add_transfer_commands(commands: Subcommands) -> None:
    export = commands.add_admin(
        "export",
        "write every session as JSON lines {agent, key, entry} to stdout",
        "sessiond export --agent main > sessions.jsonl",
        run_export,
    )
    add_agent_option(export, only=True)
    importer = commands.add_admin(
        "import",
        "store the sessions of a JSON lines file (from export); atomic per store, durable",
        "sessiond import sessions.jsonl",
        run_import,
    )
    importer.add_argument("file", metavar="FILE", help="the JSON lines file, or - for stdin")
    backup = commands.add_admin(
        "backup",
        "copy every store, while serving, into a new directory that --state-dir can serve",
        "sessiond backup /var/backups/sessiond/$(date +%F)",
        run_backup,
    )
    backup.add_argument("directory", metavar="DIR", help="a new or empty directory")
