"""/growth: the term's growth record (课后成长档案), for guardians and for the school's admins.

A guardian chooses the child (when there are several) and reads the record's summary, with a
button that sends the PDF again; before the record is released they are told when it comes.
An admin sees the term's release status (released when, how many families, how the sending
went) and may release it now, after a confirm step that states the consequence;
`/growth <学号>` sends an admin one child's PDF as a preview.

Presses: gr:c:<child> (a child's record), gr:t:<child>:<term> (an earlier released term's),
gr:d:<child>:<term> (the PDF), gr:l (the children again), gr:r (release: the confirm step),
gr:y:<term> (release, confirmed), gr:b (back to the status), gr:x (close). Every press is
checked again on the server (`bot.services.growth`): a guardian's child, an admin's school.
"""

from __future__ import annotations

import datetime as dt
import html
from io import BytesIO
from typing import Any

from telegram import InlineKeyboardButton, Update
from telegram.ext import CallbackQueryHandler, CommandHandler, filters

from bot import wording
from bot.context import BotContext
from bot.i18n import Translator
from bot.services import growth
from bot.services.growth import NoRecord, NotYet, Record, Refused, Status, TermRef
from handlers.common.keyboards import grid, nav
from handlers.common.presses import edit_or_send, ints, refuse, say, show_screen
from storage.models import Role, utcnow

LIST, CLOSE, CONFIRM, BACK = "gr:l", "gr:x", "gr:r", "gr:b"


def _now() -> dt.datetime:
    return utcnow()


def _today(t: Translator) -> dt.date:
    return _now().astimezone(t.timezone).date()


def _span(t: Translator, term: TermRef) -> str:
    return t.gettext("{term} ({first} – {last})").format(
        term=html.escape(term.name), first=t.date(term.starts_on), last=t.date(term.ends_on)
    )


# --- guardians ---------------------------------------------------------------------------------


def record_text(t: Translator, record: Record) -> str:
    lines = [
        t.gettext("📘 <b>{child}</b> · growth record of {term}").format(
            child=html.escape(record.child), term=html.escape(record.term)
        ),
        html.escape(record.class_name),
        "",
        "<b>" + t.gettext("Courses and attendance") + "</b>",
    ]
    lines += ["• " + html.escape(line) for line in growth.summary_lines(t, record)]
    lines.append(
        t.gettext("Overall: {attendance}.").format(
            attendance=growth.attendance_text(t, record.attendance)
        )
    )
    lines += [
        "",
        t.gettext("<b>Activities:</b> {categories}").format(
            categories=wording.joined(t, (wording.category(t, c) for c in record.covered))
        ),
        "<b>" + t.gettext("Advice for next term") + "</b>",
    ]
    lines += ["• " + html.escape(line) for line in growth.advice(t, record)]
    count = len(record.notes)
    if count:
        lines.append(
            t.ngettext(
                "<b>Teachers' notes:</b> {n} ({teachers}), in the PDF.",
                "<b>Teachers' notes:</b> {n} ({teachers}), in the PDF.",
                count,
            ).format(
                n=count,
                teachers=html.escape(wording.joined(t, growth.teachers_of(record.notes)))
                or t.gettext("the school"),
            )
        )
    else:
        lines.append(t.gettext("No notes from teachers this term."))
    return "\n".join(lines)


def _not_yet(t: Translator, found: NotYet) -> str:
    return t.gettext(
        "{child}'s growth record of {term} is not out yet. It comes at the end of term, on "
        "{day} at {time}, with the courses, attendance and the teachers' notes, as a PDF."
    ).format(
        child=html.escape(found.child),
        term=html.escape(found.term.name),
        day=wording.day(t, found.term.ends_on),
        time=t.time(found.digest_time),
    )


async def _children_screen(update: Update, context: BotContext, *, new: bool) -> None:
    t = context.t
    async with context.db.transaction() as session:
        kids = await growth.children(session, context.member)
    if not kids:
        await _say(update, t.gettext("This is for guardians linked to a child."))
        return
    if len(kids) == 1:
        await _record_screen(update, context, kids[0].id, None, several=False, new=new)
        return
    rows = grid([InlineKeyboardButton(k.name, callback_data=f"gr:c:{k.id}") for k in kids])
    rows.append(nav(t, cancel=CLOSE))
    await show_screen(
        update, t.gettext("📘 Whose growth record do you want to see?"), rows, new=new
    )


async def _record_screen(
    update: Update,
    context: BotContext,
    student_id: int,
    term_id: int | None,
    *,
    several: bool,
    new: bool = False,
) -> None:
    t = context.t
    query = update.callback_query
    async with context.db.transaction() as session:
        found = await growth.for_parent(
            session,
            context.member,
            student_id,
            _today(t),
            term_id=term_id,
            pressed=query.data if query else None,
        )
    if isinstance(found, Refused):
        if found.reason is growth.Refusal.NO_TERM:
            await _say(update, t.gettext("The school has no term yet, so there is no record."))
            return
        await refuse(update, context, growth.REFUSED, audited=True)
        return
    if query is not None:
        await query.answer()
    back = LIST if several else None
    rows: list[list[InlineKeyboardButton]] = []
    if isinstance(found, Record):
        text = record_text(t, found)
        rows.append(
            [
                InlineKeyboardButton(
                    "📄 " + t.gettext("Get the PDF"),
                    callback_data=f"gr:d:{found.student_id}:{found.term_id}",
                )
            ]
        )
    elif isinstance(found, NotYet):
        text = _not_yet(t, found)
        if found.earlier is not None:
            text += "\n\n" + t.gettext("The record of {term} is out already.").format(
                term=html.escape(found.earlier.name)
            )
            rows.append(
                [
                    InlineKeyboardButton(
                        t.gettext("Record of {term}").format(term=found.earlier.name),
                        callback_data=f"gr:t:{student_id}:{found.earlier.id}",
                    )
                ]
            )
    else:
        text = t.gettext(
            "{child} took no after-school course in {term}, so there is no growth record."
        ).format(child=html.escape(found.child), term=html.escape(found.term.name))
    rows.append(nav(t, back=back, cancel=CLOSE))
    await show_screen(update, text, rows, new=new)


async def _say(update: Update, text: str) -> None:
    """A screen without buttons, the press answered first."""
    if update.callback_query is not None:
        await update.callback_query.answer()
    await say(update, text)


async def send_pdf(update: Update, context: BotContext) -> None:
    """📄 under a record: the PDF again, as a document in this chat."""
    query = update.callback_query
    assert query is not None
    parsed = ints(query.data, "gr:d:", 2)
    if parsed is None:
        await refuse(update, context, growth.REFUSED)
        return
    t = context.t
    student_id, term_id = parsed
    async with context.db.transaction() as session:
        found = await growth.for_parent(
            session, context.member, student_id, _today(t), term_id=term_id, pressed=query.data
        )
    if not isinstance(found, Record):
        await refuse(update, context, growth.REFUSED, audited=True)
        return
    await query.answer(t.gettext("Sending the PDF…"))
    name, data = await growth.document(found, t)
    assert query.message is not None
    await context.bot.send_document(
        query.message.chat.id,
        BytesIO(data),
        filename=name,
        caption=t.gettext("{child}'s growth record of {term}.").format(
            child=found.child, term=found.term
        ),
    )


# --- admins ------------------------------------------------------------------------------------


def status_text(t: Translator, found: Status) -> str:
    lines = [
        t.gettext("📘 Growth records · {term}").format(term=_span(t, found.term)),
        t.ngettext(
            "{n} child took a course this term and has a record.",
            "{n} children took a course this term and have a record.",
            found.children,
        ).format(n=found.children),
    ]
    if found.term.released_at is not None:
        lines.append(
            t.gettext("Released {moment}.").format(
                moment=wording.moment(t, found.term.released_at)
            )
        )
        lines.append(
            t.ngettext(
                "{n} message to guardians: {sent} sent · {waiting} waiting · {failed} failed.",
                "{n} messages to guardians: {sent} sent · {waiting} waiting · {failed} failed.",
                found.sent + found.waiting + found.failed,
            ).format(
                n=found.sent + found.waiting + found.failed,
                sent=found.sent,
                waiting=found.waiting,
                failed=found.failed,
            )
        )
    else:
        lines.append(
            t.ngettext(
                "Not released yet. It goes out by itself on {day} at {time}, to {n} guardian.",
                "Not released yet. It goes out by itself on {day} at {time}, to {n} guardians.",
                found.guardians,
            ).format(
                day=wording.day(t, found.term.ends_on),
                time=t.time(found.digest_time),
                n=found.guardians,
            )
        )
    lines.append(t.gettext("To see one child's PDF first: <code>/growth student-number</code>"))
    return "\n".join(lines)


def _status_rows(t: Translator, found: Status, parent: bool) -> list[list[InlineKeyboardButton]]:
    buttons = []
    if found.term.released_at is None:
        buttons.append(InlineKeyboardButton(t.gettext("Release now…"), callback_data=CONFIRM))
    if parent:
        buttons.append(InlineKeyboardButton(t.gettext("My children"), callback_data=LIST))
    return [*grid(buttons), nav(t, cancel=CLOSE)]


async def _status(update: Update, context: BotContext, *, new: bool = False) -> Status | None:
    t = context.t
    query = update.callback_query
    async with context.db.transaction() as session:
        found = await growth.status(
            session, context.member, _today(t), pressed=query.data if query else None
        )
    if isinstance(found, Refused):
        if found.reason is growth.Refusal.NO_TERM:
            await _say(update, t.gettext("The school has no term yet, so there is no record."))
        else:
            await refuse(update, context, growth.REFUSED, audited=True)
        return None
    if query is not None:
        await query.answer()
    parent = context.member is not None and context.member.has(Role.PARENT)
    await show_screen(update, status_text(t, found), _status_rows(t, found, parent), new=new)
    return found


async def _preview(update: Update, context: BotContext, number: str) -> None:
    message = update.effective_message
    assert message is not None
    t = context.t
    async with context.db.transaction() as session:
        found = await growth.preview(session, context.member, number, _today(t))
    if found is None:
        await message.reply_text(
            t.gettext("No child has the student number {number}.").format(number=number)
        )
        return
    if isinstance(found, Refused):
        await message.reply_text(t.gettext("The school has no term yet, so there is no record."))
        return
    if isinstance(found, NoRecord):
        await message.reply_text(
            t.gettext(
                "{child} took no after-school course in {term}, so there is no growth record."
            ).format(child=found.child, term=found.term.name)
        )
        return
    name, data = await growth.document(found, t)
    await message.reply_document(
        BytesIO(data),
        filename=name,
        caption=t.gettext(
            "Preview: {child}'s growth record of {term}, as families get it."
        ).format(child=found.child, term=found.term),
    )


# --- entry and presses ------------------------------------------------------------------------


async def show(update: Update, context: BotContext) -> None:
    """/growth: an admin's status (or a child's preview); a guardian's child's record."""
    message = update.effective_message
    assert message is not None
    member = context.member
    words = (message.text or "").split()
    if member is not None and member.has(Role.ADMIN):
        if len(words) > 1:
            await _preview(update, context, words[1])
        else:
            await _status(update, context, new=True)
        return
    if member is None or not member.has(Role.PARENT):
        await message.reply_text(
            context.t.gettext("Growth records are for guardians linked to a child, and admins.")
        )
        return
    await _children_screen(update, context, new=True)


async def pressed(update: Update, context: BotContext) -> None:
    query = update.callback_query
    assert query is not None
    data = query.data or ""
    t = context.t
    if data == CLOSE:
        await query.answer()
        await edit_or_send(query, t.gettext("Closed. Send /growth to see it again."))
        return
    if data == LIST:
        await query.answer()
        await _children_screen(update, context, new=False)
        return
    if data.startswith("gr:c:"):
        parsed = ints(data, "gr:c:", 1)
        if parsed is None:
            await refuse(update, context, growth.REFUSED)
            return
        await _record_screen(update, context, parsed[0], None, several=True)
        return
    if data.startswith("gr:t:"):
        pair = ints(data, "gr:t:", 2)
        if pair is None:
            await refuse(update, context, growth.REFUSED)
            return
        async with context.db.transaction() as session:
            several = len(await growth.children(session, context.member)) > 1
        await _record_screen(update, context, pair[0], pair[1], several=several)
        return
    if data == BACK:
        await _status(update, context)
        return
    if data == CONFIRM:
        await _confirm(update, context)
        return
    term = ints(data, "gr:y:", 1)
    if term is None:
        await refuse(update, context, growth.REFUSED)
        return
    await _release(update, context, term[0])


async def _confirm(update: Update, context: BotContext) -> None:
    query = update.callback_query
    assert query is not None
    t = context.t
    async with context.db.transaction() as session:
        found = await growth.status(session, context.member, _today(t), pressed=query.data)
    if isinstance(found, Refused):
        await refuse(
            update, context, growth.REFUSED, audited=found.reason is not growth.Refusal.NO_TERM
        )
        return
    await query.answer()
    if found.term.released_at is not None:
        await _status(update, context)
        return
    text = t.ngettext(
        "Release the growth records of {term} now? Each of {n} guardian gets their child's "
        "record as a PDF ({children} children in all), and this term's teachers' notes become "
        "visible to the families. It cannot be taken back, and it will not go out again at "
        "the end of term.",
        "Release the growth records of {term} now? Each of {n} guardians gets their child's "
        "record as a PDF ({children} children in all), and this term's teachers' notes become "
        "visible to the families. It cannot be taken back, and it will not go out again at "
        "the end of term.",
        found.guardians,
    ).format(term=html.escape(found.term.name), n=found.guardians, children=found.children)
    rows = grid(
        [
            InlineKeyboardButton(
                "✅ " + t.gettext("Release the records"), callback_data=f"gr:y:{found.term.id}"
            )
        ]
    )
    rows.append(nav(t, back=BACK, cancel=CLOSE))
    await show_screen(update, text, rows)


async def _release(update: Update, context: BotContext, term_id: int) -> None:
    query = update.callback_query
    assert query is not None
    t = context.t
    async with context.db.transaction() as session:
        result = await growth.release_now(
            session, context.member, term_id, _now(), pressed=query.data or ""
        )
    if isinstance(result, Refused):
        await refuse(update, context, growth.REFUSED, audited=True)
        return
    await query.answer()
    if isinstance(result, TermRef):
        assert result.released_at is not None
        text = t.gettext(
            "The growth records of {term} were released already, {moment}: they are not sent "
            "twice."
        ).format(term=html.escape(result.name), moment=wording.moment(t, result.released_at))
    else:
        context.runtime.wake_delivery()
        text = t.ngettext(
            "📘 Released: {n} message with its child's growth record is on its way to the "
            "guardians.",
            "📘 Released: {n} messages, each with its child's growth record, are on their way "
            "to the guardians.",
            result,
        ).format(n=result)
    rows = grid([InlineKeyboardButton(t.gettext("Sending status"), callback_data=BACK)])
    rows.append(nav(t, cancel=CLOSE))
    await show_screen(update, text, rows)


def handlers() -> list[Any]:
    return [
        CommandHandler("growth", show, filters=filters.ChatType.PRIVATE),
        CallbackQueryHandler(send_pdf, pattern=r"^gr:d:"),
        CallbackQueryHandler(pressed, pattern=r"^gr:"),
    ]
