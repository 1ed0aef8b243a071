"""A fake Telegram Bot API server for tests.

``FakeBotAPI`` answers ``/bot<token>/<method>`` (and file downloads under
``/file/bot<token>/<path>``) on 127.0.0.1, from its own thread and event loop, so plain
synchronous tests, asyncio code and daemons running in subprocesses can all aim the real
python-telegram-bot stack at it::

    with FakeBotAPI() as fake:
        app = (ApplicationBuilder().token(fake.token)
               .base_url(fake.api_base).base_file_url(fake.file_base).build())

What it reproduces from Telegram
  * Responses shaped like Telegram's: ``{"ok": true, "result": ...}`` or
    ``{"ok": false, "error_code": N, "description": "...", "parameters": {...}}``;
    method names are case-insensitive; GET/POST with query, form-encoded, JSON or
    multipart bodies (``attach://`` references included).
  * Token checks: a malformed token gets 404 "Not Found", a well-formed wrong one
    401 "Unauthorized"; unknown methods 404.
  * Telegram's HTML parse mode, ported from TDLib's ``parse_html``: allowed tags only,
    the same error texts (``Bad Request: can't parse entities: ...`` with UTF-8 byte
    offsets), entities measured in UTF-16 code units, surrounding whitespace trimmed,
    4,096 units per text and 1,024 per caption. Unlike Telegram, which keeps a stray
    ``&`` literally, a ``&`` that starts no recognised entity is rejected unless the
    server is built with ``strict_entities=False``: the Bot API documentation requires
    every such ``&`` to be escaped. Markdown modes are accepted without validation.
  * Hashtag, URL, mention and bot-command entities detected in texts the way clients
    see them (``bot_command`` is what ``CommandHandler`` looks for).
  * Long polling: ``getUpdates`` honours ``offset`` (confirmed updates are dropped),
    ``limit``, ``timeout`` and ``allowed_updates`` (remembered between calls); a second
    poller terminates the first with 409 Conflict; a set webhook makes polling a 409.
  * Chats: private, group, supergroup (forum topics), channel; blocked or kicked bots
    get 403, upgraded groups 400 with ``migrate_to_chat_id``.
  * Members: ``getChatMember`` answers each user's status in a chat as set with
    ``set_member`` (creator, administrator, member, restricted, left, kicked; anyone not
    set is a member), shaped like Telegram's ChatMemberOwner, ChatMemberAdministrator and
    so on. Messages can be sent by an anonymous group administrator (``sender_chat`` is
    the group, ``from`` is @GroupAnonymousBot) or on behalf of a channel (@Channel_Bot).

Fault injection, all thread-safe and switchable while requests are in flight:
``fail_next``, ``block_chat``, ``migrate_chat``, ``set_down``, ``set_hang``, ``flood``.

The token never appears in a log line, a repr, a recorded call or an error text; the
server runs with aiohttp's access log off because request paths carry the token.
"""

from __future__ import annotations

import asyncio
import collections
import copy
import inspect
import json
import math
import re
import secrets
import string
import threading
import time
import unicodedata
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Any

from aiohttp import web

__all__ = [
    "DEFAULT_ALLOWED_UPDATES",
    "EntityParseError",
    "FakeBotAPI",
    "find_auto_entities",
    "parse_html",
    "utf16_len",
]

MAX_TEXT_LENGTH = 4096
MAX_CAPTION_LENGTH = 1024
MAX_CALLBACK_DATA_BYTES = 64
MAX_PHOTO_BYTES = 10 * 1024 * 1024
MAX_UPLOAD_BYTES = 50 * 1024 * 1024
MAX_POLL_TIMEOUT = 50.0
CALLBACK_QUERY_TTL = 15 * 60

DEFAULT_USER_ID = 10001
DEFAULT_BOT_ID = 7123456789
ANONYMOUS_ADMIN_ID = 1087968824   # @GroupAnonymousBot, the `from` of an anonymous admin's message
CHANNEL_BOT_ID = 136817688        # @Channel_Bot, the `from` of a message sent on behalf of a channel
MEMBER_STATUSES = ("creator", "administrator", "member", "restricted", "left", "kicked")

DEFAULT_ALLOWED_UPDATES = (
    "message", "edited_message", "channel_post", "edited_channel_post",
    "business_connection", "business_message", "edited_business_message",
    "deleted_business_messages", "inline_query", "chosen_inline_result",
    "callback_query", "shipping_query", "pre_checkout_query", "purchased_paid_media",
    "poll", "poll_answer", "my_chat_member", "chat_join_request", "chat_boost",
    "removed_chat_boost",
)
UPDATE_TYPES = DEFAULT_ALLOWED_UPDATES + ("chat_member", "message_reaction", "message_reaction_count")

CHAT_ACTIONS = frozenset({
    "typing", "upload_photo", "record_video", "upload_video", "record_voice", "upload_voice",
    "upload_document", "choose_sticker", "find_location", "record_video_note",
    "upload_video_note",
})

_TOKEN_FORMAT = re.compile(r"[0-9]+:[A-Za-z0-9_-]{35}")
_API_PATH = re.compile(r"^/bot([^/]*)/([^/]*)$")
_FILE_PATH = re.compile(r"^/file/bot([^/]*)/(.+)$")
_TOKEN_ALPHABET = string.ascii_letters + string.digits + "_-"

_NGINX_PAGES = {
    502: "502 Bad Gateway",
    503: "503 Service Temporarily Unavailable",
    504: "504 Gateway Time-out",
}

_DEFAULT_DESCRIPTIONS = {
    400: "Bad Request",
    401: "Unauthorized",
    403: "Forbidden: bot was blocked by the user",
    404: "Not Found",
    409: "Conflict: terminated by other getUpdates request; "
         "make sure that only one bot instance is running",
    413: "Request Entity Too Large",
    500: "Internal Server Error",
}


# --------------------------------------------------------------------------- text rules


def utf16_len(text: str) -> int:
    """Length of ``text`` the way Telegram counts it: UTF-16 code units."""
    return len(text) + sum(1 for ch in text if ord(ch) > 0xFFFF)


class EntityParseError(ValueError):
    """Markup Telegram refuses; the message is the part after "can't parse entities: "."""


_SPACE_BYTES = frozenset(b" \t\r\n\x00\x0b\x0c")
_ALLOWED_TAGS = frozenset({
    "a", "b", "strong", "i", "em", "s", "strike", "del", "u", "ins", "tg-spoiler",
    "tg-emoji", "span", "pre", "code", "blockquote",
})
_SIMPLE_ENTITY_TYPES = {
    "i": "italic", "em": "italic", "b": "bold", "strong": "bold",
    "s": "strikethrough", "strike": "strikethrough", "del": "strikethrough",
    "u": "underline", "ins": "underline", "tg-spoiler": "spoiler",
}
_NAMED_ENTITIES = {b"lt": 0x3C, b"gt": 0x3E, b"amp": 0x26, b"quot": 0x22}


def _decode_html_entity(data: bytes, pos: int) -> tuple[int, int]:
    """TDLib's decode_html_entity: (code point, position after it), or (0, pos)."""
    n = len(data)

    def at(k: int) -> int:
        return data[k] if k < n else 0

    end = pos + 1
    code = 0
    if at(pos + 1) == ord("#"):
        end += 1
        if at(pos + 2) == ord("x"):
            end += 1
            while chr(at(end)) in string.hexdigits and at(end):
                code = code * 16 + int(chr(at(end)), 16)
                end += 1
                if code >= 0x10FFFF:
                    return 0, pos
        else:
            while ord("0") <= at(end) <= ord("9"):
                code = code * 10 + at(end) - ord("0")
                end += 1
                if code >= 0x10FFFF:
                    return 0, pos
        if code == 0 or code >= 0x10FFFF or end - pos >= 10:
            return 0, pos
    else:
        while chr(at(end)).isascii() and chr(at(end)).isalpha():
            end += 1
        code = _NAMED_ENTITIES.get(data[pos + 1:end], 0)
        if not code:
            return 0, pos
    if at(end) == ord(";"):
        end += 1
    return code, end


def _append_code_point(out: bytearray, code: int) -> None:
    out += chr(code).encode("utf-8", "surrogatepass")


_HOST_CHARS = re.compile(r"^[\w.\-~%\[\]:]+$")


def checked_link(url: str) -> str:
    """The link Telegram would keep for ``<a href>``, canonicalised, or "" when dropped.

    A simplified LinkManager::get_checked_link: http(s) (the default scheme), tg: and
    ton: links pass; any other scheme (javascript:, data:, mailto:, ftp://...) is
    dropped silently, as Telegram drops the entity rather than failing the message.
    """
    link = url.strip()
    low = link.lower()
    if low.startswith(("tg:", "ton:", "tonsite:")):
        return link
    scheme = "http"
    rest = link
    if "://" in link:
        scheme, rest = link.split("://", 1)
        scheme = scheme.lower()
        if scheme not in ("http", "https"):
            return ""
    cut = len(rest)
    for sep in "/?#":
        idx = rest.find(sep)
        if idx != -1:
            cut = min(cut, idx)
    host, tail = rest[:cut], rest[cut:]
    if "@" in host:
        host = host.rsplit("@", 1)[1]
    if not host or any(ch.isspace() for ch in link) or not _HOST_CHARS.match(host):
        return ""
    if ":" in host and not host.startswith("["):
        name, port = host.rsplit(":", 1)
        if not name or not port.isdigit() or not 0 < int(port) < 65536:
            return ""
    if "." not in host and not host.startswith("[") and host.split(":")[0].lower() != "localhost":
        return ""
    return f"{scheme}://{host}{tail or '/'}"


def parse_html(text: str, *, strict_entities: bool = True) -> tuple[str, list[dict]]:
    """Parse Telegram HTML into (visible text, entities); raise EntityParseError.

    A port of TDLib's ``parse_html`` (td/telegram/MessageEntity.cpp): byte offsets in
    error texts are UTF-8 offsets into ``text``, entity offsets/lengths are UTF-16.
    """
    data = text.encode("utf-8", "surrogatepass")
    n = len(data)

    def at(k: int) -> int:
        return data[k] if k < n else 0

    def is_space(c: int) -> bool:
        return c in _SPACE_BYTES

    out = bytearray()
    utf16 = 0
    recheck_surrogates = False
    entities: list[dict] = []
    stack: list[tuple[str, str, int, int]] = []
    i = 0
    while i < n:
        c = data[i]
        if c == 0x26:
            code, after = _decode_html_entity(data, i)
            if code:
                utf16 += 2 if code > 0xFFFF else 1
                if 0xD800 <= code <= 0xDFFF:
                    recheck_surrogates = True
                _append_code_point(out, code)
                i = after
                continue
            if strict_entities:
                raise EntityParseError(
                    f"Unsupported HTML entity at byte offset {i}: "
                    "a '&' that is not part of an entity must be written as &amp;")
        if c != 0x3C:
            if c & 0xC0 != 0x80:
                utf16 += 2 if c >= 0xF0 else 1
            out.append(c)
            i += 1
            continue

        begin = i
        i += 1
        if at(i) != ord("/"):
            while not is_space(at(i)) and at(i) != ord(">"):
                i += 1
            if at(i) == 0:
                raise EntityParseError(f"Unclosed start tag at byte offset {begin}")
            tag = data[begin + 1:i].lower().decode("utf-8", "replace")
            if tag not in _ALLOWED_TAGS:
                raise EntityParseError(f'Unsupported start tag "{tag}" at byte offset {begin}')
            argument = ""
            while at(i) != ord(">"):
                while at(i) != 0 and is_space(at(i)):
                    i += 1
                if at(i) == ord(">"):
                    break
                name_begin = i
                while not is_space(at(i)) and at(i) not in b"=>/\"'":
                    i += 1
                name = data[name_begin:i]
                if not name:
                    raise EntityParseError(
                        f'Empty attribute name in the tag "{tag}" at byte offset {begin}')
                while at(i) != 0 and is_space(at(i)):
                    i += 1
                if at(i) != ord("="):
                    if at(i) == 0:
                        raise EntityParseError(f'Unclosed start tag "{tag}" at byte offset {begin}')
                    if tag == "blockquote" and name == b"expandable":
                        argument = "1"
                    continue
                i += 1
                while at(i) != 0 and is_space(at(i)):
                    i += 1
                if at(i) == 0:
                    raise EntityParseError(f'Unclosed start tag "{tag}" at byte offset {begin}')
                if at(i) not in (ord("'"), ord('"')):
                    token_begin = i
                    while chr(at(i)).isascii() and (chr(at(i)).isalnum() or at(i) in b".-") and at(i):
                        i += 1
                    value = data[token_begin:i].lower().decode("utf-8", "replace")
                    if not is_space(at(i)) and at(i) != ord(">"):
                        raise EntityParseError(
                            f"Unexpected end of name token at byte offset {token_begin}")
                else:
                    quote = at(i)
                    i += 1
                    raw = bytearray()
                    while at(i) != quote and at(i) != 0:
                        if at(i) == 0x26:
                            code, after = _decode_html_entity(data, i)
                            if code:
                                _append_code_point(raw, code)
                                i = after
                                continue
                        raw.append(at(i))
                        i += 1
                    if at(i) == quote:
                        i += 1
                    value = raw.decode("utf-8", "surrogatepass")
                if at(i) == 0:
                    raise EntityParseError(f"Unclosed start tag at byte offset {begin}")
                if tag == "a" and name == b"href":
                    argument = value
                elif tag == "code" and name == b"class" and value.startswith("language-"):
                    argument = value[9:]
                elif tag == "span" and name == b"class" and value.startswith("tg-"):
                    argument = value[3:]
                elif tag == "tg-emoji" and name == b"emoji-id":
                    argument = value
                elif tag == "blockquote" and name == b"expandable":
                    argument = "1"
            if tag == "span" and argument != "spoiler":
                raise EntityParseError(
                    f'Tag "span" must have class "tg-spoiler" at byte offset {begin}')
            stack.append((tag, argument, utf16, len(out)))
            i += 1
            continue

        if not stack:
            raise EntityParseError(f"Unexpected end tag at byte offset {begin}")
        while not is_space(at(i)) and at(i) != ord(">"):
            i += 1
        end_tag = data[begin + 2:i].lower().decode("utf-8", "replace")
        while is_space(at(i)) and at(i) != 0:
            i += 1
        if at(i) != ord(">"):
            raise EntityParseError(f"Unclosed end tag at byte offset {begin}")
        tag, argument, offset, out_begin = stack[-1]
        if end_tag and end_tag != tag:
            raise EntityParseError(
                f'Unmatched end tag at byte offset {begin}, expected "</{tag}>", found "</{end_tag}>"')
        length = utf16 - offset
        if length > 0:
            entity = _html_entity(tag, argument, offset, length, out[out_begin:], entities)
            if entity is not None:
                entities.append(entity)
        stack.pop()
        i += 1

    if stack:
        raise EntityParseError(f'Can\'t find end tag corresponding to start tag "{stack[-1][0]}"')
    visible = out.decode("utf-8", "surrogatepass")
    if recheck_surrogates:
        try:
            visible = visible.encode("utf-16-le", "surrogatepass").decode("utf-16-le")
        except UnicodeDecodeError:
            raise EntityParseError(
                "Text contains invalid Unicode characters after decoding HTML entities, "
                "check for unmatched surrogate code units") from None
    for entity in entities:
        if entity["type"] == "code":
            entity.pop("language", None)
    entities.sort(key=lambda e: (e["offset"], -e["length"]))
    return visible, entities


def _html_entity(tag: str, argument: str, offset: int, length: int,
                 inner: bytes, entities: list[dict]) -> dict | None:
    base = {"offset": offset, "length": length}
    if tag in _SIMPLE_ENTITY_TYPES:
        return {"type": _SIMPLE_ENTITY_TYPES[tag], **base}
    if tag == "span":
        return {"type": "spoiler", **base}
    if tag == "tg-emoji":
        if not argument.isdigit() or int(argument) == 0:
            raise EntityParseError("Invalid custom emoji identifier specified")
        return {"type": "custom_emoji", "custom_emoji_id": argument, **base}
    if tag == "a":
        url = argument or bytes(inner).decode("utf-8", "replace")
        user = re.fullmatch(r"tg://user\?id=([0-9]+)", url.strip())
        if user:
            return {"type": "text_mention", **base,
                    "user": {"id": int(user.group(1)), "is_bot": False, "first_name": ""}}
        url = checked_link(url)
        return {"type": "text_link", "url": url, **base} if url else None
    last = entities[-1] if entities else None
    same_span = last is not None and last["offset"] == offset and last["length"] == length
    if tag == "pre":
        if same_span and last["type"] == "code" and last.get("language"):
            last["type"] = "pre"
            return None
        return {"type": "pre", **base}
    if tag == "code":
        if same_span and last["type"] == "pre" and argument:
            last["language"] = argument
            return None
        entity = {"type": "code", **base}
        if argument:
            entity["language"] = argument
        return entity
    if tag == "blockquote":
        return {"type": "expandable_blockquote" if argument else "blockquote", **base}
    raise AssertionError(tag)


def _is_hashtag_letter(ch: str) -> bool:
    if ch in "_\u200c\u00b7" or 0xD80 <= ord(ch) <= 0xDFF:
        return True
    category = unicodedata.category(ch)
    return category[0] == "L" or category == "Nd"


def _is_word_char(ch: str) -> bool:
    return ch == "_" or ch.isalnum()


def _find_hashtags(text: str) -> list[tuple[int, int]]:
    found = []
    i = 0
    while (i := text.find("#", i)) != -1:
        if i > 0 and _is_hashtag_letter(text[i - 1]):
            i += 1
            continue
        j = i + 1
        while j < len(text) and _is_hashtag_letter(text[j]):
            j += 1
        if j < len(text) and text[j] == "#":
            i = j
            continue
        end = min(j, i + 1 + 256)
        body = text[i + 1:end]
        if body and any(unicodedata.category(ch)[0] == "L" for ch in body):
            found.append((i, end))
        i = max(j, i + 1)
    return found


def _find_bot_commands(text: str) -> list[tuple[int, int]]:
    found = []
    for match in re.finditer(r"/([A-Za-z0-9_]{1,64})(@[A-Za-z0-9_]{3,32})?", text):
        start, end = match.span()
        prev = text[start - 1] if start else ""
        nxt = text[end] if end < len(text) else ""
        if prev and (_is_word_char(prev) or prev in "/<>"):
            continue
        if nxt and (_is_word_char(nxt) or nxt in "/<>@"):
            continue
        found.append((start, end))
    return found


_URL = re.compile(r"(?<![\w@/])(?:https?://|www\.)[^\s<>\"]+", re.IGNORECASE)
_MENTION = re.compile(r"(?<![\w@])@[A-Za-z][A-Za-z0-9_]{3,31}(?![\w@])")


def find_auto_entities(text: str, taken: Iterable[dict] = ()) -> list[dict]:
    """Entities Telegram finds by itself: hashtags, URLs, mentions, bot commands.

    Spans overlapping a ``taken`` entity (links, code, pre) are skipped, as clients do.
    Offsets and lengths are UTF-16 code units.
    """
    units = [0]
    for ch in text:
        units.append(units[-1] + (2 if ord(ch) > 0xFFFF else 1))
    blocked = [(e["offset"], e["offset"] + e["length"]) for e in taken
               if e["type"] in ("text_link", "text_mention", "code", "pre")]
    spans: list[tuple[str, int, int]] = []
    spans += [("hashtag", s, e) for s, e in _find_hashtags(text)]
    spans += [("bot_command", s, e) for s, e in _find_bot_commands(text)]
    for match in _URL.finditer(text):
        start, end = match.span()
        while end > start and text[end - 1] in ".,;:!?)]}'\"":
            end -= 1
        spans.append(("url", start, end))
    spans += [("mention", m.start(), m.end()) for m in _MENTION.finditer(text)]
    result = []
    used: list[tuple[int, int]] = []
    for kind, start, end in sorted(spans, key=lambda s: (s[1], -s[2])):
        lo, hi = units[start], units[end]
        if any(lo < b_hi and b_lo < hi for b_lo, b_hi in blocked + used):
            continue
        used.append((lo, hi))
        result.append({"type": kind, "offset": lo, "length": hi - lo})
    return result


def _trim(text: str, entities: list[dict]) -> tuple[str, list[dict]]:
    """Drop surrounding whitespace like Telegram does, moving entities along."""
    stripped = text.strip(" \t\r\n\x0b\x0c")
    if stripped == text:
        return text, entities
    shift = utf16_len(text[:len(text) - len(text.lstrip(" \t\r\n\x0b\x0c"))])
    total = utf16_len(stripped)
    kept = []
    for entity in entities:
        start = max(entity["offset"] - shift, 0)
        end = min(entity["offset"] + entity["length"] - shift, total)
        if end > start:
            kept.append({**entity, "offset": start, "length": end - start})
    return stripped, kept


# --------------------------------------------------------------------------- files


def _image_size(data: bytes) -> tuple[int, int] | None:
    """(width, height) of a PNG, GIF, JPEG, WebP or BMP image, else None."""
    if data.startswith(b"\x89PNG\r\n\x1a\n") and len(data) >= 24:
        return int.from_bytes(data[16:20], "big"), int.from_bytes(data[20:24], "big")
    if data[:6] in (b"GIF87a", b"GIF89a") and len(data) >= 10:
        return int.from_bytes(data[6:8], "little"), int.from_bytes(data[8:10], "little")
    if data.startswith(b"BM") and len(data) >= 26:
        return int.from_bytes(data[18:22], "little"), abs(int.from_bytes(data[22:26], "little", signed=True))
    if data.startswith(b"RIFF") and data[8:12] == b"WEBP":
        return 1, 1
    if data.startswith(b"\xff\xd8"):
        i = 2
        while i + 9 < len(data):
            if data[i] != 0xFF:
                i += 1
                continue
            marker = data[i + 1]
            if marker in (0xD8, 0x01) or 0xD0 <= marker <= 0xD7:
                i += 2
                continue
            seg_len = int.from_bytes(data[i + 2:i + 4], "big")
            if 0xC0 <= marker <= 0xCF and marker not in (0xC4, 0xC8, 0xCC):
                return int.from_bytes(data[i + 7:i + 9], "big"), int.from_bytes(data[i + 5:i + 7], "big")
            i += 2 + seg_len
        return None
    return None


def _scaled(width: int, height: int, box: int) -> tuple[int, int]:
    scale = min(1.0, box / max(width, height, 1))
    return max(1, round(width * scale)), max(1, round(height * scale))


# --------------------------------------------------------------------------- server state


class _ApiError(Exception):
    def __init__(self, code: int, description: str, parameters: dict | None = None):
        super().__init__(description)
        self.code = code
        self.description = description
        self.parameters = parameters


def _bad(description: str, **parameters: Any) -> _ApiError:
    return _ApiError(400, f"Bad Request: {description}", parameters or None)


@dataclass
class _Failure:
    status: int
    retry_after: int | None
    description: str | None


@dataclass
class _Flood:
    per_chat_per_second: float
    global_per_second: float
    per_group_per_minute: float


@dataclass
class _Chat:
    id: int
    type: str
    title: str | None = None
    username: str | None = None
    first_name: str | None = None
    is_forum: bool = False
    bot_status: str = "member"
    forbidden: str | None = None
    migrated_to: int | None = None

    def as_dict(self) -> dict:
        chat: dict[str, Any] = {"id": self.id, "type": self.type}
        if self.type == "private":
            chat["first_name"] = self.first_name or f"User{self.id}"
            chat["username"] = self.username or f"user{self.id}"
        else:
            chat["title"] = self.title or f"{self.type.capitalize()} {abs(self.id)}"
            if self.username:
                chat["username"] = self.username
            if self.type == "supergroup" and self.is_forum:
                chat["is_forum"] = True
        return chat


def _infer_chat_type(chat_id: int) -> str:
    if chat_id > 0:
        return "private"
    return "supergroup" if str(chat_id).startswith("-100") else "group"


def _forbidden_text(chat_type: str, status: str) -> str:
    if chat_type == "private":
        return "Forbidden: bot was blocked by the user"
    if status == "left":
        return f"Forbidden: bot is not a member of the {chat_type} chat"
    return f"Forbidden: bot was kicked from the {chat_type} chat"


def _user(user_id: int, first_name: str | None = None, username: str | None = None) -> dict:
    return {
        "id": user_id,
        "is_bot": False,
        "first_name": first_name or f"User{user_id}",
        "username": username or f"user{user_id}",
        "language_code": "en",
    }


def _as_str(value: Any) -> str:
    if isinstance(value, bytes):
        return value.decode("utf-8", "replace")
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, (dict, list)):
        return json.dumps(value)
    return str(value)



class _Recorded:
    """A read-only attribute that returns a copy of one of the server's recorded lists, taken
    under its lock (the server records from its own thread)."""

    def __init__(self, attribute: str, doc: str) -> None:
        self.attribute = attribute
        self.__doc__ = doc

    def __get__(self, server: FakeBotAPI | None, owner: type | None = None):
        if server is None:
            return self
        with server._lock:
            return list(getattr(server, self.attribute))


class FakeBotAPI:
    """A Telegram Bot API double on 127.0.0.1, running in a background thread.

    ``token`` defaults to a random well-formed one (``<bot_id>:<35 chars>``).
    ``strict_entities=False`` keeps a stray ``&`` literally, as Telegram does.
    ``strict_chats=True`` answers "chat not found" for chats never registered with
    ``add_chat`` or seen in a simulated update; by default any id is a chat whose type
    follows from the id (positive: private, -100...: supergroup, other negative: group).

    Recorded state (snapshots, safe to read from any thread): ``calls``, ``sent``,
    ``edited``, ``deleted``, ``answered_callbacks``, ``chat_actions``, ``errors``.
    """

    tokens_issued: set[str] = set()  # every token a fake has served: the suite checks none leaked

    def __init__(self, token: str | None = None, *, bot_id: int | None = None,
                 bot_username: str = "newswatch_test_bot", bot_name: str = "Newswatch",
                 strict_entities: bool = True, strict_chats: bool = False,
                 host: str = "127.0.0.1") -> None:
        if token is None:
            bot_id = bot_id or DEFAULT_BOT_ID
            token = f"{bot_id}:" + "".join(secrets.choice(_TOKEN_ALPHABET) for _ in range(35))
        elif not re.fullmatch(r"[0-9]+:[A-Za-z0-9_-]+", token):
            raise ValueError("token must look like a Telegram bot token: <bot id>:<secret>")
        self._token = token
        FakeBotAPI.tokens_issued.add(token)
        self._bot_id = int(token.split(":", 1)[0])
        self._bot_user = {
            "id": self._bot_id, "is_bot": True, "first_name": bot_name, "username": bot_username,
            "can_join_groups": True, "can_read_all_group_messages": False,
            "supports_inline_queries": False, "can_connect_to_business": False,
            "has_main_web_app": False,
        }
        self.strict_entities = strict_entities
        self.strict_chats = strict_chats
        self._host = host

        self._lock = threading.RLock()
        self._calls: list[tuple[str, dict]] = []
        self._sent: list[dict] = []
        self._edited: list[dict] = []
        self._deleted: list[tuple[int, int]] = []
        self._answered: list[dict] = []
        self._actions: list[tuple[int, str]] = []
        self._errors: list[str] = []
        self._chats: dict[int, _Chat] = {}
        self._usernames: dict[str, int] = {}
        self._messages: dict[tuple[int, int], dict] = {}
        self._next_message_id: dict[int, int] = collections.defaultdict(lambda: 1)
        self._updates: list[dict] = []
        self._next_update_id = 900_000_001
        self._allowed_updates: tuple[str, ...] = DEFAULT_ALLOWED_UPDATES
        self._webhook: dict = {"url": ""}
        self._commands: dict[tuple[str, str], list[dict]] = {}
        self._callbacks: dict[str, dict] = {}
        self._members: dict[tuple[int, int], tuple[str, bool]] = {}
        self._files: dict[str, dict] = {}
        self._failures: dict[str, collections.deque[_Failure]] = collections.defaultdict(collections.deque)
        self._down: str | None = None
        self._hang: frozenset[str] | None = None
        self._flood: _Flood | None = None
        self._flood_global: collections.deque[float] = collections.deque()
        self._flood_chat: dict[int, collections.deque[float]] = collections.defaultdict(collections.deque)
        self._flood_group: dict[int, collections.deque[float]] = collections.defaultdict(collections.deque)

        self._loop: asyncio.AbstractEventLoop | None = None
        self._thread: threading.Thread | None = None
        self._runner: web.AppRunner | None = None
        self._port: int | None = None
        self._pollers: set[asyncio.Future] = set()
        self._hung: set[asyncio.Future] = set()
        self._closing = False

    # ------------------------------------------------------------------ lifecycle

    def start(self) -> FakeBotAPI:
        """Bind a free port on 127.0.0.1 and serve from a background thread."""
        if self._thread is not None:
            raise RuntimeError("FakeBotAPI is already running")
        ready = threading.Event()
        failure: list[BaseException] = []
        self._closing = False
        self._thread = threading.Thread(target=self._serve, args=(ready, failure),
                                        name="fake-bot-api", daemon=True)
        self._thread.start()
        ready.wait(10)
        if failure:
            self._thread.join(2)
            self._thread = None
            raise RuntimeError("FakeBotAPI could not start") from failure[0]
        return self

    def stop(self) -> None:
        """Wake pending long polls and hung requests, close the server, join the thread."""
        thread, loop = self._thread, self._loop
        if thread is None or loop is None:
            return
        try:
            asyncio.run_coroutine_threadsafe(self._shutdown(), loop).result(timeout=10)
        finally:
            loop.call_soon_threadsafe(loop.stop)
            thread.join(10)
            self._thread = None
            self._loop = None
            self._port = None

    def __enter__(self) -> FakeBotAPI:
        return self.start()

    def __exit__(self, *exc_info: object) -> None:
        self.stop()

    def __repr__(self) -> str:
        state = f"url={self.url}" if self._port else "stopped"
        return f"<FakeBotAPI {state} bot_id={self._bot_id}>"

    def _serve(self, ready: threading.Event, failure: list[BaseException]) -> None:
        loop = asyncio.new_event_loop()
        asyncio.set_event_loop(loop)
        self._loop = loop
        try:
            loop.run_until_complete(self._startup())
        except BaseException as exc:
            failure.append(exc)
            ready.set()
            loop.close()
            self._loop = None
            return
        ready.set()
        try:
            loop.run_forever()
        finally:
            pending = [t for t in asyncio.all_tasks(loop) if not t.done()]
            for task in pending:
                task.cancel()
            if pending:
                loop.run_until_complete(asyncio.gather(*pending, return_exceptions=True))
            loop.close()

    async def _startup(self) -> None:
        app = web.Application(client_max_size=MAX_UPLOAD_BYTES + 1024 * 1024)
        app.router.add_route("*", "/{tail:.*}", self._handle)
        self._runner = web.AppRunner(app, access_log=None, handle_signals=False, shutdown_timeout=1.0)
        await self._runner.setup()
        site = web.TCPSite(self._runner, self._host, 0)
        await site.start()
        self._port = self._runner.addresses[0][1]

    async def _shutdown(self) -> None:
        self._closing = True
        self._wake_pollers("closed")
        self._release_hung()
        if self._runner is not None:
            await self._runner.cleanup()
            self._runner = None

    def _in_loop(self, func: Callable[..., None], *args: Any) -> None:
        loop = self._loop
        if loop is None or loop.is_closed():
            return
        try:
            loop.call_soon_threadsafe(func, *args)
        except RuntimeError:
            pass

    # ------------------------------------------------------------------ addresses

    @property
    def url(self) -> str:
        """``http://127.0.0.1:PORT`` (the server must be started)."""
        if self._port is None:
            raise RuntimeError("FakeBotAPI is not running")
        return f"http://{self._host}:{self._port}"

    @property
    def api_base(self) -> str:
        """What ``ApplicationBuilder.base_url`` / ``Bot(base_url=)`` expects."""
        return f"{self.url}/bot"

    @property
    def file_base(self) -> str:
        """What ``ApplicationBuilder.base_file_url`` / ``Bot(base_file_url=)`` expects."""
        return f"{self.url}/file/bot"

    @property
    def token(self) -> str:
        return self._token

    @property
    def bot_id(self) -> int:
        return self._bot_id

    @property
    def bot_user(self) -> dict:
        return dict(self._bot_user)

    # ------------------------------------------------------------------ recorded state

    calls = _Recorded("_calls", "Every request that reached a method, as (method, params), failed ones included.")
    sent = _Recorded("_sent", """Every accepted sendMessage / sendPhoto / sendDocument, in order.

        Keys: method, chat_id (int), message_id, text (the text or caption as sent),
        caption (media only), visible (after markup parsing), entities, parse_mode,
        message_thread_id, reply_markup (parsed JSON), photo / document (bytes),
        filename, disable_notification, time (time.time()).
        """)
    edited = _Recorded("_edited", "Every accepted edit, in order.")
    deleted = _Recorded("_deleted", "Every deleted message, as (chat_id, message_id).")
    answered_callbacks = _Recorded("_answered", "Every answerCallbackQuery, in order.")
    chat_actions = _Recorded("_actions", "Every sendChatAction, as (chat_id, action).")
    errors = _Recorded("_errors", "Unexpected exceptions inside the fake itself (answered with 500).")

    @property
    def pending_updates(self) -> int:
        with self._lock:
            return len(self._updates)

    def calls_to(self, method: str) -> list[dict]:
        """Params of every call to ``method`` (case-insensitive)."""
        wanted = method.lower()
        with self._lock:
            return [params for name, params in self._calls if name.lower() == wanted]

    def messages_for(self, chat_id: int) -> list[dict]:
        """Accepted sends to ``chat_id`` (see ``sent``)."""
        with self._lock:
            return [entry for entry in self._sent if entry["chat_id"] == int(chat_id)]

    def commands(self, *, scope: dict | None = None, language_code: str = "") -> list[dict]:
        """The command list last set with setMyCommands for this scope and language."""
        with self._lock:
            return copy.deepcopy(self._commands.get(self._scope_key(scope, language_code), []))

    def reset(self) -> None:
        """Forget recorded calls and sends, queued failures, flood history and updates."""
        with self._lock:
            self._calls.clear()
            self._sent.clear()
            self._edited.clear()
            self._deleted.clear()
            self._answered.clear()
            self._actions.clear()
            self._errors.clear()
            self._failures.clear()
            self._updates.clear()
            self._flood_global.clear()
            self._flood_chat.clear()
            self._flood_group.clear()

    def wait_for(self, predicate: Callable[[], Any], timeout: float = 5.0,
                 interval: float = 0.01) -> Any:
        """Poll ``predicate`` until it returns something truthy; return that value.

        Blocking: do not call it from the event loop that runs the bot under test
        (use ``wait_for_async`` there).
        """
        deadline = time.monotonic() + timeout
        while True:
            value = predicate()
            if value:
                return value
            if time.monotonic() >= deadline:
                raise TimeoutError(f"condition not met within {timeout:.1f}s")
            time.sleep(interval)

    async def wait_for_async(self, predicate: Callable[[], Any], timeout: float = 5.0,
                             interval: float = 0.01) -> Any:
        """``wait_for`` for coroutines running in the bot's own event loop."""
        deadline = time.monotonic() + timeout
        while True:
            value = predicate()
            if value:
                return value
            if time.monotonic() >= deadline:
                raise TimeoutError(f"condition not met within {timeout:.1f}s")
            await asyncio.sleep(interval)

    # ------------------------------------------------------------------ chats

    def add_chat(self, chat_id: int, chat_type: str | None = None, *, title: str | None = None,
                 username: str | None = None, first_name: str | None = None,
                 is_forum: bool | None = None) -> dict:
        """Register (or update) a chat the bot knows; returns its Chat object."""
        with self._lock:
            chat = self._chat_state(int(chat_id), chat_type)
            if chat_type is not None:
                chat.type = chat_type
            if title is not None:
                chat.title = title
            if first_name is not None:
                chat.first_name = first_name
            if is_forum is not None:
                chat.is_forum = is_forum
            if username is not None:
                chat.username = username.lstrip("@")
                self._usernames[chat.username.lower()] = chat.id
            if chat.type == "channel" and chat.bot_status == "member":
                chat.bot_status = "administrator"
            return chat.as_dict()

    def set_member(self, chat_id: int, user_id: int, status: str = "administrator", *,
                   is_anonymous: bool = False) -> None:
        """What ``getChatMember`` says of ``user_id`` in ``chat_id`` from now on."""
        if status not in MEMBER_STATUSES:
            raise ValueError(f"status must be one of {MEMBER_STATUSES}")
        with self._lock:
            self._members[(int(chat_id), int(user_id))] = (status, is_anonymous)

    def _chat_state(self, chat_id: int, chat_type: str | None = None) -> _Chat:
        chat = self._chats.get(chat_id)
        if chat is None:
            chat = _Chat(id=chat_id, type=chat_type or _infer_chat_type(chat_id))
            if chat.type == "channel":
                chat.bot_status = "administrator"
            self._chats[chat_id] = chat
        return chat

    # ------------------------------------------------------------------ simulated users

    def enqueue_update(self, update: dict) -> dict:
        """Queue a raw Update (``update_id`` is filled in) for getUpdates."""
        with self._lock:
            update = dict(update)
            update["update_id"] = self._next_update_id
            self._next_update_id += 1
            self._updates.append(update)
        self._in_loop(self._wake_pollers, "updates")
        return update

    def user_message(self, chat_id: int, text: str, *, user_id: int | None = None,
                     chat_type: str | None = None, thread_id: int | None = None,
                     title: str | None = None, first_name: str | None = None,
                     username: str | None = None, sender_chat: int | None = None) -> dict:
        """A user writes ``text`` in ``chat_id``; returns the queued Update.

        ``chat_type`` defaults to what the id implies (positive: private, -100...:
        supergroup, other negative: group). Texts starting with "/" carry a
        ``bot_command`` entity, as Telegram clients send them. ``sender_chat`` sends the
        message on behalf of a chat, as Telegram shows it: ``chat_id`` itself for an
        anonymous administrator of the group (``from`` is @GroupAnonymousBot), a channel's
        id for a message posted as that channel (``from`` is @Channel_Bot).
        """
        with self._lock:
            chat = self._chat_state(int(chat_id), chat_type)
            if chat_type is not None:
                chat.type = chat_type
            if title is not None:
                chat.title = title
            if thread_id is not None and chat.type == "supergroup":
                chat.is_forum = True
            if chat.type == "private":
                user_id = int(chat_id) if user_id is None else user_id
                chat.first_name = first_name or chat.first_name
                chat.username = username or chat.username
                if chat.bot_status == "kicked":
                    chat.bot_status, chat.forbidden = "member", None
            user_id = DEFAULT_USER_ID if user_id is None else user_id
            message: dict[str, Any] = {
                "message_id": self._take_message_id(chat.id),
                "from": _user(user_id, first_name, username),
                "chat": chat.as_dict(),
                "date": int(time.time()),
                "text": text,
            }
            entities = find_auto_entities(text)
            if entities:
                message["entities"] = entities
            if thread_id is not None:
                message["message_thread_id"] = thread_id
                message["is_topic_message"] = True
            if sender_chat is not None:
                self._on_behalf_of(message, chat, int(sender_chat))
            self._messages[(chat.id, message["message_id"])] = {"message": message, "from_bot": False}
        return self.enqueue_update({"message": message})

    def _on_behalf_of(self, message: dict, chat: _Chat, sender_chat: int) -> None:
        if chat.type not in ("group", "supergroup"):
            raise ValueError("only messages in groups are sent on behalf of a chat")
        if sender_chat == chat.id:
            message["from"] = {"id": ANONYMOUS_ADMIN_ID, "is_bot": True, "first_name": "Group",
                               "username": "GroupAnonymousBot"}
            message["sender_chat"] = chat.as_dict()
            return
        channel = self._chat_state(sender_chat, "channel")
        message["from"] = {"id": CHANNEL_BOT_ID, "is_bot": True, "first_name": "Channel",
                           "username": "Channel_Bot"}
        message["sender_chat"] = channel.as_dict()

    def callback_query(self, chat_id: int, data: str, *, message_id: int | None = None,
                       user_id: int | None = None, chat_type: str | None = None) -> dict:
        """A user presses an inline button with ``data`` under a bot message.

        ``message_id`` defaults to the bot's last message in the chat.
        Returns the queued Update; its ``callback_query.id`` can be answered once.
        """
        with self._lock:
            chat = self._chat_state(int(chat_id), chat_type)
            if message_id is None:
                own = [mid for (cid, mid), stored in self._messages.items()
                       if cid == chat.id and stored["from_bot"]]
                message_id = max(own) if own else None
            stored = self._messages.get((chat.id, message_id)) if message_id is not None else None
            if stored is not None:
                message = copy.deepcopy(stored["message"])
            else:
                message = {
                    "message_id": message_id or self._take_message_id(chat.id),
                    "from": dict(self._bot_user), "chat": chat.as_dict(),
                    "date": int(time.time()), "text": "…",
                }
            if user_id is None:
                user_id = chat.id if chat.type == "private" else DEFAULT_USER_ID
            query_id = str(secrets.randbits(63))
            self._callbacks[query_id] = {"time": time.monotonic(), "answered": False}
            query = {
                "id": query_id,
                "from": _user(user_id),
                "message": message,
                "chat_instance": str(abs(hash((chat.id, self._bot_id)))),
                "data": data,
            }
        return self.enqueue_update({"callback_query": query})

    def channel_post(self, chat_id: int, text: str, *, title: str | None = None,
                     username: str | None = None) -> dict:
        """A post appears in a channel the bot administers; returns the queued Update."""
        with self._lock:
            self.add_chat(chat_id, "channel", title=title, username=username)
            chat = self._chats[int(chat_id)]
            message: dict[str, Any] = {
                "message_id": self._take_message_id(chat.id),
                "sender_chat": chat.as_dict(),
                "chat": chat.as_dict(),
                "date": int(time.time()),
                "text": text,
            }
            entities = find_auto_entities(text)
            if entities:
                message["entities"] = entities
            self._messages[(chat.id, message["message_id"])] = {"message": message, "from_bot": False}
        return self.enqueue_update({"channel_post": message})

    def chat_member_update(self, chat_id: int, *, new_status: str = "kicked",
                           old_status: str = "member", user_id: int | None = None,
                           chat_type: str | None = None, title: str | None = None) -> dict:
        """The bot's own membership changes (``my_chat_member``): blocked, kicked, re-added.

        "kicked" and "left" make later sends to the chat fail with 403, as on Telegram;
        "member" and "administrator" restore it.
        """
        with self._lock:
            chat = self._chat_state(int(chat_id), chat_type)
            if chat_type is not None:
                chat.type = chat_type
            if title is not None:
                chat.title = title
            if user_id is None:
                user_id = chat.id if chat.type == "private" else DEFAULT_USER_ID
            chat.bot_status = new_status
            chat.forbidden = (_forbidden_text(chat.type, new_status)
                              if new_status in ("kicked", "left") else None)
            update = {
                "chat": chat.as_dict(),
                "from": _user(user_id),
                "date": int(time.time()),
                "old_chat_member": self._member(self._bot_user, old_status),
                "new_chat_member": self._member(self._bot_user, new_status),
            }
        return self.enqueue_update({"my_chat_member": update})

    @staticmethod
    def _member(user: dict, status: str) -> dict:
        member: dict[str, Any] = {"user": dict(user), "status": status}
        if status == "kicked":
            member["until_date"] = 0
        elif status == "restricted":
            member.update({
                "is_member": True, "can_send_messages": False, "can_send_audios": False,
                "can_send_documents": False, "can_send_photos": False, "can_send_videos": False,
                "can_send_video_notes": False, "can_send_voice_notes": False, "can_send_polls": False,
                "can_send_other_messages": False, "can_add_web_page_previews": False,
                "can_change_info": False, "can_invite_users": False, "can_pin_messages": False,
                "can_manage_topics": False, "until_date": 0,
            })
        elif status == "creator":
            member["is_anonymous"] = False
        elif status == "administrator":
            member.update({
                "can_be_edited": False, "is_anonymous": False, "can_manage_chat": True,
                "can_delete_messages": True, "can_manage_video_chats": True,
                "can_restrict_members": True, "can_promote_members": False,
                "can_change_info": True, "can_invite_users": True, "can_post_stories": True,
                "can_edit_stories": True, "can_delete_stories": True,
                "can_post_messages": True, "can_edit_messages": True,
            })
        return member

    # ------------------------------------------------------------------ fault injection

    def fail_next(self, method: str, n: int = 1, status: int = 429, retry_after: int | None = 3,
                  description: str | None = None) -> None:
        """Fail the next ``n`` calls to ``method`` ("*" for any method).

        429 carries ``parameters.retry_after``; 502/503/504 answer with an nginx HTML page
        like a proxy in front of Telegram; 500 and 4xx answer Telegram-style JSON;
        0 drops the connection without a response.
        """
        key = "*" if method == "*" else method.lower()
        failure = _Failure(status, retry_after if status == 429 else None, description)
        with self._lock:
            self._failures[key].extend(failure for _ in range(n))

    def block_chat(self, chat_id: int, description: str | None = None) -> None:
        """Sends to ``chat_id`` get 403 ("Forbidden: bot was blocked by the user" for users)."""
        with self._lock:
            chat = self._chat_state(int(chat_id))
            chat.bot_status = "kicked"
            chat.forbidden = description or _forbidden_text(chat.type, "kicked")

    def unblock_chat(self, chat_id: int) -> None:
        with self._lock:
            chat = self._chat_state(int(chat_id))
            chat.bot_status = "administrator" if chat.type == "channel" else "member"
            chat.forbidden = None

    def migrate_chat(self, old_id: int, new_id: int, *, notify: bool = False) -> None:
        """Upgrade group ``old_id`` to supergroup ``new_id``.

        Calls naming ``old_id`` then get 400 "Bad Request: group chat was upgraded to a
        supergroup chat" with ``parameters.migrate_to_chat_id``. With ``notify`` the two
        service messages Telegram emits (migrate_to / migrate_from) are queued.
        """
        with self._lock:
            old = self._chat_state(int(old_id), "group")
            new = self._chat_state(int(new_id), "supergroup")
            new.title = new.title or old.title
            old.migrated_to = new.id
            if not notify:
                return
            to_msg = {"message_id": self._take_message_id(old.id), "from": _user(DEFAULT_USER_ID),
                      "chat": old.as_dict(), "date": int(time.time()), "migrate_to_chat_id": new.id}
            from_msg = {"message_id": self._take_message_id(new.id),
                        "sender_chat": new.as_dict(), "chat": new.as_dict(),
                        "date": int(time.time()), "migrate_from_chat_id": old.id}
        self.enqueue_update({"message": to_msg})
        self.enqueue_update({"message": from_msg})

    def set_down(self, down: bool = True, *, mode: str = "drop") -> None:
        """While down, every request fails: "drop" closes the connection without a
        response, "502" answers a proxy's Bad Gateway page."""
        if mode not in ("drop", "502"):
            raise ValueError("mode must be 'drop' or '502'")
        with self._lock:
            self._down = mode if down else None

    def set_hang(self, hang: bool = True, *, methods: Iterable[str] | None = None) -> None:
        """While hanging, requests (to ``methods``, or all) get no answer until released.

        Released requests then complete normally, so a send that timed out on the
        client side may still be delivered, as on Telegram.
        """
        with self._lock:
            if hang:
                self._hang = frozenset(m.lower() for m in methods) if methods else frozenset({"*"})
            else:
                self._hang = None
        if not hang:
            self._in_loop(self._release_hung)

    def flood(self, per_chat_per_second: float = 1, global_per_second: float = 30,
              per_group_per_minute: float = 20, *, enabled: bool = True) -> None:
        """Enforce Telegram's sending limits; excess sends get 429 with a real retry_after."""
        with self._lock:
            self._flood = (_Flood(per_chat_per_second, global_per_second, per_group_per_minute)
                           if enabled else None)
            self._flood_global.clear()
            self._flood_chat.clear()
            self._flood_group.clear()

    # ------------------------------------------------------------------ loop-side callbacks

    def _wake_pollers(self, reason: str) -> None:
        for fut in list(self._pollers):
            if not fut.done():
                fut.set_result(reason)
        self._pollers.clear()

    def _release_hung(self) -> None:
        for fut in list(self._hung):
            if not fut.done():
                fut.set_result(None)
        self._hung.clear()

    # ------------------------------------------------------------------ HTTP

    async def _handle(self, request: web.Request) -> web.StreamResponse:
        try:
            return await self._dispatch(request)
        except _ApiError as exc:
            return self._error(exc.code, exc.description, exc.parameters)
        except Exception as exc:
            with self._lock:
                self._errors.append(f"{type(exc).__name__}: {exc}")
            return self._error(500, "Internal Server Error")

    async def _dispatch(self, request: web.Request) -> web.StreamResponse:
        path = request.path
        file_match = _FILE_PATH.match(path)
        if file_match:
            return self._serve_file(file_match.group(1), file_match.group(2))
        match = _API_PATH.match(path)
        if not match:
            raise _ApiError(404, "Not Found")
        token, method_name = match.groups()
        self._check_token(token)
        handler_name = _METHODS.get(method_name.lower())
        if handler_name is None:
            raise _ApiError(404, "Not Found")
        method = _CANONICAL[method_name.lower()]
        params, files = await self._read_params(request)
        with self._lock:
            self._calls.append((method, dict(params)))
            down = self._down
            hang = self._hang
        if down == "drop":
            return self._drop(request)
        if down == "502":
            return self._nginx(502)
        if hang and ("*" in hang or method.lower() in hang) and not self._closing:
            fut = asyncio.get_running_loop().create_future()
            self._hung.add(fut)
            await fut
        failure = self._take_failure(method)
        if failure is not None:
            return self._failure_response(request, failure)
        handler = getattr(self, handler_name)
        if inspect.iscoroutinefunction(handler):
            result = await handler(params, files)
        else:
            with self._lock:
                result = handler(params, files)
        return self._ok(result)

    def _check_token(self, token: str) -> None:
        if secrets.compare_digest(token.encode(), self._token.encode()):
            return
        if _TOKEN_FORMAT.fullmatch(token):
            raise _ApiError(401, "Unauthorized")
        raise _ApiError(404, "Not Found")

    async def _read_params(self, request: web.Request) -> tuple[dict, dict]:
        params: dict[str, Any] = dict(request.query)
        files: dict[str, dict] = {}
        if request.method == "POST" and request.can_read_body:
            ctype = request.content_type
            if ctype == "application/json":
                try:
                    body = await request.json()
                except ValueError:
                    raise _bad("can't parse JSON object") from None
                if isinstance(body, dict):
                    params.update(body)
            elif ctype in ("application/x-www-form-urlencoded", "multipart/form-data"):
                form = await request.post()
                for key, value in form.items():
                    if isinstance(value, web.FileField):
                        content = value.file.read()
                        files[key] = {"bytes": content, "filename": value.filename,
                                      "mime_type": value.content_type}
                        params[key] = content
                    else:
                        params[key] = value
        for key, value in list(params.items()):
            if isinstance(value, str) and value.startswith("attach://"):
                name = value[len("attach://"):]
                if name in files:
                    files[key] = files[name]
                    params[key] = files[name]["bytes"]
        return params, files

    def _take_failure(self, method: str) -> _Failure | None:
        with self._lock:
            for key in (method.lower(), "*"):
                queue = self._failures.get(key)
                if queue:
                    return queue.popleft()
        return None

    def _failure_response(self, request: web.Request, failure: _Failure) -> web.StreamResponse:
        status = failure.status
        if status == 0:
            return self._drop(request)
        if status in _NGINX_PAGES:
            return self._nginx(status)
        if status == 429:
            retry = failure.retry_after or 1
            return self._error(429, failure.description or f"Too Many Requests: retry after {retry}",
                               {"retry_after": retry})
        return self._error(status, failure.description or _DEFAULT_DESCRIPTIONS.get(status, "Error"))

    @staticmethod
    def _ok(result: Any) -> web.Response:
        return web.json_response({"ok": True, "result": result}, headers={"Server": "nginx/1.18.0"})

    @staticmethod
    def _error(code: int, description: str, parameters: dict | None = None) -> web.Response:
        body: dict[str, Any] = {"ok": False, "error_code": code, "description": description}
        if parameters:
            body["parameters"] = parameters
        return web.json_response(body, status=code, headers={"Server": "nginx/1.18.0"})

    @staticmethod
    def _nginx(status: int) -> web.Response:
        title = _NGINX_PAGES[status]
        page = (f"<html>\r\n<head><title>{title}</title></head>\r\n<body>\r\n"
                f"<center><h1>{title}</h1></center>\r\n<hr><center>nginx/1.18.0</center>\r\n"
                "</body>\r\n</html>\r\n")
        return web.Response(status=status, text=page, content_type="text/html",
                            headers={"Server": "nginx/1.18.0"})

    @staticmethod
    def _drop(request: web.Request) -> web.Response:
        if request.transport is not None:
            request.transport.close()
        return web.Response(status=502)

    def _serve_file(self, token: str, file_path: str) -> web.Response:
        self._check_token(token)
        with self._lock:
            stored = next((f for f in self._files.values() if f["file_path"] == file_path), None)
        if stored is None:
            raise _ApiError(404, "Not Found")
        return web.Response(body=stored["bytes"], content_type="application/octet-stream")

    # ------------------------------------------------------------------ parameter parsing

    @staticmethod
    def _int(params: dict, key: str, default: int | None = None) -> int | None:
        value = params.get(key)
        if value is None or value == "":
            return default
        try:
            return int(_as_str(value))
        except ValueError:
            raise _bad(f"invalid {key} specified") from None

    @staticmethod
    def _bool(params: dict, key: str) -> bool:
        return _as_str(params.get(key, "false")).lower() in ("true", "1")

    @staticmethod
    def _json(params: dict, key: str, error: str) -> Any:
        value = params.get(key)
        if value is None or value == "":
            return None
        if isinstance(value, (dict, list)):
            return value
        try:
            return json.loads(_as_str(value))
        except ValueError:
            raise _bad(error) from None

    def _resolve_chat(self, params: dict, *, for_sending: bool = True) -> _Chat:
        raw = params.get("chat_id")
        if raw is None or _as_str(raw).strip() == "":
            raise _bad("chat_id is empty")
        text = _as_str(raw).strip()
        if text.startswith("@"):
            chat_id = self._usernames.get(text[1:].lower())
            if chat_id is None:
                raise _bad("chat not found")
        else:
            try:
                chat_id = int(text)
            except ValueError:
                raise _bad("chat not found") from None
        chat = self._chats.get(chat_id)
        if chat is None:
            if self.strict_chats or chat_id == 0:
                raise _bad("chat not found")
            chat = self._chat_state(chat_id)
        if chat.migrated_to is not None:
            raise _bad("group chat was upgraded to a supergroup chat",
                       migrate_to_chat_id=chat.migrated_to)
        if for_sending and chat.forbidden:
            raise _ApiError(403, chat.forbidden)
        return chat

    def _take_message_id(self, chat_id: int) -> int:
        message_id = self._next_message_id[chat_id]
        self._next_message_id[chat_id] = message_id + 1
        return message_id

    def _formatted(self, params: dict, key: str, limit: int, *, caption: bool) -> tuple[str, list[dict]]:
        raw = params.get(key)
        text = "" if raw is None else _as_str(raw)
        parse_mode = _as_str(params.get("parse_mode") or "")
        mode = parse_mode.lower()
        if mode == "html":
            try:
                visible, entities = parse_html(text, strict_entities=self.strict_entities)
            except EntityParseError as exc:
                raise _bad(f"can't parse entities: {exc}") from None
        elif mode in ("", "markdown", "markdownv2"):
            visible = text
            entities = []
            explicit = self._json(params, "caption_entities" if caption else "entities",
                                  "can't parse entities JSON object")
            if mode == "" and isinstance(explicit, list):
                entities = [dict(e) for e in explicit if isinstance(e, dict)]
        else:
            raise _bad("unsupported parse_mode")
        visible, entities = _trim(visible, entities)
        if not visible and not caption:
            raise _bad("message text is empty")
        if utf16_len(visible) > limit:
            raise _bad("message caption is too long" if caption else "message is too long")
        entities = sorted(entities + find_auto_entities(visible, entities),
                          key=lambda e: (e["offset"], -e["length"]))
        return visible, entities

    def _reply_markup(self, params: dict) -> dict | None:
        markup = self._json(params, "reply_markup", "can't parse reply keyboard markup JSON object")
        if markup is None:
            return None
        if not isinstance(markup, dict):
            raise _bad("can't parse reply keyboard markup JSON object")
        rows = markup.get("inline_keyboard")
        if rows is None:
            return markup
        if not isinstance(rows, list) or not all(isinstance(r, list) for r in rows):
            raise _bad("can't parse inline keyboard button: InlineKeyboardMarkup must be an Array of Arrays")
        actions = ("url", "callback_data", "web_app", "login_url", "switch_inline_query",
                   "switch_inline_query_current_chat", "switch_inline_query_chosen_chat",
                   "copy_text", "callback_game", "pay")
        for row in rows:
            for button in row:
                if not isinstance(button, dict) or not isinstance(button.get("text"), str):
                    raise _bad('can\'t parse inline keyboard button: Field "text" must be of type String')
                if not any(key in button for key in actions):
                    raise _bad("can't parse inline keyboard button: "
                               "Text buttons are unallowed in the inline keyboard")
                data = button.get("callback_data")
                if data is not None and not 1 <= len(str(data).encode("utf-8")) <= MAX_CALLBACK_DATA_BYTES:
                    raise _bad("BUTTON_DATA_INVALID")
                url = button.get("url")
                if url is not None and not checked_link(str(url)):
                    raise _bad(f"inline keyboard button URL '{url}' is invalid: Wrong HTTP URL")
        return markup

    def _thread_id(self, params: dict, chat: _Chat) -> int | None:
        thread_id = self._int(params, "message_thread_id")
        if thread_id is None:
            return None
        if chat.type in ("group", "channel"):
            raise _bad("message thread not found")
        if chat.type == "supergroup" and self.strict_chats and not chat.is_forum:
            raise _bad("message thread not found")
        return thread_id

    def _check_flood(self, chat: _Chat) -> None:
        flood = self._flood
        if flood is None:
            return
        now = time.monotonic()
        waits = []
        windows = [(self._flood_global, 1.0, flood.global_per_second),
                   (self._flood_chat[chat.id], 1.0, flood.per_chat_per_second)]
        if chat.type in ("group", "supergroup"):
            windows.append((self._flood_group[chat.id], 60.0, flood.per_group_per_minute))
        for window, span, allowed in windows:
            while window and now - window[0] >= span:
                window.popleft()
            if allowed and len(window) >= allowed:
                waits.append(span - (now - window[-int(allowed)]))
        if waits:
            retry = max(1, math.ceil(max(waits)))
            raise _ApiError(429, f"Too Many Requests: retry after {retry}", {"retry_after": retry})
        for window, _, _ in windows:
            window.append(now)

    def _base_message(self, chat: _Chat, thread_id: int | None) -> dict:
        message: dict[str, Any] = {"message_id": self._take_message_id(chat.id)}
        if chat.type == "channel":
            message["sender_chat"] = chat.as_dict()
        else:
            message["from"] = dict(self._bot_user)
        message["chat"] = chat.as_dict()
        message["date"] = int(time.time())
        if thread_id is not None and chat.type in ("supergroup", "private"):
            message["message_thread_id"] = thread_id
            message["is_topic_message"] = True
        return message

    def _reply_to(self, params: dict, chat: _Chat, message: dict) -> None:
        reply = self._json(params, "reply_parameters", "can't parse reply parameters JSON object")
        reply_id = (reply or {}).get("message_id") if isinstance(reply, dict) else None
        if reply_id is None:
            reply_id = self._int(params, "reply_to_message_id")
        if reply_id is None:
            return
        stored = self._messages.get((chat.id, int(reply_id)))
        if stored is None:
            allow = isinstance(reply, dict) and reply.get("allow_sending_without_reply")
            if allow or self._bool(params, "allow_sending_without_reply"):
                return
            raise _bad("message to be replied not found")
        replied = copy.deepcopy(stored["message"])
        replied.pop("reply_to_message", None)
        message["reply_to_message"] = replied

    def _store_file(self, content: bytes, kind: str, filename: str | None, mime: str | None) -> dict:
        file_id = f"AgAC{secrets.token_urlsafe(40)}"
        unique = f"AQAD{secrets.token_urlsafe(8)}"
        suffix = "." + filename.rsplit(".", 1)[1] if filename and "." in filename else ""
        path = f"{kind}s/file_{len(self._files)}{suffix}"
        self._files[file_id] = {"bytes": content, "file_path": path, "file_unique_id": unique,
                                "filename": filename, "mime_type": mime}
        return {"file_id": file_id, "file_unique_id": unique, "file_size": len(content)}

    def _file_param(self, params: dict, files: dict, key: str) -> tuple[bytes | None, dict | None, str | None]:
        """(bytes, upload info, reference string) for a file parameter."""
        if key in files:
            return files[key]["bytes"], files[key], None
        value = params.get(key)
        if value is None or value == "":
            raise _bad(f"there is no {key} in the request")
        ref = _as_str(value)
        if ref in self._files:
            return self._files[ref]["bytes"], None, ref
        if ref.lower().startswith(("http://", "https://")):
            return None, None, ref
        raise _bad("wrong remote file identifier specified: Wrong string length")

    def _record_send(self, method: str, chat: _Chat, message: dict, params: dict,
                     markup: dict | None, **extra: Any) -> None:
        entry = {
            "method": method,
            "chat_id": chat.id,
            "message_id": message["message_id"],
            "parse_mode": _as_str(params["parse_mode"]) if params.get("parse_mode") else None,
            "message_thread_id": message.get("message_thread_id"),
            "reply_markup": markup,
            "disable_notification": self._bool(params, "disable_notification"),
            "time": time.time(),
            **extra,
        }
        self._sent.append(entry)
        self._messages[(chat.id, message["message_id"])] = {"message": message, "from_bot": True}

    # ------------------------------------------------------------------ methods

    def _get_me(self, params: dict, files: dict) -> dict:
        return dict(self._bot_user)

    def _log_out(self, params: dict, files: dict) -> bool:
        return True

    def _close(self, params: dict, files: dict) -> bool:
        return True

    def _delete_webhook(self, params: dict, files: dict) -> bool:
        self._webhook = {"url": ""}
        if self._bool(params, "drop_pending_updates"):
            self._updates.clear()
        return True

    def _set_webhook(self, params: dict, files: dict) -> bool:
        url = _as_str(params.get("url", ""))
        if url and not url.lower().startswith("https://"):
            raise _bad("bad webhook: An HTTPS URL must be provided for webhook")
        if self._bool(params, "drop_pending_updates"):
            self._updates.clear()
        allowed = self._json(params, "allowed_updates", "can't parse allowed updates JSON object")
        if isinstance(allowed, list):
            self._allowed_updates = tuple(allowed) if allowed else DEFAULT_ALLOWED_UPDATES
        self._webhook = {"url": url}
        if url:
            self._webhook["max_connections"] = self._int(params, "max_connections", 40)
            self._webhook["ip_address"] = _as_str(params.get("ip_address") or "149.154.167.220")
        return True

    def _get_webhook_info(self, params: dict, files: dict) -> dict:
        info = {"url": self._webhook["url"], "has_custom_certificate": False,
                "pending_update_count": len(self._updates)}
        if self._webhook["url"]:
            info["max_connections"] = self._webhook["max_connections"]
            info["ip_address"] = self._webhook["ip_address"]
            if self._allowed_updates != DEFAULT_ALLOWED_UPDATES:
                info["allowed_updates"] = list(self._allowed_updates)
        return info

    @staticmethod
    def _scope_key(scope: Any, language_code: Any) -> tuple[str, str]:
        if isinstance(scope, str):
            try:
                scope = json.loads(scope) if scope else None
            except ValueError:
                raise _bad("can't parse BotCommandScope JSON object") from None
        scope = scope or {"type": "default"}
        return json.dumps(scope, sort_keys=True), _as_str(language_code or "")

    def _set_my_commands(self, params: dict, files: dict) -> bool:
        commands = self._json(params, "commands", "can't parse commands JSON object")
        if not isinstance(commands, list):
            raise _bad("can't parse commands JSON object")
        if len(commands) > 100:
            raise _bad("BOT_COMMANDS_TOO_MUCH")
        cleaned = []
        for command in commands:
            name = str((command or {}).get("command", "")).lstrip("/")
            description = str((command or {}).get("description", ""))
            if not re.fullmatch(r"[a-z0-9_]{1,32}", name):
                raise _bad("BOT_COMMAND_INVALID")
            if not 1 <= len(description) <= 256:
                raise _bad("BOT_COMMAND_DESCRIPTION_INVALID")
            cleaned.append({"command": name, "description": description})
        self._commands[self._scope_key(params.get("scope"), params.get("language_code"))] = cleaned
        return True

    def _get_my_commands(self, params: dict, files: dict) -> list[dict]:
        return copy.deepcopy(self._commands.get(
            self._scope_key(params.get("scope"), params.get("language_code")), []))

    def _delete_my_commands(self, params: dict, files: dict) -> bool:
        self._commands.pop(self._scope_key(params.get("scope"), params.get("language_code")), None)
        return True

    async def _get_updates(self, params: dict, files: dict) -> list[dict]:
        with self._lock:
            if self._webhook["url"]:
                raise _ApiError(409, "Conflict: can't use getUpdates method while webhook is active; "
                                     "use deleteWebhook to delete the webhook first")
            offset = self._int(params, "offset", 0)
            limit = min(max(self._int(params, "limit", 100), 1), 100)
            allowed = self._json(params, "allowed_updates", "can't parse allowed updates JSON object")
            if isinstance(allowed, list):
                self._allowed_updates = tuple(allowed) if allowed else DEFAULT_ALLOWED_UPDATES
        try:
            timeout = min(max(float(_as_str(params.get("timeout") or 0)), 0.0), MAX_POLL_TIMEOUT)
        except ValueError:
            raise _bad("invalid timeout specified") from None
        self._wake_pollers("conflict")
        deadline = time.monotonic() + timeout
        while True:
            with self._lock:
                self._confirm(offset)
                ready = [copy.deepcopy(u) for u in self._updates
                         if self._update_type(u) in self._allowed_updates][:limit]
            remaining = deadline - time.monotonic()
            if ready or remaining <= 0 or self._closing:
                return ready
            fut = asyncio.get_running_loop().create_future()
            self._pollers.add(fut)
            try:
                reason = await asyncio.wait_for(fut, remaining)
            except asyncio.TimeoutError:
                reason = "timeout"
            finally:
                self._pollers.discard(fut)
            if reason == "conflict":
                raise _ApiError(409, _DEFAULT_DESCRIPTIONS[409])

    def _confirm(self, offset: int) -> None:
        if offset > 0:
            self._updates = [u for u in self._updates if u["update_id"] >= offset]
        elif offset < 0:
            self._updates = self._updates[offset:]

    @staticmethod
    def _update_type(update: dict) -> str:
        return next((key for key in update if key in UPDATE_TYPES), "")

    def _send_message(self, params: dict, files: dict) -> dict:
        chat = self._resolve_chat(params)
        thread_id = self._thread_id(params, chat)
        visible, entities = self._formatted(params, "text", MAX_TEXT_LENGTH, caption=False)
        markup = self._reply_markup(params)
        self._check_flood(chat)
        message = self._base_message(chat, thread_id)
        self._reply_to(params, chat, message)
        message["text"] = visible
        if entities:
            message["entities"] = entities
        if markup and "inline_keyboard" in markup:
            message["reply_markup"] = markup
        self._record_send("sendMessage", chat, message, params, markup, text=_as_str(params.get("text")),
                          caption=None, visible=visible, entities=entities)
        return message

    def _send_photo(self, params: dict, files: dict) -> dict:
        chat = self._resolve_chat(params)
        thread_id = self._thread_id(params, chat)
        content, upload, ref = self._file_param(params, files, "photo")
        sizes: list[dict] = []
        if upload is not None:
            if not content:
                raise _bad("file must be non-empty")
            if len(content) > MAX_PHOTO_BYTES:
                raise _ApiError(413, "Request Entity Too Large")
            dims = _image_size(content)
            if dims is None:
                raise _bad("IMAGE_PROCESS_FAILED")
            width, height = dims
            if width + height > 10000 or max(width, height) > 20 * max(min(width, height), 1):
                raise _bad("PHOTO_INVALID_DIMENSIONS")
            stored = self._store_file(content, "photo", upload.get("filename"), upload.get("mime_type"))
            for box in (90, 320, 800, 1280):
                w, h = _scaled(width, height, box)
                sizes.append({**stored, "width": w, "height": h})
                if max(width, height) <= box:
                    break
        else:
            file_id = ref if ref in self._files else None
            stored = ({"file_id": file_id, "file_unique_id": self._files[file_id]["file_unique_id"],
                       "file_size": len(self._files[file_id]["bytes"])} if file_id else
                      self._store_file(b"", "photo", None, "image/jpeg"))
            sizes.append({**stored, "width": 1280, "height": 720})
        visible, entities = self._formatted(params, "caption", MAX_CAPTION_LENGTH, caption=True)
        markup = self._reply_markup(params)
        self._check_flood(chat)
        message = self._base_message(chat, thread_id)
        self._reply_to(params, chat, message)
        message["photo"] = sizes
        if visible:
            message["caption"] = visible
        if entities:
            message["caption_entities"] = entities
        if markup and "inline_keyboard" in markup:
            message["reply_markup"] = markup
        caption = _as_str(params["caption"]) if params.get("caption") is not None else None
        self._record_send("sendPhoto", chat, message, params, markup, text=caption, caption=caption,
                          visible=visible, entities=entities, photo=content, photo_ref=ref,
                          filename=(upload or {}).get("filename"))
        return message

    def _send_document(self, params: dict, files: dict) -> dict:
        chat = self._resolve_chat(params)
        thread_id = self._thread_id(params, chat)
        content, upload, ref = self._file_param(params, files, "document")
        if upload is not None:
            if not content:
                raise _bad("file must be non-empty")
            if len(content) > MAX_UPLOAD_BYTES:
                raise _ApiError(413, "Request Entity Too Large")
            stored = self._store_file(content, "document", upload.get("filename"), upload.get("mime_type"))
            document = {**stored, "file_name": upload.get("filename") or "document",
                        "mime_type": upload.get("mime_type") or "application/octet-stream"}
        else:
            document = {"file_id": ref, "file_unique_id": f"AQAD{secrets.token_urlsafe(8)}"}
        visible, entities = self._formatted(params, "caption", MAX_CAPTION_LENGTH, caption=True)
        markup = self._reply_markup(params)
        self._check_flood(chat)
        message = self._base_message(chat, thread_id)
        self._reply_to(params, chat, message)
        message["document"] = document
        if visible:
            message["caption"] = visible
        if entities:
            message["caption_entities"] = entities
        if markup and "inline_keyboard" in markup:
            message["reply_markup"] = markup
        caption = _as_str(params["caption"]) if params.get("caption") is not None else None
        self._record_send("sendDocument", chat, message, params, markup, text=caption, caption=caption,
                          visible=visible, entities=entities, document=content,
                          filename=(upload or {}).get("filename"))
        return message

    def _edit_message_text(self, params: dict, files: dict) -> dict | bool:
        visible, entities = self._formatted(params, "text", MAX_TEXT_LENGTH, caption=False)
        markup = self._reply_markup(params)
        if params.get("inline_message_id"):
            self._edited.append({"inline_message_id": _as_str(params["inline_message_id"]),
                                 "text": _as_str(params.get("text")), "visible": visible,
                                 "reply_markup": markup, "time": time.time()})
            return True
        chat, message_id, message = self._editable_message(params)
        if "text" not in message:
            raise _bad("there is no text in the message to edit")
        new_markup = markup if markup and "inline_keyboard" in markup else None
        if (message["text"] == visible and message.get("entities", []) == entities
                and message.get("reply_markup") == new_markup):
            raise _bad("message is not modified: specified new message content and reply markup "
                       "are exactly the same as a current content and reply markup of the message")
        self._check_flood(chat)
        message["text"] = visible
        message.pop("entities", None)
        if entities:
            message["entities"] = entities
        message.pop("reply_markup", None)
        if new_markup:
            message["reply_markup"] = new_markup
        message["edit_date"] = int(time.time())
        self._edited.append({"chat_id": chat.id, "message_id": message_id,
                             "text": _as_str(params.get("text")), "visible": visible,
                             "parse_mode": _as_str(params["parse_mode"]) if params.get("parse_mode") else None,
                             "reply_markup": markup, "time": time.time()})
        return copy.deepcopy(message)

    def _editable_message(self, params: dict) -> tuple[Any, int, dict]:
        """The chat, id and stored copy of the bot's own message that `params` name, as the
        edit methods find it, with Telegram's errors when there is none."""
        chat = self._resolve_chat(params)
        message_id = self._int(params, "message_id")
        if message_id is None:
            raise _bad("message identifier is not specified")
        stored = self._messages.get((chat.id, message_id))
        if stored is None:
            raise _bad("message to edit not found")
        if not stored["from_bot"]:
            raise _bad("message can't be edited")
        return chat, message_id, stored["message"]

    def _edit_message_reply_markup(self, params: dict, files: dict) -> dict | bool:
        """Replace (or, without ``reply_markup``, remove) the inline keyboard of a message."""
        markup = self._reply_markup(params)
        new_markup = markup if markup and "inline_keyboard" in markup else None
        if params.get("inline_message_id"):
            self._edited.append({"method": "editMessageReplyMarkup",
                                 "inline_message_id": _as_str(params["inline_message_id"]),
                                 "reply_markup": markup, "time": time.time()})
            return True
        chat, message_id, message = self._editable_message(params)
        if message.get("reply_markup") == new_markup:
            raise _bad("message is not modified: specified new message content and reply markup "
                       "are exactly the same as a current content and reply markup of the message")
        self._check_flood(chat)
        message.pop("reply_markup", None)
        if new_markup:
            message["reply_markup"] = new_markup
        message["edit_date"] = int(time.time())
        self._edited.append({"method": "editMessageReplyMarkup", "chat_id": chat.id, "message_id": message_id,
                             "text": None, "visible": message.get("text"), "reply_markup": markup,
                             "time": time.time()})
        return copy.deepcopy(message)

    def _delete_message(self, params: dict, files: dict) -> bool:
        chat = self._resolve_chat(params)
        message_id = self._int(params, "message_id")
        if message_id is None or (chat.id, message_id) not in self._messages:
            raise _bad("message to delete not found")
        del self._messages[(chat.id, message_id)]
        self._deleted.append((chat.id, message_id))
        return True

    def _answer_callback_query(self, params: dict, files: dict) -> bool:
        query_id = _as_str(params.get("callback_query_id") or "")
        query = self._callbacks.get(query_id)
        if query is None or query["answered"] or time.monotonic() - query["time"] > CALLBACK_QUERY_TTL:
            raise _bad("query is too old and response timeout expired or query ID is invalid")
        text = _as_str(params.get("text") or "")
        if len(text) > 200:
            raise _bad("MESSAGE_TOO_LONG")
        query["answered"] = True
        self._answered.append({"callback_query_id": query_id, "text": text or None,
                               "show_alert": self._bool(params, "show_alert"),
                               "url": params.get("url"), "time": time.time()})
        return True

    def _get_chat(self, params: dict, files: dict) -> dict:
        chat = self._resolve_chat(params, for_sending=False)
        info = chat.as_dict()
        info.update({"accent_color_id": 0, "max_reaction_count": 11,
                     "accepted_gift_types": {"unlimited_gifts": False, "limited_gifts": False,
                                             "unique_gifts": False, "premium_subscription": False,
                                             "gifts_from_channels": False}})
        return info

    def _get_chat_member(self, params: dict, files: dict) -> dict:
        chat = self._resolve_chat(params, for_sending=False)
        user_id = self._int(params, "user_id")
        if user_id is None:
            raise _bad("user_id is empty")
        if user_id == self._bot_id:
            return self._member(self._bot_user, chat.bot_status)
        if user_id in (ANONYMOUS_ADMIN_ID, CHANNEL_BOT_ID) or user_id <= 0:
            raise _bad("user not found")
        if chat.type == "private":
            if user_id != chat.id:
                raise _bad("user not found")
            return self._member(_user(user_id), "member")
        status, anonymous = self._members.get((chat.id, user_id), ("member", False))
        member = self._member(_user(user_id), status)
        if status in ("creator", "administrator"):
            member["is_anonymous"] = anonymous
            if status == "administrator" and chat.type != "channel":
                for key in ("can_post_messages", "can_edit_messages"):
                    member.pop(key, None)
                member["can_pin_messages"] = True
                if chat.type == "supergroup":
                    member["can_manage_topics"] = chat.is_forum
        return member

    def _leave_chat(self, params: dict, files: dict) -> bool:
        chat = self._resolve_chat(params, for_sending=False)
        if chat.type == "private":
            raise _bad("chat member status can't be changed in private chats")
        if chat.bot_status in ("left", "kicked"):
            raise _ApiError(403, chat.forbidden or _forbidden_text(chat.type, "left"))
        chat.bot_status = "left"
        chat.forbidden = _forbidden_text(chat.type, "left")
        return True

    def _send_chat_action(self, params: dict, files: dict) -> bool:
        chat = self._resolve_chat(params)
        action = _as_str(params.get("action") or "")
        if action not in CHAT_ACTIONS:
            raise _bad("wrong parameter action in request")
        self._actions.append((chat.id, action))
        return True

    def _get_file(self, params: dict, files: dict) -> dict:
        file_id = _as_str(params.get("file_id") or "")
        stored = self._files.get(file_id)
        if stored is None:
            raise _bad("invalid file_id")
        return {"file_id": file_id, "file_unique_id": stored["file_unique_id"],
                "file_size": len(stored["bytes"]), "file_path": stored["file_path"]}


_CANONICAL_NAMES = (
    "getMe", "logOut", "close", "deleteWebhook", "setWebhook", "getWebhookInfo",
    "setMyCommands", "getMyCommands", "deleteMyCommands", "getUpdates", "sendMessage",
    "editMessageText", "editMessageReplyMarkup", "deleteMessage", "sendPhoto", "sendDocument", "answerCallbackQuery",
    "getChat", "getChatMember", "leaveChat", "sendChatAction", "getFile",
)
_CANONICAL = {name.lower(): name for name in _CANONICAL_NAMES}
_METHODS = {name.lower(): "_" + re.sub(r"(?<!^)([A-Z])", r"_\1", name).lower()
            for name in _CANONICAL_NAMES}
