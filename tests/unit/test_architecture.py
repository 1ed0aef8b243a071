"""The import rules of docs/architecture.md, read from the source: every `import` and
`from … import` in every module (inside functions too), resolved to the room it names.

The rules:
- `crawler` collects and knows nothing of what is done with stories: it never imports
  `alerts` or the application layer.
- `alerts` never imports the application layer (`newswatch.cli`, `newswatch.daemon`, …).
- `crawler.parse` turns bytes into stories without I/O: no fetching, no store, no network or
  database library.
- `alerts.match` is pure: no delivery but its wording (`deliver.format`), no bot, no storage,
  no Telegram, no database.
- `alerts.deliver` never reaches into the bot.
- Only the stores (`crawler.store`, `alerts.store`), the migration runner (`crawler.migrations`),
  the PostgreSQL connection (`crawler.postgres`) and the coordination of several processes
  (`crawler.leases`, `newswatch.leadership`) use a database driver; everything else calls a store.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
FOLDERS = {"crawler": "newswatch.crawler", "alerts": "newswatch.alerts", "newswatch": "newswatch"}
APP_EXCEPT = ("newswatch.crawler", "newswatch.alerts", "newswatch.config")
# the database drivers' only users: the stores, the migration runner, the PostgreSQL connection,
# and the coordination of several processes over the database (source leases, role locks)
STORES = ("newswatch.crawler.store", "newswatch.crawler.migrations", "newswatch.crawler.postgres",
          "newswatch.alerts.store", "newswatch.crawler.leases", "newswatch.leadership")
DRIVERS = ("sqlite3", "psycopg")
IO_LIBRARIES = ("sqlite3", "aiohttp", "scrapy", "twisted", "telegram", "psycopg", "asyncpg")


def module_name(path: Path) -> str:
    relative = path.relative_to(ROOT).with_suffix("")
    parts = list(relative.parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join([FOLDERS[parts[0]], *parts[1:]]) if parts[0] != "newswatch" else ".".join(parts)


def modules() -> dict[str, Path]:
    found = {}
    for folder in FOLDERS:
        for path in sorted((ROOT / folder).rglob("*.py")):
            found[module_name(path)] = path
    return found


def imports(path: Path, name: str) -> set[str]:
    """Every module `path` imports, absolute (relative imports resolved against `name`)."""
    tree = ast.parse(path.read_text("utf-8"), str(path))
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    found: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                anchor = package.split(".")[: len(package.split(".")) - node.level + 1]
                base = ".".join([*anchor, base] if base else anchor)
            found.add(base)
            found.update(f"{base}.{alias.name}" for alias in node.names)
    return found


def is_under(module: str, prefix: str) -> bool:
    return module == prefix or module.startswith(prefix + ".")


def is_app(module: str) -> bool:
    return is_under(module, "newswatch") and not any(is_under(module, room) for room in APP_EXCEPT) \
        and module != "newswatch"


def violations(name: str, imported: set[str]) -> list[str]:
    broken = []
    for target in sorted(imported):
        if is_under(name, "newswatch.crawler") and (is_under(target, "newswatch.alerts") or is_app(target)):
            broken.append(f"collecting imports {target}")
        if is_under(name, "newswatch.alerts") and is_app(target):
            broken.append(f"alerts imports the application layer: {target}")
        if is_under(name, "newswatch.crawler.parse"):
            if any(is_under(target, room) for room in ("newswatch.crawler.fetch", "newswatch.crawler.store",
                                                       "newswatch.crawler.outcomes")) \
                    or any(is_under(target, lib) for lib in IO_LIBRARIES):
                broken.append(f"parsing does I/O through {target}")
        if is_under(name, "newswatch.alerts.match"):
            inside = is_under(target, "newswatch.alerts")
            if (inside and not any(is_under(target, room) for room in ("newswatch.alerts.match",
                                                                         "newswatch.alerts.deliver.format"))) \
                    or is_under(target, "newswatch.crawler.store") \
                    or any(is_under(target, lib) for lib in IO_LIBRARIES):
                broken.append(f"matching is not pure: imports {target}")
        if is_under(name, "newswatch.alerts.deliver") and is_under(target, "newswatch.alerts.bot"):
            broken.append(f"delivery reaches into the bot: {target}")
        if any(is_under(target, driver) for driver in DRIVERS) and name not in STORES:
            broken.append(f"the database is used outside the stores: {target}")
    return broken


def test_every_module_keeps_the_import_rules() -> None:
    found = modules()
    assert "newswatch.crawler.story" in found and "newswatch.alerts.match.matcher" in found
    broken = [f"{found[name].relative_to(ROOT)}: {problem}"
              for name in sorted(found) for problem in violations(name, imports(found[name], name))]
    assert not broken, "\n".join(broken)


@pytest.mark.parametrize("name, target, rule", [
    ("newswatch.crawler.store", "newswatch.alerts.deliver.outbox", "collecting imports"),
    ("newswatch.crawler.fetch.engine", "newswatch.daemon", "collecting imports"),
    ("newswatch.alerts.bot.core", "newswatch.metrics", "application layer"),
    ("newswatch.crawler.parse.feeds", "newswatch.crawler.store", "parsing does I/O"),
    ("newswatch.crawler.parse.feeds", "aiohttp", "parsing does I/O"),
    ("newswatch.alerts.match.matcher", "newswatch.alerts.deliver.outbox", "not pure"),
    ("newswatch.alerts.match.matcher", "sqlite3", "not pure"),
    ("newswatch.alerts.deliver.telegram", "newswatch.alerts.bot.feedback", "reaches into the bot"),
    ("newswatch.reports", "sqlite3", "outside the stores"),
    ("newswatch.alerts.subscriptions", "sqlite3", "outside the stores"),
    ("newswatch.daemon", "psycopg", "outside the stores"),
])
def test_the_rules_catch_what_they_forbid(name: str, target: str, rule: str) -> None:
    assert any(rule in problem for problem in violations(name, {target}))


@pytest.mark.parametrize("name, target", [
    ("newswatch.alerts.dispatch", "newswatch.crawler.store"),
    ("newswatch.alerts.match.evaluation", "newswatch.alerts.deliver.format"),
    ("newswatch.daemon", "newswatch.alerts.bot.core"),
    ("newswatch.crawler.parse.pool", "newswatch.crawler.parse.feeds"),
    ("newswatch.alerts.store", "sqlite3"),
    ("newswatch.storage", "newswatch.alerts.store"),
])
def test_the_rules_allow_the_flow(name: str, target: str) -> None:
    assert violations(name, {target}) == []


def test_relative_imports_are_resolved(tmp_path: Path) -> None:
    source = tmp_path / "x.py"
    source.write_text("from ..deliver import outbox\nfrom . import topics\n")
    assert {"newswatch.alerts.deliver.outbox", "newswatch.alerts.match.topics"} <= \
        imports(source, "newswatch.alerts.match.x")
