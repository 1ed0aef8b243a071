"""`newswatch doctor`: what would stop the daemon from working here, said in plain words.

Checks, in order: the config file (loaded by the caller), the database (opened read-only,
never created), every enabled source (one GET each with a timeout; feeds are parsed), the bot
token (Telegram's `getMe`), and the `http:` endpoint (is a daemon answering, or is the port
free?). Each check gives `ok`, `warn` (works, but worth knowing) or `FAIL`. The token never
appears in the output, nor the user names and passwords of source URLs. Sources are fetched
under the daemon's address policy (`newswatch.crawler.fetch.addresses`), the whole body read up to
`crawler.max_bytes` before it is parsed.
"""

from __future__ import annotations

import asyncio
import json
import os
import socket
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import aiohttp
import aiohttp.abc
from rich.console import Console
from rich.markup import escape

from newswatch.alerts.config import NewswatchConfig, address_policy
from newswatch.alerts.deliver.format import plural
from newswatch.crawler.fetch.addresses import AddressPolicy, AddressRefused, GuardedConnector, guarded
from newswatch.crawler.parse.feeds import parse_feed
from newswatch.crawler.sources import SourceConfig
from newswatch.crawler.store import DatabaseFileError, StorageError
from newswatch.crawler.urls import redact_url
from newswatch.storage import SchemaTooNew, open_storage

OK, WARN, FAIL = "ok", "warn", "FAIL"
DEFAULT_TIMEOUT = 10.0
PARALLEL = 8
READ_CHUNK = 1 << 16


@dataclass(frozen=True)
class Finding:
    level: str  # ok, warn, FAIL
    check: str
    message: str


def check_config(config: NewswatchConfig) -> Finding:
    enabled = sum(1 for s in config.sources if s.enabled)
    message = (f"{config.file or 'built-in config'}: {plural(len(config.sources), 'source')} ({enabled} enabled), "
               f"{plural(len(config.topics), 'topic')}")
    if not enabled:
        return Finding(WARN, "config", message + "; no enabled source, nothing will be polled")
    return Finding(OK, "config", message)


def check_postgres(url: str) -> Finding:
    """The PostgreSQL database of `storage.url`: it answers, and its schema is this release's."""
    try:
        storage = open_storage(url, read_only=True, upgrade=False, busy_timeout=5)
    except (DatabaseFileError, StorageError) as exc:
        return Finding(FAIL, "database", str(exc))
    try:
        if storage.pending and not storage.versions():  # an empty database: nothing to count yet
            return Finding(WARN, "database", f"PostgreSQL: {storage.stories.conn.where} has no newswatch tables yet; "
                           f"newswatch creates them when it first starts ({plural(len(storage.pending), 'migration')})")
        counts = f"{plural(storage.stories.count(), 'story')}, {plural(storage.alerts.pending_count(), 'alert')} waiting"
        if storage.pending:
            counts += f", its schema is upgraded when newswatch next starts: {plural(len(storage.pending), 'migration')}"
    except StorageError as exc:
        return Finding(FAIL, "database", f"PostgreSQL cannot be read: {exc}")
    finally:
        storage.close()
    return Finding(OK, "database", f"PostgreSQL: {counts}")


def check_database(path: Path) -> Finding:
    if not path.exists():
        folder = path.parent
        while not folder.exists() and folder != folder.parent:
            folder = folder.parent
        if not _writable(folder):
            return Finding(FAIL, "database", f"{path} does not exist and {folder} is not writable, so it cannot be created")
        return Finding(WARN, "database", f"{path} does not exist yet; the daemon will create it")
    try:
        storage = open_storage(path, read_only=True, upgrade=False, busy_timeout=5)
    except SchemaTooNew as exc:
        return Finding(FAIL, "database", str(exc))
    except DatabaseFileError as exc:
        return Finding(FAIL, "database", f"{path} cannot be read as a SQLite database: {exc}")
    try:
        verdict = storage.integrity()
        counts = f"{plural(storage.stories.count(), 'story')}, {plural(storage.alerts.pending_count(), 'alert')} waiting"
        if storage.pending:
            counts += (f", written by an earlier release (upgraded in place when newswatch next starts: "
                       f"{plural(len(storage.pending), 'migration')})")
    except StorageError as exc:
        return Finding(FAIL, "database", f"{path} cannot be read as a SQLite database: {exc}")
    finally:
        storage.close()
    if verdict != "ok":
        return Finding(FAIL, "database", f"{path} is damaged: {verdict}")
    if not _writable(path) or not _writable(path.parent):
        return Finding(FAIL, "database", f"{path} is readable but not writable by this user")
    return Finding(OK, "database", f"{path}: {counts}, integrity ok")


def _writable(path: Path) -> bool:
    return os.access(path, os.W_OK)


async def check_source(session: aiohttp.ClientSession, source: SourceConfig, timeout: float, max_bytes: int,
                       policy: AddressPolicy | None = None) -> list[Finding]:
    findings = []
    with guarded((policy or AddressPolicy()).guard(source)):
        for url in source.urls:
            finding = await _check_url(session, source, url, timeout, max_bytes)
            findings.append(Finding(finding.level, finding.check, redact_url(finding.message)))
    return findings


async def read_body(response: aiohttp.ClientResponse, max_bytes: int) -> bytes:
    """The whole body, or its first `max_bytes + 1` bytes when it is larger."""
    chunks, size = [], 0
    async for chunk in response.content.iter_chunked(READ_CHUNK):
        chunks.append(chunk)
        size += len(chunk)
        if size > max_bytes:
            break
    return b"".join(chunks)[: max_bytes + 1]


async def _check_url(session: aiohttp.ClientSession, source: SourceConfig, url: str, timeout: float,
                     max_bytes: int) -> Finding:
    check = f"source {source.name}"
    started = time.perf_counter()
    try:
        async with session.get(url, timeout=aiohttp.ClientTimeout(total=timeout), allow_redirects=True) as response:
            body = await read_body(response, max_bytes)
            status = response.status
            content_type = response.headers.get("Content-Type", "")
            final_url = str(response.url)
    except AddressRefused as exc:
        return Finding(FAIL, check, str(exc))
    except TimeoutError:
        return Finding(FAIL, check, f"{url}: no answer within {timeout:g}s")
    except aiohttp.ClientConnectorDNSError:
        return Finding(FAIL, check, f"{url}: the host name does not resolve (DNS)")
    except aiohttp.ClientConnectorCertificateError as exc:
        return Finding(FAIL, check, f"{url}: the TLS certificate is not valid ({exc.certificate_error})")
    except aiohttp.ClientConnectorError as exc:
        return Finding(FAIL, check, f"{url}: cannot connect: {_connect_problem(exc)}")
    except aiohttp.TooManyRedirects:
        return Finding(FAIL, check, f"{url}: too many redirects")
    except aiohttp.ClientError as exc:
        return Finding(FAIL, check, f"{url}: {type(exc).__name__}: {exc}")
    seconds = time.perf_counter() - started
    where = url if final_url == url else f"{url} (redirected to {final_url})"
    if status == 429 or status == 503:
        return Finding(WARN, check, f"{where}: HTTP {status}: the server asks us to slow down or come back later")
    if not 200 <= status < 300:
        return Finding(FAIL, check, f"{where}: HTTP {status}")
    if len(body) > max_bytes:
        return Finding(FAIL, check, f"{where}: larger than crawler.max_bytes ({max_bytes} bytes)")
    detail = f"HTTP {status} in {seconds:.2f}s, {plural(len(body), 'byte')}"
    if source.kind != "feed":
        return Finding(OK, check, f"{where}: {detail}")
    parsed = parse_feed(body, source=source.name, url=final_url, content_type=content_type)
    if not parsed.stories:
        problem = parsed.problem or "no items"
        return Finding(FAIL, check, f"{where}: {detail}, but not a usable feed: {problem}")
    message = f"{where}: {detail}, feed with {plural(len(parsed.stories), 'item')}"
    if parsed.problem:
        return Finding(WARN, check, f"{message}; parsed with a problem: {parsed.problem}")
    return Finding(OK, check, message)


def _connect_problem(exc: aiohttp.ClientConnectorError) -> str:
    error = getattr(exc, "os_error", None)
    if isinstance(error, ConnectionRefusedError):
        return "connection refused (nothing listens on that port)"
    if isinstance(error, OSError) and error.errno is not None and error.strerror:
        return error.strerror
    return str(exc)


async def check_token(session: aiohttp.ClientSession, config: NewswatchConfig, token: str | None, timeout: float) -> Finding:
    if not token:
        return Finding(WARN, "telegram", "no bot token (NEWSWATCH_TELEGRAM_TOKEN): alerts go to the console only")
    url = f"{config.telegram.api_url}{token}/getMe"
    api = config.telegram.api_url
    try:
        async with session.get(url, timeout=aiohttp.ClientTimeout(total=timeout)) as response:
            status = response.status
            text = await response.text()
    except TimeoutError:
        return Finding(FAIL, "telegram", f"the Bot API at {api} did not answer within {timeout:g}s")
    except aiohttp.ClientError as exc:
        return Finding(FAIL, "telegram", f"cannot reach the Bot API at {api}: {type(exc).__name__}: {str(exc).replace(token, '<token>')}")
    try:
        data = json.loads(text)
    except ValueError:
        data = {}
    if status == 401:
        return Finding(FAIL, "telegram", "Telegram refused the bot token (401 Unauthorized): check NEWSWATCH_TELEGRAM_TOKEN "
                                         "against what @BotFather gave you")
    if status == 404:
        return Finding(FAIL, "telegram", f"getMe was not found at {api}: the token is malformed or telegram.api_url is wrong")
    if status != 200 or not data.get("ok"):
        description = str(data.get("description") or text[:200]).replace(token, "<token>")
        return Finding(FAIL, "telegram", f"getMe failed: HTTP {status}: {description}")
    me = data.get("result") or {}
    message = f"the token works: bot @{me.get('username', '?')} ({me.get('first_name', '')})"
    if not config.telegram.admin_users:
        return Finding(WARN, "telegram", message + "; no person in telegram.admins, so nobody can run admin commands")
    chats = [str(a.user) for a in config.telegram.admins if a.is_chat]
    if chats:
        return Finding(WARN, "telegram", message + f"; telegram.admins lists chat {', '.join(chats)}: a chat gives "
                                                   "nobody admin rights (list people: {user: ID, chats: [...]})")
    return Finding(OK, "telegram", message)


async def check_http(session: aiohttp.ClientSession, config: NewswatchConfig) -> Finding | None:
    if config.http is None:
        return None
    host, port = config.http.host, config.http.port
    connect = "127.0.0.1" if host in ("0.0.0.0", "") else ("::1" if host == "::" else host)
    where = f"[{connect}]:{port}" if ":" in connect else f"{connect}:{port}"
    try:
        async with session.get(f"http://{where}/healthz", timeout=aiohttp.ClientTimeout(total=3)) as response:
            body = await response.text()
            status = response.status
    except (aiohttp.ClientError, TimeoutError):
        pass
    else:
        try:
            data = json.loads(body)
        except ValueError:
            return Finding(FAIL, "http", f"something that is not newswatch answers on {where}")
        if status == 200:
            return Finding(OK, "http", f"a daemon answers on {where}: healthy")
        problems = [c.get("problem", name) for name, c in (data.get("checks") or {}).items() if not c.get("ok")]
        return Finding(FAIL, "http", f"a daemon answers on {where} but is unhealthy: {'; '.join(problems)}")
    try:
        family = socket.AF_INET6 if ":" in host else socket.AF_INET
        with socket.socket(family, socket.SOCK_STREAM) as s:
            s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            s.bind((host, port))
    except OSError as exc:
        return Finding(FAIL, "http", f"cannot listen on {config.http.listen}: {exc.strerror or exc}")
    return Finding(WARN, "http", f"nothing answers on {where} (the daemon is not running); the port is free")


async def run_checks(config: NewswatchConfig, token: str | None, *, timeout: float = DEFAULT_TIMEOUT,
                     policy: AddressPolicy | None = None, resolver: aiohttp.abc.AbstractResolver | None = None,
                     ) -> list[Finding]:
    findings = [check_config(config), check_postgres(config.storage.url) if config.storage.url
                else check_database(config.database_path)]
    sources = [s for s in config.sources if s.enabled]
    headers = {"User-Agent": config.crawler.user_agent,
               "Accept": "application/rss+xml, application/atom+xml, application/feed+json, application/xml;q=0.9, */*;q=0.5"}
    limit = asyncio.Semaphore(PARALLEL)
    policy = policy or address_policy(config)
    async with aiohttp.ClientSession(headers=headers, connector=GuardedConnector(resolver=resolver)) as session:
        async def one(source: SourceConfig) -> list[Finding]:
            async with limit:
                return await check_source(session, source, timeout, config.crawler.max_bytes, policy)

        results = await asyncio.gather(*(one(s) for s in sources), check_token(session, config, token, timeout),
                                       check_http(session, config))
    for result in results[: len(sources)]:
        findings.extend(result)
    findings.extend(f for f in results[len(sources):] if f is not None)
    return findings


_STYLE = {OK: "green", WARN: "yellow", FAIL: "bold red"}


def render(findings: list[Finding], console: Console, token: str | None = None) -> int:
    """Print the findings; return the exit status (1 when anything failed)."""
    width = max(len(f.check) for f in findings) if findings else 0
    for f in findings:
        message = f.message.replace(token, "<token>") if token else f.message
        console.print(f"[{_STYLE[f.level]}]{f.level:<4}[/]  {escape(f.check):<{width}}  {escape(message)}",
                      highlight=False, soft_wrap=True)
    failed = sum(1 for f in findings if f.level == FAIL)
    warned = sum(1 for f in findings if f.level == WARN)
    if failed:
        console.print(f"{plural(failed, 'problem')} to fix" + (f", {plural(warned, 'warning')}." if warned else "."),
                      highlight=False)
        return 1
    console.print("Everything needed works" + (f" ({plural(warned, 'warning')} above)." if warned else "."),
                  highlight=False)
    return 0


def doctor(config: NewswatchConfig, token: str | None, out: Any, *, timeout: float = DEFAULT_TIMEOUT) -> int:
    """`newswatch doctor`: run every check, print the findings, 1 when anything failed."""
    findings = asyncio.run(run_checks(config, token, timeout=timeout))
    return render(findings, Console(file=out, highlight=False), token)
