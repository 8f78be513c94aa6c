"""/hours: the sessions a teacher taught this month; for an admin, every teacher's monthly total.

`/hours 2026-11` shows a given month. `hrs:t:<yyyymm>` is a teacher's month,
`hrs:a:<yyyymm>:<page>` the school's (an admin's), paged when there are many teachers. Each press
re-checks the role on the server (`bot.services.hours`).
"""

from __future__ import annotations

import html

from babel.dates import format_skeleton
from babel.numbers import format_decimal
from telegram import InlineKeyboardButton, InlineKeyboardMarkup, Update
from telegram.constants import ParseMode
from telegram.ext import CallbackQueryHandler, CommandHandler, filters

from bot import wording
from bot.context import BotContext
from bot.i18n import Translator
from bot.services import hours
from bot.services.hours import Month, SchoolMonth, TeacherMonth
from handlers.common.keyboards import grid, pager
from handlers.common.presses import as_int, edit_or_send, fields, refuse
from storage.models import Role, utcnow

PER_PAGE = 15  # teachers on one page of the school's month


def month_name(t: Translator, month: Month) -> str:
    """2026年12月 / December 2026."""
    return format_skeleton("yMMMM", month.first, locale=t.locale)


def duration(t: Translator, minutes: int) -> str:
    """13.5 小时 / 13.5 hours."""
    value = round(minutes / 60, 2)
    number = format_decimal(value, format="#,##0.##", locale=t.locale)
    n = int(value) if value == int(value) else 2
    return t.ngettext("{hours} hour", "{hours} hours", n).format(hours=number)


def count(t: Translator, sessions: int) -> str:
    return t.ngettext("{n} session", "{n} sessions", sessions).format(n=sessions)


def line(t: Translator, name: str, sessions: int, minutes: int) -> str:
    """• 乐高机器人：4 节，4 小时."""
    return t.gettext("• {name}: {sessions}, {hours}").format(
        name=html.escape(name), sessions=count(t, sessions), hours=duration(t, minutes)
    )


def _month_buttons(
    t: Translator, month: Month, current: Month, data: str
) -> list[InlineKeyboardButton]:
    """‹ the month before · the month after › (never past the current month)."""
    row = [
        InlineKeyboardButton(
            "‹ " + month_name(t, month.previous()), callback_data=data.format(month.previous().key)
        )
    ]
    if month < current:
        row.append(
            InlineKeyboardButton(
                month_name(t, month.next()) + " ›", callback_data=data.format(month.next().key)
            )
        )
    return row


def teacher_text(t: Translator, found: TeacherMonth) -> str:
    lines = [
        "<b>"
        + t.gettext("{month}: sessions you taught").format(month=month_name(t, found.month))
        + "</b>"
    ]
    if not found.courses:
        lines.append(t.gettext("No session with its roll taken yet this month."))
    for course in found.courses:
        lines.append(line(t, course.course, course.sessions, course.minutes))
    if found.courses:
        lines.append(
            t.gettext("Total: {sessions}, {hours}").format(
                sessions=count(t, found.sessions), hours=duration(t, found.minutes)
            )
        )
    if found.missing:
        lines += [
            "",
            t.ngettext(
                "⚠️ {n} session without a roll (it does not count until the roll is in):",
                "⚠️ {n} sessions without a roll (they do not count until the roll is in):",
                len(found.missing),
            ).format(n=len(found.missing)),
        ]
        lines += [
            f"• {wording.day(t, m.date)} {html.escape(m.course)} "
            f"{wording.span(t, m.starts_at, m.ends_at)}"
            for m in found.missing
        ]
        lines.append(t.gettext("Take them with /attendance."))
    lines += ["", t.gettext("A session counts once its roll is submitted.")]
    return "\n".join(lines)


def school_text(t: Translator, found: SchoolMonth, page: int) -> tuple[str, int, int]:
    """The school's month, one page of teachers; returns the text, the page and the pages."""
    pages = max(1, -(-len(found.teachers) // PER_PAGE))
    page = min(page, pages - 1)
    lines = [
        "<b>"
        + t.gettext("{month}: sessions taught per teacher").format(
            month=month_name(t, found.month)
        )
        + "</b>",
        t.gettext("Sessions whose roll was submitted; the basis of subsidies."),
    ]
    if not found.teachers:
        lines.append(t.gettext("No session with its roll taken in this month."))
    for teacher in found.teachers[page * PER_PAGE : (page + 1) * PER_PAGE]:
        lines.append(line(t, teacher.teacher, teacher.sessions, teacher.minutes))
    if found.teachers:
        lines.append(
            t.ngettext(
                "Total: {n} teacher, {sessions}, {hours}",
                "Total: {n} teachers, {sessions}, {hours}",
                len(found.teachers),
            ).format(
                n=len(found.teachers),
                sessions=count(t, found.sessions),
                hours=duration(t, found.minutes),
            )
        )
    return "\n".join(lines), page, pages


def _current(t: Translator) -> Month:
    return Month.of(utcnow().astimezone(t.timezone).date())


async def _show(
    update: Update, context: BotContext, month: Month, page: int, *, school: bool
) -> None:
    """One call to the service, then the month on screen (a new message or the pressed one)."""
    t, query = context.t, update.callback_query
    pressed = query.data if query else None
    current = _current(t)
    async with context.db.transaction() as session:
        found: SchoolMonth | TeacherMonth | None
        if school:
            found = await hours.of_school(session, context.member, month, pressed=pressed)
        else:
            found = await hours.of_teacher(
                session, context.member, month, utcnow(), pressed=pressed
            )
    if found is None:
        if query is not None:
            await refuse(update, context, hours.REFUSED, audited=True)
            return
        message = update.effective_message
        assert message is not None
        await message.reply_text(t.gettext("This is for teachers and the school's admins."))
        return
    if isinstance(found, SchoolMonth):
        text, page, pages = school_text(t, found, page)
        rows = [_month_buttons(t, month, current, "hrs:a:{}:0")]
        paging = pager(page, pages, lambda n: f"hrs:a:{month.key}:{n}")
        if paging:
            rows.insert(0, paging)
        if context.member is not None and context.member.has(Role.TEACHER):
            rows.append(
                [
                    InlineKeyboardButton(
                        t.gettext("My sessions"), callback_data=f"hrs:t:{month.key}"
                    )
                ]
            )
    else:
        text = teacher_text(t, found)
        rows = [_month_buttons(t, month, current, "hrs:t:{}")]
        if context.member is not None and context.member.has(Role.ADMIN):
            rows.append(
                [
                    InlineKeyboardButton(
                        t.gettext("All teachers"), callback_data=f"hrs:a:{month.key}:0"
                    )
                ]
            )
    markup = InlineKeyboardMarkup([r for row in rows for r in grid(row)])
    if query is not None:
        await query.answer()
        await edit_or_send(query, text, parse_mode=ParseMode.HTML, reply_markup=markup)
        return
    message = update.effective_message
    assert message is not None
    await message.reply_text(text, parse_mode=ParseMode.HTML, reply_markup=markup)


async def show_hours(update: Update, context: BotContext) -> None:
    """/hours [month]: the admin's school month, or the teacher's own."""
    message = update.effective_message
    assert message is not None
    t = context.t
    parts = (message.text or "").split(maxsplit=1)
    month = _current(t)
    if len(parts) > 1:
        asked = Month.parse(parts[1])
        if asked is None:
            await message.reply_text(
                t.gettext("Write the month like this: /hours {example}").format(
                    example=f"{month.previous().year}-{month.previous().month:02d}"
                )
            )
            return
        month = asked
    admin = context.member is not None and context.member.has(Role.ADMIN)
    await _show(update, context, month, 0, school=admin)


def _month_of(text: str) -> Month | None:
    if len(text) != 6 or as_int(text) is None:
        return None
    return Month.parse(text)


async def turn(update: Update, context: BotContext) -> None:
    """A month or a page pressed: hrs:t:<yyyymm> or hrs:a:<yyyymm>:<page>."""
    query = update.callback_query
    assert query is not None
    data = query.data or ""
    teacher = fields(data, "hrs:t:", 1)
    school = fields(data, "hrs:a:", 2)
    if teacher is not None and (month := _month_of(teacher[0])) is not None:
        await _show(update, context, month, 0, school=False)
        return
    if school is not None:
        month, page = _month_of(school[0]), as_int(school[1])
        if month is not None and page is not None:
            await _show(update, context, month, page, school=True)
            return
    await refuse(update, context, hours.REFUSED)


def handlers() -> list[CommandHandler | CallbackQueryHandler]:  # type: ignore[type-arg]
    return [
        CommandHandler("hours", show_hours, filters=filters.ChatType.PRIVATE),
        CallbackQueryHandler(turn, pattern=r"^hrs:"),
    ]
