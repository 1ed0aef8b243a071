"""`newswatch run`, as `newswatch.cli` starts it, but with a scripted DNS resolver and an address
policy that takes 127.0.0.2 for a public address: how the end-to-end tests make a host name
change its answer (DNS rebinding) against the real daemon, all on 127.0.0.0/8.

    python -m tests.e2e.launch_daemon run -c CONFIG --log-level DEBUG --answers '{"name": ["127.0.0.2", "127.0.0.1"]}'
"""

from __future__ import annotations

import argparse
import asyncio
import dataclasses
import ipaddress
import json
import sys

from newswatch.cli import setup_logging
from newswatch.alerts.config import address_policy, load_config, telegram_token
from newswatch.daemon import Daemon
from newswatch.crawler.fetch.addresses import forbidden_kind
from tests.fakes.resolver import ScriptedResolver

PUBLIC_ALIAS = ipaddress.ip_address("127.0.0.2")


def loopback_alias_is_public(address) -> str | None:
    return None if address == PUBLIC_ALIAS else forbidden_kind(address)


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("command", choices=["run"])
    parser.add_argument("-c", "--config", required=True)
    parser.add_argument("--log-level", default="INFO")
    parser.add_argument("--answers", default="{}", help="JSON: host name -> addresses, one per lookup")
    args = parser.parse_args()
    token = telegram_token()
    setup_logging(args.log_level, "text", token)
    config = load_config(args.config)
    policy = dataclasses.replace(address_policy(config), classify=loopback_alias_is_public)
    daemon = Daemon(config, token=config.effective_token(token), policy=policy,
                    resolver=ScriptedResolver(json.loads(args.answers)))
    asyncio.run(daemon.run())
    return 0


if __name__ == "__main__":
    sys.exit(main())
