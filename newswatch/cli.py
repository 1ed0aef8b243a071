"""The `newswatch` command: run (or its roles: worker, dispatch, bot), crawl, check-config, explain, eval, stats, export, feedback, doctor.

Logging is set up here once: human-readable lines on stderr (or JSON with --log-format
json), Scrapy's and httpx's chatter kept out, and the bot token and the credentials of any URL
masked in every record.
Alerts in console mode go to stdout.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import logging
import os
import sys
from collections.abc import Callable
from pathlib import Path

from newswatch.alerts.config import ConfigError, NewswatchConfig, load_config, redacted, telegram_token
from newswatch.alerts.deliver.format import plural
from newswatch.crawler.store import DatabaseFileError, StorageError
from newswatch.crawler.urls import redact_url

log = logging.getLogger("newswatch")

EXAMPLES = """examples:
  newswatch run                               start the daemon on ./config/newswatch.yaml
  newswatch run -c /etc/newswatch/newswatch.yaml
  newswatch worker                            the daemon's roles, each in a process of its own
  newswatch dispatch --listen 127.0.0.1:9110  (see "Running on several machines" in README.md)
  newswatch bot --listen 127.0.0.1:9111
  newswatch crawl                             one pass over all sources, then exit
  newswatch check-config -c my.yaml           validate and print the effective config
  newswatch explain -c my.yaml story.txt      why a story scores what it scores
  newswatch eval -c my.yaml labels.jsonl      precision/recall/F1 per topic
  newswatch stats                             sources' health, stories per topic per day, outbox
  newswatch export --since 7d --format csv    matched stories of the last week
  newswatch doctor                            check config, database, sources and bot token
  newswatch feedback export -o votes.jsonl    votes under alerts as labels for newswatch eval
  newswatch train -c my.yaml labels.jsonl     learn from labels and votes; write the model file
"""


class _TokenMask(logging.Filter):
    """Hides the bot token, and the user name and password of every URL, in each record."""

    def __init__(self, secrets: list[str]) -> None:
        super().__init__()
        self.secrets = [s for s in secrets if s]

    def filter(self, record: logging.LogRecord) -> bool:
        message = record.getMessage()
        masked = self._mask(message)
        if masked != message:
            record.msg, record.args = masked, None
        if record.exc_info and record.exc_info[1] is not None:
            record.exc_text = self._mask(logging.Formatter().formatException(record.exc_info))
        return True

    def _mask(self, text: str) -> str:
        for secret in self.secrets:
            text = text.replace(secret, "<token>")
        return redact_url(text) if "@" in text else text


class _JsonFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        data = {
            "time": self.formatTime(record, "%Y-%m-%dT%H:%M:%S%z"),
            "level": record.levelname.lower(),
            "logger": record.name,
            "message": record.getMessage(),
        }
        if record.exc_info:
            data["exception"] = record.exc_text or self.formatException(record.exc_info)
        return json.dumps(data, ensure_ascii=False)


def setup_logging(level: str, fmt: str, token: str | None) -> None:
    handler = logging.StreamHandler(sys.stderr)
    handler.addFilter(_TokenMask([token] if token else []))
    if fmt == "json":
        handler.setFormatter(_JsonFormatter())
    else:
        handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)-7s %(name)s: %(message)s", "%Y-%m-%d %H:%M:%S"))
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level.upper())
    for noisy in ("scrapy", "twisted", "httpx", "httpcore", "telegram", "apscheduler", "asyncio", "charset_normalizer", "trafilatura", "htmldate", "matplotlib", "PIL"):
        logging.getLogger(noisy).setLevel(logging.ERROR if noisy in ("scrapy", "twisted", "apscheduler") else logging.WARNING)
    logging.captureWarnings(True)


def _config(args: argparse.Namespace, *, delivering: bool = False) -> NewswatchConfig:
    """The config; when the command delivers alerts, also settle Telegram vs console mode."""
    config = load_config(args.config)
    if delivering:
        args.token = config.effective_token(args.token)
    return config


def _daemon(config: NewswatchConfig, token: str | None, *, stand_by: bool = False):
    """The daemon on its database, which no other newswatch may be using; a database it cannot
    use is a `DatabaseFileError`. On SQLite that is the file's `InstanceLock`, held until the
    process ends. On PostgreSQL it is the dispatcher's and the bot's advisory locks
    (`newswatch.leadership.run_leadership`), which mean the same on every machine: with
    `stand_by` (`newswatch run`) the daemon waits for them as a role process does, otherwise
    (`crawl --once`) they are taken now or the command is refused."""
    from newswatch.crawler.leases import PostgresLeases
    from newswatch.crawler.store import DatabaseFileError, InstanceLock
    from newswatch.daemon import Daemon
    from newswatch.leadership import run_leadership

    leadership = run_leadership(config)
    if leadership is None:
        lock = InstanceLock(config.database_path)
        lock.acquire()
        try:
            return Daemon(config, token=token, instance_lock=lock)
        except StorageError as exc:
            raise DatabaseFileError(f"{config.database_path}: cannot be used: {type(exc).__name__}: {exc}") from None
    if not stand_by and not leadership.try_acquire():
        leadership.release()
        raise DatabaseFileError(f"{redact_url(config.storage.url)}: another newswatch (run, dispatch or bot) is active on this "
                                "PostgreSQL database; stop it first (two would send every alert twice)")
    try:
        daemon = Daemon(config, token=token, leadership=leadership)
        if stand_by:  # its worker shares the hosts with any `newswatch worker` on the database
            daemon.leases = PostgresLeases(str(config.database))
    except StorageError as exc:
        leadership.release()
        raise DatabaseFileError(f"{redact_url(config.storage.url)}: cannot be used: {type(exc).__name__}: {exc}") from None
    return daemon


def cmd_run(args: argparse.Namespace) -> int:
    config = _config(args, delivering=True)
    daemon = _daemon(config, args.token, stand_by=True)
    return asyncio.run(daemon.run())


def cmd_role(args: argparse.Namespace) -> int:
    """One role of the daemon (worker, dispatch or bot) in this process, beside the others'
    processes on the same database; dispatch and bot stand by while another process is active."""
    from newswatch.crawler.leases import PostgresLeases
    from newswatch.daemon import Daemon
    from newswatch.leadership import WORKER, SharedDatabaseLock, leadership_for
    from newswatch.storage import is_postgres

    config = _with_listen(_config(args, delivering=True), args.listen)
    location = str(config.database)
    shared = None
    if not is_postgres(location):
        shared = SharedDatabaseLock(config.database_path)
        shared.acquire()
    leases = PostgresLeases(location) if args.command == WORKER and is_postgres(location) else None
    try:
        daemon = Daemon(config, token=args.token, roles=(args.command,), leadership=leadership_for(config, args.command),
                        leases=leases, instance_lock=shared)
    except StorageError as exc:
        raise DatabaseFileError(f"{config.database_path}: cannot be used: {type(exc).__name__}: {exc}") from None
    return asyncio.run(daemon.run())


def _with_listen(config: NewswatchConfig, listen: str | None) -> NewswatchConfig:
    """The config with `http.listen` set to `listen` (--listen), when given."""
    if not listen:
        return config
    from newswatch.alerts.service_config import HttpConfig

    try:
        http = (config.http or HttpConfig()).model_copy(update={"listen": HttpConfig(listen=listen).listen})
    except ValueError as exc:
        raise ConfigError([f"--listen {listen}: {exc}"]) from None
    return config.model_copy(update={"http": http})


def cmd_crawl(args: argparse.Namespace) -> int:
    from newswatch.progress import crawl_once

    config = _config(args, delivering=True)
    return crawl_once(_daemon(config, args.token), sys.stdout)


def cmd_stats(args: argparse.Namespace) -> int:
    from newswatch.reports import show_stats

    return show_stats(_config(args), sys.stdout, days=args.days, as_json=args.json)


def cmd_export(args: argparse.Namespace) -> int:
    from newswatch.reports import export

    config = _config(args)
    out = open(args.output, "w", encoding="utf-8", newline="") if args.output else sys.stdout
    try:
        count = export(config, out, since=args.since, fmt=args.format, topics=args.topic, with_text=args.text)
    except ValueError as exc:
        print(f"newswatch export: {exc}", file=sys.stderr)
        return 2
    finally:
        if args.output:
            out.close()
    log.info("exported %s%s", plural(count, "matched story"), f" to {args.output}" if args.output else "")
    return 0


def cmd_feedback_export(args: argparse.Namespace) -> int:
    """Write the votes given under alerts as labelled stories, as `newswatch eval` reads them."""
    from newswatch.alerts.feedback import Votes, export_labels
    from newswatch.storage import open_storage, storage_exists

    config = _config(args)
    if not storage_exists(config.database):
        print(f"newswatch feedback export: {config.database_path}: no database yet", file=sys.stderr)
        return 2
    storage = open_storage(config.database, read_only=True)
    try:
        with open(args.output, "w", encoding="utf-8", newline="") as out:
            count = export_labels(Votes(storage.alerts), out, chat_id=args.chat, topics=config.topics)
    except OSError as exc:
        print(f"newswatch feedback export: {args.output}: {exc.strerror or exc}", file=sys.stderr)
        return 2
    finally:
        storage.close()
    chat = f" of chat {args.chat}" if args.chat is not None else ""
    log.info("exported %s%s to %s", plural(count, "voted story"), chat, args.output)
    return 0


def cmd_doctor(args: argparse.Namespace) -> int:
    from newswatch.doctor import doctor

    return doctor(_config(args, delivering=True), args.token, sys.stdout, timeout=args.timeout)


def cmd_check_config(args: argparse.Namespace) -> int:
    config = _config(args, delivering=True)
    print(f"# {config.file}: OK ({plural(len(config.sources), 'source')}, {plural(len(config.topics), 'topic')})")
    print(redacted(config, args.token), end="")
    return 0


def _matcher(config: NewswatchConfig):
    """The topics' matcher, blended with the trained model when there is one and `model.blend` > 0."""
    from newswatch.alerts.match.blended import BlendedMatcher
    from newswatch.alerts.match.matcher import Matcher
    from newswatch.alerts.model_file import load_model

    blend = config.model.blend
    model = load_model(config.model_path, config.topics, missing=logging.DEBUG) if blend > 0 else None
    return BlendedMatcher(Matcher(config.topics), model, blend)


def cmd_explain(args: argparse.Namespace) -> int:
    from newswatch.alerts.match.evaluation import format_explanation

    config = _config(args)
    matcher = _matcher(config)
    title, text = _read_story(args.story, config)
    result = matcher.explain(title, text)
    if args.json:
        print(json.dumps(result, ensure_ascii=False, indent=2, default=str))
    else:
        print(format_explanation(result))
    return 0


def _read_story(source: str, config: NewswatchConfig) -> tuple[str, str]:
    """A story from a file or stdin (first line title, rest text) or from the store by URL/id."""
    if source != "-" and not Path(source).exists():
        from newswatch.storage import open_storage, storage_exists

        if storage_exists(config.database):
            storage = open_storage(config.database, read_only=True)
            try:
                stored = storage.stories.find(source)
            finally:
                storage.close()
            if stored:
                return stored.story.title, stored.story.text
        raise SystemExit(f"newswatch explain: {source}: no such file, and no stored story with that URL or id")
    try:
        data = sys.stdin.buffer.read() if source == "-" else Path(source).read_bytes()
        raw = data.decode("utf-8-sig")
    except OSError as exc:
        raise SystemExit(f"newswatch explain: {source}: cannot read: {exc.strerror or exc}") from None
    except UnicodeDecodeError as exc:
        raise SystemExit(f"newswatch explain: {source}: not UTF-8 (byte {exc.start + 1})") from None
    title, _, text = raw.strip().partition("\n")
    return title.strip(), text.strip()


def cmd_eval(args: argparse.Namespace) -> int:
    from newswatch.alerts.match.evaluation import (LabelFileError, cross_validate, evaluate, format_cv_report, format_eval_report,
                                   load_labels)

    config = _config(args)
    if args.cv and args.folds < 2:
        print("newswatch eval: --folds must be at least 2", file=sys.stderr)
        return 2
    try:
        matcher, labels = _matcher(config), load_labels(args.labels)
        if args.cv:
            result = cross_validate(matcher, labels, split=args.cv, folds=args.folds)
        else:
            result = evaluate(matcher, labels)
    except LabelFileError as exc:
        print(f"newswatch eval: {exc}", file=sys.stderr)
        return 2
    if args.json:
        print(json.dumps(result, ensure_ascii=False, indent=2))
    elif args.cv:
        print(format_cv_report(result, min_positives=args.min_positives))
    else:
        print(format_eval_report(result))
    return 0


def cmd_train(args: argparse.Namespace) -> int:
    """Train the model on the label files and every stored vote; write it; print its figures."""
    from newswatch.alerts.feedback import Votes
    from newswatch.alerts.match.evaluation import LabelFileError
    from newswatch.alerts.model_file import train, training_rows, write_model
    from newswatch.storage import open_storage, storage_exists

    config = _config(args)
    votes: list[dict] = []
    if storage_exists(config.database):
        storage = open_storage(config.database, read_only=True)
        try:
            votes = list(Votes(storage.alerts).labels(topics=config.topics))
        finally:
            storage.close()
    try:
        rows = training_rows(args.labels, votes)
    except LabelFileError as exc:
        print(f"newswatch train: {exc}", file=sys.stderr)
        return 2
    model, report = train(config.topics, rows, blend=config.model.blend, label_files=args.labels, votes=len(votes))
    print(format_training(report, config.model.blend, stories=len(rows), votes=len(votes)))
    if not model.topics:
        print("newswatch train: no topic has both positive and negative labels; no model written", file=sys.stderr)
        return 1
    write_model(config.model_path, model)
    log.info("model for %s written to %s", ", ".join(model.topics), config.model_path)
    return 0


def format_training(report: dict, blend: float, *, stories: int, votes: int) -> str:
    """Per topic: labels, and the cross-validated F1 of the rules alone, blended, model alone."""
    def f1(value: float | None) -> str:
        return f"{value:.3f}" if value is not None else "—"

    lines = [f"{plural(stories, 'labelled story')} ({votes:,} from votes); "
             f"F1 over 5 folds, blended at model.blend = {blend:g}", "",
             f"{'topic':<16}{'positives':>10}{'negatives':>10}{'rules':>8}{'blended':>9}{'model':>8}  scores"]
    for topic, fit in report.items():
        lines.append(f"{topic:<16}{fit.positives:>10}{fit.negatives:>10}{f1(fit.rules_f1):>8}"
                     f"{f1(fit.blended_f1):>9}{f1(fit.model_f1):>8}  {'blended' if fit.used else 'rules alone'}")
    lines += ["", "A topic is blended only where blending beat the rules alone on the folds; the others keep",
              "their rule scores."]
    return "\n".join(lines)


def _add_train_command(sub: argparse._SubParsersAction, common: argparse.ArgumentParser) -> None:
    p = _command(sub, common, "train", cmd_train, help="learn from labelled stories and votes; write the model",
                 epilog="examples:\n  newswatch train -c config/newswatch.yaml\n"
                        "  newswatch train -c config/newswatch.yaml ../eval/dev.jsonl votes.jsonl",
                 description="Train one logistic regression per topic on the LABELS files (as newswatch eval\n"
                             "reads them) and every vote stored in the database, print each topic's labels and\n"
                             "cross-validated F1 (rules alone, blended at model.blend, model alone), and write\n"
                             "the model file (model.path) atomically. A running daemon loads it on SIGHUP.")
    p.add_argument("labels", nargs="*", metavar="LABELS.jsonl")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="newswatch", description="Watch news sources and alert Telegram chats about matching stories.",
        epilog=EXAMPLES, formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument("-c", "--config", help="config file (default: $NEWSWATCH_CONFIG, ./config/newswatch.yaml, "
                        "./newswatch.yaml, else the built-in one)")
    common.add_argument("--log-level", default="INFO", choices=["DEBUG", "INFO", "WARNING", "ERROR"])
    common.add_argument("--log-format", default="text", choices=["text", "json"])
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for add_commands in (_add_daemon_commands, _add_topic_commands, _add_database_commands,
                         _add_feedback_commands, _add_doctor_command, _add_train_command, _add_store_commands):
        add_commands(sub, common)
    return parser


def _command(sub: argparse._SubParsersAction, common: argparse.ArgumentParser, name: str, func: Callable[..., int],
             *, raw: bool = True, **texts: str) -> argparse.ArgumentParser:
    """A subcommand that runs `func`, with the common options; `texts` are its help, description
    and epilog, printed as written when `raw` (else the description is wrapped)."""
    formatter = argparse.RawDescriptionHelpFormatter if raw else argparse.HelpFormatter
    command = sub.add_parser(name, parents=[common], formatter_class=formatter, **texts)
    command.set_defaults(func=func)
    return command


def _add_daemon_commands(sub: argparse._SubParsersAction, common: argparse.ArgumentParser) -> None:
    """run and crawl: the daemon, for good or for one pass."""
    _command(sub, common, "run", cmd_run, raw=False, help="run the daemon",
             epilog="example: newswatch run -c config/newswatch.yaml",
             description="Poll every source at its interval, match new stories and deliver alerts until stopped (SIGTERM/SIGINT).")
    roles = {
        "worker": ("schedule and fetch the due sources, store new stories",
                   "Poll every source at its interval and store new stories. On SQLite one worker runs at a time\n"
                   "(another stands by); on PostgreSQL any number share the sources."),
        "dispatch": ("match new stories, cluster them and queue alerts",
                     "Match the stored stories against the topics and watches and queue the alerts. One\n"
                     "dispatcher is active at a time; another started on the same database stands by and\n"
                     "takes over when the active one stops or dies."),
        "bot": ("answer Telegram commands and deliver the queued alerts",
                "Run the Telegram bot and deliver the alerts in the outbox (or print them, without a\n"
                "token). One bot is active at a time; another stands by and takes over when it dies."),
    }
    for name, (help_text, description) in roles.items():
        p = _command(sub, common, name, cmd_role, help=help_text, description=description,
                     epilog=f"example: newswatch {name} -c config/newswatch.yaml --listen 127.0.0.1:9109")
        p.add_argument("--listen", metavar="HOST:PORT", help="serve /healthz and /metrics here (instead of "
                                                             "http.listen: several processes on one machine)")
    p = _command(sub, common, "crawl", cmd_crawl, help="one pass over all sources, then exit",
                 epilog="examples:\n  newswatch crawl\n  newswatch crawl -c /etc/newswatch/newswatch.yaml > crawl.log",
                 description="Fetch every due source once, store, match, deliver, print a summary.\n"
                             "On a terminal: a progress bar and tables; otherwise one line per source.\n"
                             "Exits 1 when every source failed.")
    p.add_argument("--once", action="store_true", help="one pass, then exit (what crawl always does; accepted for "
                                                       "scripts that pass it)")


def _add_topic_commands(sub: argparse._SubParsersAction, common: argparse.ArgumentParser) -> None:
    """check-config, explain and eval: the config and how its topics score stories."""
    _command(sub, common, "check-config", cmd_check_config, raw=False,
             help="validate the config and print it with secrets hidden",
             epilog="example: newswatch check-config -c config/newswatch.yaml")
    p = _command(sub, common, "explain", cmd_explain, help="show how a story scores against each topic",
                 epilog="examples:\n  newswatch explain story.txt\n  echo 'Title\\nBody' | newswatch explain -\n"
                        "  newswatch explain https://example.com/stored-story-url --json",
                 description="STORY is a text file (first line title, the rest body), '-' for stdin, or the URL or id of a stored story.")
    p.add_argument("story", nargs="?", default="-", metavar="STORY")
    p.add_argument("--json", action="store_true", help="machine-readable output")
    p = _command(sub, common, "eval", cmd_eval, help="precision/recall/F1 of the topics on labelled stories",
                 epilog="examples:\n  newswatch eval -c config/newswatch.yaml labels.jsonl --json\n"
                        "  newswatch eval labels.jsonl --cv origin --min-positives 3\n"
                        "  newswatch eval labels.jsonl --cv time --folds 5",
                 description="LABELS is JSONL: title, text, optional unsure, and a 0/1 field per topic.\n"
                             "--cv reports each part apart, beside keyword baselines: each language (lang,\n"
                             "or the script), and each source held out (origin, by outlet or dataset) or\n"
                             "each time slice (published, oldest first).")
    p.add_argument("labels", metavar="LABELS.jsonl")
    p.add_argument("--cv", choices=["origin", "time"], help="report per language and per held-out part")
    p.add_argument("--folds", type=int, default=4, help="time slices for --cv time (default 4)")
    p.add_argument("--min-positives", type=int, default=0, metavar="N",
                   help="with --cv, pool the held-out parts with fewer than N positives of a topic")
    p.add_argument("--json", action="store_true", help="machine-readable output")


def _add_database_commands(sub: argparse._SubParsersAction, common: argparse.ArgumentParser) -> None:
    """stats and export: reading what the daemon stored."""
    p = _command(sub, common, "stats", cmd_stats, help="sources' health, stories per topic per day, outbox state",
                 epilog="examples:\n  newswatch stats\n  newswatch stats --days 14\n  newswatch stats --json | jq .outbox",
                 description="Read the database (safe while the daemon runs) and show each source's health,\n"
                             "the stories stored and matched per topic per day (UTC), and the alert outbox.")
    p.add_argument("--days", type=int, default=7, choices=range(1, 91), metavar="N", help="days to show (default 7)")
    p.add_argument("--json", action="store_true", help="machine-readable output")
    p = _command(sub, common, "export", cmd_export, help="export matched stories as JSON lines or CSV",
                 epilog="examples:\n  newswatch export --since 7d > week.jsonl\n"
                        "  newswatch export --since 2026-03-01 --format csv -o march.csv\n"
                        "  newswatch export --since 24h --topic sanctions --text",
                 description="Write every stored story that passed a topic since --since, oldest first: one JSON\n"
                             "object per line (id, matched_at, published, fetched, source, title, url, topics\n"
                             "with scores, terms), or CSV with topics as summit:8.0;sanctions:7.5.")
    p.add_argument("--since", default="7d", help="a duration back from now (7d, 12h, 90m) or a date (2026-03-01); default 7d")
    p.add_argument("--format", default="jsonl", choices=["jsonl", "csv"], help="output format (default jsonl)")
    p.add_argument("--topic", action="append", default=[], metavar="TOPIC", help="only this topic (repeatable)")
    p.add_argument("--text", action="store_true", help="include each story's text")
    p.add_argument("-o", "--output", metavar="FILE", help="write to FILE instead of stdout")


def _add_feedback_commands(sub: argparse._SubParsersAction, common: argparse.ArgumentParser) -> None:
    """feedback export: the votes under alerts, as labels for eval."""
    p = sub.add_parser("feedback", help="the votes given under alerts in Telegram",
                       description="Work with the 👍/👎 votes chats gave under alerts.")
    actions = p.add_subparsers(dest="action", required=True, metavar="ACTION")
    p = _command(actions, common, "export", cmd_feedback_export,
                 help="write the votes as labelled stories for newswatch eval",
                 epilog="examples:\n  newswatch feedback export -o votes.jsonl && newswatch eval votes.jsonl\n"
                        "  newswatch feedback export --chat -1001234567 -o desk.jsonl",
                 description="One JSON object per voted story (id, title, text, lang, ...) with a 0/1 field\n"
                             "per topic the alert carried: 👍 labels them 1, 👎 labels them 0. When several\n"
                             "people voted, the majority decides each topic; a tie leaves it out.")
    p.add_argument("--chat", type=int, metavar="ID", help="only this chat's votes (default: every chat's)")
    p.add_argument("-o", "--output", required=True, metavar="FILE", help="the labels file to write")


def _add_store_commands(sub: argparse._SubParsersAction, common: argparse.ArgumentParser) -> None:
    """store copy: the whole database, from SQLite to PostgreSQL or back."""
    p = sub.add_parser("store", help="the database itself", description="Work with the database as a whole.")
    actions = p.add_subparsers(dest="action", required=True, metavar="ACTION")
    p = _command(actions, common, "copy", cmd_store_copy, help="copy every table into another database",
                 epilog="examples:\n  newswatch store copy --from data/newswatch.db --to postgresql://newswatch@db/newswatch\n"
                        "  newswatch store copy --from postgresql://newswatch@db/newswatch --to back.db",
                 description="Copy every table, ids included, from one database (an SQLite file or a\n"
                             "postgresql:// URL) into another, whose schema is made first. A target that\n"
                             "holds rows is refused unless --force, which replaces them. Stop the daemon first.")
    p.add_argument("--from", dest="source", required=True, metavar="URL_OR_PATH", help="the database to read")
    p.add_argument("--to", dest="target", required=True, metavar="URL_OR_PATH", help="the database to write")
    p.add_argument("--force", action="store_true", help="replace the rows the target holds")


def _add_doctor_command(sub: argparse._SubParsersAction, common: argparse.ArgumentParser) -> None:
    p = _command(sub, common, "doctor", cmd_doctor,
                 help="check config, database, sources and bot token; say what is wrong",
                 epilog="examples:\n  newswatch doctor\n  newswatch doctor -c /etc/newswatch/newswatch.yaml --timeout 5",
                 description="Check the config, the database, that every enabled source answers (one GET each),\n"
                             "the bot token (Telegram getMe) and the http endpoint.\n"
                             "Exits 1 when something must be fixed.")
    p.add_argument("--timeout", type=float, default=10.0, metavar="SECONDS", help="per request (default 10)")


def cmd_store_copy(args: argparse.Namespace) -> int:
    from newswatch.store_copy import show_copy

    return show_copy(args.source, args.target, sys.stdout, force=args.force)


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        args.token = telegram_token()
    except ConfigError as exc:
        print(f"newswatch: {exc}", file=sys.stderr)
        return 2
    setup_logging(args.log_level, args.log_format, args.token)
    try:
        return args.func(args)
    except ConfigError as exc:
        print(f"newswatch: the config has {plural(len(exc.problems), 'problem')}:", file=sys.stderr)
        for problem in exc.problems:
            print(f"  {problem}", file=sys.stderr)
        return 2
    except DatabaseFileError as exc:
        print(f"newswatch: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        return 130
    except BrokenPipeError:  # the reader left early (`newswatch export | head`): not an error
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())  # no second one at exit
        return 141


if __name__ == "__main__":
    sys.exit(main())
