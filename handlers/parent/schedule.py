"""/schedule: each child's week, their enrolment history, and a calendar file for the phone."""

from __future__ import annotations

import html
from io import BytesIO
from typing import Any

from telegram import Update
from telegram.constants import ParseMode
from telegram.ext import CommandHandler, filters

from bot.context import BotContext
from bot.i18n import N_, Translator
from bot.services import enrolment, leaves, members, timetable
from handlers.parent.courses import plan_advice
from handlers.parent.leave import describe
from storage.models import (
    EnrolmentActor,
    EnrolmentEvent,
    EnrolmentStatus,
    Leave,
    Role,
    Student,
    utcnow,
)

HISTORY = 10  # most recent changes shown
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
        children = await members.children_of(session, context.member.user_id)
        views = []
        for child in children:
            plan = await enrolment.active_enrolments(session, child.id)
            events = await enrolment.history(session, child.id)
            ics = await timetable.calendar_file(session, child.id, today)
            away = await leaves.upcoming(session, child.id, today)
            views.append((child, plan, events, ics, away))
    for child, plan, events, ics, away in views:
        await message.reply_text(
            week_text(t, child, plan, events, away), parse_mode=ParseMode.HTML
        )
        if ics is not None:
            await message.reply_document(
                BytesIO(ics),
                filename=f"kehou-{child.student_no}.ics",
                caption=t.gettext("Add {child}'s courses to your phone's calendar.").format(
                    child=child.name
                ),
            )


def week_text(
    t: Translator,
    child: Student,
    plan: list[tuple[Any, enrolment.CourseFacts]],
    events: list[tuple[EnrolmentEvent, str]],
    away: list[Leave] | None = None,
) -> str:
    lines = ["<b>" + t.gettext("{child}'s week").format(child=html.escape(child.name)) + "</b>"]
    enrolled = [(e, f) for e, f in plan if e.status is EnrolmentStatus.ENROLLED]
    if not enrolled:
        lines.append(t.gettext("No courses yet. Send /courses to choose some."))
    for day in range(1, 8):
        today = [f for _, f in enrolled if day in enrolment.weekdays_of(f.course.weekdays)]
        if not today:
            continue
        lines.append(f"<b>{t.weekday(day)}</b>")
        for f in sorted(today, key=lambda f: f.course.starts_at):
            c = f.course
            lines.append(
                f"  {t.time(c.starts_at)}–{t.time(c.ends_at)} {html.escape(c.name)}"
                f" · {html.escape(c.venue)}"
            )
    for entry, f in plan:
        if entry.status is EnrolmentStatus.ENTERED:
            lines.append(
                t.gettext("In the draw for {course}: choice {rank}.").format(
                    course=html.escape(f.course.name), rank=entry.draw_rank
                )
            )
    waiting = [(e, f) for e, f in plan if e.status is EnrolmentStatus.WAITLISTED]
    for entry, f in waiting:
        lines.append(
            t.gettext("On the waitlist of {course}: position {position}.").format(
                course=html.escape(f.course.name), position=entry.waitlist_position
            )
        )
    if away:
        lines += ["", "<b>" + t.gettext("Leaves and early pick-ups") + "</b>"]
        lines += [describe(t, leave) for leave in away]
    if enrolled:
        lines += ["", plan_advice(t, [f.course for _, f in enrolled])]
    if events:
        lines += ["", "<b>" + t.gettext("History") + "</b>"]
        for event, course in events[-HISTORY:]:
            note = t.gettext(NOTES[event.note]) if event.note in NOTES else None
            lines.append(
                f"{t.datetime(event.created_at, 'short')} · {html.escape(course)} · "
                + t.gettext("{status} {actor}").format(
                    status=t.gettext(STATUS_NAMES[event.status]),
                    actor=t.gettext(ACTOR_NAMES[event.actor]),
                )
                + (f" · {note}" if note else "")
            )
    return "\n".join(lines)


def handlers() -> list[CommandHandler]:  # type: ignore[type-arg]
    return [CommandHandler("schedule", show, filters=filters.ChatType.PRIVATE)]
