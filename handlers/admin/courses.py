"""An admin's answer when a course is below its minimum size at enrolment close."""

from __future__ import annotations

from telegram import Update
from telegram.ext import CallbackQueryHandler

from bot.context import BotContext
from bot.services import audit, enrolment
from storage.models import Course, Role


async def decide(update: Update, context: BotContext) -> None:
    query = update.callback_query
    assert query is not None and query.data is not None
    t = context.t
    _, action, id_text = [*query.data.split(":"), "", ""][:3]
    member = context.member
    course = None
    if id_text.isdigit() and member is not None and member.has(Role.ADMIN):
        async with context.db.transaction() as session:
            course = await session.get(Course, int(id_text))
    if course is None or member is None or course.school_id != member.school_id:
        if member is not None:
            async with context.db.transaction() as session:
                audit.record(
                    session,
                    member.school_id,
                    "course.refused",
                    actor_user_id=member.user_id,
                    details={"callback_data": query.data[:64]},
                )
        await query.answer(t.gettext("This button is no longer active."), show_alert=True)
        return
    await query.answer()
    if action == "k":
        async with context.db.transaction() as session:
            audit.record(
                session,
                member.school_id,
                "course.keep_small",
                actor_user_id=member.user_id,
                target=("course", course.id),
            )
        await query.edit_message_text(
            t.gettext("{course} keeps running.").format(course=course.name)
        )
        return
    async with context.db.transaction() as session:
        places = await enrolment.cancel_course(session, course.id, admin_user_id=member.user_id)
    context.runtime.wake_delivery()
    if places is None:
        await query.edit_message_text(
            t.gettext("{course} was already cancelled.").format(course=course.name)
        )
    else:
        await query.edit_message_text(
            t.gettext("{course} is cancelled; {n} families are being told.").format(
                course=course.name, n=places
            )
        )


def handlers() -> list[CallbackQueryHandler]:  # type: ignore[type-arg]
    return [CallbackQueryHandler(decide, pattern=r"^ms:[ck]:")]
