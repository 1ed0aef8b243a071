"""Delivering: the outbox (`outbox`), the one send path that drains it (`notifier`), message formatting (`format`), the Telegram connection state (`telegram`) and delivery windows (`timing`)."""
