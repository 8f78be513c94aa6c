"""An admin's answer when a course is below its minimum size at enrolment close.

`ms:c:<course>` asks for confirmation, stating how many families lose their place;
`ms:y:<course>` cancels, `ms:b:<course>` goes back to the question, `ms:k:<course>` keeps the
course running. Every press re-checks on the server that the presser is an admin of the
course's school; the service re-checks that the course may be cancelled at all.
"""

from __future__ import annotations

import html

from telegram import CallbackQuery, InlineKeyboardButton, InlineKeyboardMarkup, Update
from telegram.constants import ParseMode
from telegram.ext import CallbackQueryHandler

from bot.context import BotContext
from bot.i18n import N_, Translator
from bot.services import audit, enrolment
from bot.services.enrolment import Cancellation, CancelOutcome
from handlers.common.presses import as_int, edit_or_send, fields, refuse
from storage.models import Course, Role, utcnow

NOT_CANCELLED = {
    CancelOutcome.NOT_BELOW_MINIMUM: N_(
        "{course} is not below its minimum size, so it is not cancelled."
    ),
    CancelOutcome.ENROLMENT_STILL_OPEN: N_(
        "Enrolment for {course} is still open, so it is not cancelled."
    ),
    CancelOutcome.ALREADY_CANCELLED: N_("{course} was already cancelled."),
}


def _buttons(t: Translator, course_id: int) -> InlineKeyboardMarkup:
    return InlineKeyboardMarkup(
        [
            [
                InlineKeyboardButton(
                    t.gettext(enrolment.CANCEL_LABEL), callback_data=f"ms:c:{course_id}"
                ),
                InlineKeyboardButton(
                    t.gettext(enrolment.KEEP_LABEL), callback_data=f"ms:k:{course_id}"
                ),
            ]
        ]
    )


def _not_cancelled(t: Translator, found: Cancellation) -> str:
    return t.gettext(NOT_CANCELLED[found.outcome]).format(course=html.escape(found.course))


async def decide(update: Update, context: BotContext) -> None:
    query = update.callback_query
    assert query is not None
    parts = fields(query.data, "ms:", 2)
    course_id = as_int(parts[1]) if parts is not None else None
    member = context.member
    if (
        parts is None
        or course_id is None
        or parts[0] not in ("c", "y", "b", "k")
        or member is None
        or not member.has(Role.ADMIN)
    ):
        await refuse(update, context, "course.refused")
        return
    action = parts[0]
    t = context.t
    async with context.db.transaction() as session:
        found = await enrolment.assess_cancel(session, course_id, member.school_id, utcnow())
    if found.outcome is CancelOutcome.NOT_FOUND:
        await refuse(update, context, "course.refused")
        return
    await query.answer()
    if action == "k":
        await _keep(query, context, course_id, found)
    elif action == "b":
        await _question(query, context, course_id, found)
    elif found.outcome is not CancelOutcome.POSSIBLE:
        await edit_or_send(query, _not_cancelled(t, found), parse_mode=ParseMode.HTML)
    elif action == "c":
        await _confirm(query, t, course_id, found)
    else:
        await _cancel(query, context, course_id)


async def _question(
    query: CallbackQuery, context: BotContext, course_id: int, found: Cancellation
) -> None:
    """Back to the question the admin was asked."""
    async with context.db.transaction() as session:
        course = await session.get(Course, course_id)
        facts = await enrolment.facts(session, [course_id])
    assert course is not None
    await edit_or_send(
        query,
        context.t.gettext(enrolment.SMALL_COURSE).format(
            course=html.escape(found.course),
            enrolled=facts[0].enrolled if facts else 0,
            minimum=course.min_size,
        ),
        reply_markup=_buttons(context.t, course_id),
        parse_mode=ParseMode.HTML,
    )


async def _confirm(
    query: CallbackQuery, t: Translator, course_id: int, found: Cancellation
) -> None:
    """The step before cancelling: how many families lose their place."""
    await edit_or_send(
        query,
        t.ngettext(
            "Cancel {course}? {n} family loses its place and will be told.",
            "Cancel {course}? {n} families lose their place and will be told.",
            found.families,
        ).format(course=html.escape(found.course), n=found.families),
        reply_markup=InlineKeyboardMarkup(
            [
                [
                    InlineKeyboardButton(
                        t.gettext("Yes, cancel it"), callback_data=f"ms:y:{course_id}"
                    ),
                    InlineKeyboardButton(t.gettext("‹ Back"), callback_data=f"ms:b:{course_id}"),
                ]
            ]
        ),
        parse_mode=ParseMode.HTML,
    )


async def _cancel(query: CallbackQuery, context: BotContext, course_id: int) -> None:
    member = context.member
    assert member is not None
    async with context.db.transaction() as session:
        done = await enrolment.cancel_course(
            session, course_id, member.school_id, admin_user_id=member.user_id, now=utcnow()
        )
    context.runtime.wake_delivery()
    if done.outcome is not CancelOutcome.CANCELLED:
        await edit_or_send(query, _not_cancelled(context.t, done), parse_mode=ParseMode.HTML)
        return
    await edit_or_send(
        query,
        context.t.ngettext(
            "{course} is cancelled; {n} family is being told.",
            "{course} is cancelled; {n} families are being told.",
            done.families,
        ).format(course=html.escape(done.course), n=done.families),
        parse_mode=ParseMode.HTML,
    )


async def _keep(
    query: CallbackQuery, context: BotContext, course_id: int, found: Cancellation
) -> None:
    member = context.member
    assert member is not None
    async with context.db.transaction() as session:
        audit.record(
            session,
            member.school_id,
            "course.keep_small",
            actor_user_id=member.user_id,
            target=("course", course_id),
        )
    await edit_or_send(
        query,
        context.t.gettext("{course} keeps running.").format(course=html.escape(found.course)),
        parse_mode=ParseMode.HTML,
    )


def handlers() -> list[CallbackQueryHandler]:  # type: ignore[type-arg]
    return [CallbackQueryHandler(decide, pattern=r"^ms:[ckyb]:")]
