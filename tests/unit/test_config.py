"""Config loading: valid files load, and every kind of mistake names file, line and field."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from newswatch.alerts.config import ConfigError, load_config, parse_config, redacted, telegram_token
from newswatch.crawler.sources import parse_duration

ROOT = Path(__file__).resolve().parents[2]

GOOD = """\
storage:
  path: data/nw.db
telegram:
  admins: [42]
sources:
  - name: example
    url: https://example.com/feed.xml
    kind: feed
    interval: 5m
  - name: other
    url: http://example.org/rss
    interval: 90
topics:
  summit:
    description: Summits.
    threshold: 3
    groups:
      meeting:
        weight: 3
        terms: [summit]
"""


def _problems(text: str) -> list[str]:
    with pytest.raises(ConfigError) as info:
        parse_config(text, "cfg.yaml", base_dir=Path("/tmp"))
    return info.value.problems


def test_good_config_loads_and_resolves_paths(tmp_path: Path) -> None:
    path = tmp_path / "newswatch.yaml"
    path.write_text(GOOD)
    config = load_config(path)
    assert [s.name for s in config.sources] == ["example", "other"]
    assert [s.interval for s in config.sources] == [300, 90]
    assert config.telegram.api_url == "https://api.telegram.org/bot"
    assert config.database_path == tmp_path / "data" / "nw.db"


def test_admins_are_people_with_optional_chats_and_old_configs_still_load() -> None:
    config = parse_config(GOOD.replace("admins: [42]", "admins: [42, -1001234, {user: 7, chats: [-1005, -1006]}]"),
                          "cfg.yaml", base_dir=Path("/tmp"))
    telegram = config.telegram
    assert telegram.admin_users == {42: None, 7: frozenset({-1005, -1006})}
    assert telegram.notice_chats == [42, -1001234, 7]   # a chat listed the old way still gets the notices
    assert telegram.admin_places == {42, 7, -1001234, -1005, -1006}
    assert telegram.group_settings == "admins"
    everyone = parse_config(GOOD.replace("admins: [42]", "admins: [42]\n  group_settings: everyone"), "c.yaml",
                            base_dir=Path("/tmp"))
    assert everyone.telegram.group_settings == "everyone"


def test_shipped_config_is_valid() -> None:
    config = load_config(ROOT / "config" / "newswatch.yaml")
    assert {"summit", "sanctions", "north-korea"} <= set(config.topics)
    assert len(config.sources) >= 10
    assert all(s.url.startswith(("http://", "https://")) for s in config.sources)


@pytest.mark.parametrize(
    ("mutation", "expected"),
    [
        (("threshold: 3", "threshold: 0"), "cfg.yaml:16: topics.summit.threshold: must be > 0"),
        (("threshold: 3", "threshold: high"), "cfg.yaml:16: topics.summit.threshold: must be a number"),
        (("interval: 5m", "interval: 5 minutes"), "cfg.yaml:9: sources[0].interval: must be a duration"),
        (("interval: 5m", "interval: -3"), "cfg.yaml:9: sources[0].interval: must be a positive duration"),
        (("url: https://example.com/feed.xml", "url: ftp://example.com/feed.xml"), "cfg.yaml:7: sources[0].url: must be an absolute http"),
        (("url: https://example.com/feed.xml", "url: not a url"), "cfg.yaml:7: sources[0].url:"),
        (("kind: feed", "kind: podcast"), "cfg.yaml:8: sources[0].kind: must be one of"),
        (("    interval: 5m", "    intervall: 5m"), "cfg.yaml:9: sources[0].intervall: unknown key (did you mean 'interval'?)"),
        (("telegram:\n  admins: [42]", "telegram:\n  admins: [alice]"), "cfg.yaml:4: telegram.admins[0]: must be a whole number"),
        (("telegram:\n  admins: [42]", "telegram:\n  admin: [42]"), "cfg.yaml:4: telegram.admin: unknown key (did you mean 'admins'?)"),
        (("  - name: other", "  - name: example"), "cfg.yaml:10: sources[1].name: duplicate source name 'example' (first at line 6)"),
        (("  - name: other", "  - name: 'bad name!'"), "cfg.yaml:10: sources[1].name: must be 1-64"),
        (("terms: [summit]", "terms: ['re:(unclosed']"), "cfg.yaml:20: topics.summit.groups.meeting.terms[0]: regular expression"),
        (("terms: [summit]", "terms: [summit, 'x(a|b)(c|d)(e|f)(g|h)(i|j)(k|l)(m|n)(o|p)(q|r)(s|t)']"),
         "cfg.yaml:20: topics.summit.groups.meeting.terms[1]: term 'x(a|b)(c|d)(e|f)(g|h)(i|j)(k|l)(m|n)(o|p)(q|r)(s|t)' "
         "stands for 59,049 forms (each (...) multiplies them); at most 256 are allowed"),
        (("        terms: [summit]", "        terms: [summit]\n    ignore: ['*(a|b)(c|d)(e|f)(g|h)(i|j)(k|l)xyz']"),
         "cfg.yaml:21: topics.summit.ignore[0]: term '*(a|b)(c|d)(e|f)(g|h)(i|j)(k|l)xyz' stands for 729 forms"),
        (("telegram:\n  admins: [42]", "telegram:\n  admins: [42]\n  max_watches_per_chat: 0"),
         "cfg.yaml:5: telegram.max_watches_per_chat: must be >= 1"),
        (("storage:\n  path: data/nw.db", "storage:\n  path: data/nw.db\n  pathh: x"), "cfg.yaml:3: storage.pathh: unknown key (did you mean 'path'?)"),
        (("topics:", "topicz:"), "cfg.yaml:13: topicz: unknown key (did you mean 'topics'?)"),
        (("admins: [42]", "admins: [{user: 42, chatz: [-100]}]"), "cfg.yaml:4: telegram.admins[0].chatz: unknown key (did you mean 'chats'?)"),
        (("admins: [42]", "admins: [{user: 42, chats: [nope]}]"), "cfg.yaml:4: telegram.admins[0].chats[0]: must be a whole number"),
        (("admins: [42]", "admins: [{chats: [-100]}]"), "cfg.yaml:4: telegram.admins[0].user: required, but missing"),
        (("admins: [42]", "admins: [{user: -5, chats: [-100]}]"), "cfg.yaml:4: telegram.admins[0]: user must be a person's"),
        (("admins: [42]", "admins: [42]\n  group_settings: all"), "cfg.yaml:5: telegram.group_settings: must be one of"),
    ],
)
def test_bad_config_names_file_line_and_field(mutation: tuple[str, str], expected: str) -> None:
    old, new = mutation
    assert old in GOOD
    problems = _problems(GOOD.replace(old, new, 1))
    assert any(p.startswith(expected) for p in problems), problems


def test_missing_required_field_is_named() -> None:
    problems = _problems(GOOD.replace("    url: http://example.org/rss\n", ""))
    assert any(p.startswith("cfg.yaml:10: sources[1].url: required, but missing") for p in problems), problems


def test_yaml_syntax_error_has_line() -> None:
    problems = _problems(GOOD.replace("admins: [42]", "admins: [42"))
    assert problems[0].startswith("cfg.yaml:") and "YAML syntax error" in problems[0]


def test_tab_indentation_is_refused_with_line() -> None:
    problems = _problems(GOOD.replace("  path: data/nw.db", "\tpath: data/nw.db"))
    assert problems == ["cfg.yaml:2: a tab is used for indentation; YAML needs spaces"]


def test_duplicate_key_is_refused() -> None:
    problems = _problems(GOOD.replace("  admins: [42]", "  admins: [42]\n  admins: [43]"))
    assert problems == ["cfg.yaml:5: telegram.admins: duplicate key"]


def test_python_tags_are_not_executed() -> None:
    problems = _problems(GOOD + "extra: !!python/object/apply:os.system ['echo pwned']\n")
    assert "YAML syntax error" in problems[0] or "could not determine a constructor" in problems[0]


@pytest.mark.parametrize(("given", "seconds"), [(300, 300), ("300", 300), ("90s", 90), ("5m", 300), ("1h", 3600), ("1h30m", 5400), ("2d", 172800)])
def test_durations(given: object, seconds: int) -> None:
    assert parse_duration(given) == seconds


@pytest.mark.parametrize("given", ["0", 0, "-1", "5 minutes", "m", True, None, 1.5])
def test_bad_durations(given: object) -> None:
    with pytest.raises(ValueError):
        parse_duration(given)


def test_token_from_env_and_file(tmp_path: Path) -> None:
    assert telegram_token({}) is None
    assert telegram_token({"NEWSWATCH_TELEGRAM_TOKEN": " 123:abc "}) == "123:abc"
    secret = tmp_path / "token"
    secret.write_text("456:def\n")
    assert telegram_token({"NEWSWATCH_TELEGRAM_TOKEN_FILE": str(secret)}) == "456:def"


def test_redacted_hides_token(tmp_path: Path) -> None:
    config = parse_config(GOOD, "cfg.yaml", base_dir=tmp_path)
    text = redacted(config, "123456:SECRET-TOKEN")
    assert "SECRET-TOKEN" not in text and "<set, hidden>" in text


def test_check_config_cli_reports_wrong_type(tmp_path: Path) -> None:
    path = tmp_path / "bad.yaml"
    path.write_text(GOOD.replace("threshold: 3", "threshold: [1, 2]"))
    proc = subprocess.run([sys.executable, "-m", "newswatch.cli", "check-config", "-c", str(path)],
                          capture_output=True, text=True, cwd=ROOT, timeout=60)
    assert proc.returncode == 2
    assert f"{path}:16: topics.summit.threshold: must be a number" in proc.stderr
    assert "Traceback" not in proc.stderr


def test_telegram_enabled_without_token_is_refused_with_line(tmp_path: Path) -> None:
    path = tmp_path / "tg.yaml"
    path.write_text(GOOD.replace("telegram:\n  admins: [42]", "telegram:\n  admins: [42]\n  enabled: true"))
    env = {"PATH": "/usr/bin:/bin"}
    proc = subprocess.run([sys.executable, "-m", "newswatch.cli", "check-config", "-c", str(path)],
                          capture_output=True, text=True, cwd=ROOT, timeout=60, env=env)
    assert proc.returncode == 2
    assert f"{path}:5: telegram.enabled: true, but no bot token is set" in proc.stderr
    config = load_config(path)
    assert config.effective_token("1:x") == "1:x"
    off = parse_config(GOOD.replace("admins: [42]", "admins: [42]\n  enabled: false"), "c.yaml", base_dir=tmp_path)
    assert off.effective_token("1:x") is None


def test_readme_config_example_is_valid(tmp_path: Path) -> None:
    readme = (ROOT / "README.md").read_text("utf-8")
    block = readme.split("## Configuration", 1)[1].split("```yaml\n", 1)[1].split("```", 1)[0]
    config = parse_config(block, "README.md", base_dir=tmp_path)
    assert {s.kind for s in config.sources} == {"feed", "site", "sitemap"}


def test_built_in_config_is_found_from_any_folder(tmp_path: Path) -> None:
    """Without -c, run from another folder, the copy shipped as `newswatch.config` is used."""
    env = {"PATH": "/usr/bin:/bin", "PYTHONPATH": str(ROOT)}
    proc = subprocess.run([sys.executable, "-m", "newswatch.cli", "check-config"],
                          capture_output=True, text=True, cwd=tmp_path, timeout=60, env=env)
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert proc.stdout.startswith("# <built-in newswatch.yaml>: OK (")
    assert "Traceback" not in proc.stderr
