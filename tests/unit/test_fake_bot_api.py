"""The fake Bot API, driven by the real python-telegram-bot client."""

from __future__ import annotations

import asyncio
import contextlib
import datetime as dtm
import logging
import struct
import threading
import time
import warnings
import zlib

import pytest
from telegram import Bot, InlineKeyboardButton, InlineKeyboardMarkup
from telegram.error import (
    BadRequest,
    ChatMigrated,
    Conflict,
    Forbidden,
    InvalidToken,
    NetworkError,
    RetryAfter,
    TimedOut,
)
from telegram.ext import ApplicationBuilder, CallbackQueryHandler, ChatMemberHandler, CommandHandler
from telegram.request import HTTPXRequest

from tests.fakes.bot_api import EntityParseError, FakeBotAPI, parse_html, utf16_len


@pytest.fixture
def fake():
    with FakeBotAPI() as server:
        yield server
        assert server.errors == []


def make_bot(fake: FakeBotAPI, token: str | None = None, **request_kwargs) -> Bot:
    request = HTTPXRequest(**request_kwargs) if request_kwargs else None
    return Bot(token or fake.token, base_url=fake.api_base, base_file_url=fake.file_base,
               request=request)


def run_with_bot(fake: FakeBotAPI, action, **request_kwargs):
    async def main():
        async with make_bot(fake, **request_kwargs) as bot:
            return await action(bot)
    return asyncio.run(main())


def seconds(error: RetryAfter) -> float:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        value = error.retry_after
    return value.total_seconds() if isinstance(value, dtm.timedelta) else float(value)


def tiny_png(width: int = 3, height: int = 2) -> bytes:
    def chunk(kind: bytes, data: bytes) -> bytes:
        return (struct.pack(">I", len(data)) + kind + data
                + struct.pack(">I", zlib.crc32(kind + data) & 0xFFFFFFFF))
    rows = b"".join(b"\x00" + b"\x10\x20\x30" * width for _ in range(height))
    header = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    return (b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + chunk(b"IDAT", zlib.compress(rows))
            + chunk(b"IEND", b""))


@contextlib.asynccontextmanager
async def running_app(fake: FakeBotAPI, *handlers):
    app = (ApplicationBuilder().token(fake.token).base_url(fake.api_base)
           .base_file_url(fake.file_base).build())
    for handler in handlers:
        app.add_handler(handler)
    await app.initialize()
    await app.start()
    await app.updater.start_polling(timeout=5)
    try:
        yield app
    finally:
        await app.updater.stop()
        await app.stop()
        await app.shutdown()


# --------------------------------------------------------------------------- basics


def test_get_me_answers_the_bot_user(fake):
    me = run_with_bot(fake, lambda bot: bot.get_me())
    assert me.id == fake.bot_id
    assert me.is_bot and me.username == "newswatch_test_bot"
    assert [name for name, _ in fake.calls] == ["getMe", "getMe"]


@pytest.mark.parametrize(("token", "status"), [
    ("123456:" + "A" * 35, "Unauthorized"),
    ("not-a-token", "Not Found"),
])
def test_wrong_token_is_refused_like_telegram(fake, token, status):
    with pytest.raises(InvalidToken, match=status):
        asyncio.run(make_bot(fake, token=token).get_me())
    assert fake.calls == []


def test_unknown_method_is_404(fake):
    async def call(bot):
        return await bot.do_api_request("noSuchMethod")
    with pytest.raises(Exception, match="Not Found|noSuchMethod"):
        run_with_bot(fake, call)


def test_the_token_never_reaches_a_log_a_repr_or_the_records(fake, caplog):
    caplog.set_level(logging.DEBUG)
    for chatty in ("httpx", "httpcore", "telegram"):  # they log request URLs; newswatch keeps them at WARNING
        caplog.set_level(logging.WARNING, logger=chatty)

    async def traffic(bot):
        await bot.send_message(1, "<b>hi</b>", parse_mode="HTML")
        with pytest.raises(BadRequest):
            await bot.send_message(1, "<x>", parse_mode="HTML")

    run_with_bot(fake, traffic)
    own_records = [r for r in caplog.records if not r.name.startswith(("httpx", "httpcore", "telegram"))]
    assert all(fake.token not in r.getMessage() for r in own_records)
    secret = fake.token.split(":", 1)[1]
    assert secret not in repr(fake)
    assert secret not in repr(fake.calls) and secret not in repr(fake.sent)


# --------------------------------------------------------------------------- sendMessage and HTML


def test_send_message_with_valid_html_is_accepted_and_recorded(fake):
    html = '<b>Summit</b> in <a href="https://example.com/a?x=1&amp;y=2">Hanoi</a> 😀 #north_korea'
    message = run_with_bot(fake, lambda bot: bot.send_message("42", html, parse_mode="HTML"))
    assert message.text == "Summit in Hanoi 😀 #north_korea"
    assert message.chat.type == "private" and message.message_id == 1
    kinds = {(e.type, e.offset, e.length) for e in message.entities}
    assert ("bold", 0, 6) in kinds
    assert ("text_link", 10, 5) in kinds
    assert ("hashtag", 19, 12) in kinds
    [sent] = fake.sent
    assert sent["chat_id"] == 42 and sent["text"] == html and sent["parse_mode"] == "HTML"
    assert sent["visible"] == message.text
    assert fake.messages_for(42) == [sent]


def test_message_ids_count_up_per_chat_and_chat_types_follow_the_id(fake):
    async def send(bot):
        return [await bot.send_message(chat, "x") for chat in (7, 7, -100123, -55)]
    messages = run_with_bot(fake, send)
    assert [m.message_id for m in messages] == [1, 2, 1, 1]
    assert [m.chat.type for m in messages] == ["private", "private", "supergroup", "group"]


@pytest.mark.parametrize(("html", "description"), [
    ("<script>alert(1)</script>", 'Unsupported start tag "script" at byte offset 0'),
    ("<b>bold <i>both</b>", 'Unmatched end tag at byte offset 15, expected "</i>", found "</b>"'),
    ("<b>never closed", 'Can\'t find end tag corresponding to start tag "b"'),
    ("closed </b>", "Unexpected end tag at byte offset 7"),
    ("1 < 2", 'Unsupported start tag "" at byte offset 2'),
    ("<span>x</span>", 'Tag "span" must have class "tg-spoiler" at byte offset 0'),
    ('<a href="https://x.org>x</a>', "Unclosed start tag at byte offset 0"),
    ("AT&T", "Unsupported HTML entity at byte offset 2: "
             "a '&' that is not part of an entity must be written as &amp;"),
    ("한국 <br>", 'Unsupported start tag "br" at byte offset 7'),
])
def test_bad_html_is_rejected_with_telegrams_wording(fake, html, description):
    with pytest.raises(BadRequest) as caught:
        run_with_bot(fake, lambda bot: bot.send_message(1, html, parse_mode="HTML"))
    assert str(caught.value).lower() == f"can't parse entities: {description}".lower()
    assert fake.sent == []
    method, params = fake.calls[-1]
    assert method == "sendMessage" and params["text"] == html


def test_length_is_counted_in_utf16_units_after_removing_tags(fake):
    fits = "<b>" + "😀" * 2048 + "</b>"
    too_long = "😀" * 2049

    async def send(bot):
        await bot.send_message(1, fits, parse_mode="HTML")
        with pytest.raises(BadRequest, match="Message is too long"):
            await bot.send_message(1, too_long, parse_mode="HTML")
        with pytest.raises(BadRequest, match="Message text is empty"):
            await bot.send_message(1, "<b> </b>", parse_mode="HTML")

    run_with_bot(fake, send)
    assert utf16_len(fake.sent[0]["visible"]) == 4096


@pytest.mark.filterwarnings("ignore:Please use 'Bot.sendMessage'")
def test_missing_chat_id_and_unsupported_parse_mode(fake):
    async def calls(bot):
        with pytest.raises(BadRequest, match="Chat_id is empty"):
            await bot.do_api_request("sendMessage", {"text": "x"})
        with pytest.raises(BadRequest, match="Unsupported parse_mode"):
            await bot.send_message(1, "x", parse_mode="BBCode")
    run_with_bot(fake, calls)


@pytest.mark.parametrize(("html", "visible", "entities"), [
    ("a &lt;b&gt; &amp; &quot;c&quot; &#x1F600;&#33;", 'a <b> & "c" 😀!', []),
    ("<i>x</i><tg-spoiler>y</tg-spoiler><span class=\"tg-spoiler\">z</span>", "xyz",
     [("italic", 0, 1), ("spoiler", 1, 1), ("spoiler", 2, 1)]),
    ('<pre><code class="language-python">x = 1</code></pre>', "x = 1", [("pre", 0, 5)]),
    ('<a href="javascript:alert(1)">x</a>', "x", []),
    ("😀<b>한</b>", "😀한", [("bold", 2, 1)]),
    ("<blockquote expandable>q</blockquote>", "q", [("expandable_blockquote", 0, 1)]),
])
def test_parse_html_matches_telegram(html, visible, entities):
    text, parsed = parse_html(html)
    assert text == visible
    assert [(e["type"], e["offset"], e["length"]) for e in parsed] == entities


def test_lenient_mode_keeps_a_stray_ampersand_like_telegram_does():
    assert parse_html("AT&T &foo; x", strict_entities=False)[0] == "AT&T &foo; x"
    with pytest.raises(EntityParseError):
        parse_html("AT&T")


# --------------------------------------------------------------------------- faults


RETRY_AFTER_WARNING = "ignore:Deprecated since version v22.2:telegram.warnings.PTBDeprecationWarning"


@pytest.mark.filterwarnings(RETRY_AFTER_WARNING)
def test_429_raises_retry_after_with_the_servers_delay(fake):
    fake.fail_next("sendMessage", 1, status=429, retry_after=7)

    async def send(bot):
        with pytest.raises(RetryAfter) as caught:
            await bot.send_message(1, "x")
        await bot.send_message(1, "second try")
        return caught.value

    error = run_with_bot(fake, send)
    assert seconds(error) == 7
    assert [s["text"] for s in fake.sent] == ["second try"]


def test_403_for_a_blocked_chat(fake):
    fake.block_chat(99)

    async def send(bot):
        with pytest.raises(Forbidden, match="bot was blocked by the user"):
            await bot.send_message(99, "x")
        await bot.send_message(100, "other chats still work")

    run_with_bot(fake, send)
    assert [s["chat_id"] for s in fake.sent] == [100]


def test_kicked_from_a_group_via_my_chat_member(fake):
    fake.chat_member_update(-500, new_status="kicked", chat_type="group")
    with pytest.raises(Forbidden, match="bot was kicked from the group chat"):
        run_with_bot(fake, lambda bot: bot.send_message(-500, "x"))


def test_migrated_group_raises_chat_migrated_with_the_new_id(fake):
    fake.migrate_chat(-4001, -1004001)
    with pytest.raises(ChatMigrated) as caught:
        run_with_bot(fake, lambda bot: bot.send_message(-4001, "x"))
    assert caught.value.new_chat_id == -1004001
    message = run_with_bot(fake, lambda bot: bot.send_message(-1004001, "x"))
    assert message.chat.type == "supergroup"


@pytest.mark.parametrize(("status", "match"), [
    (502, "Bad Gateway"),
    (500, "Internal Server Error"),
    (0, "Server disconnected"),
])
def test_server_side_failures_raise_network_error(fake, status, match):
    fake.fail_next("*", 1, status=status)
    with pytest.raises(NetworkError, match=match):
        run_with_bot(fake, lambda bot: bot.get_me())


def test_down_drops_connections_until_back_up(fake):
    fake.set_down(True)
    with pytest.raises(NetworkError):
        asyncio.run(make_bot(fake).get_me())
    fake.set_down(False)
    assert run_with_bot(fake, lambda bot: bot.get_me()).id == fake.bot_id


def test_hang_holds_requests_until_released_and_then_delivers(fake):
    fake.set_hang(True, methods=["sendMessage"])

    async def send(bot):
        with pytest.raises(TimedOut):
            await bot.send_message(5, "late", read_timeout=0.2)

    run_with_bot(fake, send)
    assert fake.sent == []
    fake.set_hang(False)
    fake.wait_for(lambda: fake.sent, timeout=2)
    assert fake.sent[0]["text"] == "late"


@pytest.mark.filterwarnings(RETRY_AFTER_WARNING)
def test_flood_mode_enforces_one_message_per_second_per_chat(fake):
    fake.flood(per_chat_per_second=1, global_per_second=30)

    async def burst(bot):
        await bot.send_message(1, "first")
        await bot.send_message(2, "another chat")
        with pytest.raises(RetryAfter) as caught:
            await bot.send_message(1, "too soon")
        return caught.value

    error = run_with_bot(fake, burst)
    assert seconds(error) == 1
    assert [s["text"] for s in fake.sent] == ["first", "another chat"]


# --------------------------------------------------------------------------- updates


def test_get_updates_long_polls_and_drops_confirmed_updates(fake):
    async def poll(bot):
        started = time.monotonic()
        assert await bot.get_updates(timeout=0.3) == ()
        assert time.monotonic() - started >= 0.25

        threading.Timer(0.1, fake.user_message, args=(3, "hello")).start()
        started = time.monotonic()
        first = await bot.get_updates(timeout=5)
        assert time.monotonic() - started < 2
        assert [u.message.text for u in first] == ["hello"]

        fake.user_message(3, "again")
        again = await bot.get_updates(offset=0, timeout=0)
        assert [u.message.text for u in again] == ["hello", "again"]
        rest = await bot.get_updates(offset=again[0].update_id + 1, timeout=0)
        assert [u.message.text for u in rest] == ["again"]
        await bot.get_updates(offset=rest[-1].update_id + 1, timeout=0)

    run_with_bot(fake, poll)
    assert fake.pending_updates == 0


def test_allowed_updates_filters_and_is_remembered(fake):
    fake.channel_post(-1009, "post")
    fake.user_message(4, "dm")

    async def poll(bot):
        only_messages = await bot.get_updates(timeout=0, allowed_updates=["message"])
        remembered = await bot.get_updates(timeout=0)
        return only_messages, remembered

    only_messages, remembered = run_with_bot(fake, poll)
    assert [u.message.text for u in only_messages] == ["dm"]
    assert [u.message.text for u in remembered] == ["dm"]


def test_start_command_reaches_a_command_handler_through_long_polling(fake):
    async def start(update, context):
        await update.message.reply_text(f"Welcome, {update.effective_user.first_name}")

    async def scenario():
        async with running_app(fake, CommandHandler("start", start)):
            fake.user_message(555, "/start", first_name="Mina")
            await fake.wait_for_async(lambda: fake.messages_for(555), timeout=5)

    asyncio.run(scenario())
    assert fake.messages_for(555)[0]["text"] == "Welcome, Mina"
    methods = [name for name, _ in fake.calls]
    assert methods[:3] == ["getMe", "deleteWebhook", "getUpdates"]
    assert fake.pending_updates == 0


def test_command_in_a_forum_topic_is_answered_in_the_topic(fake):
    async def start(update, context):
        await update.message.reply_text("here")

    async def scenario():
        async with running_app(fake, CommandHandler("start", start)):
            fake.user_message(-1007, "/start@newswatch_test_bot", thread_id=12, title="Desk")
            await fake.wait_for_async(lambda: fake.messages_for(-1007), timeout=5)

    asyncio.run(scenario())
    [reply] = fake.messages_for(-1007)
    assert reply["message_thread_id"] == 12


def test_callback_query_reaches_a_callback_query_handler(fake):
    pressed = []

    async def on_button(update, context):
        pressed.append(update.callback_query.data)
        await update.callback_query.answer("Muted")
        await update.callback_query.edit_message_text("Muted for today")

    async def scenario():
        async with running_app(fake, CallbackQueryHandler(on_button)) as app:
            keyboard = InlineKeyboardMarkup([[InlineKeyboardButton("Mute", callback_data="mute:1d")]])
            sent = await app.bot.send_message(77, "Alert", reply_markup=keyboard)
            fake.callback_query(77, "mute:1d", message_id=sent.message_id)
            await fake.wait_for_async(lambda: fake.edited, timeout=5)

    asyncio.run(scenario())
    assert pressed == ["mute:1d"]
    assert fake.sent[0]["reply_markup"]["inline_keyboard"][0][0]["callback_data"] == "mute:1d"
    assert fake.answered_callbacks[0]["text"] == "Muted"
    assert fake.edited[0]["visible"] == "Muted for today"


def test_bot_commands_round_trip(fake):
    async def commands(bot):
        await bot.set_my_commands([("start", "Subscribe"), ("topics", "List topics")])
        listed = await bot.get_my_commands()
        await bot.delete_my_commands()
        return listed, await bot.get_my_commands()

    listed, after = run_with_bot(fake, commands)
    assert [c.command for c in listed] == ["start", "topics"]
    assert after == ()


# --------------------------------------------------------------------------- media and chats


def test_send_photo_records_the_uploaded_bytes(fake):
    image = tiny_png()

    async def send(bot):
        message = await bot.send_photo(8, image, caption="<b>Chart</b>", parse_mode="HTML")
        downloaded = await (await bot.get_file(message.photo[-1].file_id)).download_as_bytearray()
        return message, bytes(downloaded)

    message, downloaded = run_with_bot(fake, send)
    [sent] = fake.sent
    assert sent["method"] == "sendPhoto" and sent["photo"] == image
    assert sent["caption"] == "<b>Chart</b>" and sent["visible"] == "Chart"
    assert (message.photo[-1].width, message.photo[-1].height) == (3, 2)
    assert downloaded == image


def test_send_photo_rejects_what_telegram_rejects(fake):
    async def send(bot):
        with pytest.raises(BadRequest, match="Image_process_failed"):
            await bot.send_photo(8, b"not an image")
        with pytest.raises(BadRequest, match="Message caption is too long"):
            await bot.send_photo(8, tiny_png(), caption="x" * 1025)
    run_with_bot(fake, send)
    assert fake.sent == []


def test_chat_queries_and_actions(fake):
    fake.add_chat(-1001, "channel", title="Alerts", username="nw_alerts")

    async def calls(bot):
        chat = await bot.get_chat("@nw_alerts")
        me = await bot.get_chat_member(-1001, fake.bot_id)
        await bot.send_chat_action(5, "typing")
        await bot.leave_chat(-1001)
        with pytest.raises(Forbidden, match="not a member of the channel chat"):
            await bot.send_message(-1001, "x")
        return chat, me

    chat, me = run_with_bot(fake, calls)
    assert chat.id == -1001 and chat.type == "channel" and chat.title == "Alerts"
    assert me.status == "administrator"
    assert fake.chat_actions == [(5, "typing")]


def test_edit_and_delete_follow_telegrams_rules(fake):
    async def calls(bot):
        message = await bot.send_message(6, "one")
        with pytest.raises(BadRequest, match="Message is not modified"):
            await bot.edit_message_text("one", chat_id=6, message_id=message.message_id)
        edited = await bot.edit_message_text("<i>two</i>", chat_id=6, message_id=message.message_id,
                                             parse_mode="HTML")
        assert await bot.delete_message(6, message.message_id)
        with pytest.raises(BadRequest, match="Message to delete not found"):
            await bot.delete_message(6, message.message_id)
        return edited

    edited = run_with_bot(fake, calls)
    assert edited.text == "two" and edited.edit_date is not None
    assert fake.deleted == [(6, 1)]


def test_send_document_records_bytes_and_filename(fake):
    async def send(bot):
        return await bot.send_document(9, b"id,title\n1,Summit\n", filename="stories.csv",
                                       caption="Export")

    message = run_with_bot(fake, send)
    [sent] = fake.sent
    assert sent["method"] == "sendDocument" and sent["document"] == b"id,title\n1,Summit\n"
    assert sent["filename"] == "stories.csv" and message.document.file_name == "stories.csv"


def test_polling_conflicts_like_telegram(fake):
    async def poll(bot):
        await bot.set_webhook("https://example.com/hook")
        with pytest.raises(Conflict, match="webhook is active"):
            await bot.get_updates(timeout=0)
        info = await bot.get_webhook_info()
        await bot.delete_webhook()
        async with make_bot(fake) as other_instance:
            first = asyncio.create_task(other_instance.get_updates(timeout=5))
            await asyncio.sleep(0.05)
            second = await bot.get_updates(timeout=0)
            with pytest.raises(Conflict, match="terminated by other getUpdates request"):
                await first
        return info, second

    info, second = run_with_bot(fake, poll)
    assert info.url == "https://example.com/hook" and second == ()


def test_being_blocked_reaches_a_my_chat_member_handler_and_stops_sends(fake):
    seen = []

    async def on_member(update, context):
        seen.append(update.my_chat_member.new_chat_member.status)

    async def scenario():
        async with running_app(fake, ChatMemberHandler(on_member, ChatMemberHandler.MY_CHAT_MEMBER)) as app:
            fake.chat_member_update(31, new_status="kicked")
            await fake.wait_for_async(lambda: seen, timeout=5)
            with pytest.raises(Forbidden, match="blocked by the user"):
                await app.bot.send_message(31, "x")

    asyncio.run(scenario())
    assert seen == ["kicked"]


def test_channel_posts_are_delivered_as_channel_post_updates(fake):
    fake.channel_post(-1005, "/status", title="Desk", username="nw_desk")

    async def poll(bot):
        return await bot.get_updates(timeout=0)

    [update] = run_with_bot(fake, poll)
    assert update.channel_post.text == "/status"
    assert update.channel_post.sender_chat.username == "nw_desk"
    assert update.channel_post.entities[0].type == "bot_command"


def test_wait_for_gives_up_with_timeout_error(fake):
    with pytest.raises(TimeoutError):
        fake.wait_for(lambda: fake.sent, timeout=0.05)


def test_edit_message_reply_markup_replaces_or_removes_the_keyboard_like_telegram(fake):
    keyboard = InlineKeyboardMarkup([[InlineKeyboardButton("👍", callback_data="vote:+:1")]])
    counted = InlineKeyboardMarkup([[InlineKeyboardButton("👍 1", callback_data="vote:+:1")]])

    async def action(bot):
        sent = await bot.send_message(77, "Alert", reply_markup=keyboard)
        edited = await bot.edit_message_reply_markup(77, sent.message_id, reply_markup=counted)
        with pytest.raises(BadRequest, match="(?i)not modified"):
            await bot.edit_message_reply_markup(77, sent.message_id, reply_markup=counted)
        removed = await bot.edit_message_reply_markup(77, sent.message_id)
        with pytest.raises(BadRequest, match="(?i)message to edit not found"):
            await bot.edit_message_reply_markup(77, 9999, reply_markup=counted)
        return edited, removed

    edited, removed = run_with_bot(fake, action)
    assert edited.text == "Alert" and edited.reply_markup.inline_keyboard[0][0].text == "👍 1"
    assert removed.reply_markup is None
    assert [e["method"] for e in fake.edited] == ["editMessageReplyMarkup"] * 2
