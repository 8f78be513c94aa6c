"""/broadcast and /broadcasts: an admin writes a notice, picks an audience, previews, sends.

The steps (docs/OUTBOX.md): the notice → who should receive it (classes and class groups are
picked several at a time, eight a page) → the preview with its options → send now, or the
time → a confirm step that says how many families (or groups) it reaches → the status message.
Every step has ‹ 返回 and 取消 (`bc:abort`, one fallback for every state: it answers once and ends
the conversation). /broadcasts opens a card per broadcast: cancel (asked first), who has not
confirmed, remind them now; each action shows the broadcast as it is afterwards.

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
import logging
import re
import secrets
import warnings
from dataclasses import dataclass
from typing import Any

from telegram import CallbackQuery, InlineKeyboardButton, InlineKeyboardMarkup, Message, Update
from telegram.constants import ParseMode
from telegram.error import TelegramError
from telegram.ext import (
    CallbackQueryHandler,
    CommandHandler,
    ConversationHandler,
    MessageHandler,
    filters,
)
from telegram.warnings import PTBUserWarning

from bot import wording
from bot.broadcasting import audience_label, status_markup, status_text
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
    Remind,
    Reminded,
    Stop,
    Summary,
    Unconfirmed,
)
from bot.services.outbox import MessageTooLong, split_html, utf16_len, visible_text
from handlers.common.cancel import cancel
from handlers.common.keyboards import PAGE_MAX, grid, nav, pager
from handlers.common.presses import as_int, edit_markup, edit_or_send, fields, ints, refuse
from storage.models import BroadcastStatus, utcnow

COMPOSE, AUDIENCE, OPTIONS, WHEN, CONFIRM = range(5)
DRAFT = "pending_broadcast"
REPING_HOURS = 24
PREVIEW_LENGTH = 3000  # characters of the notice shown in the preview
# The kinds of audience, in the order the "Who should receive it?" screen shows them.
AUDIENCE_KINDS = (
    AudienceKind.PARENTS,
    AudienceKind.GRADE,
    AudienceKind.CLASS,
    AudienceKind.COURSE,
    AudienceKind.PERIOD,
    AudienceKind.UNPAID,
    AudienceKind.TEACHERS,
    AudienceKind.GROUPS,
)
AUDIENCE_CHOICES = {
    AudienceKind.PARENTS: N_("All parents"),
    AudienceKind.GRADE: N_("A grade"),
    AudienceKind.CLASS: N_("Classes"),
    AudienceKind.COURSE: N_("A course"),
    AudienceKind.PERIOD: N_("A period"),
    AudienceKind.UNPAID: N_("Unpaid bills"),
    AudienceKind.TEACHERS: N_("All teachers"),
    AudienceKind.GROUPS: N_("Class groups"),
}
# Kinds picked from a list of classes, one or several at a time.
PICKED = (AudienceKind.CLASS, AudienceKind.GROUPS)

log = logging.getLogger(__name__)


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
STEPS = {
    "a": 1,  # a kind of audience
    "v": 2,  # a grade, course or period
    "p": 2,  # a page of courses or of classes
    "t": 3,  # a class picked or unpicked, on a page
    "d": 1,  # the classes are picked
    "back": 0,  # back to the kinds
    "edit": 0,  # back to writing the notice
    "o": 1,  # an option
    "pv": 0,  # back to the preview
    "send": 0,  # send now: the confirm step
    "later": 0,  # send later: ask the time
    "go": 0,  # confirmed
    "abort": 0,  # cancel the draft
}
OPTION_NAMES = ("ack", "reping", "urgent")


@dataclass(frozen=True)
class Press:
    """A broadcast button's data: the step, the draft it belongs to, and what it chooses."""

    step: str
    draft_id: str
    kind: AudienceKind | None = None
    number: int | None = None  # a grade, class, period or course id; a page
    option: str | None = None
    page: int = 0


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
    if step not in ("a", "v", "p", "t", "d"):
        return Press(step, draft_id)
    kind = next((k for k in AudienceKind if k.value == rest[0]), None)
    numbers = [as_int(r) for r in rest[1:]]
    if kind is None or any(n is None for n in numbers):
        return None
    if step == "p" and kind not in (AudienceKind.COURSE, *PICKED):
        return None
    if step in ("t", "d") and kind not in PICKED:
        return None
    if step == "t":
        return Press(step, draft_id, kind, numbers[0], page=numbers[1] or 0)
    return Press(step, draft_id, kind, numbers[0] if numbers else None)


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


def _nav(t: Translator, draft_id: str, back: str | None) -> list[InlineKeyboardButton]:
    """‹ 返回 (to `back`, a step of this draft) and 取消, the row that ends every step."""
    return nav(
        t,
        back=f"bc:{back}:{draft_id}" if back else None,
        cancel=f"bc:abort:{draft_id}",
    )


# ---------------------------------------------------------------------------------------------
# Compose


def _compose_prompt(t: Translator) -> str:
    return t.gettext(
        "Send me the notice: a text, or a photo or a file with a caption. Formatting "
        "(bold, links) is kept. /cancel stops."
    )


async def begin(update: Update, context: BotContext) -> int:
    if not _is_admin(context):
        return await _refuse(update, context)
    assert context.user_data is not None
    draft_id = secrets.token_hex(4)
    context.user_data[DRAFT] = {"id": draft_id, "ack": False, "reping": False, "urgent": False}
    await update.effective_message.reply_text(  # type: ignore[union-attr]
        _compose_prompt(context.t),
        reply_markup=InlineKeyboardMarkup([_nav(context.t, draft_id, None)]),
    )
    return COMPOSE


async def rewrite(update: Update, context: BotContext) -> int | None:
    """‹ 返回 from the audience: write the notice again."""
    query = update.callback_query
    assert query is not None
    pressed = await _press(update, context)
    if not isinstance(pressed, tuple):
        return pressed
    draft, _ = pressed
    await query.answer()
    await edit_or_send(
        query,
        _compose_prompt(context.t),
        reply_markup=InlineKeyboardMarkup([_nav(context.t, draft["id"], None)]),
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
    buttons = [
        InlineKeyboardButton(
            t.gettext(AUDIENCE_CHOICES[kind]), callback_data=f"bc:a:{draft_id}:{kind}"
        )
        for kind in AUDIENCE_KINDS
    ]
    return InlineKeyboardMarkup([*grid(buttons), _nav(t, draft_id, "edit")])


# ---------------------------------------------------------------------------------------------
# Audience


async def choose_audience(update: Update, context: BotContext) -> int | None:
    """An audience button: a kind, a value of that kind, a page, a class picked, or back."""
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
    kind = press.kind
    picking = kind in PICKED and press.step in ("a", "p", "t")
    if picking or (press.step in ("a", "p") and kind in broadcasts.NEEDS_VALUE):
        async with context.db.transaction() as session:
            found = await broadcasts.choices(
                session,
                context.member,
                kind,
                pick=press.number if press.step == "t" else None,
                pressed=query.data,
            )
        if isinstance(found, Refused):
            return await _refused(update, context, found)
        await query.answer()
        if picking:
            return await _show_picker(query, context, draft, press, found)
        page = (press.number or 0) if press.step == "p" else 0
        markup = _values_markup(t, draft["id"], kind, found, page)
        if press.step == "p":
            await edit_markup(query, markup)
        else:
            await edit_or_send(query, t.gettext("Which one?"), reply_markup=markup)
        return AUDIENCE
    if press.step == "d":
        picked = _picked(draft, kind)
        if kind is AudienceKind.CLASS and len(picked) == 1:
            audience = Audience(kind, picked[0])
        else:
            audience = Audience(kind, values=tuple(picked))
    else:
        audience = Audience(kind, press.number)
    async with context.db.transaction() as session:
        shown = await broadcasts.preview(session, context.member, audience, pressed=query.data)
    if isinstance(shown, Refused):
        return await _refused(update, context, shown)
    await query.answer()
    draft["audience"] = audience.to_json()
    if shown.groups:
        draft["ack"] = draft["reping"] = False  # a class group is never asked to confirm
    return await _show_preview(query, context, draft, shown)


def _picked(draft: dict[str, Any], kind: AudienceKind) -> list[int]:
    """The classes picked so far for an audience of `kind` (a choice of the other kind is
    forgotten)."""
    found = draft.get("picked")
    if not isinstance(found, dict) or found.get("kind") != str(kind):
        return []
    return [int(v) for v in found.get("ids", [])]


async def _show_picker(
    query: CallbackQuery,
    context: BotContext,
    draft: dict[str, Any],
    press: Press,
    classes: list[Choice],
) -> int:
    """The classes to pick from, a page of them, with the ones picked ticked."""
    t = context.t
    assert press.kind is not None
    kind, draft_id = press.kind, draft["id"]
    picked = _picked(draft, kind)
    page = press.page if press.step == "t" else (press.number or 0) if press.step == "p" else 0
    if press.step == "t" and press.number is not None:
        if press.number in picked:
            picked.remove(press.number)
        elif len(picked) < broadcasts.MAX_PICK:
            picked.append(press.number)
    draft["picked"] = {"kind": str(kind), "ids": picked}
    pages = max((len(classes) - 1) // PAGE_MAX + 1, 1)
    page = min(max(page, 0), pages - 1)
    shown = classes[page * PAGE_MAX : (page + 1) * PAGE_MAX]
    rows = grid(
        [
            InlineKeyboardButton(
                ("✓ " if c.value in picked else "") + c.name,
                callback_data=f"bc:t:{draft_id}:{kind}:{c.value}:{page}",
            )
            for c in shown
        ]
    )
    if pages > 1:
        rows.append(_pages(draft_id, kind, page, pages))
    done: str | None
    if kind is AudienceKind.GROUPS:
        text = t.gettext(
            "Which class groups? Tap to choose one or several, or send to all of them."
        )
        done = (
            t.ngettext("Next: {n} group", "Next: {n} groups", len(picked)).format(n=len(picked))
            if picked
            else t.gettext("All class groups")
        )
    else:
        text = t.gettext("Which classes? Tap to choose one or several.")
        done = (
            t.ngettext("Next: {n} class", "Next: {n} classes", len(picked)).format(n=len(picked))
            if picked
            else None
        )
    if not classes:
        text = (
            t.gettext("The bot is in no class group yet.")
            if kind is AudienceKind.GROUPS
            else t.gettext("The school has no classes yet.")
        )
        done = None
    if done is not None:
        rows.append([InlineKeyboardButton(done, callback_data=f"bc:d:{draft_id}:{kind}")])
    rows.append(_nav(t, draft_id, "back"))
    await edit_or_send(query, text, reply_markup=InlineKeyboardMarkup(rows))
    return AUDIENCE


def _pages(draft_id: str, kind: AudienceKind, page: int, pages: int) -> list[InlineKeyboardButton]:
    return pager(page, pages, lambda n: f"bc:p:{draft_id}:{kind}:{n}")


def _values_markup(
    t: Translator, draft_id: str, kind: AudienceKind, values: list[Choice], page: int
) -> InlineKeyboardMarkup:
    rows: list[list[InlineKeyboardButton]]
    if kind is AudienceKind.PERIOD:
        rows = grid(
            [
                InlineKeyboardButton(
                    wording.period(t, p), callback_data=f"bc:v:{draft_id}:period:{p}"
                )
                for p in broadcasts.PERIODS
            ]
        )
    elif kind is AudienceKind.GRADE:
        rows = grid(
            [
                InlineKeyboardButton(
                    wording.grades(t, c.value, c.value),
                    callback_data=f"bc:v:{draft_id}:grade:{c.value}",
                )
                for c in values
            ]
        )
    else:
        pages = max((len(values) - 1) // PAGE_MAX + 1, 1)
        page = min(max(page, 0), pages - 1)
        shown = values[page * PAGE_MAX : (page + 1) * PAGE_MAX]
        rows = grid(
            [
                InlineKeyboardButton(c.name, callback_data=f"bc:v:{draft_id}:course:{c.value}")
                for c in shown
            ]
        )
        if pages > 1:
            rows.append(_pages(draft_id, kind, page, pages))
    rows.append(_nav(t, draft_id, "back"))
    return InlineKeyboardMarkup(rows)


# ---------------------------------------------------------------------------------------------
# Preview, options, the confirm step


def _reach(t: Translator, shown: Preview) -> str:
    """How many it reaches: "3 个班级群 · 120 位家长", "2 个家庭 · 3 位家长", "5 位教师"."""
    if shown.groups:
        return " · ".join(
            (
                t.ngettext("{n} class group", "{n} class groups", shown.count).format(
                    n=shown.count
                ),
                t.ngettext("{n} parent", "{n} parents", shown.parents).format(n=shown.parents),
            )
        )
    if shown.audience.kind is AudienceKind.TEACHERS:
        return t.ngettext("{n} teacher", "{n} teachers", shown.count).format(n=shown.count)
    return " · ".join(
        (
            t.ngettext("{n} family", "{n} families", shown.families).format(n=shown.families),
            t.ngettext("{n} parent", "{n} parents", shown.count).format(n=shown.count),
        )
    )


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
        t.gettext("To: {audience} · {reach}").format(
            audience=html.escape(label), reach=_reach(t, shown)
        ),
    ]
    if shown.groups:
        lines.append(
            t.gettext("Urgent: {urgent} · No confirm button in a class group.").format(
                urgent=flag(draft["urgent"])
            )
        )
    else:
        lines.append(
            t.gettext(
                "Confirm button: {ack} · Reminder after {hours} h: {reping} · Urgent: {urgent}"
            ).format(
                ack=flag(draft["ack"]),
                hours=REPING_HOURS,
                reping=flag(draft["reping"]),
                urgent=flag(draft["urgent"]),
            )
        )
    if not shown.groups and shown.audience.kind is not AudienceKind.TEACHERS:
        # What the digest does with it (docs/OUTBOX.md, the notice budget).
        lines.append(
            t.gettext("Goes to every family at once, also to those who read the evening digest.")
            if draft["ack"] or draft["urgent"]
            else t.gettext(
                "Families who chose the evening digest read it there; ask for a confirmation "
                "or mark it urgent to reach them at once."
            )
        )
    if draft.get("attachment"):
        kind = draft["attachment"]["type"]
        lines.append(t.gettext("With a photo.") if kind == "photo" else t.gettext("With a file."))
    if not shown.count:
        lines.append(t.gettext("No one is in this audience yet. Choose another."))
    body = draft["text"] or "…"
    if utf16_len(visible_text(body)) > PREVIEW_LENGTH:  # the preview must fit one message
        body = split_html(body, PREVIEW_LENGTH)[0] + " …"
    lines += [
        "",
        t.gettext("Each copy starts with the school's name and yours, in the reader's language."),
        "— — —",
        body,
    ]
    rows: list[list[InlineKeyboardButton]] = []

    def option(name: str, label: str) -> None:
        mark = "☑️ " if draft[name] else "⬜ "
        rows.append([InlineKeyboardButton(mark + label, callback_data=f"bc:o:{draft_id}:{name}")])

    if not shown.groups:
        option("ack", t.gettext("Ask recipients to confirm"))
        if draft["ack"]:
            option(
                "reping",
                t.gettext("Remind the unconfirmed after {hours} h").format(hours=REPING_HOURS),
            )
    option("urgent", t.gettext("Urgent (safety notice)"))
    if shown.count:
        rows.append(
            [
                InlineKeyboardButton(t.gettext("Send now"), callback_data=f"bc:send:{draft_id}"),
                InlineKeyboardButton(
                    t.gettext("Send later"), callback_data=f"bc:later:{draft_id}"
                ),
            ]
        )
    rows.append(_nav(t, draft_id, "back"))
    await edit_or_send(
        query,
        "\n".join(lines),
        parse_mode=ParseMode.HTML,
        reply_markup=InlineKeyboardMarkup(rows),
        disable_web_page_preview=True,
    )
    return OPTIONS


async def _preview_again(
    update: Update, context: BotContext, draft: dict[str, Any]
) -> Preview | int | None:
    """The draft's audience as it is now (the one service call of the step); else the
    refusal's next state."""
    query = update.callback_query
    if "audience" not in draft:
        return await _expired(update, context)
    audience = Audience.from_json(draft["audience"])
    async with context.db.transaction() as session:
        shown = await broadcasts.preview(
            session, context.member, audience, pressed=query.data if query else None
        )
    if isinstance(shown, Refused):
        return await _refused(update, context, shown)
    return shown


async def _pressed_preview(
    update: Update, context: BotContext
) -> tuple[dict[str, Any], Preview] | int | None:
    """A press on the current draft, and its audience as it is now; else the refusal's state."""
    pressed = await _press(update, context, guarded=True)
    if not isinstance(pressed, tuple):
        return pressed
    draft, _ = pressed
    shown = await _preview_again(update, context, draft)
    return (draft, shown) if isinstance(shown, Preview) else shown


async def toggle_option(update: Update, context: BotContext) -> int | None:
    """Turn one option of the draft this preview shows on or off."""
    query = update.callback_query
    assert query is not None
    pressed = await _press(update, context, guarded=True)
    if not isinstance(pressed, tuple):
        return pressed
    draft, press = pressed
    if press.option is None:
        return await _expired(update, context)
    shown = await _preview_again(update, context, draft)
    if not isinstance(shown, Preview):
        return shown
    await query.answer()
    if press.option == "urgent" or not shown.groups:
        draft[press.option] = not draft[press.option]
    if shown.groups:
        draft["ack"] = False  # a class group is never asked to confirm
    if not draft["ack"]:
        draft["reping"] = False
    return await _show_preview(query, context, draft, shown)


async def back_to_preview(update: Update, context: BotContext) -> int | None:
    """‹ 返回 from the confirm step or from the question about the time."""
    query = update.callback_query
    assert query is not None
    found = await _pressed_preview(update, context)
    if not isinstance(found, tuple):
        return found
    draft, shown = found
    await query.answer()
    draft.pop("when", None)
    return await _show_preview(query, context, draft, shown)


async def send_now(update: Update, context: BotContext) -> int | None:
    """Send now: the confirm step, with how many it reaches now."""
    query = update.callback_query
    assert query is not None
    found = await _pressed_preview(update, context)
    if not isinstance(found, tuple):
        return found
    draft, shown = found
    await query.answer()
    draft.pop("when", None)
    await edit_or_send(
        query,
        _confirm_text(context.t, draft, shown),
        reply_markup=_confirm_markup(context.t, draft),
    )
    return CONFIRM


def _confirm_text(t: Translator, draft: dict[str, Any], shown: Preview) -> str:
    reach = _reach(t, shown)
    audience = audience_label(t, shown.audience)
    if draft.get("when"):
        when = dt.datetime.fromisoformat(draft["when"])
        return t.gettext(
            "Send this notice to {audience} ({reach}) at {when}? Until then you can cancel it "
            "in /broadcasts."
        ).format(audience=audience, reach=reach, when=t.datetime(when, "short"))
    return t.gettext(
        "Send this notice to {audience} ({reach}) now? Once sent it cannot be called back."
    ).format(audience=audience, reach=reach)


def _confirm_markup(t: Translator, draft: dict[str, Any]) -> InlineKeyboardMarkup:
    draft_id = draft["id"]
    label = t.gettext("Schedule it") if draft.get("when") else t.gettext("Send it")
    return InlineKeyboardMarkup(
        [
            [InlineKeyboardButton("✅ " + label, callback_data=f"bc:go:{draft_id}")],
            _nav(t, draft_id, "pv"),
        ]
    )


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
    await edit_or_send(
        query,
        context.t.gettext(
            "When should it go out? Send a date and time like 2026-12-02 07:30, or only a time "
            "like 07:30 (today, or tomorrow if that time has passed)."
        ),
        reply_markup=InlineKeyboardMarkup([_nav(context.t, draft["id"], "pv")]),
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


async def receive_when(update: Update, context: BotContext) -> int | None:
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
    back = InlineKeyboardMarkup([_nav(t, draft["id"], "pv")])
    if when is None:
        await message.reply_text(
            t.gettext("I could not read that time. Please write it like 2026-12-02 07:30."),
            reply_markup=back,
        )
        return WHEN
    if when <= now:
        await message.reply_text(
            t.gettext("That time has passed. Please choose a later one."), reply_markup=back
        )
        return WHEN
    if when > now + dt.timedelta(days=90):
        await message.reply_text(
            t.gettext("Please choose a time within the next 90 days."), reply_markup=back
        )
        return WHEN
    shown = await _preview_again(update, context, draft)
    if not isinstance(shown, Preview):
        return shown
    draft["when"] = when.isoformat()
    await message.reply_text(
        _confirm_text(t, draft, shown), reply_markup=_confirm_markup(t, draft)
    )
    return CONFIRM


async def confirmed(update: Update, context: BotContext) -> int | None:
    """✅ Send it / Schedule it: the notice goes out (or waits for its time)."""
    query = update.callback_query
    assert query is not None
    pressed = await _press(update, context)
    if not isinstance(pressed, tuple):
        return pressed
    draft, _ = pressed
    if "audience" not in draft:
        return await _expired(update, context)
    await query.answer()
    when = dt.datetime.fromisoformat(draft["when"]) if draft.get("when") else None
    # The confirm step becomes the status message; its buttons go at once, so a second tap
    # finds nothing to act on.
    status = await edit_or_send(
        query, context.t.gettext("Scheduling…") if when else context.t.gettext("Sending…")
    )
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
            reply_markup=InlineKeyboardMarkup([_nav(t, draft["id"], None)]),
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
    await edit_or_send(
        status_message,
        status_text(t, sent),
        parse_mode=ParseMode.HTML,
        reply_markup=status_markup(t, sent),
    )
    return ConversationHandler.END


async def abort(update: Update, context: BotContext) -> int | None:
    """取消, on any step: drop the draft these buttons belong to, once."""
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
# /broadcasts: the recent ones; each one's card: cancel (asked first), who has not confirmed,
# a reminder to them. Every action shows the broadcast as it is afterwards.


def _list_view(t: Translator, found: list[Summary]) -> tuple[str, InlineKeyboardMarkup | None]:
    lines = ["<b>" + t.gettext("Recent broadcasts") + "</b>"]
    for broadcast in found:
        lines += ["", status_text(t, broadcast), html.escape(_snippet(broadcast.text))]
    if not found:
        lines.append(t.gettext("No broadcasts yet. Send /broadcast to write one."))
        return "\n".join(lines), None
    lines += ["", t.gettext("Tap a number to cancel a broadcast or see who has confirmed it.")]
    buttons = [
        InlineKeyboardButton(f"#{b.id}", callback_data=f"bl:open:{b.id}") for b in found[:PAGE_MAX]
    ]
    return "\n".join(lines), InlineKeyboardMarkup(grid(buttons))


def _card_view(
    t: Translator, broadcast: Summary, result: str | None = None
) -> tuple[str, InlineKeyboardMarkup]:
    """One broadcast: what happened just now (if anything), its status, its buttons, ‹ 返回."""
    lines = [result, ""] if result else []
    lines += [status_text(t, broadcast), html.escape(_snippet(broadcast.text))]
    markup = status_markup(t, broadcast)
    rows = [list(row) for row in markup.inline_keyboard] if markup else []
    rows.append(nav(t, back="bl:list:0"))
    return "\n".join(lines), InlineKeyboardMarkup(rows)


async def list_recent(update: Update, context: BotContext) -> None:
    message = update.effective_message
    assert message is not None
    async with context.db.transaction() as session:
        found = await broadcasts.recent(session, context.member)
    if isinstance(found, Refused):
        await _refuse(update, context, audited=True)
        return
    text, markup = _list_view(context.t, found)
    await message.reply_text(text, parse_mode=ParseMode.HTML, reply_markup=markup)


def _cancelled_text(t: Translator, broadcast_id: int, result: Cancelled) -> str:
    """What the cancel really did: nothing went out, or how many had it already."""
    if result.outcome is Stop.CANCELLED:
        text = t.gettext("Broadcast #{id} cancelled before it started. Nothing was sent.")
    elif result.outcome is Stop.STOPPED:
        text = t.ngettext(
            "Broadcast #{id} had already started: {n} message was sent and stays delivered; "
            "the rest will not be sent.",
            "Broadcast #{id} had already started: {n} messages were sent and stay delivered; "
            "the rest will not be sent.",
            result.sent,
        )
    else:
        text = t.gettext("Broadcast #{id} has already finished.")
    return text.format(id=broadcast_id, n=result.sent)


def _cancel_question(t: Translator, broadcast: Summary) -> str:
    """The confirm step before a cancel: what it will and will not undo."""
    if broadcast.status is BroadcastStatus.SCHEDULED:
        text = t.gettext(
            "Cancel broadcast #{id}? It has not gone out yet: nobody will receive it."
        )
    else:
        text = t.ngettext(
            "Cancel broadcast #{id}? {n} message has gone out already and stays delivered; "
            "nobody else will receive it.",
            "Cancel broadcast #{id}? {n} messages have gone out already and stay delivered; "
            "nobody else will receive them.",
            broadcast.progress.sent,
        )
    return text.format(id=broadcast.id, n=broadcast.progress.sent)


def _reminded_text(t: Translator, broadcast_id: int, result: Reminded) -> str:
    if result.outcome is Remind.SENT:
        return t.ngettext(
            "Reminder for broadcast #{id} queued for {n} parent.",
            "Reminder for broadcast #{id} queued for {n} parents.",
            result.count,
        ).format(id=broadcast_id, n=result.count)
    if result.outcome is Remind.ALREADY:
        return t.gettext(
            "Broadcast #{id} was already reminded at {when}: nobody is reminded twice."
        ).format(id=broadcast_id, when=wording.moment(t, result.at) if result.at else "")
    return t.gettext("Every family that has received broadcast #{id} has confirmed it.").format(
        id=broadcast_id
    )


ACTIONS = ("open", "list", "cancel", "stop", "unack", "remind")


async def manage(update: Update, context: BotContext) -> None:
    """A button under /broadcasts or under a broadcast's status message."""
    query = update.callback_query
    assert query is not None and query.data is not None
    t = context.t
    parts = fields(query.data, "bl:", 2)
    number = as_int(parts[1]) if parts else None
    if parts is None or number is None or parts[0] not in ACTIONS:
        if not _is_admin(context):  # the friendly answer; the press is refused either way
            await _refuse(update, context)
        else:
            await refuse(update, context, REFUSED)
        return
    action = parts[0]
    result: Summary | list[Summary] | Cancelled | Reminded | list[Unconfirmed] | Refused
    async with context.db.transaction() as session:
        if action == "list":
            result = await broadcasts.recent(session, context.member, pressed=query.data)
        elif action in ("open", "cancel"):
            result = await broadcasts.card(session, context.member, number, pressed=query.data)
        elif action == "stop":
            result = await broadcasts.stop(session, context.member, number, pressed=query.data)
        elif action == "remind":
            result = await broadcasts.remind(
                session, context.member, number, utcnow(), pressed=query.data
            )
        else:
            result = await broadcasts.unconfirmed(
                session, context.member, number, pressed=query.data
            )
    if isinstance(result, Refused):
        await _refused(update, context, result)
        return
    if isinstance(result, list) and action == "list":
        await query.answer()
        text, markup = _list_view(t, result)  # type: ignore[arg-type]
        await edit_or_send(query, text, parse_mode=ParseMode.HTML, reply_markup=markup)
        return
    if isinstance(result, list):
        await query.answer()
        await _show_unconfirmed(query, context, number, result)  # type: ignore[arg-type]
        return
    summary: Summary | None
    note: str | None = None
    if isinstance(result, Summary):
        summary = result
        if action == "cancel":
            if not summary.cancellable:
                await query.answer(
                    _cancelled_text(t, number, Cancelled(Stop.FINISHED)), show_alert=True
                )
            else:
                await query.answer()
                await edit_or_send(
                    query,
                    _cancel_question(t, summary),
                    reply_markup=InlineKeyboardMarkup(
                        [
                            [
                                InlineKeyboardButton(
                                    t.gettext("Yes, cancel it"),
                                    callback_data=f"bl:stop:{number}",
                                )
                            ],
                            nav(t, back=f"bl:open:{number}"),
                        ]
                    ),
                )
                return
        else:
            await query.answer()
    elif isinstance(result, Cancelled):
        summary, note = result.summary, _cancelled_text(t, number, result)
        if result.outcome is Stop.FINISHED:
            await query.answer(note, show_alert=True)
        else:
            await query.answer(t.gettext("Broadcast #{id} cancelled.").format(id=number))
    else:
        summary, note = result.summary, _reminded_text(t, number, result)
        await query.answer(note, show_alert=result.outcome is not Remind.SENT)
        if result.outcome is Remind.SENT:
            context.runtime.wake_delivery()
    if summary is None:
        return
    text, markup = _card_view(t, summary, note)
    await edit_or_send(query, text, parse_mode=ParseMode.HTML, reply_markup=markup)


async def _show_unconfirmed(
    query: CallbackQuery, context: BotContext, broadcast_id: int, missing: list[Unconfirmed]
) -> None:
    """Who has not confirmed, family by family, as new messages (the status message stays),
    with the reminder button under the last."""
    t = context.t
    rows = []
    if any(not family.waiting for family in missing):
        rows.append(
            [
                InlineKeyboardButton(
                    t.gettext("Remind now"), callback_data=f"bl:remind:{broadcast_id}"
                )
            ]
        )
    rows.append(nav(t, back=f"bl:open:{broadcast_id}"))
    parts = _chunks(_unconfirmed_text(t, broadcast_id, missing))
    # /broadcasts is private: the admin's own chat
    for index, part in enumerate(parts):
        last = index == len(parts) - 1
        await context.bot.send_message(
            query.from_user.id, part, reply_markup=InlineKeyboardMarkup(rows) if last else None
        )


def _snippet(text: str) -> str:
    plain = re.sub(r"<[^>]+>", "", text)
    plain = html.unescape(" ".join(plain.split()))
    return plain if len(plain) <= 60 else plain[:59] + "…"


def _unconfirmed_text(t: Translator, broadcast_id: int, missing: list[Unconfirmed]) -> str:
    if not missing:
        return t.gettext(
            "Every family that has received broadcast #{id} has confirmed it."
        ).format(id=broadcast_id)
    separator = "、" if t.locale.startswith("zh") else ", "
    lines = [
        t.ngettext(
            "Broadcast #{id}: {n} family has not confirmed yet:",
            "Broadcast #{id}: {n} families have not confirmed yet:",
            len(missing),
        ).format(id=broadcast_id, n=len(missing))
    ]
    for family in missing:
        line = "• " + separator.join(family.names)
        if family.children:
            line += f" ({separator.join(family.children)})"
        if family.waiting:
            line += " — " + t.gettext("waits in tonight's digest")
        lines.append(line)
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
        copies = (
            await broadcasts.family_copies(session, ids[0], query.from_user.id)
            if result is broadcasts.Ack.RECORDED
            else []
        )
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
    # The family has confirmed: the other guardians' buttons say so instead of asking again.
    for copy in copies:
        reader = context.runtime.i18n.get(copy.locale, t.timezone.key)
        label = reader.gettext("✅ Confirmed by your family")
        try:
            await context.bot.edit_message_reply_markup(
                chat_id=copy.chat_id,
                message_id=copy.message_id,
                reply_markup=InlineKeyboardMarkup(
                    [[InlineKeyboardButton(label, callback_data="ack:done")]]
                ),
            )
        except TelegramError:  # deleted, or too old to edit: the count is right regardless
            log.info("could not mark a family copy of broadcast %s", ids[0], exc_info=True)


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
                AUDIENCE: [
                    # The step names end with ":" so that "bc:abort:…" is never taken for "a".
                    CallbackQueryHandler(choose_audience, pattern=r"^bc:(a|v|p|t|d|back):"),
                    CallbackQueryHandler(rewrite, pattern=r"^bc:edit:"),
                ],
                OPTIONS: [
                    CallbackQueryHandler(toggle_option, pattern=r"^bc:o:"),
                    CallbackQueryHandler(send_now, pattern=r"^bc:send:"),
                    CallbackQueryHandler(ask_when, pattern=r"^bc:later:"),
                    CallbackQueryHandler(choose_audience, pattern=r"^bc:back:"),
                ],
                WHEN: [
                    MessageHandler(private & filters.TEXT & ~filters.COMMAND, receive_when),
                    CallbackQueryHandler(back_to_preview, pattern=r"^bc:pv:"),
                ],
                CONFIRM: [
                    CallbackQueryHandler(confirmed, pattern=r"^bc:go:"),
                    CallbackQueryHandler(back_to_preview, pattern=r"^bc:pv:"),
                ],
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
