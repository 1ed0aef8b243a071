"""The Telegram interface: command and button handlers, who may use them (`permissions`), per-chat settings, and the read views the commands show (`history`, `trend`)."""
