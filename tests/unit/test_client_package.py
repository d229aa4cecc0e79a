"""Unit tests for the sessiond_client package surface: ``__all__`` and its dependencies.

The package's sources are parsed with :mod:`ast`; one test imports the client in a
subprocess to see which modules it pulls in.
DESIGN.md §1: ``sessiond`` imports ``sessiond_client``, never the reverse, and the client
depends on msgspec alone.
"""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

import sessiond_client

PACKAGE_DIR = Path(sessiond_client.__file__).parent
INIT_SOURCE = PACKAGE_DIR / "__init__.py"
ALLOWED_THIRD_PARTY = {"msgspec"}
REDIS_EXTRA = {"redis"}
"""The optional ``redis`` extra, imported (lazily) by the Redis backend's subpackage only."""
REDIS_BACKEND_DIR = PACKAGE_DIR / "redis_backend"
PACKAGE = "sessiond_client"


def client_sources() -> list[Path]:
    sources = sorted(PACKAGE_DIR.rglob("*.py"))
    assert INIT_SOURCE in sources
    return sources


def imported_top_level_modules(path: Path) -> set[str]:
    """Top-level names of every absolute import in a file (relative ones stay inside)."""
    tree = ast.parse(path.read_text(encoding="utf-8"), filename=str(path))
    modules: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            modules.update(alias.name.split(".")[0] for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            modules.add(node.module.split(".")[0])
    return modules


def names_bound_by_init() -> set[str]:
    """Public names the package's ``__init__`` takes from its submodules or defines.

    Imports under ``if TYPE_CHECKING:`` count (the module's ``__getattr__`` provides them
    lazily); helpers imported from outside the package (``typing``...) do not.
    """
    tree = ast.parse(INIT_SOURCE.read_text(encoding="utf-8"))
    names: set[str] = set()
    statements = list(tree.body)
    while statements:
        node = statements.pop(0)
        if isinstance(node, ast.If):
            statements.extend(node.body)
        elif isinstance(node, ast.ImportFrom) and (node.module or "").startswith(PACKAGE):
            names.update(alias.asname or alias.name for alias in node.names)
        elif isinstance(node, ast.ClassDef | ast.FunctionDef | ast.AsyncFunctionDef):
            names.add(node.name)
        elif isinstance(node, ast.Assign):
            names.update(t.id for t in node.targets if isinstance(t, ast.Name))
        elif isinstance(node, ast.AnnAssign) and isinstance(node.target, ast.Name):
            names.add(node.target.id)
    return {name for name in names if not name.startswith("_")}


def test_all_lists_exactly_the_public_names() -> None:
    assert sorted(sessiond_client.__all__) == sorted(set(sessiond_client.__all__)), "duplicates"
    assert set(sessiond_client.__all__) == names_bound_by_init()


def test_every_name_in_all_resolves() -> None:
    for name in sessiond_client.__all__:
        assert getattr(sessiond_client, name) is not None, name


def test_a_missing_attribute_is_still_an_attribute_error() -> None:
    assert not hasattr(sessiond_client, "NoSuchThing")


def test_the_documented_entry_points_are_exported() -> None:
    # DESIGN.md §8: both clients, typed results, the error tree.
    for name in (
        "AsyncClient",
        "Client",
        "SessionEntry",
        "Session",
        "Resolution",
        "SessiondError",
        "ServerError",
        "TransportError",
        "ProtocolError",
    ):
        assert name in sessiond_client.__all__


def test_the_client_never_imports_the_daemon_package() -> None:
    offenders = {
        str(path.relative_to(PACKAGE_DIR)): "sessiond"
        for path in client_sources()
        if "sessiond" in imported_top_level_modules(path)
    }
    assert offenders == {}


def test_the_client_depends_on_msgspec_and_the_standard_library_only() -> None:
    allowed = set(sys.stdlib_module_names) | ALLOWED_THIRD_PARTY | {"sessiond_client"}
    foreign = {
        str(path.relative_to(PACKAGE_DIR)): sorted(
            imported_top_level_modules(path)
            - allowed
            - (REDIS_EXTRA if path.is_relative_to(REDIS_BACKEND_DIR) else set())
        )
        for path in client_sources()
    }
    assert {name: mods for name, mods in foreign.items() if mods} == {}
    assert any(
        "redis" in imported_top_level_modules(path) for path in REDIS_BACKEND_DIR.glob("*.py")
    ), "the scanner must see the Redis backend's (lazy) import of redis-py"


def test_the_socket_client_never_imports_redis_py() -> None:
    """A bot on the daemon's socket needs msgspec alone: ``Client``, ``AsyncClient`` and
    the pure modules import redis-py only when a Redis target is used."""
    code = (
        "import sys\n"
        "from sessiond_client import AsyncClient, Client\n"
        "import sessiond_client.keys, sessiond_client.resolve, sessiond_client.targets\n"
        "Client('/nonexistent/sessiond.sock').close()\n"
        "assert 'redis' not in sys.modules, sorted(m for m in sys.modules if 'redis' in m)\n"
        "Client('redis://127.0.0.1:1/0').close()\n"
        "assert 'redis' in sys.modules\n"
    )
    result = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=False
    )
    assert result.returncode == 0, result.stderr


def test_the_import_scanner_sees_what_it_must(tmp_path: Path) -> None:
    # Guard against a scanner that finds nothing: it must catch the forbidden shapes.
    source = tmp_path / "probe.py"
    source.write_text(
        "import sessiond\n"
        "import sessiond.store as store\n"
        "from sessiond.entries import encode_entry\n"
        "from . import sibling\n"
        "def f():\n"
        "    import json5\n",
        encoding="utf-8",
    )
    assert imported_top_level_modules(source) == {"sessiond", "json5"}


def test_sync_and_async_clients_offer_the_same_operations() -> None:
    """The two shells repeat each operation's signature on purpose (explicit, typed public
    API); this keeps them from drifting: same names, same parameters, same defaults."""
    import inspect

    from sessiond_client import AsyncClient, Client

    def operations(cls: type) -> dict[str, inspect.Signature]:
        return {
            name: inspect.signature(member)
            for name, member in vars(cls).items()
            if callable(member) and not name.startswith("_") and name not in {"close", "aclose"}
        }

    sync_ops, async_ops = operations(Client), operations(AsyncClient)
    assert set(sync_ops) == set(async_ops)
    for name, signature in sync_ops.items():
        sync_params = [(p.name, p.kind, p.default) for p in signature.parameters.values()]
        async_params = [(p.name, p.kind, p.default) for p in async_ops[name].parameters.values()]
        assert sync_params == async_params, name
        assert inspect.iscoroutinefunction(getattr(AsyncClient, name)), name
