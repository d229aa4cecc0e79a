"""Daemon configuration: the settings, their defaults, and how flags, environment and the
TOML file combine. Pure except :func:`load_config_file`, which reads the file.

Precedence for every setting: command-line flag > environment variable > config file >
built-in default. The state directory follows DESIGN.md: ``--state-dir`` >
``SESSIOND_STATE_DIR`` > ``$STATE_DIRECTORY`` (systemd) > ``$XDG_STATE_HOME/sessiond`` >
``~/.local/state/sessiond``. Unknown keys in the file are errors (a typo must not
silently fall back to a default); the daemon exits with status 78 (EX_CONFIG).
"""

from __future__ import annotations

import tomllib
from collections.abc import Mapping
from pathlib import Path
from typing import Any, Literal

import msgspec

from sessiond.configcheck import check_table
from sessiond.retention import RetentionConfig
from sessiond_client.locations import default_socket_path, default_state_dir
from sessiond_client.protocol import DEFAULT_MAX_FRAME_BYTES

__all__ = [
    "AccessConfig",
    "AgentSessionConfig",
    "Config",
    "ConfigError",
    "Limits",
    "PersistenceConfig",
    "build_config",
    "config_changes",
    "load_config_file",
    "runtime_part",
    "settings_with_origins",
]

Durability = Literal["memory", "debounced", "journal"]
STORE_PATH_TEMPLATE = "agents/{agentId}/sessions/sessions.json"


class ConfigError(Exception):
    """The configuration is invalid; the message says which setting and why."""


class _Section(msgspec.Struct, kw_only=True, forbid_unknown_fields=True):
    pass


class Limits(_Section):
    """Bounds that keep one client from hurting the others."""

    max_connections: int = 1024
    max_inflight_per_connection: int = 256
    max_frame_bytes: int = DEFAULT_MAX_FRAME_BYTES
    max_reply_bytes: int = 4 * 1024 * 1024
    max_key_bytes: int = 1024
    max_entry_bytes: int = 1024 * 1024
    max_depth: int = 32
    max_fields: int = 10_000
    max_keys_per_request: int = 1000
    max_list_limit: int = 1000
    max_stores: int = 256
    store_idle_unload_s: float = 3600.0
    idle_timeout_s: float = 600.0
    frame_timeout_s: float = 10.0
    max_write_buffer_bytes: int = 4 * 1024 * 1024
    max_remembered_requests: int = 20000
    remember_requests_s: float = 30.0
    watch_history_changes: int = 10_000
    watch_history_bytes: int = 16 * 1024 * 1024
    watch_progress_s: float = 5.0
    max_watches_per_connection: int = 64
    max_import_bytes: int = 256 * 1024 * 1024


class PersistenceConfig(_Section):
    durability: Durability = "journal"
    flush_delay_s: float = 0.1
    flush_max_delay_s: float = 1.0
    journal_fsync_interval_s: float = 1.0
    journal_snapshot_interval_s: float = 5.0
    journal_max_bytes: int = 64 * 1024 * 1024
    snapshot_format: Literal["pretty", "compact"] = "pretty"
    retry_initial_s: float = 0.5
    retry_max_s: float = 30.0
    refuse_writes_when_failing: bool = False
    on_corrupt: Literal["move-aside", "refuse"] = "move-aside"
    file_mode: int = 0o600
    """Mode of the files sessiond writes (store file, journal, archive): 0o600, or 0o640
    to let the directory's group read them."""


class AccessConfig(_Section):
    """Who may connect. Empty lists mean the defaults: our uid, root, the socket's group."""

    allowed_uids: list[int] = msgspec.field(default_factory=list)
    allowed_gids: list[int] = msgspec.field(default_factory=list)
    socket_mode: int = 0o660


class AgentSessionConfig(_Section):
    """The original's ``session`` config: how ``resolve`` derives keys and expires sessions
    (``[session]``; per agent ``[agents.<id>]``, which may also hold a ``retention`` table)."""

    scope: Literal["per-sender", "global"] = "per-sender"
    main_key: str | None = None
    idle_minutes: float = 60.0
    reset_triggers: list[str] = msgspec.field(default_factory=lambda: ["/new", "/reset"])
    retention: RetentionConfig | None = None


class Config(_Section):
    state_dir: str = ""
    socket_path: str = ""
    store_path: str = ""
    log_level: Literal["debug", "info", "warning", "error"] = "info"
    log_format: Literal["text", "json"] = "text"
    metrics_textfile: str = ""
    """A path the daemon rewrites (atomically) with its Prometheus metrics; empty: none."""
    metrics_interval_s: float = 15.0
    shutdown_timeout_s: float = 10.0
    limits: Limits = msgspec.field(default_factory=Limits)
    persistence: PersistenceConfig = msgspec.field(default_factory=PersistenceConfig)
    access: AccessConfig = msgspec.field(default_factory=AccessConfig)
    session: AgentSessionConfig = msgspec.field(default_factory=AgentSessionConfig)
    retention: RetentionConfig = msgspec.field(default_factory=RetentionConfig)
    agents: dict[str, AgentSessionConfig] = msgspec.field(default_factory=dict)

    def session_config_for(self, agent_id: str) -> AgentSessionConfig:
        return self.agents.get(agent_id, self.session)

    def retention_for(self, agent_id: str) -> RetentionConfig:
        agent = self.agents.get(agent_id)
        return agent.retention if agent is not None and agent.retention else self.retention


def load_config_file(path: str | Path) -> dict[str, Any]:
    """Read a TOML config file into plain data (validated later by :func:`build_config`)."""
    try:
        with open(path, "rb") as file:
            return tomllib.load(file)
    except FileNotFoundError as error:
        raise ConfigError(f"config file {path} does not exist") from error
    except (OSError, tomllib.TOMLDecodeError) as error:
        raise ConfigError(f"cannot read config file {path}: {error}") from error


def check_file_data(file_data: Mapping[str, Any], source: str) -> None:
    """Raise :class:`ConfigError` naming ``source`` and the key for the first problem."""
    agents = file_data.get("agents")
    top = {key: value for key, value in file_data.items() if key != "agents"}
    problem = check_table(Config, "", top)
    if problem is None and agents is not None:
        if not isinstance(agents, Mapping):
            problem = "[agents]: expected a table of agent tables ([agents.<id>])"
        else:
            for name, table in agents.items():
                problem = check_table(AgentSessionConfig, f"agents.{name}", table)
                if problem is not None:
                    break
    if problem is not None:
        raise ConfigError(f"{source}: {problem}")


def build_config(
    file_data: Mapping[str, Any],
    *,
    environ: Mapping[str, str],
    home: str,
    state_dir_flag: str | None = None,
    socket_flag: str | None = None,
    source: str = "configuration",
) -> Config:
    """Validate the file's data and apply environment and flags on top of it.

    ``source`` names the file in error messages."""
    check_file_data(file_data, source)
    try:
        config = msgspec.convert(dict(file_data), Config)
    except msgspec.ValidationError as error:  # check_file_data found nothing: unexpected
        raise ConfigError(f"{source}: {error}") from error
    state_dir = state_dir_flag or environ.get("SESSIOND_STATE_DIR") or config.state_dir
    if not state_dir:
        state_dir = default_state_dir(environ, home=home)
    state_dir = str(Path(state_dir).expanduser().absolute())
    socket_path = socket_flag or environ.get("SESSIOND_SOCKET") or config.socket_path
    if not socket_path:
        socket_path = default_socket_path(environ, home=home, state_dir=state_dir)
    store_path = config.store_path or str(Path(state_dir) / STORE_PATH_TEMPLATE)
    config = msgspec.structs.replace(
        config, state_dir=state_dir, socket_path=socket_path, store_path=store_path
    )
    try:
        _check_ranges(config)
    except ConfigError as error:
        raise ConfigError(f"{source}: {error}") from None
    return config


def _toml_key(dotted: str) -> str:
    """``limits.max_connections`` as a TOML file spells it: ``[limits] max_connections``."""
    table, _, key = dotted.rpartition(".")
    return f"[{table}] {key}" if table else key


def _check_ranges(config: Config) -> None:
    limits, persistence = config.limits, config.persistence
    positive = {
        "limits.max_connections": limits.max_connections,
        "limits.max_inflight_per_connection": limits.max_inflight_per_connection,
        "limits.max_frame_bytes": limits.max_frame_bytes,
        "limits.max_key_bytes": limits.max_key_bytes,
        "limits.max_entry_bytes": limits.max_entry_bytes,
        "limits.max_reply_bytes": limits.max_reply_bytes,
        "limits.max_depth": limits.max_depth,
        "limits.max_fields": limits.max_fields,
        "limits.max_stores": limits.max_stores,
        "limits.max_keys_per_request": limits.max_keys_per_request,
        "limits.max_list_limit": limits.max_list_limit,
        "limits.max_import_bytes": limits.max_import_bytes,
        "limits.frame_timeout_s": limits.frame_timeout_s,
        "persistence.flush_max_delay_s": persistence.flush_max_delay_s,
        "persistence.journal_fsync_interval_s": persistence.journal_fsync_interval_s,
        "persistence.retry_initial_s": persistence.retry_initial_s,
        "shutdown_timeout_s": config.shutdown_timeout_s,
        "metrics_interval_s": config.metrics_interval_s,
    }
    for name, value in positive.items():
        if value <= 0:
            raise ConfigError(f"{_toml_key(name)}: must be more than 0, got {value}")
    if persistence.flush_delay_s < 0 or persistence.flush_delay_s > persistence.flush_max_delay_s:
        raise ConfigError(
            "[persistence] flush_delay_s: must be between 0 and flush_max_delay_s "
            f"({persistence.flush_max_delay_s}), got {persistence.flush_delay_s}"
        )
    one_item_bytes = 2 * limits.max_entry_bytes + 3 * limits.max_key_bytes + 1024
    if limits.max_reply_bytes < one_item_bytes:
        raise ConfigError(
            "[limits] max_reply_bytes: must leave room for one entry in a reply (its msgpack "
            "form can be larger than its JSON): at least 2 * max_entry_bytes + "
            f"3 * max_key_bytes + 1024 = {one_item_bytes}"
        )
    if persistence.file_mode not in (0o600, 0o640, 0o660):
        raise ConfigError(
            "[persistence] file_mode: must be one of 0o600, 0o640, 0o660 (TOML octal), "
            f"got 0o{persistence.file_mode:o}"
        )
    if len(config.socket_path.encode()) > 107:
        raise ConfigError(f"socket_path: longer than 107 bytes: {config.socket_path}")
    tables: list[tuple[str, AgentSessionConfig]] = [("session", config.session)]
    tables += [(f"agents.{name}", agent) for name, agent in config.agents.items()]
    for table, agent_config in tables:
        if agent_config.idle_minutes < 1:
            raise ConfigError(
                f"[{table}] idle_minutes: must be at least 1, got {agent_config.idle_minutes}"
            )
    retentions: list[tuple[str, RetentionConfig | None]] = [("retention", config.retention)]
    retentions += [(f"agents.{name}.retention", a.retention) for name, a in config.agents.items()]
    for table, retention in retentions:
        if retention is None:
            continue
        if retention.prune_after_days is not None and retention.prune_after_days <= 0:
            raise ConfigError(f"[{table}] prune_after_days: must be more than 0")
        if retention.max_entries is not None and retention.max_entries < 1:
            raise ConfigError(f"[{table}] max_entries: must be at least 1")
        if retention.min_idle_minutes < 0:
            raise ConfigError(f"[{table}] min_idle_minutes: must be 0 or more")
        if retention.interval_s <= 0:
            raise ConfigError(f"[{table}] interval_s: must be more than 0")


RESTART_SECTIONS = ("state_dir", "socket_path", "store_path", "persistence", "access")
"""Settings that only take effect at start; a reload reports their changes as pending."""


def _flatten(value: Any, prefix: str = "") -> dict[str, Any]:
    """``{"a": {"b": 1}}`` → ``{"a.b": 1}`` (an empty table stays one setting)."""
    if isinstance(value, dict) and value:
        flat: dict[str, Any] = {}
        for key, item in value.items():
            flat.update(_flatten(item, f"{prefix}.{key}" if prefix else str(key)))
        return flat
    return {prefix: value}


def config_changes(old: Config, new: Config) -> tuple[list[str], list[str]]:
    """The settings that differ: (applied at run time, needing a restart), dotted names."""
    before, after = _flatten(msgspec.to_builtins(old)), _flatten(msgspec.to_builtins(new))
    names = before.keys() | after.keys()
    changed = sorted(name for name in names if before.get(name) != after.get(name))
    changed = [name for name in changed if not any(n.startswith(f"{name}.") for n in changed)]
    restart = [name for name in changed if name.split(".")[0] in RESTART_SECTIONS]
    return [name for name in changed if name not in restart], restart


def runtime_part(old: Config, new: Config) -> Config:
    """``old`` with everything a reload may change taken from ``new``."""
    return msgspec.structs.replace(
        old,
        log_level=new.log_level,
        log_format=new.log_format,
        metrics_textfile=new.metrics_textfile,
        metrics_interval_s=new.metrics_interval_s,
        shutdown_timeout_s=new.shutdown_timeout_s,
        limits=new.limits,
        session=new.session,
        retention=new.retention,
        agents=new.agents,
    )


def settings_with_origins(
    config: Config,
    *,
    file_data: Mapping[str, Any],
    file_path: str | None,
    environ: Mapping[str, str],
    state_dir_flag: str | None = None,
    socket_flag: str | None = None,
) -> list[tuple[str, Any, str]]:
    """Every effective setting as ``(dotted name, value, where it came from)``: a flag,
    an environment variable, the config file, or the built-in default."""
    from_file = _flatten(dict(file_data))
    rows: list[tuple[str, Any, str]] = []
    for name, value in sorted(_flatten(msgspec.to_builtins(config)).items()):
        origin = f"file {file_path}" if name in from_file else "default"
        if name == "state_dir":
            origin = _state_dir_origin(origin, environ, state_dir_flag)
        elif name == "socket_path":
            origin = _socket_origin(origin, environ, socket_flag)
        elif name == "store_path" and name not in from_file:
            origin = "default (<state_dir>/" + STORE_PATH_TEMPLATE + ")"
        rows.append((name, value, origin))
    return rows


def _state_dir_origin(origin: str, environ: Mapping[str, str], flag: str | None) -> str:
    if flag:
        return "flag --state-dir"
    if environ.get("SESSIOND_STATE_DIR"):
        return "env SESSIOND_STATE_DIR"
    if origin != "default":
        return origin
    if environ.get("STATE_DIRECTORY"):
        return "env STATE_DIRECTORY (systemd StateDirectory=)"
    return "default ($XDG_STATE_HOME/sessiond or ~/.local/state/sessiond)"


def _socket_origin(origin: str, environ: Mapping[str, str], flag: str | None) -> str:
    if flag:
        return "flag --socket"
    if environ.get("SESSIOND_SOCKET"):
        return "env SESSIOND_SOCKET"
    if origin != "default":
        return origin
    if environ.get("RUNTIME_DIRECTORY"):
        return "env RUNTIME_DIRECTORY (systemd RuntimeDirectory=)"
    if environ.get("XDG_RUNTIME_DIR"):
        return "env XDG_RUNTIME_DIR"
    return "default (<state_dir>/sessiond.sock)"
