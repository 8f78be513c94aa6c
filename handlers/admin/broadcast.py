"""/broadcast and /broadcasts: an admin writes a notice, picks an audience, previews, sends.

The draft lives in `user_data` (persisted), so a restart does not lose it. Every press is
checked again on the server. An update that reads or writes makes one call into
`bot.services.broadcasts`, in one transaction; that call asks the guard whether the presser is
an admin of the school and checks that every id in the callback data belongs to that school (a
refusal is audited there; the handler only tells the person, `presses.refuse(...,
audited=True)`). Steps that answer before or without a service call (writing the notice, going
back, "Sending…", "Send later", cancelling the draft, a press no step takes) ask
`broadcasts.may_broadcast` first, for the friendly answer. Each draft has its own random id,
carried in every button of its keyboards (`bc:<step>:<draft id>:…`): a button of an earlier
draft's preview is refused instead of acting on whatever draft is current.
"""

from __future__ import annotations

import datetime as dt
import html
import re
import secrets
import warnings
from dataclasses import dataclass
from typing import Any

from telegram import CallbackQuery, InlineKeyboardButton, InlineKeyboardMarkup, Message, Update
from telegram.constants import ParseMode
from telegram.ext import (
    CallbackQueryHandler,
    CommandHandler,
    ConversationHandler,
    MessageHandler,
    filters,
)
from telegram.warnings import PTBUserWarning

from bot.broadcasting import audience_label, status_text
from bot.context import BotContext
from bot.i18n import N_, Translator
from bot.services import broadcasts
from bot.services.broadcasts import (
    REFUSED,
    Audience,
    AudienceKind,
    Cancelled,
    Choice,
    Notice,
    Preview,
    Refused,
    Stop,
    Unconfirmed,
)
from bot.services.outbox import MessageTooLong, split_html, utf16_len, visible_text
from handlers.common.cancel import cancel
from handlers.common.presses import as_int, edit_markup, edit_or_send, fields, ints, refuse
from storage.models import utcnow

COMPOSE, AUDIENCE, OPTIONS, WHEN = range(4)
DRAFT = "pending_broadcast"
COURSES_PER_PAGE = 8
REPING_HOURS = 24
PREVIEW_LENGTH = 3000  # characters of the notice shown in the preview
AUDIENCE_BUTTONS = (
    (AudienceKind.PARENTS, AudienceKind.GRADE),
    (AudienceKind.CLASS, AudienceKind.COURSE),
    (AudienceKind.PERIOD, AudienceKind.UNPAID),
    (AudienceKind.TEACHERS, AudienceKind.GROUPS),
)
AUDIENCE_CHOICES = {
    AudienceKind.PARENTS: N_("All parents"),
    AudienceKind.GRADE: N_("A grade"),
    AudienceKind.CLASS: N_("A class"),
    AudienceKind.COURSE: N_("A course"),
    AudienceKind.PERIOD: N_("A period"),
    AudienceKind.UNPAID: N_("Unpaid bills"),
    AudienceKind.TEACHERS: N_("All teachers"),
    AudienceKind.GROUPS: N_("Class groups"),
}


def _is_admin(context: BotContext) -> bool:
    """The early, friendly check of a step that answers before or without a service call."""
    return broadcasts.may_broadcast(context.member)


def _draft(context: BotContext) -> dict[str, Any] | None:
    if context.user_data is None:
        return None
    draft = context.user_data.get(DRAFT)
    # A draft saved before drafts had ids cannot be told apart from another: it has expired.
    return draft if isinstance(draft, dict) and "id" in draft else None


def _not_admin_text(context: BotContext) -> str:
    return context.t.gettext("Only the school's after-school admins can send broadcasts.")


async def _refuse(update: Update, context: BotContext, *, audited: bool = False) -> int:
    """Not an admin (any more): say so, drop any draft, end the conversation.

    `audited`: the service's guard recorded the refusal already.
    """
    if context.user_data is not None:
        context.user_data.pop(DRAFT, None)
    text = _not_admin_text(context)
    if update.callback_query is not None:
        await refuse(update, context, REFUSED, text=text, audited=audited)
    elif update.effective_message is not None:
        await update.effective_message.reply_text(text)
    return ConversationHandler.END


async def _refused(update: Update, context: BotContext, refused: Refused) -> int | None:
    """Tell the presser what the service refused (and audited): a non-admin's press ends the
    conversation; a press naming nothing of the school changes nothing and keeps the step."""
    if refused is Refused.NOT_ADMIN:
        return await _refuse(update, context, audited=True)
    await refuse(update, context, REFUSED, audited=True)
    return None


async def _outdated(update: Update, context: BotContext) -> None:
    """A button of another draft than the current one: it changes nothing."""
    assert update.callback_query is not None
    await update.callback_query.answer(
        context.t.gettext(
            "This preview is out of date: you have started another broadcast since. "
            "Use the buttons of the newest preview, or send /broadcast to start again."
        ),
        show_alert=True,
    )


# Each step's fields after `bc:<step>:<draft id>:`.
STEPS = {"a": 1, "v": 2, "p": 2, "back": 0, "o": 1, "send": 0, "later": 0, "abort": 0}
OPTION_NAMES = ("ack", "reping", "urgent")


@dataclass(frozen=True)
class Press:
    """A broadcast button's data: the step, the draft it belongs to, and what it chooses."""

    step: str
    draft_id: str
    kind: AudienceKind | None = None
    number: int | None = None  # a grade, class, period or course id; a page of courses
    option: str | None = None


def parse_press(data: str | None) -> Press | None:
    """The press, or None if no button Kehou makes has this shape (a forged press)."""
    parts = (data or "").split(":")
    step = parts[1] if len(parts) > 1 else ""
    count = STEPS.get(step)
    found = fields(data, f"bc:{step}:", count + 1) if count is not None else None
    if found is None:
        return None
    draft_id, *rest = found
    if step == "o":
        return Press(step, draft_id, option=rest[0]) if rest[0] in OPTION_NAMES else None
    if step not in ("a", "v", "p"):
        return Press(step, draft_id)
    kind = next((k for k in AudienceKind if k.value == rest[0]), None)
    number = as_int(rest[1]) if len(rest) > 1 else None
    if kind is None or (len(rest) > 1 and number is None):
        return None
    if step == "p" and kind is not AudienceKind.COURSE:
        return None
    return Press(step, draft_id, kind, number)


async def _press(
    update: Update, context: BotContext, *, guarded: bool = False
) -> tuple[dict[str, Any], Press] | int | None:
    """The current draft and the press on one of its buttons; else the refusal's next state.

    None keeps the conversation in its step: a forged press, or a button of an earlier draft.
    `guarded`: the step calls the service, whose guard checks the presser's role; a step that
    answers on its own, or a press no step takes, asks `_is_admin` here first.
    """
    assert update.callback_query is not None
    press = parse_press(update.callback_query.data)
    draft = _draft(context)
    current = press is not None and draft is not None and press.draft_id == draft["id"]
    if not (guarded and current) and not _is_admin(context):
        return await _refuse(update, context)
    if press is None:
        await refuse(update, context, REFUSED)
        return None
    if draft is None:
        return await _expired(update, context)
    if press.draft_id != draft["id"]:
        await _outdated(update, context)
        return None
    return draft, press


# ---------------------------------------------------------------------------------------------
# Compose


async def begin(update: Update, context: BotContext) -> int:
    if not _is_admin(context):
        return await _refuse(update, context)
    assert context.user_data is not None
    context.user_data[DRAFT] = {
        "id": secrets.token_hex(4),
        "ack": False,
        "reping": False,
        "urgent": False,
    }
    await update.effective_message.reply_text(  # type: ignore[union-attr]
        context.t.gettext(
            "Send me the notice: a text, or a photo or a file with a caption. Formatting "
            "(bold, links) is kept. /cancel stops."
        )
    )
    return COMPOSE


async def receive_notice(update: Update, context: BotContext) -> int:
    if not _is_admin(context):
        return await _refuse(update, context)
    message = update.effective_message
    draft = _draft(context)
    assert message is not None
    if draft is None:
        return await _expired(update, context)
    if message.photo:
        draft["attachment"] = {"type": "photo", "file_id": message.photo[-1].file_id}
        draft["text"] = message.caption_html or ""
    elif message.document:
        draft["attachment"] = {"type": "document", "file_id": message.document.file_id}
        draft["text"] = message.caption_html or ""
    elif message.text:
        draft["attachment"] = None
        draft["text"] = message.text_html
    else:
        await message.reply_text(
            context.t.gettext("Please send a text, a photo or a file, or /cancel.")
        )
        return COMPOSE
    await message.reply_text(
        context.t.gettext("Who should receive it?"),
        reply_markup=_audience_markup(context.t, draft["id"]),
    )
    return AUDIENCE


def _audience_markup(t: Translator, draft_id: str) -> InlineKeyboardMarkup:
    rows = [
        [
            InlineKeyboardButton(
                t.gettext(AUDIENCE_CHOICES[kind]), callback_data=f"bc:a:{draft_id}:{kind}"
            )
            for kind in pair
        ]
        for pair in AUDIENCE_BUTTONS
    ]
    rows.append([InlineKeyboardButton(t.gettext("Cancel"), callback_data=f"bc:abort:{draft_id}")])
    return InlineKeyboardMarkup(rows)


# ---------------------------------------------------------------------------------------------
# Audience


async def choose_audience(update: Update, context: BotContext) -> int | None:
    """An audience button: a kind, a value of that kind, a page of courses, or back."""
    query = update.callback_query
    assert query is not None
    t = context.t
    pressed = await _press(update, context, guarded=True)
    if not isinstance(pressed, tuple):
        return pressed
    draft, press = pressed
    if press.kind is None:  # back to the kinds
        if not _is_admin(context):
            return await _refuse(update, context)
        await query.answer()
        await edit_or_send(
            query,
            t.gettext("Who should receive it?"),
            reply_markup=_audience_markup(t, draft["id"]),
        )
        return AUDIENCE
    if press.step == "p" or (press.step == "a" and press.kind in broadcasts.NEEDS_VALUE):
        async with context.db.transaction() as session:
            found = await broadcasts.choices(
                session, context.member, press.kind, pressed=query.data
            )
        if isinstance(found, Refused):
            return await _refused(update, context, found)
        await query.answer()
        page = (press.number or 0) if press.step == "p" else 0
        markup = _values_markup(t, draft["id"], press.kind, found, page)
        if press.step == "p":
            await edit_markup(query, markup)
        else:
            await edit_or_send(query, t.gettext("Which one?"), reply_markup=markup)
        return AUDIENCE
    audience = Audience(press.kind, press.number)
    async with context.db.transaction() as session:
        shown = await broadcasts.preview(session, context.member, audience, pressed=query.data)
    if isinstance(shown, Refused):
        return await _refused(update, context, shown)
    await query.answer()
    draft["audience"] = audience.to_json()
    return await _show_preview(query, context, draft, shown)


def _values_markup(
    t: Translator, draft_id: str, kind: AudienceKind, values: list[Choice], page: int
) -> InlineKeyboardMarkup:
    buttons: list[InlineKeyboardButton] = []
    per_row = 3
    extra: list[InlineKeyboardButton] = []
    if kind is AudienceKind.PERIOD:
        buttons = [
            InlineKeyboardButton(
                t.gettext("Period 1: homework help"), callback_data=f"bc:v:{draft_id}:period:1"
            ),
            InlineKeyboardButton(
                t.gettext("Period 2: enrichment"), callback_data=f"bc:v:{draft_id}:period:2"
            ),
        ]
        per_row = 1
    elif kind is AudienceKind.GRADE:
        buttons = [
            InlineKeyboardButton(
                t.gettext("Grade {grade}").format(grade=c.value),
                callback_data=f"bc:v:{draft_id}:grade:{c.value}",
            )
            for c in values
        ]
    elif kind is AudienceKind.CLASS:
        buttons = [
            InlineKeyboardButton(c.name, callback_data=f"bc:v:{draft_id}:class:{c.value}")
            for c in values
        ]
    else:
        pages = max((len(values) - 1) // COURSES_PER_PAGE + 1, 1)
        page = min(max(page, 0), pages - 1)
        shown = values[page * COURSES_PER_PAGE : (page + 1) * COURSES_PER_PAGE]
        buttons = [
            InlineKeyboardButton(c.name, callback_data=f"bc:v:{draft_id}:course:{c.value}")
            for c in shown
        ]
        per_row = 2
        if page > 0:
            extra.append(
                InlineKeyboardButton("‹", callback_data=f"bc:p:{draft_id}:course:{page - 1}")
            )
        extra.append(
            InlineKeyboardButton(
                f"{page + 1}/{pages}", callback_data=f"bc:p:{draft_id}:course:{page}"
            )
        )
        if page < pages - 1:
            extra.append(
                InlineKeyboardButton("›", callback_data=f"bc:p:{draft_id}:course:{page + 1}")
            )
    rows = [buttons[i : i + per_row] for i in range(0, len(buttons), per_row)]
    if extra:
        rows.append(extra)
    rows.append([InlineKeyboardButton(t.gettext("‹ Back"), callback_data=f"bc:back:{draft_id}")])
    return InlineKeyboardMarkup(rows)


# ---------------------------------------------------------------------------------------------
# Preview and options


async def _show_preview(
    query: CallbackQuery, context: BotContext, draft: dict[str, Any], shown: Preview
) -> int:
    t = context.t
    draft_id = draft["id"]
    label = audience_label(t, shown.audience)
    draft["count"] = shown.count

    def flag(on: bool) -> str:
        return t.gettext("on") if on else t.gettext("off")

    lines = [
        "<b>" + t.gettext("Preview") + "</b>",
        t.gettext("To: {audience} ({count} recipients)").format(
            audience=html.escape(label), count=shown.count
        ),
        t.gettext(
            "Confirm button: {ack} · Reminder after {hours} h: {reping} · Urgent: {urgent}"
        ).format(
            ack=flag(draft["ack"]),
            hours=REPING_HOURS,
            reping=flag(draft["reping"]),
            urgent=flag(draft["urgent"]),
        ),
    ]
    if draft.get("attachment"):
        kind = draft["attachment"]["type"]
        lines.append(t.gettext("With a photo.") if kind == "photo" else t.gettext("With a file."))
    if not shown.count:
        lines.append(t.gettext("No one is in this audience yet. Choose another."))
    body = draft["text"] or "…"
    if utf16_len(visible_text(body)) > PREVIEW_LENGTH:  # the preview must fit one message
        body = split_html(body, PREVIEW_LENGTH)[0] + " …"
    lines += ["", "— — —", body]
    rows = [
        [
            InlineKeyboardButton(
                ("☑️ " if draft["ack"] else "⬜ ") + t.gettext("Ask recipients to confirm"),
                callback_data=f"bc:o:{draft_id}:ack",
            )
        ]
    ]
    if draft["ack"]:
        rows.append(
            [
                InlineKeyboardButton(
                    ("☑️ " if draft["reping"] else "⬜ ")
                    + t.gettext("Remind the unconfirmed after {hours} h").format(
                        hours=REPING_HOURS
                    ),
                    callback_data=f"bc:o:{draft_id}:reping",
                )
            ]
        )
    rows.append(
        [
            InlineKeyboardButton(
                ("☑️ " if draft["urgent"] else "⬜ ") + t.gettext("Urgent (safety notice)"),
                callback_data=f"bc:o:{draft_id}:urgent",
            )
        ]
    )
    if shown.count:
        rows.append(
            [
                InlineKeyboardButton(t.gettext("Send now"), callback_data=f"bc:send:{draft_id}"),
                InlineKeyboardButton(
                    t.gettext("Send later"), callback_data=f"bc:later:{draft_id}"
                ),
            ]
        )
    rows.append(
        [
            InlineKeyboardButton(
                t.gettext("Change audience"), callback_data=f"bc:back:{draft_id}"
            ),
            InlineKeyboardButton(t.gettext("Cancel"), callback_data=f"bc:abort:{draft_id}"),
        ]
    )
    await edit_or_send(
        query,
        "\n".join(lines),
        parse_mode=ParseMode.HTML,
        reply_markup=InlineKeyboardMarkup(rows),
        disable_web_page_preview=True,
    )
    return OPTIONS


async def toggle_option(update: Update, context: BotContext) -> int | None:
    """Turn one option of the draft this preview shows on or off."""
    query = update.callback_query
    assert query is not None
    pressed = await _press(update, context, guarded=True)
    if not isinstance(pressed, tuple):
        return pressed
    draft, press = pressed
    if "audience" not in draft or press.option is None:
        return await _expired(update, context)
    audience = Audience.from_json(draft["audience"])
    async with context.db.transaction() as session:
        shown = await broadcasts.preview(session, context.member, audience, pressed=query.data)
    if isinstance(shown, Refused):
        return await _refused(update, context, shown)
    await query.answer()
    draft[press.option] = not draft[press.option]
    if not draft["ack"]:
        draft["reping"] = False
    return await _show_preview(query, context, draft, shown)


# ---------------------------------------------------------------------------------------------
# Sending


async def send_now(update: Update, context: BotContext) -> int | None:
    """Send the draft this preview shows."""
    query = update.callback_query
    assert query is not None
    pressed = await _press(update, context)
    if not isinstance(pressed, tuple):
        return pressed
    draft, _ = pressed
    if "audience" not in draft:
        return await _expired(update, context)
    await query.answer()
    # The preview becomes the status message; its buttons go at once, so a second tap on
    # Send now finds nothing to act on.
    status = await edit_or_send(query, context.t.gettext("Sending…"))
    return await _create(update, context, draft, status, scheduled_for=None)


async def ask_when(update: Update, context: BotContext) -> int | None:
    """Ask for the time to send the draft this preview shows."""
    query = update.callback_query
    assert query is not None
    pressed = await _press(update, context)
    if not isinstance(pressed, tuple):
        return pressed
    draft, _ = pressed
    if "audience" not in draft:
        return await _expired(update, context)
    await query.answer()
    await edit_markup(query, None)
    assert query.message is not None
    await context.bot.send_message(
        query.message.chat.id,
        context.t.gettext(
            "When should it go out? Send a date and time like 2026-12-02 07:30, or only a time "
            "like 07:30 (today, or tomorrow if that time has passed)."
        ),
    )
    return WHEN


WHEN_PATTERN = re.compile(r"^\s*(?:(\d{4})-(\d{1,2})-(\d{1,2})\s+)?(\d{1,2})[:：](\d{2})\s*$")


def parse_when(text: str, now: dt.datetime, zone: dt.tzinfo) -> dt.datetime | None:
    """A local date and time, or a time today (tomorrow if past); None if not understood."""
    match = WHEN_PATTERN.match(text)
    if match is None:
        return None
    year, month, day, hour, minute = match.groups()
    try:
        clock = dt.time(int(hour), int(minute))
        local_now = now.astimezone(zone)
        if year is None:
            moment = dt.datetime.combine(local_now.date(), clock, zone)
            if moment <= local_now:
                moment += dt.timedelta(days=1)
        else:
            moment = dt.datetime.combine(dt.date(int(year), int(month), int(day)), clock, zone)
    except ValueError:
        return None
    return moment.astimezone(dt.UTC)


async def receive_when(update: Update, context: BotContext) -> int:
    if not _is_admin(context):
        return await _refuse(update, context)
    message = update.effective_message
    draft = _draft(context)
    assert message is not None and message.text is not None
    if draft is None or "audience" not in draft:
        return await _expired(update, context)
    t = context.t
    now = utcnow()
    when = parse_when(message.text, now, t.timezone)
    if when is None:
        await message.reply_text(
            t.gettext("I could not read that time. Please write it like 2026-12-02 07:30.")
        )
        return WHEN
    if when <= now:
        await message.reply_text(t.gettext("That time has passed. Please choose a later one."))
        return WHEN
    if when > now + dt.timedelta(days=90):
        await message.reply_text(t.gettext("Please choose a time within the next 90 days."))
        return WHEN
    status = await message.reply_text(t.gettext("Scheduling…"))
    return await _create(update, context, draft, status, scheduled_for=when)


async def _create(
    update: Update,
    context: BotContext,
    draft: dict[str, Any],
    status_message: Message,
    *,
    scheduled_for: dt.datetime | None,
) -> int:
    assert context.user_data is not None
    t = context.t
    notice = Notice(
        text=draft["text"],
        audience=Audience.from_json(draft["audience"]),
        attachment=draft.get("attachment"),
        ack=draft["ack"],
        reping_hours=REPING_HOURS if draft["reping"] else None,
        urgent=draft["urgent"],
    )
    query = update.callback_query
    try:
        async with context.db.transaction() as session:
            sent = await broadcasts.send(
                session,
                context.member,
                notice,
                scheduled_for=scheduled_for,
                status_chat_id=status_message.chat_id,
                status_message_id=status_message.message_id,
                pressed=query.data if query is not None else None,
            )
    except MessageTooLong:
        await edit_or_send(
            status_message,
            t.gettext(
                "This notice is too long for one message and cannot be split. Please shorten it."
            ),
        )
        return COMPOSE
    context.user_data.pop(DRAFT, None)
    if isinstance(sent, Refused):  # audited; the status message says why nothing went out
        await edit_or_send(
            status_message,
            _not_admin_text(context)
            if sent is Refused.NOT_ADMIN
            else t.gettext("This step has expired. Send /broadcast to start again."),
        )
        return ConversationHandler.END
    context.runtime.wake_delivery()
    await edit_or_send(status_message, status_text(t, sent), parse_mode=ParseMode.HTML)
    return ConversationHandler.END


async def abort(update: Update, context: BotContext) -> int | None:
    """Drop the draft these buttons belong to."""
    query = update.callback_query
    assert query is not None
    pressed = await _press(update, context)
    if not isinstance(pressed, tuple):
        return pressed
    assert context.user_data is not None
    context.user_data.pop(DRAFT, None)
    await query.answer()
    await edit_or_send(query, context.t.gettext("Broadcast cancelled. Nothing was sent."))
    return ConversationHandler.END


async def stray_press(update: Update, context: BotContext) -> None:
    """A broadcast button the conversation did not take: an earlier draft's, or a forged one."""
    query = update.callback_query
    assert query is not None
    if not _is_admin(context):
        await _refuse(update, context)
        return
    press = parse_press(query.data)
    if press is None:
        await refuse(update, context, REFUSED)
        return
    draft = _draft(context)
    if draft is not None and press.draft_id != draft["id"]:
        await _outdated(update, context)
        return
    await query.answer(
        context.t.gettext("This step has expired. Send /broadcast to start again.")
        if draft is None
        else context.t.gettext("This button is no longer active."),
        show_alert=True,
    )


async def _expired(update: Update, context: BotContext) -> int:
    text = context.t.gettext("This step has expired. Send /broadcast to start again.")
    if update.callback_query is not None:
        await update.callback_query.answer()
        await edit_or_send(update.callback_query, text)
    elif update.effective_message is not None:
        await update.effective_message.reply_text(text)
    return ConversationHandler.END


# ---------------------------------------------------------------------------------------------
# /broadcasts: the recent ones, cancel, who has not confirmed


async def list_recent(update: Update, context: BotContext) -> None:
    message = update.effective_message
    assert message is not None
    t = context.t
    async with context.db.transaction() as session:
        found = await broadcasts.recent(session, context.member)
    if isinstance(found, Refused):
        await _refuse(update, context, audited=True)
        return
    lines = ["<b>" + t.gettext("Recent broadcasts") + "</b>"]
    rows: list[list[InlineKeyboardButton]] = []
    for broadcast in found:
        lines += ["", status_text(t, broadcast)]
        lines.append(html.escape(_snippet(broadcast.text)))
        buttons = []
        if broadcast.cancellable:
            buttons.append(
                InlineKeyboardButton(
                    t.gettext("Cancel #{id}").format(id=broadcast.id),
                    callback_data=f"bl:cancel:{broadcast.id}",
                )
            )
        if broadcast.unconfirmed:
            buttons.append(
                InlineKeyboardButton(
                    t.gettext("Not confirmed #{id}").format(id=broadcast.id),
                    callback_data=f"bl:unack:{broadcast.id}",
                )
            )
        if buttons:
            rows.append(buttons)
    if not found:
        lines.append(t.gettext("No broadcasts yet. Send /broadcast to write one."))
    await message.reply_text(
        "\n".join(lines),
        parse_mode=ParseMode.HTML,
        reply_markup=InlineKeyboardMarkup(rows) if rows else None,
    )


async def _tell_cancelled(
    query: CallbackQuery, context: BotContext, broadcast_id: int, result: Cancelled
) -> None:
    """Say what the cancel really did: nothing went out, it was stopped midway, or too late."""
    t = context.t
    if result.outcome is Stop.FINISHED:
        await query.answer(
            t.gettext("Broadcast #{id} has already finished.").format(id=broadcast_id),
            show_alert=True,
        )
        return
    await query.answer(t.gettext("Broadcast #{id} cancelled.").format(id=broadcast_id))
    if result.outcome is Stop.CANCELLED:
        text = t.gettext("Broadcast #{id} cancelled before it started. Nothing was sent.")
    else:
        text = t.ngettext(
            "Broadcast #{id} had already started: {n} message was sent and stays delivered; "
            "the rest will not be sent.",
            "Broadcast #{id} had already started: {n} messages were sent and stay delivered; "
            "the rest will not be sent.",
            result.sent,
        )
    # /broadcasts is private: the admin's own chat
    await context.bot.send_message(query.from_user.id, text.format(id=broadcast_id, n=result.sent))


def _snippet(text: str) -> str:
    plain = re.sub(r"<[^>]+>", "", text)
    plain = html.unescape(" ".join(plain.split()))
    return plain if len(plain) <= 60 else plain[:59] + "…"


async def manage(update: Update, context: BotContext) -> None:
    """A button under /broadcasts: cancel a broadcast, or list who has not confirmed it."""
    query = update.callback_query
    assert query is not None and query.data is not None
    parts = fields(query.data, "bl:", 2)
    broadcast_id = as_int(parts[1]) if parts else None
    if parts is None or broadcast_id is None or parts[0] not in ("cancel", "unack"):
        if not _is_admin(context):  # the friendly answer; the press is refused either way
            await _refuse(update, context)
        else:
            await refuse(update, context, REFUSED)
        return
    result: Cancelled | list[Unconfirmed] | Refused
    async with context.db.transaction() as session:
        if parts[0] == "cancel":
            result = await broadcasts.stop(
                session, context.member, broadcast_id, pressed=query.data
            )
        else:
            result = await broadcasts.unconfirmed(
                session, context.member, broadcast_id, pressed=query.data
            )
    if isinstance(result, Refused):
        await _refused(update, context, result)
    elif isinstance(result, Cancelled):
        await _tell_cancelled(query, context, broadcast_id, result)
    else:
        await query.answer()
        # /broadcasts is private: the admin's own chat
        for part in _chunks(_unconfirmed_text(context.t, broadcast_id, result)):
            await context.bot.send_message(query.from_user.id, part)


def _unconfirmed_text(t: Translator, broadcast_id: int, missing: list[Unconfirmed]) -> str:
    if not missing:
        return t.gettext("Everyone who received broadcast #{id} has confirmed.").format(
            id=broadcast_id
        )
    separator = "、" if t.locale.startswith("zh") else ", "
    lines = [
        t.gettext("Not yet confirmed #{id} ({count}):").format(id=broadcast_id, count=len(missing))
    ]
    lines += [
        f"• {person.name}" + (f" ({separator.join(person.children)})" if person.children else "")
        for person in missing
    ]
    return "\n".join(lines)


def _chunks(text: str, limit: int = 4000) -> list[str]:
    parts, current = [], ""
    for line in text.split("\n"):
        if current and len(current) + len(line) + 1 > limit:
            parts.append(current)
            current = ""
        current = f"{current}\n{line}" if current else line
    return [*parts, current]


# ---------------------------------------------------------------------------------------------
# The recipients' confirm button


async def acknowledge(update: Update, context: BotContext) -> None:
    """A recipient's "Got it" under a broadcast."""
    query = update.callback_query
    assert query is not None
    t = context.t
    ids = ints(query.data, "ack:", 1)
    if ids is None:
        await refuse(update, context, "broadcast.ack_refused")
        return
    async with context.db.transaction() as session:
        result = await broadcasts.acknowledge(session, ids[0], query.from_user.id)
    if result is broadcasts.Ack.NOT_YOURS:
        await refuse(
            update, context, "broadcast.ack_refused", text=t.gettext("This button is not for you.")
        )
        return
    await query.answer(
        t.gettext("Thank you, confirmed.")
        if result is broadcasts.Ack.RECORDED
        else t.gettext("You have already confirmed.")
    )
    await edit_markup(
        query,
        InlineKeyboardMarkup(
            [[InlineKeyboardButton(t.gettext("✅ Confirmed"), callback_data="ack:done")]]
        ),
    )


async def acknowledged_already(update: Update, context: BotContext) -> None:
    assert update.callback_query is not None
    await update.callback_query.answer(context.t.gettext("You have already confirmed."))


def handlers() -> list[Any]:
    private = filters.ChatType.PRIVATE
    with warnings.catch_warnings():
        # One draft per admin and chat; the buttons of an old preview are re-checked.
        warnings.filterwarnings("ignore", "If 'per_message=False'", PTBUserWarning)
        conversation = ConversationHandler(
            entry_points=[CommandHandler("broadcast", begin, filters=private)],
            states={
                COMPOSE: [
                    MessageHandler(
                        private
                        & ~filters.COMMAND
                        & (filters.TEXT | filters.PHOTO | filters.Document.ALL),
                        receive_notice,
                    )
                ],
                AUDIENCE: [CallbackQueryHandler(choose_audience, pattern=r"^bc:(a|v|p|back):")],
                OPTIONS: [
                    CallbackQueryHandler(toggle_option, pattern=r"^bc:o:"),
                    CallbackQueryHandler(send_now, pattern=r"^bc:send:"),
                    CallbackQueryHandler(ask_when, pattern=r"^bc:later:"),
                    CallbackQueryHandler(choose_audience, pattern=r"^bc:back:"),
                ],
                WHEN: [MessageHandler(private & filters.TEXT & ~filters.COMMAND, receive_when)],
            },
            fallbacks=[
                CallbackQueryHandler(abort, pattern=r"^bc:abort:"),
                CommandHandler("cancel", cancel),
                CommandHandler("broadcast", begin, filters=private),
            ],
            name="broadcast",
            persistent=True,
            allow_reentry=True,
        )
    return [
        conversation,
        # After the conversation: the bc: presses it did not take in the admin's current step.
        CallbackQueryHandler(stray_press, pattern=r"^bc:"),
        CommandHandler("broadcasts", list_recent, filters=private),
        CallbackQueryHandler(manage, pattern=r"^bl:"),
        CallbackQueryHandler(acknowledged_already, pattern=r"^ack:done$"),
        CallbackQueryHandler(acknowledge, pattern=r"^ack:"),
    ]
