"""/schedule: each child's week, their enrolment history, and a calendar file for the phone.

`sc:v` shows the same from a result's 查看课表 button; `sc:i:<child>` sends the child's
calendar file on request (📅 under the week), not with every /schedule."""

from __future__ import annotations

import html
from io import BytesIO
from typing import Any

from telegram import InlineKeyboardButton, InlineKeyboardMarkup, Update
from telegram.constants import ParseMode
from telegram.ext import CallbackQueryHandler, CommandHandler, filters

from bot import wording
from bot.context import BotContext
from bot.i18n import N_, Translator
from bot.services import enrolment, timetable
from bot.services.timetable import Week
from handlers.common.presses import ints, refuse
from handlers.parent.courses import advice_text
from handlers.parent.leave import take_back_markup, upcoming_block
from storage.models import (
    EnrolmentActor,
    EnrolmentStatus,
    Role,
    utcnow,
)

CALENDAR_FILE = N_("{child}'s timetable")

STATUS_NAMES = {
    EnrolmentStatus.ENROLLED: N_("enrolled"),
    EnrolmentStatus.WAITLISTED: N_("waitlisted"),
    EnrolmentStatus.WITHDRAWN: N_("withdrawn"),
    EnrolmentStatus.CANCELLED: N_("course cancelled"),
    EnrolmentStatus.ENTERED: N_("entered in the draw"),
}
ACTOR_NAMES = {
    EnrolmentActor.PARENT: N_("by a parent"),
    EnrolmentActor.ADMIN: N_("by the school"),
    EnrolmentActor.DRAW: N_("by the draw"),
    EnrolmentActor.OFFER: N_("through a seat offer"),
    EnrolmentActor.SYSTEM: N_("automatically"),
}
NOTES = {
    "offered": N_("a seat was offered"),
    "offer accepted": N_("offer accepted"),
    "offer declined": N_("offer declined"),
    "offer expired": N_("offer expired"),
    "drawn": N_("in the draw"),
    "won a course at the same time": N_("won another course at the same time"),
}


async def show(update: Update, context: BotContext) -> None:
    """/schedule, or 查看课表 under a result: each child's week, as new messages."""
    message = update.effective_message
    assert message is not None
    t = context.t
    if update.callback_query is not None:
        await update.callback_query.answer()
    if context.member is None or not context.member.has(Role.PARENT):
        await message.reply_text(t.gettext("This is for guardians linked to a child."))
        return
    today = utcnow().astimezone(t.timezone).date()
    async with context.db.transaction() as session:
        found = await timetable.weeks(session, context.member, today)
    for week in found:
        await message.reply_text(
            week_text(t, week),
            parse_mode=ParseMode.HTML,
            reply_markup=_with_calendar(t, week, take_back_markup(t, week.away)),
        )


def _with_calendar(
    t: Translator, week: Week, markup: InlineKeyboardMarkup | None
) -> InlineKeyboardMarkup | None:
    """The week's buttons: 📅 for the calendar file when there is one to make, and 选课 for
    a child with no course yet."""
    rows = [list(row) for row in markup.inline_keyboard] if markup is not None else []
    if week.calendar:
        rows.append(
            [
                InlineKeyboardButton(
                    t.gettext("📅 Add to the phone's calendar"),
                    callback_data=f"sc:i:{week.child.id}",
                )
            ]
        )
    if not any(h.status is EnrolmentStatus.ENROLLED for h in week.plan):
        rows.append(
            [
                InlineKeyboardButton(
                    t.gettext("Choose courses"), callback_data=f"cs:l:{week.child.id}:0:0:0:0"
                )
            ]
        )
    return InlineKeyboardMarkup(rows) if rows else None


async def send_calendar(update: Update, context: BotContext) -> None:
    """📅: the child's calendar file, named after the child, from the day they were enrolled."""
    query = update.callback_query
    assert query is not None and query.data is not None
    t = context.t
    values = ints(query.data, "sc:i:", 1)
    if values is None:
        await refuse(update, context, timetable.CALENDAR_REFUSED)
        return
    today = utcnow().astimezone(t.timezone).date()
    async with context.db.transaction() as session:
        found = await timetable.calendar(session, context.member, values[0], today)
    if found is None:
        await refuse(update, context, timetable.CALENDAR_REFUSED, audited=True)
        return
    child, ics = found
    if ics is None:
        await query.answer(
            t.gettext("{child} has no course this term to put in a calendar.").format(
                child=child.name
            ),
            show_alert=True,
        )
        return
    await query.answer()
    assert query.message is not None
    await context.bot.send_document(
        query.message.chat.id,
        BytesIO(ics),
        filename=t.gettext(CALENDAR_FILE).format(child=child.name) + ".ics",
        caption=t.gettext(
            "Open the file to add {child}'s courses to your phone's calendar: each course "
            "from the first session after enrolment to the end of term, without holidays."
        ).format(child=child.name),
    )


def week_text(t: Translator, week: Week) -> str:
    plan = week.plan
    lines = [
        "<b>" + t.gettext("{child}'s week").format(child=html.escape(week.child.name)) + "</b>"
    ]
    enrolled = [h.course for h in plan if h.status is EnrolmentStatus.ENROLLED]
    if not enrolled:
        lines.append(t.gettext("No courses yet."))
    for day in range(1, 8):
        today = [c for c in enrolled if day in enrolment.weekdays_of(c.weekdays)]
        if not today:
            continue
        lines.append(f"<b>{t.weekday(day)}</b>")
        for c in sorted(today, key=lambda c: c.starts_at):
            lines.append(
                f"  {wording.span(t, c.starts_at, c.ends_at)} {html.escape(c.name)}"
                f" · {html.escape(c.venue)}"
            )
    for held in plan:
        if held.status is EnrolmentStatus.ENTERED:
            lines.append(
                t.gettext("In the draw for {course}: choice {rank}.").format(
                    course=html.escape(held.course.name), rank=held.draw_rank
                )
            )
    for held in plan:
        if held.status is EnrolmentStatus.WAITLISTED:
            lines.append(
                t.gettext("On the waitlist of {course}: position {position}.").format(
                    course=html.escape(held.course.name), position=held.waitlist_position
                )
            )
    away = upcoming_block(t, week.away, enrolled)
    if away:
        lines += ["", *away]
    if week.advice is not None:  # the same function as after a sign-up: timetable.advice
        lines += ["", advice_text(t, week.advice)]
    if week.history:
        lines += ["", "<b>" + t.gettext("History") + "</b>"]
        for change in week.history:
            note = t.gettext(NOTES[change.note]) if change.note in NOTES else None
            lines.append(
                f"{wording.moment(t, change.at)} · {html.escape(change.course)} · "
                + t.gettext("{status} {actor}").format(
                    status=t.gettext(STATUS_NAMES[change.status]),
                    actor=t.gettext(ACTOR_NAMES[change.actor]),
                )
                + (f" · {note}" if note else "")
            )
    return "\n".join(lines)


def handlers() -> list[Any]:
    return [
        CommandHandler("schedule", show, filters=filters.ChatType.PRIVATE),
        CallbackQueryHandler(show, pattern=r"^sc:v$"),
        CallbackQueryHandler(send_calendar, pattern=r"^sc:i:"),
    ]
