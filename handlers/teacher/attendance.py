"""/attendance: the teacher's roll of today's sessions, and of earlier days within the window.

/attendance                      today's sessions (the only one opens at once)
/attendance 12月3日 | 昨天        that day's sessions (a teacher: within the correction window)
/attendance 乐高 absent 3 7 12    the shorthand: those children absent, everyone else as
                                 guardians filed (leave, early pick-up) or present; saved at once

On the roll one tap on a child moves them along 到 → 缺 → 迟到 → 到; "其余都到" marks every
child not marked yet as present; 提交 saves (compare-and-set on the roll's version: a second
device's older screen saves nothing and shows the roll as saved). What the teacher tapped and
has not submitted is kept per roll in their user data, so a page turn or a reopened screen
shows it.

Presses: at:d:<day> (a day's sessions), at:o:<course>:<day>:<page> (the roll),
at:t:<course>:<day>:<student>:<page> (one tap), at:a:<course>:<day>:<page> (the rest present),
at:s:<course>:<day>:<version> (submit), at:x (close).
"""

from __future__ import annotations

import datetime as dt
import html
import math
from typing import Any

from telegram import InlineKeyboardButton, InlineKeyboardMarkup, Update
from telegram.ext import CallbackQueryHandler, CommandHandler, filters

from bot import wording
from bot.context import BotContext
from bot.i18n import N_, Translator
from bot.services import attendance, sessions, when
from bot.services.attendance import Line, Outcome, Roll, ShorthandError
from bot.services.sessions import Access
from handlers.common.keyboards import PAGE_MAX, grid, nav, pager
from handlers.common.presses import as_int, edit_or_send, fields, refuse, show_screen
from storage.models import Role, utcnow

CLOSE = "at:x"
PER_PAGE = PAGE_MAX
LOOK_BACK_DAYS = 31  # how far back a teacher can page to see rolls (marking: the window)

NOT_FOR_YOU = N_("The roll is for teachers and the school's admins.")
NO_SESSIONS = N_("You have no after-school sessions on {day}.")
SHORTHAND_ERRORS = {
    ShorthandError.NO_SESSION: N_("None of your sessions today matches “{word}”."),
    ShorthandError.AMBIGUOUS_SESSION: N_(
        "More than one of your sessions today matches. Add the course's name: {words}."
    ),
    ShorthandError.NO_CODE: N_(
        "Add what to mark, for example: /attendance 乐高 absent 3 7 12 (absent, late, present)."
    ),
    ShorthandError.NO_CHILD: N_("No child on the roll of {course} is number or name “{word}”."),
    ShorthandError.AMBIGUOUS_CHILD: N_(
        "“{word}” matches more than one child: {words}. Use their roll numbers."
    ),
}


def _now() -> dt.datetime:
    return utcnow()


def _today(t: Translator) -> dt.date:
    return _now().astimezone(t.timezone).date()


def _key(day: dt.date) -> str:
    return day.strftime("%Y%m%d")


def _day(text: str) -> dt.date | None:
    try:
        return dt.datetime.strptime(text, "%Y%m%d").date()
    except ValueError:
        return None


def _may_use(context: BotContext) -> bool:
    return context.member is not None and (
        context.member.has(Role.TEACHER) or context.member.has(Role.ADMIN)
    )


# --- the draft of taps not yet submitted ------------------------------------------------------


def _draft(context: BotContext, course_id: int, day: dt.date) -> dict[str, str]:
    data = context.user_data if context.user_data is not None else {}
    rolls: dict[str, dict[str, str]] = data.setdefault("rolls", {})
    return rolls.setdefault(f"{course_id}:{_key(day)}", {})


def _drop_draft(context: BotContext, course_id: int, day: dt.date) -> None:
    if context.user_data is not None:
        context.user_data.get("rolls", {}).pop(f"{course_id}:{_key(day)}", None)


def _code_of(line: Line, draft: dict[str, str]) -> str | None:
    return draft.get(str(line.student_id)) or line.proposed


# --- screens ----------------------------------------------------------------------------------


def _heading(t: Translator, roll: Roll) -> str:
    course = roll.course
    return (
        f"<b>{html.escape(course.name)}</b> · {wording.day(t, roll.running.date)} "
        f"{wording.span(t, course.starts_at, course.ends_at)} · {html.escape(course.venue)}"
    )


def _line_text(t: Translator, roll: Roll, line: Line, code_name: str | None) -> str:
    code = roll.codes.get(code_name)
    status = f"{code.emoji} {t.gettext(code.label)}" if code else "· " + t.gettext("not marked")
    extra = []
    if line.leave is not None:
        if line.leave.pickup_at is not None:
            extra.append(
                t.gettext("collected at {time}").format(time=t.time(line.leave.pickup_at))
            )
        elif line.leave.reason:
            extra.append(html.escape(line.leave.reason))
    if line.saved is not None and line.saved.code == code_name:
        if line.saved.alerted:
            extra.append(t.gettext("guardians told"))
        if line.saved.note:
            extra.append(
                t.gettext("reason: {reason}").format(
                    reason=html.escape(t.gettext(line.saved.note))
                )
            )
    tail = f" ({'; '.join(extra)})" if extra else ""
    return f"{line.number}. {html.escape(line.name)} {status}{tail}"


def _summary(t: Translator, roll: Roll, draft: dict[str, str]) -> str:
    counts: dict[str | None, int] = {}
    for line in roll.lines:
        code = _code_of(line, draft)
        counts[code] = counts.get(code, 0) + 1
    parts = [
        f"{c.emoji} {t.gettext(c.label)} {counts[c.code]}"
        for c in roll.codes.all
        if c.code in counts
    ]
    if counts.get(None):
        parts.append(
            t.ngettext("{count} not marked", "{count} not marked", counts[None]).format(
                count=counts[None]
            )
        )
    return " · ".join(parts)


def roll_text(t: Translator, roll: Roll, draft: dict[str, str]) -> str:
    lines = [_heading(t, roll)]
    if roll.submitted_at is not None:
        lines.append(
            t.gettext("Submitted {moment}; changes are saved as corrections.").format(
                moment=wording.moment(t, roll.submitted_at)
            )
        )
    elif roll.editable:
        lines.append(t.gettext("Not submitted yet. Tap a child to change their mark."))
    if not roll.editable:
        lines.append(t.gettext("You can see this roll; only its teacher or an admin can mark it."))
    pending = sum(
        1
        for line in roll.lines
        if str(line.student_id) in draft and draft[str(line.student_id)] != line.proposed
    )
    if pending and roll.editable:
        lines.append(
            t.ngettext(
                "{count} change not submitted yet.", "{count} changes not submitted yet.", pending
            ).format(count=pending)
        )
    lines.append("")
    lines += [_line_text(t, roll, line, _code_of(line, draft)) for line in roll.lines]
    lines += ["", _summary(t, roll, draft)]
    return "\n".join(lines)


def roll_markup(
    t: Translator, roll: Roll, draft: dict[str, str], page: int
) -> InlineKeyboardMarkup:
    course, day = roll.course.id, _key(roll.running.date)
    rows: list[list[InlineKeyboardButton]] = []
    if roll.editable:
        pages = max(1, math.ceil(len(roll.lines) / PER_PAGE))
        page = min(max(page, 0), pages - 1)
        shown = roll.lines[page * PER_PAGE : (page + 1) * PER_PAGE]
        buttons = []
        for line in shown:
            code = roll.codes.get(_code_of(line, draft))
            mark = code.emoji if code else "·"
            buttons.append(
                InlineKeyboardButton(
                    f"{line.number} {line.name} {mark}",
                    callback_data=f"at:t:{course}:{day}:{line.student_id}:{page}",
                )
            )
        rows += grid(buttons, per_row=2)
        turn = pager(page, pages, lambda n: f"at:o:{course}:{day}:{n}")
        if turn:
            rows.append(turn)
        actions = []
        if any(_code_of(line, draft) is None for line in roll.lines):
            actions.append(
                InlineKeyboardButton(
                    "✅ " + t.gettext("The rest are here"),
                    callback_data=f"at:a:{course}:{day}:{page}",
                )
            )
        label = t.gettext("Save corrections") if roll.submitted_at else t.gettext("Submit")
        actions.append(
            InlineKeyboardButton(label, callback_data=f"at:s:{course}:{day}:{roll.version}")
        )
        rows += grid(actions)
    rows.append(nav(t, back=f"at:d:{day}", cancel=CLOSE))
    return InlineKeyboardMarkup(rows)


async def _day_screen(
    update: Update, context: BotContext, day: dt.date, *, opening: bool = False
) -> None:
    """The member's sessions of `day`, each with whether its roll is in; the only session of
    today opens at once when /attendance is typed."""
    t, member = context.t, context.member
    assert member is not None
    today = _today(t)
    async with context.db.transaction() as session:
        runs = await sessions.day_of(session, member, day, today)
        done = await sessions.rolls_in(session, [r.course.id for r in runs], day)
        roll = None
        if opening and len(runs) == 1:
            roll = await attendance.open_roll(session, member, runs[0].course.id, day, today)
    if roll is not None:
        await _show_roll(update, context, roll, 0)
        return
    rows: list[list[InlineKeyboardButton]] = []
    buttons = [
        InlineKeyboardButton(
            f"{'✅' if r.course.id in done else '⏳'} {r.course.name} "
            f"{t.time(r.course.starts_at)}",
            callback_data=f"at:o:{r.course.id}:{_key(day)}:0",
        )
        for r in runs
    ]
    rows += grid(buttons, per_row=1)
    earlier, later = day - dt.timedelta(days=1), day + dt.timedelta(days=1)
    moves = []
    if member.has(Role.ADMIN) or (today - earlier).days <= LOOK_BACK_DAYS:
        moves.append(
            InlineKeyboardButton(
                "‹ " + wording.day(t, earlier), callback_data=f"at:d:{_key(earlier)}"
            )
        )
    if later <= today:
        moves.append(
            InlineKeyboardButton(wording.day(t, later) + " ›", callback_data=f"at:d:{_key(later)}")
        )
    rows += grid(moves, per_row=2)
    rows.append(nav(t, cancel=CLOSE))
    if runs:
        text = t.gettext("Sessions on {day}: ✅ roll submitted, ⏳ not yet.").format(
            day=wording.day(t, day)
        )
    else:
        text = t.gettext(NO_SESSIONS).format(day=wording.day(t, day))
    await show_screen(update, text, rows)


async def _show_roll(update: Update, context: BotContext, roll: Roll, page: int) -> None:
    draft = _draft(context, roll.course.id, roll.running.date) if roll.editable else {}
    markup = roll_markup(context.t, roll, draft, page)
    await show_screen(
        update, roll_text(context.t, roll, draft), [list(r) for r in markup.inline_keyboard]
    )


# --- entry points -----------------------------------------------------------------------------


async def show(update: Update, context: BotContext) -> None:
    """/attendance, with a day or the shorthand after it."""
    message = update.effective_message
    assert message is not None
    t = context.t
    if not _may_use(context):
        await message.reply_text(t.gettext(NOT_FOR_YOU))
        return
    # A press (a reminder's 点名 button) opens today's roll; only a typed command has words.
    typed = message.text if update.callback_query is None else None
    words = (typed or "").split(maxsplit=1)
    rest = words[1].strip() if len(words) > 1 else ""
    if not rest:
        await _day_screen(update, context, _today(t), opening=True)
        return
    assert context.member is not None
    async with context.db.transaction() as session:
        codes = await attendance.codes(session, context.member.school_id)
    if not any(codes.named(word) for word in rest.split()):
        day = _past_day(rest, _today(t))
        if day is not None:
            await _day_screen(update, context, day)
            return
    await _shorthand(update, context, rest)


def _past_day(text: str, today: dt.date) -> dt.date | None:
    """The day a typed text names, read backwards: a roll is of today or before, so 周三 is
    the last Wednesday and 12月3日 the last 3 December."""
    found = when.days(text, today)
    if found is None:
        return None
    day = found[0]
    if day > today:
        day = (
            day - dt.timedelta(days=7)
            if (day - today).days < 7
            else day.replace(year=day.year - 1)
        )
    return day


async def _shorthand(update: Update, context: BotContext, text: str) -> None:
    message = update.effective_message
    assert message is not None and context.member is not None
    t, member = context.t, context.member
    today = _today(t)
    async with context.db.transaction() as session:
        runs = [
            r
            for r in await sessions.day_of(session, member, today, today)
            if r.access is Access.MARK
        ]
        rolls = [
            roll
            for r in runs
            if (roll := await attendance.open_roll(session, member, r.course.id, today, today))
        ]
        read = attendance.read_shorthand(text, rolls)
        result = None
        if read.error is None and read.roll is not None:
            marks = attendance.fill_rest(read.roll, read.marks)
            result = await attendance.submit(
                session,
                member,
                read.roll.course.id,
                today,
                marks,
                read.roll.version,
                _now(),
                source="shorthand",
            )
    if read.error is not None:
        words = read.words
        await message.reply_text(
            t.gettext(SHORTHAND_ERRORS[read.error]).format(
                word=words[0] if words else text,
                words="、".join(
                    words[1:] if read.error is ShorthandError.AMBIGUOUS_CHILD else words
                ),
                course=read.roll.course.name if read.roll else "",
            )
            + "\n"
            + t.gettext("Nothing was saved.")
        )
        return
    assert result is not None
    await _after_submit(update, context, result)


async def pressed(update: Update, context: BotContext) -> None:
    """Every at: press: re-checked on the server, whatever the button said."""
    query = update.callback_query
    assert query is not None
    t = context.t
    if not _may_use(context):
        await refuse(update, context, attendance.REFUSED)
        return
    data = query.data or ""
    if data == CLOSE:
        await query.answer()
        await edit_or_send(query, t.gettext("Closed. Send /attendance to open the roll again."))
        return
    kind = data[3:4]
    if kind == "d":
        parts = fields(data, "at:d:", 1)
        day = _day(parts[0]) if parts else None
        if day is None:
            await refuse(update, context, attendance.REFUSED)
            return
        await query.answer()
        await _day_screen(update, context, day)
        return
    if kind in "otas" and kind:
        await _roll_press(update, context, kind)
        return
    await refuse(update, context, attendance.REFUSED)


async def _roll_press(update: Update, context: BotContext, kind: str) -> None:
    query = update.callback_query
    assert query is not None and context.member is not None
    t, member = context.t, context.member
    count = {"o": 3, "t": 4, "a": 3, "s": 3}[kind]
    parts = fields(query.data, f"at:{kind}:", count)
    day = _day(parts[1]) if parts else None
    found = [as_int(p) for p in [parts[0], *parts[2:]]] if parts else []
    numbers = [n for n in found if n is not None]
    if parts is None or day is None or len(numbers) != len(found):
        await refuse(update, context, attendance.REFUSED)
        return
    course_id = numbers[0]
    async with context.db.transaction() as session:
        roll = await attendance.open_roll(session, member, course_id, day, _today(t))
    if roll is None:
        await refuse(update, context, attendance.REFUSED, audited=True)
        return
    if kind == "o":
        await query.answer()
        await _show_roll(update, context, roll, numbers[1])
        return
    if not roll.editable:
        await refuse(update, context, attendance.REFUSED)
        return
    draft = _draft(context, course_id, day)
    if kind == "t":
        student_id, page = numbers[1], numbers[2]
        line = next((x for x in roll.lines if x.student_id == student_id), None)
        if line is None:
            await refuse(update, context, attendance.REFUSED)
            return
        tapped = roll.codes.next(_code_of(line, draft))
        draft[str(student_id)] = tapped
        named = roll.codes.get(tapped)
        await query.answer(
            f"{line.number} {line.name}: {t.gettext(named.label) if named else tapped}"
        )
        await _show_roll(update, context, roll, page)
        return
    if kind == "a":
        for line in roll.lines:
            if _code_of(line, draft) is None:
                draft[str(line.student_id)] = attendance.PRESENT
        await query.answer()
        await _show_roll(update, context, roll, numbers[1])
        return
    # Submit: what the screen showed, at the version it was drawn with.
    marks = {
        line.student_id: code for line in roll.lines if (code := _code_of(line, draft)) is not None
    }
    async with context.db.transaction() as session:
        result = await attendance.submit(
            session, member, course_id, day, marks, numbers[1], _now()
        )
    if result.outcome is Outcome.UNMARKED:
        await query.answer(
            t.ngettext(
                "{count} child is not marked yet: number {numbers}.",
                "{count} children are not marked yet: numbers {numbers}.",
                len(result.unmarked),
            ).format(count=len(result.unmarked), numbers=", ".join(map(str, result.unmarked))),
            show_alert=True,
        )
        return
    if result.outcome is Outcome.CONFLICT:
        _drop_draft(context, course_id, day)
        await query.answer(
            t.gettext(
                "This roll was saved from another screen first. Nothing of yours was saved; "
                "here it is as saved."
            ),
            show_alert=True,
        )
        if result.roll is not None:
            await _show_roll(update, context, result.roll, 0)
        return
    if result.outcome is Outcome.REFUSED:
        await refuse(update, context, attendance.REFUSED, audited=True)
        return
    _drop_draft(context, course_id, day)
    await query.answer(t.gettext("Saved."))
    await _after_submit(update, context, result)


async def _after_submit(update: Update, context: BotContext, result: attendance.Submitted) -> None:
    """The roll as saved, what it set off, and the day's next steps."""
    t = context.t
    roll = result.roll
    assert roll is not None
    said = [
        t.gettext("✅ Roll of {course} on {day} saved.").format(
            course=html.escape(roll.course.name), day=wording.day(t, roll.running.date)
        )
    ]
    if result.alerts:
        said.append(
            t.ngettext(
                "The guardians of {count} child absent without leave are being told now.",
                "The guardians of {count} children absent without leave are being told now.",
                len(result.alerts),
            ).format(count=len(result.alerts))
        )
    if result.corrections:
        said.append(
            t.ngettext(
                "{count} child's guardians get a correction.",
                "{count} children's guardians get a correction.",
                len(result.corrections),
            ).format(count=len(result.corrections))
        )
    if result.changed == 0:
        said.append(t.gettext("Nothing had changed."))
    text = "\n".join(said) + "\n\n" + roll_text(t, roll, {})
    # Imported here: the intents module opens /attendance itself (a cycle at import time).
    from handlers.common import intents

    steps = [
        b for b in (intents.button(t, "update"), intents.button(t, "dismiss")) if b is not None
    ]
    course, day = roll.course.id, _key(roll.running.date)
    steps.append(
        InlineKeyboardButton(t.gettext("Open the roll"), callback_data=f"at:o:{course}:{day}:0")
    )
    rows = grid(steps)
    rows.append(nav(t, back=f"at:d:{day}", cancel=CLOSE))
    await show_screen(update, text, rows)


def handlers() -> list[Any]:
    return [
        CommandHandler("attendance", show, filters=filters.ChatType.PRIVATE),
        CallbackQueryHandler(pressed, pattern=r"^at:"),
    ]
