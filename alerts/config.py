"""The whole configuration file: loading, validating, locating errors, printing it back.

`load_config(path)` reads YAML safely, validates it against `NewswatchConfig` (which
composes the crawler's and the alerting sections) and raises `ConfigError` whose message
names the file, line and field of every problem, e.g.

    config/newswatch.yaml:42: topics.summit.threshold: must be > 0

Secrets never live in the file: the bot token comes from `NEWSWATCH_TELEGRAM_TOKEN`
(or a file named by `NEWSWATCH_TELEGRAM_TOKEN_FILE`), see `telegram_token()`.
"""

from __future__ import annotations

import difflib
import os
import re
from dataclasses import dataclass
import importlib.util
from pathlib import Path
from typing import Any, Literal

import yaml
from pydantic import (BaseModel, ConfigDict, Field, IPvAnyNetwork, PrivateAttr, ValidationError, field_validator,
                      model_validator)

from newswatch.alerts.service_config import HttpConfig
from newswatch.alerts.match.topics import TopicConfig
from newswatch.alerts.match.watches import MAX_PER_CHAT, MAX_WATCHES
from newswatch.crawler.fetch.addresses import AddressPolicy
from newswatch.crawler.sources import CrawlerConfig, Duration, SourceConfig, StorageConfig
from newswatch.crawler.urls import redact_url

TOKEN_ENV = "NEWSWATCH_TELEGRAM_TOKEN"
TOKEN_FILE_ENV = "NEWSWATCH_TELEGRAM_TOKEN_FILE"
CONFIG_ENV = "NEWSWATCH_CONFIG"
TELEGRAM_API = "https://api.telegram.org/bot"


class AdminConfig(BaseModel):
    """One entry of `telegram.admins`: a person (a Telegram user id) who may run the admin
    commands in a private chat with the bot and, when `chats` is given, in those chats only
    (else in any chat the bot serves). A bare number is `{user: NUMBER}`. A negative bare
    number is a chat, as configs before admins were persons wrote them: it still gets the
    admin notices, but gives nobody rights."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    user: int
    chats: list[int] | None = None

    @model_validator(mode="before")
    @classmethod
    def _bare_number(cls, data: Any) -> Any:
        if isinstance(data, (int, str)) and not isinstance(data, bool):
            return {"user": data}
        return data

    @model_validator(mode="after")
    def _person(self) -> AdminConfig:
        if self.user == 0 or (self.user < 0 and self.chats is not None):
            raise ValueError(f"user must be a person's Telegram id (a positive number), got {self.user}")
        return self

    @property
    def is_chat(self) -> bool:
        """A bare chat id of the old form: notices only, no rights."""
        return self.user < 0


class TelegramConfig(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    enabled: bool | Literal["auto"] = "auto"   # auto: Telegram when a token is set, else the console
    api_url: str = TELEGRAM_API
    admins: list[AdminConfig] = Field(default_factory=list)
    group_settings: Literal["admins", "everyone"] = "admins"  # who may change a group's settings
    allowed_chats: list[int] | None = None
    allow_private_source_networks: list[IPvAnyNetwork] = Field(default_factory=list)
    overall_per_second: float = Field(default=30, gt=0)
    group_per_minute: float = Field(default=20, gt=0)
    poll_timeout: int = Field(default=30, ge=0, le=50)
    max_watches_per_chat: int = Field(default=MAX_PER_CHAT, ge=1)  # /watch rules one chat may keep
    max_watches: int = Field(default=MAX_WATCHES, ge=1)  # /watch rules of all chats together

    @field_validator("api_url")
    @classmethod
    def _api_url(cls, v: str) -> str:
        if not re.match(r"^https?://[^/\s]+", v):
            raise ValueError(f"must be an http(s) URL such as {TELEGRAM_API}, got {v!r}")
        return v.rstrip("/")

    @property
    def admin_users(self) -> dict[int, frozenset[int] | None]:
        """user id -> the chats where that person may act besides the private chat (None: any)."""
        return {a.user: None if a.chats is None else frozenset(a.chats) for a in self.admins if not a.is_chat}

    @property
    def notice_chats(self) -> list[int]:
        """Where admin notices go: each admin's private chat, and the chats listed the old way."""
        return list(dict.fromkeys(a.user for a in self.admins))

    @property
    def admin_places(self) -> set[int]:
        """Every chat id named in `admins` (private chats, chats of entries, old chat entries)."""
        return {a.user for a in self.admins} | {c for a in self.admins for c in (a.chats or ())}


class ModelConfig(BaseModel):
    """The `model:` section: how much a model trained by `newswatch train` moves the scores.

    blend: 0 keeps the rules alone, 1 trusts the model alone; a topic's score is
    (1 - blend) x rule score + blend x probability x 2 x threshold (see
    `newswatch.alerts.match.model`). Without a model file the rules score alone, whatever blend.
    path: the model file (default: beside the database, <database name>.model.npz).
    retrain_after_votes: the daemon trains the model again after this many new votes (0: never).
    """

    model_config = ConfigDict(extra="forbid", frozen=True)

    blend: float = Field(default=0.5, ge=0, le=1)
    path: str | None = None
    retrain_after_votes: int = Field(default=0, ge=0)


class NewswatchConfig(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    storage: StorageConfig = Field(default_factory=StorageConfig)
    telegram: TelegramConfig = Field(default_factory=TelegramConfig)
    crawler: CrawlerConfig = Field(default_factory=CrawlerConfig)
    sources: list[SourceConfig] = Field(default_factory=list)
    topics: dict[str, TopicConfig]
    http: HttpConfig | None = None
    model: ModelConfig = Field(default_factory=ModelConfig)
    alert_max_age: Duration = 24 * 3600  # stories published longer ago are stored, never alerted

    _base_dir: Path = PrivateAttr(default_factory=Path.cwd)
    _file: str = PrivateAttr(default="")
    _lines: dict = PrivateAttr(default_factory=dict)

    @field_validator("topics")
    @classmethod
    def _topics(cls, v: dict[str, TopicConfig]) -> dict[str, TopicConfig]:
        if not v:
            raise ValueError("at least one topic is needed")
        for name in v:
            if not re.match(r"^[a-z0-9][a-z0-9_-]{0,31}$", name):
                raise ValueError(
                    f"topic name {name!r} must be 1-32 lower-case letters, digits, '-' or '_'"
                )
        return v

    @property
    def file(self) -> str:
        return self._file

    def where(self, *path: str | int) -> str:
        """`file:line` of a key, for messages about it."""
        return f"{self._file}:{_line_for(tuple(path), self._lines)}"

    def effective_token(self, token: str | None) -> str | None:
        """The token to use: None (console mode) when `telegram.enabled` is false; an error when
        it is true and no token is set."""
        if self.telegram.enabled is False:
            return None
        if self.telegram.enabled is True and not token:
            raise ConfigError([f"{self.where('telegram', 'enabled')}: telegram.enabled: true, but no bot token is "
                               f"set: export {TOKEN_ENV}=<token from @BotFather> (or {TOKEN_FILE_ENV}=<file>)"])
        return token

    def resolve(self, path: str) -> Path:
        """A path from the config, relative to the config file's folder."""
        p = Path(path).expanduser()
        return p if p.is_absolute() else self._base_dir / p

    @property
    def database_path(self) -> Path:
        return self.resolve(self.storage.path)

    @property
    def database(self) -> str | Path:
        """Where the stores are: `storage.url` (PostgreSQL) when set, else the file at `storage.path`."""
        return self.storage.url or self.database_path

    @property
    def model_path(self) -> Path:
        """The trained model's file: `model.path`, or <database name>.model.npz beside the database."""
        if self.model.path:
            return self.resolve(self.model.path)
        database = self.database_path
        return database.with_name(f"{database.stem}.model.npz")


class ConfigError(Exception):
    """A config that cannot be used; `str()` is the message to show, one problem per line."""

    def __init__(self, problems: list[str]) -> None:
        super().__init__("\n".join(problems))
        self.problems = problems


@dataclass(frozen=True)
class _Located:
    data: Any
    lines: dict[tuple, int]


def default_config_path() -> Path | None:
    """Where `newswatch` looks when no `-c` is given: $NEWSWATCH_CONFIG, then
    ./config/newswatch.yaml, then ./newswatch.yaml; None means the built-in copy."""
    env = os.environ.get(CONFIG_ENV)
    if env:
        return Path(env)
    for candidate in (Path("config/newswatch.yaml"), Path("newswatch.yaml")):
        if candidate.is_file():
            return candidate
    return None


def load_config(path: str | Path | None = None) -> NewswatchConfig:
    """Load and validate a config file (None: the default search, then the built-in copy)."""
    if path is None:
        path = default_config_path()
    if path is None:
        return parse_config(_builtin_config_text(), "<built-in newswatch.yaml>", base_dir=Path.cwd())
    path = Path(path)
    try:
        text = path.read_text("utf-8")
    except FileNotFoundError:
        raise ConfigError([f"{path}: no such file"]) from None
    except UnicodeDecodeError as exc:
        raise ConfigError([f"{path}: not UTF-8 text ({exc.reason} at byte {exc.start})"]) from None
    except OSError as exc:
        raise ConfigError([f"{path}: cannot read: {exc.strerror}"]) from None
    return parse_config(text, str(path), base_dir=path.resolve().parent)


def _builtin_config_text() -> str:
    """The shipped newswatch.yaml, installed as the `newswatch.config` package (a namespace
    package: in an editable install its path also holds the installer's import hook, which
    `importlib.resources` cannot read, so the folders on its path are searched directly)."""
    spec = importlib.util.find_spec("newswatch.config")
    for folder in (spec.submodule_search_locations or []) if spec else []:
        candidate = Path(folder) / "newswatch.yaml"
        if candidate.is_file():
            return candidate.read_text("utf-8")
    raise ConfigError(["the built-in newswatch.yaml is not installed; give a config with -c PATH "
                       f"or ${CONFIG_ENV}"])


def parse_config(text: str, filename: str, *, base_dir: Path) -> NewswatchConfig:
    located = _load_yaml(text, filename)
    if not isinstance(located.data, dict):
        raise ConfigError([f"{filename}:1: the file must be a mapping of sections (storage, telegram, sources, topics)"])
    try:
        config = NewswatchConfig.model_validate(located.data)
    except ValidationError as exc:
        raise ConfigError(_describe(exc, located, filename)) from None
    problems = _duplicate_sources(config, located, filename)
    if problems:
        raise ConfigError(problems)
    config._base_dir = base_dir
    config._file = filename
    config._lines = located.lines
    return config


def _duplicate_sources(config: NewswatchConfig, located: _Located, filename: str) -> list[str]:
    first: dict[str, int] = {}
    problems = []
    for i, source in enumerate(config.sources):
        line = located.lines.get(("sources", i, "name"), 1)
        if source.name in first:
            problems.append(f"{filename}:{line}: sources[{i}].name: duplicate source name {source.name!r}"
                            f" (first at line {first[source.name]})")
        else:
            first[source.name] = line
    return problems


_YAML_LOADER = getattr(yaml, "CSafeLoader", yaml.SafeLoader)  # libyaml's parser when PyYAML has it


def _load_yaml(text: str, filename: str) -> _Located:
    if "\t" in text:
        for number, line in enumerate(text.splitlines(), 1):
            indent = line[: len(line) - len(line.lstrip())]
            if "\t" in indent:
                raise ConfigError([f"{filename}:{number}: a tab is used for indentation; YAML needs spaces"])
    loader = _YAML_LOADER(text)
    try:  # parsed once: the node tree gives the line numbers, the data is built from it
        node = loader.get_single_node()
        data = loader.construct_document(node) if node is not None else None
    except yaml.MarkedYAMLError as exc:
        mark = exc.problem_mark or exc.context_mark
        line = mark.line + 1 if mark else 1
        problem = exc.problem or exc.context or "invalid YAML"
        raise ConfigError([f"{filename}:{line}: YAML syntax error: {problem}"]) from None
    except yaml.YAMLError as exc:
        raise ConfigError([f"{filename}: YAML error: {exc}"]) from None
    finally:
        loader.dispose()
    lines: dict[tuple, int] = {}
    problems: list[str] = []
    if node is not None:
        _index(node, (), lines, problems, filename)
    if problems:
        raise ConfigError(problems)
    return _Located(data if data is not None else {}, lines)


def _index(node: yaml.Node, path: tuple, lines: dict[tuple, int], problems: list[str], filename: str) -> None:
    lines[path] = node.start_mark.line + 1
    if isinstance(node, yaml.MappingNode):
        seen: set[str] = set()
        for key_node, value_node in node.value:
            key = key_node.value
            if key in seen:
                dotted = _dotted(path + (key,))
                problems.append(f"{filename}:{key_node.start_mark.line + 1}: {dotted}: duplicate key")
            seen.add(key)
            lines[path + (key,)] = key_node.start_mark.line + 1
            _index(value_node, path + (key,), lines, problems, filename)
            lines[path + (key,)] = key_node.start_mark.line + 1
    elif isinstance(node, yaml.SequenceNode):
        for i, item in enumerate(node.value):
            _index(item, path + (i,), lines, problems, filename)


def _dotted(loc: tuple) -> str:
    out = ""
    for part in loc:
        if isinstance(part, int):
            out += f"[{part}]"
        else:
            out += ("." if out else "") + str(part)
    return out or "(top level)"


def _line_for(loc: tuple, lines: dict[tuple, int]) -> int:
    for end in range(len(loc), -1, -1):
        # yaml keys are strings; pydantic may report dict keys as given
        key = tuple(loc[:end])
        if key in lines:
            return lines[key]
    return 1


def _describe(exc: ValidationError, located: _Located, filename: str) -> list[str]:
    problems = []
    for error in exc.errors():
        loc = _real_path(tuple(error["loc"]), located.data)
        line = _line_for(loc, located.lines)
        problems.append(f"{filename}:{line}: {_dotted(loc)}: {_message(error, loc)}")
    return problems


def _real_path(loc: tuple, data: Any) -> tuple:
    """Drop the parts pydantic adds for unions and validators (e.g. 'list[int]'), keeping the
    keys and indexes that exist in the YAML, plus a final missing or unknown key."""
    path: list = []
    node = data
    for i, part in enumerate(loc):
        if isinstance(node, dict) and part in node:
            path.append(part)
            node = node[part]
        elif isinstance(node, list) and isinstance(part, int) and 0 <= part < len(node):
            path.append(part)
            node = node[part]
        elif i == len(loc) - 1 and isinstance(part, (str, int)) and not isinstance(node, list):
            if isinstance(node, dict) or node is None:
                path.append(part)
    return tuple(path)


def _message(error: dict, loc: tuple) -> str:
    kind = error["type"]
    ctx = error.get("ctx") or {}
    given = error.get("input")
    if kind == "missing":
        return "required, but missing"
    if kind == "extra_forbidden":
        return "unknown key" + _suggest(loc)
    if kind == "greater_than":
        return f"must be > {ctx.get('gt')}"
    if kind == "greater_than_equal":
        return f"must be >= {ctx.get('ge')}"
    if kind == "less_than_equal":
        return f"must be <= {ctx.get('le')}"
    if kind == "less_than":
        return f"must be < {ctx.get('lt')}"
    if kind in ("int_parsing", "int_type", "int_from_float"):
        return f"must be a whole number, got {given!r}"
    if kind in ("float_parsing", "float_type"):
        return f"must be a number, got {given!r}"
    if kind in ("bool_parsing", "bool_type"):
        return f"must be true or false, got {given!r}"
    if kind in ("string_type",):
        return f"must be text, got {given!r}"
    if kind in ("list_type",):
        return f"must be a list, got {type(given).__name__}"
    if kind in ("dict_type", "model_type", "model_attributes_type"):
        return f"must be a mapping of keys, got {given!r}"
    if kind == "literal_error":
        return f"must be one of {ctx.get('expected')}, got {given!r}"
    if kind == "value_error":
        return str(ctx.get("error", error["msg"]))
    return error["msg"][0].lower() + error["msg"][1:]


def _suggest(loc: tuple) -> str:
    """A "did you mean" for an unknown key, from the fields of the model at that level."""
    unknown = loc[-1] if loc else ""
    if not isinstance(unknown, str):
        return ""
    candidates = _fields_for(loc[:-1])
    close = difflib.get_close_matches(unknown, candidates, n=1, cutoff=0.6)
    if close:
        return f" (did you mean {close[0]!r}?)"
    if candidates:
        return f" (expected one of: {', '.join(sorted(candidates))})"
    return ""


def _fields_for(parent: tuple) -> list[str]:
    model: Any = NewswatchConfig
    for part in parent:
        if isinstance(part, int):
            continue
        field = getattr(model, "model_fields", {}).get(part)
        if field is None:
            # dict values (topics.<name>) keep the same model
            args = getattr(model, "__args__", None)
            if args:
                model = args[-1]
                continue
            return []
        model = _unwrap(field.annotation)
    return list(getattr(model, "model_fields", {}).keys())


def _unwrap(annotation: Any) -> Any:
    args = getattr(annotation, "__args__", None)
    if args and not hasattr(annotation, "model_fields"):
        for arg in reversed(args):
            inner = _unwrap(arg)
            if hasattr(inner, "model_fields"):
                return inner
    return annotation


def telegram_token(environ: os._Environ[str] | dict[str, str] | None = None) -> str | None:
    """The bot token from the environment, or None (console mode)."""
    env = os.environ if environ is None else environ
    token = (env.get(TOKEN_ENV) or "").strip()
    if token:
        return token
    token_file = env.get(TOKEN_FILE_ENV)
    if token_file:
        try:
            return Path(token_file).read_text("utf-8").strip() or None
        except OSError as exc:
            raise ConfigError([f"{TOKEN_FILE_ENV}={token_file}: cannot read: {exc.strerror}"]) from None
    return None


def address_policy(config: NewswatchConfig) -> AddressPolicy:
    """The address policy the config asks for (see `newswatch.crawler.fetch.addresses`)."""
    return AddressPolicy(allowed_networks=tuple(config.telegram.allow_private_source_networks),
                         restrict_config_sources=config.crawler.restrict_private_addresses)


def redacted(config: NewswatchConfig, token: str | None) -> str:
    """The effective config as YAML, with secrets hidden (for `check-config`): the token, and
    the user names and passwords of source URLs."""
    data = config.model_dump(mode="json")
    data["telegram"]["token"] = "<set, hidden>" if token else "<not set: console mode>"
    if config.storage.url:
        data["storage"]["url"] = redact_url(config.storage.url)
    else:
        del data["storage"]["url"]
        data["storage"]["resolved_path"] = str(config.database_path)
    for source in data["sources"]:
        url = source["url"]
        source["url"] = [redact_url(u) for u in url] if isinstance(url, list) else redact_url(url)
    return yaml.safe_dump(data, sort_keys=False, allow_unicode=True, width=100)
