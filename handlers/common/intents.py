"""Opening a flow from a button, a deep link or a phrase the parent typed.

A flow is named by its command. Plain command handlers are opened by calling them; a flow that
is a ConversationHandler can only be entered through its own entry points: /leave lists
`go:leave` among them (`ENTERED_BY_PRESS`), so it gets a button; for any other, the user is
handed the command to tap (one tap as well: Telegram makes a /command in a message tappable).
"""

from __future__ import annotations

import re
from collections.abc import Awaitable, Callable
from dataclasses import dataclass

from telegram import InlineKeyboardButton, InlineKeyboardMarkup, Update
from telegram.error import BadRequest
from telegram.ext import CallbackQueryHandler

from bot import menus
from bot.context import BotContext
from bot.i18n import N_, Translator
from handlers.admin import broadcast
from handlers.common import language, privacy
from handlers.common.keyboards import grid
from handlers.common.presses import fields, refuse
from handlers.parent import courses, notices, photos, schedule
from handlers.teacher import attendance, dismissal, roster
from storage.models import Role

Opener = Callable[[Update, BotContext], Awaitable[object]]

# The flows a function call can open: the plain command handlers. /help is added by help.py.
OPENERS: dict[str, Opener] = {
    "courses": courses.start_browsing,
    "signup": courses.start_browsing,
    "withdraw": courses.start_withdraw,
    "schedule": schedule.show,
    "photos": photos.show_photo_choices,
    "notices": notices.show,
    "mydata": privacy.show_my_data,
    "forget": privacy.ask_forget,
    "language": language.choose_language,
    "roster": roster.show,
    "attendance": attendance.show,
    "dismiss": dismissal.begin,
    "broadcasts": broadcast.list_recent,
}

# Button labels of the flows offered as a next step (short: they share a phone-wide row).
LABELS = {
    "courses": N_("Choose courses"),
    "schedule": N_("View the week"),
    "withdraw": N_("Leave a course"),
    "leave": N_("Leave or pick-up"),
    "attendance": N_("Take the roll"),
    "dismiss": N_("Dismissal"),
    "update": N_("Post today's update"),
}


@dataclass(frozen=True)
class Intent:
    """What a parent means by a few words they type, and the flow that does it."""

    command: str
    phrases: tuple[str, ...]  # lower case; a Latin phrase matches whole words only
    question: str  # msgid: the flow, offered back to them


# A small table, not a language model: the few things parents type instead of a command.
# The first intent whose phrase appears in the text wins, so leave comes before courses
# ("明天请假，不上课" is a leave).
INTENTS = (
    Intent(
        "leave",
        (
            "请假",
            "提前接",
            "早接",
            "早点接",
            "病假",
            "事假",
            "不去了",
            "不参加",
            "leave",
            "absent",
            "sick",
            "pick up",
            "pick-up",
            "pickup",
            "collect early",
        ),
        N_(
            "Do you want to tell the school that your child will miss a session, or will be "
            "picked up early? Tap /leave."
        ),
    ),
    Intent(
        "withdraw",
        ("退课", "退出课程", "withdraw", "drop out", "quit the course"),
        N_("Do you want to take your child out of a course for good?"),
    ),
    Intent(
        "schedule",
        ("课表", "课程表", "日程", "什么课", "schedule", "timetable", "calendar"),
        N_("Do you want to see your child's week?"),
    ),
    Intent(
        "courses",
        (
            "选课",
            "报名",
            "课程",
            "兴趣班",
            "courses",
            "course",
            "sign up",
            "signup",
            "enrol",
            "enroll",
        ),
        N_("Do you want to choose after-school courses for your child?"),
    ),
)


def _says(text: str, phrase: str) -> bool:
    if phrase.isascii():
        return re.search(rf"\b{re.escape(phrase)}\b", text) is not None
    return phrase in text


def recognise(text: str) -> Intent | None:
    """The intent a typed text names, if any."""
    lowered = text.lower()
    return next((i for i in INTENTS if any(_says(lowered, p) for p in i.phrases)), None)


# A flow that has a button of its own is opened by it: its handler answers the press itself.
OWN_DATA = {"schedule": "sc:v"}  # handlers.parent.schedule: the week, as from a result's 查看课表
# Conversations that list `go:<command>` among their entry points, so a press enters them.
ENTERED_BY_PRESS: frozenset[str] = frozenset({"leave", "update"})


def button(t: Translator, command: str) -> InlineKeyboardButton | None:
    """The button that opens this flow, or None if only its command can."""
    pressable = command in OPENERS or command in ENTERED_BY_PRESS
    if not pressable or command not in LABELS:
        return None
    data = OWN_DATA.get(command, f"go:{command}")
    return InlineKeyboardButton(t.gettext(LABELS[command]), callback_data=data)


def next_steps(t: Translator, roles: frozenset[Role]) -> InlineKeyboardMarkup | None:
    """What a parent will want first: choose courses, see the week, report a leave."""
    if Role.PARENT not in roles:
        return None
    found = (button(t, command) for command in ("courses", "schedule", "leave"))
    return InlineKeyboardMarkup(grid([b for b in found if b is not None]))


def tap_command(t: Translator, command: str) -> str:
    """For a flow no button can open: the command to tap, with what it does."""
    description = next((c.description for c in menus.COMMANDS if c.name == command), None)
    text = t.gettext("Tap /{command} to continue.").format(command=command)
    if description is not None:
        text = f"/{command} — {t.gettext(description)}\n{text}"
    return text


async def open_flow(update: Update, context: BotContext, command: str) -> None:
    """Open the flow named by `command` for this member, in the chat of this update."""
    opener = OPENERS.get(command)
    if opener is not None:
        await opener(update, context)
        return
    message = update.effective_message
    assert message is not None
    pressable = button(context.t, command)
    if pressable is not None:
        await message.reply_text(
            context.t.gettext(LABELS[command]), reply_markup=InlineKeyboardMarkup([[pressable]])
        )
        return
    await message.reply_text(tap_command(context.t, command))


async def pressed_go(update: Update, context: BotContext) -> None:
    """A next-step button: open its flow, which checks who may use it as its command does."""
    query = update.callback_query
    assert query is not None
    parts = fields(query.data, "go:", 1)
    private = update.effective_chat is not None and update.effective_chat.type == "private"
    if parts is None or parts[0] not in menus.PRIVATE_ONLY or not private:
        await refuse(update, context, "button.refused")
        return
    await open_flow(update, context, parts[0])
    try:
        await query.answer()
    except BadRequest as error:
        # A flow that has buttons of its own (/schedule's 查看课表) answers the press itself;
        # Telegram refuses a second answer, and there is nothing left to tell.
        if "query" not in error.message.lower():
            raise


def handlers() -> list[CallbackQueryHandler]:  # type: ignore[type-arg]
    """Registered after the features: a flow that lists `go:<its command>` as an entry point
    takes its own press first."""
    return [CallbackQueryHandler(pressed_go, pattern=r"^go:")]
