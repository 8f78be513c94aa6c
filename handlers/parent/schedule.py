"""/schedule: each child's week, their enrolment history, and a calendar file for the phone."""

from __future__ import annotations

import html
from io import BytesIO

from telegram import Update
from telegram.constants import ParseMode
from telegram.ext import CommandHandler, filters

from bot.context import BotContext
from bot.i18n import N_, Translator
from bot.services import enrolment, timetable
from bot.services.timetable import Week
from handlers.parent.courses import plan_advice
from handlers.parent.leave import describe
from storage.models import (
    EnrolmentActor,
    EnrolmentStatus,
    Role,
    utcnow,
)

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
    message = update.effective_message
    assert message is not None
    t = context.t
    if context.member is None or not context.member.has(Role.PARENT):
        await message.reply_text(t.gettext("This is for guardians linked to a child."))
        return
    today = utcnow().astimezone(t.timezone).date()
    async with context.db.transaction() as session:
        found = await timetable.weeks(session, context.member, today)
    for week in found:
        await message.reply_text(week_text(t, week), parse_mode=ParseMode.HTML)
        if week.ics is not None:
            await message.reply_document(
                BytesIO(week.ics),
                filename=f"kehou-{week.child.student_no}.ics",
                caption=t.gettext("Add {child}'s courses to your phone's calendar.").format(
                    child=week.child.name
                ),
            )


def week_text(t: Translator, week: Week) -> str:
    plan = week.plan
    lines = [
        "<b>" + t.gettext("{child}'s week").format(child=html.escape(week.child.name)) + "</b>"
    ]
    enrolled = [h.course for h in plan if h.status is EnrolmentStatus.ENROLLED]
    if not enrolled:
        lines.append(t.gettext("No courses yet. Send /courses to choose some."))
    for day in range(1, 8):
        today = [c for c in enrolled if day in enrolment.weekdays_of(c.weekdays)]
        if not today:
            continue
        lines.append(f"<b>{t.weekday(day)}</b>")
        for c in sorted(today, key=lambda c: c.starts_at):
            lines.append(
                f"  {t.time(c.starts_at)}–{t.time(c.ends_at)} {html.escape(c.name)}"
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
    if week.away:
        lines += ["", "<b>" + t.gettext("Leaves and early pick-ups") + "</b>"]
        lines += [describe(t, leave) for leave in week.away]
    if enrolled:
        lines += ["", plan_advice(t, enrolled)]
    if week.history:
        lines += ["", "<b>" + t.gettext("History") + "</b>"]
        for change in week.history:
            note = t.gettext(NOTES[change.note]) if change.note in NOTES else None
            lines.append(
                f"{t.datetime(change.at, 'short')} · {html.escape(change.course)} · "
                + t.gettext("{status} {actor}").format(
                    status=t.gettext(STATUS_NAMES[change.status]),
                    actor=t.gettext(ACTOR_NAMES[change.actor]),
                )
                + (f" · {note}" if note else "")
            )
    return "\n".join(lines)


def handlers() -> list[CommandHandler]:  # type: ignore[type-arg]
    return [CommandHandler("schedule", show, filters=filters.ChatType.PRIVATE)]
