"""The Telegram interface: command and button handlers split by family, the guards that run
before them (`guards`, on the rules in `permissions`), the one table of commands behind the menu
and /help (`commands`), per-chat settings, and the read views the commands show (`history`, `trend`)."""
