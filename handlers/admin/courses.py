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
from bot.services import enrolment
from bot.services.enrolment import Cancellation, CancelOutcome
from handlers.common.keyboards import grid
from handlers.common.presses import as_int, edit_or_send, fields, refuse
from storage.models import utcnow

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
    """Cancel the course · Keep it running, in rows that fit a phone."""
    return InlineKeyboardMarkup(
        grid(
            [
                InlineKeyboardButton(
                    t.gettext(enrolment.CANCEL_LABEL), callback_data=f"ms:c:{course_id}"
                ),
                InlineKeyboardButton(
                    t.gettext(enrolment.KEEP_LABEL), callback_data=f"ms:k:{course_id}"
                ),
            ]
        )
    )


def _not_cancelled(t: Translator, found: Cancellation) -> str:
    return t.gettext(NOT_CANCELLED[found.outcome]).format(course=html.escape(found.course))


async def decide(update: Update, context: BotContext) -> None:
    query = update.callback_query
    assert query is not None
    parts = fields(query.data, "ms:", 2)
    course_id = as_int(parts[1]) if parts is not None else None
    if parts is None or course_id is None:
        await refuse(update, context, enrolment.COURSE_REFUSED)
        return
    action = parts[0]
    t = context.t
    async with context.db.transaction() as session:
        found = await enrolment.decide_small_course(
            session, context.member, course_id, action, utcnow(), pressed=query.data
        )
    if found is None:
        await refuse(update, context, enrolment.COURSE_REFUSED, audited=True)
        return
    await query.answer()
    if action == "k":
        await edit_or_send(
            query,
            t.gettext("{course} keeps running.").format(course=html.escape(found.course)),
            parse_mode=ParseMode.HTML,
        )
    elif action == "b":
        await edit_or_send(
            query,
            t.gettext(enrolment.SMALL_COURSE).format(
                course=html.escape(found.course), enrolled=found.enrolled, minimum=found.minimum
            ),
            reply_markup=_buttons(t, course_id),
            parse_mode=ParseMode.HTML,
        )
    elif found.outcome is CancelOutcome.CANCELLED:
        context.runtime.wake_delivery()
        await edit_or_send(
            query,
            t.ngettext(
                "{course} is cancelled; {n} family is being told.",
                "{course} is cancelled; {n} families are being told.",
                found.families,
            ).format(course=html.escape(found.course), n=found.families),
            parse_mode=ParseMode.HTML,
        )
    elif found.outcome is not CancelOutcome.POSSIBLE:
        await edit_or_send(query, _not_cancelled(t, found), parse_mode=ParseMode.HTML)
    else:
        await _confirm(query, t, course_id, found)


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
            grid(
                [
                    InlineKeyboardButton(
                        t.gettext("Yes, cancel it"), callback_data=f"ms:y:{course_id}"
                    ),
                    InlineKeyboardButton(t.gettext("‹ Back"), callback_data=f"ms:b:{course_id}"),
                ]
            )
        ),
        parse_mode=ParseMode.HTML,
    )


def handlers() -> list[CallbackQueryHandler]:  # type: ignore[type-arg]
    return [CallbackQueryHandler(decide, pattern=r"^ms:[ckyb]:")]
