"""/dismiss: the teacher marks how each child left the session (弹性离校).

Screens: today's sessions (when there are several) → the dismissal list as text, numbered like
the roll (🚗 an early pick-up filed by a guardian, 📝 on leave, ✅ left: how and when, 👤 the
adults on file, 🏠 may go home alone), with buttons for the children still in class, eight a
page → a child's card with the ways they may leave → the list again, the result on top.
其余全部由家长接走 asks to confirm first. Children who left are listed behind 已离开, to
correct a mark (a correction is a new row; the latest counts). `/dismiss 3 7 家长` marks by
number. Every press re-reads the list through one guarded call; a mark names the row the
teacher saw, so a mark from another device meanwhile is not overwritten.

Callback data (never trusted; read with `ints`):
``dm:d:<page>`` today's sessions · ``dm:s:<course>:<yyyymmdd>`` a session's list ·
``dm:l:<session>:<left>:<page>`` a page of the children in class (left 0) or gone (left 1) ·
``dm:c:<session>:<student>:<page>`` a child's card · ``dm:w:<session>:<student>:<way>:<adult>:
<latest>`` a mark · ``dm:r:<session>:<version>:<count>`` all the rest, to confirm ·
``dm:y:<session>:<version>:<count>`` confirmed · ``dm:x`` close.
"""

from __future__ import annotations

import datetime as dt
import html
import re
from collections.abc import Sequence
from typing import Any

from telegram import InlineKeyboardButton, InlineKeyboardMarkup, Update
from telegram.constants import ParseMode
from telegram.ext import CallbackQueryHandler, CommandHandler, filters

from bot import wording
from bot.context import BotContext
from bot.i18n import N_, Translator
from bot.services import dismissal
from bot.services.dismissal import Left, Marked, Outcome, Pupil, Sheet
from bot.services.sessions import Access, Running
from handlers.common.keyboards import PAGE_MAX, grid, nav, pager
from handlers.common.presses import edit_markup, edit_or_send, ints, refuse
from storage.models import DismissalWay, Role, utcnow

WAYS = {
    1: DismissalWay.GUARDIAN,
    2: DismissalWay.AUTHORISED,
    3: DismissalWay.ALONE,
    4: DismissalWay.EXTENDED,
}
# How a child left, as the teacher's list says it.
HOW = {
    DismissalWay.GUARDIAN: N_("picked up by a guardian"),
    DismissalWay.ALONE: N_("went home alone"),
    DismissalWay.EXTENDED: N_("extended care"),
}
# The words `/dismiss 3 7 家长` understands for each way (an adult is named by name or relation).
WORDS = {
    DismissalWay.GUARDIAN: {"家长", "guardian", "parent", "parents", "接走"},
    DismissalWay.ALONE: {"自行", "自行回家", "自己", "alone", "home"},
    DismissalWay.EXTENDED: {"延时", "托管", "延时托管", "extended"},
}
CLOSE = "dm:x"
TOO_LONG = 3800  # the list's text, beyond which the adults are counted instead of named


def _now() -> dt.datetime:
    return utcnow()


def _today(t: Translator) -> dt.date:
    return _now().astimezone(t.timezone).date()


def _button(label: str, data: str) -> InlineKeyboardButton:
    return InlineKeyboardButton(label, callback_data=data)


def _clock(t: Translator, moment: dt.datetime) -> str:
    return t.time(moment.astimezone(t.timezone).time())


def adult_text(t: Translator, adult: dismissal.Adult) -> str:
    """爷爷（张建国） / Grandpa (father's side) (张建国)."""
    return t.gettext("{relation} ({name})").format(
        relation=dismissal.relation_text(t, adult.relation), name=adult.name
    )


def how(t: Translator, left: Left) -> str:
    """How a child left, for the teacher: 由家长接走 · 由爷爷（张建国）接走 · 自行回家 …"""
    if left.way is DismissalWay.AUTHORISED:
        if left.adult is None:
            return t.gettext("picked up by an authorised adult")
        return t.gettext("picked up by {adult}").format(adult=adult_text(t, left.adult))
    return t.gettext(HOW[left.way])


def left_line(t: Translator, pupil: Pupil) -> str:
    """✅ 3. 李小明 17:52 由家长接走: a result that names the child and the time."""
    assert pupil.left is not None
    return "✅ " + t.gettext("{number}. {child} {time} {how}").format(
        number=pupil.number,
        child=pupil.name,
        time=_clock(t, pupil.left.left_at),
        how=how(t, pupil.left),
    )


def _marks(t: Translator, pupil: Pupil, *, adults: bool = True) -> list[str]:
    """What the list says beside a child's name."""
    found = []
    if pupil.left is not None:
        found.append(f"✅ {_clock(t, pupil.left.left_at)} {how(t, pupil.left)}")
    if pupil.on_leave and pupil.pickup_at is not None:
        found.append("🚗 " + t.gettext("collected at {time}").format(time=t.time(pupil.pickup_at)))
    elif pupil.on_leave and pupil.roll in dismissal.HERE:
        found.append("📝 " + t.gettext("on leave, but came"))
    elif pupil.on_leave:
        found.append("📝 " + t.gettext("on leave"))
    elif pupil.pickup_at is not None:
        found.append(
            "🚗 "
            + t.gettext("early pick-up {time} by a guardian").format(time=t.time(pupil.pickup_at))
        )
    if pupil.roll == "absent" and not pupil.on_leave:
        found.append("❌ " + t.gettext("absent"))
    elif pupil.roll == "early" and pupil.left is None:
        found.append("🚗 " + t.gettext("collected early (roll)"))
    if pupil.left is None and pupil.adults:
        if adults:
            found.append(
                "👤 " + wording.joined(t, (html.escape(adult_text(t, a)) for a in pupil.adults))
            )
        else:
            found.append(f"👤{len(pupil.adults)}")
    if pupil.left is None and pupil.alone:
        found.append("🏠 " + t.gettext("may go home alone"))
    return found


def list_text(t: Translator, found: Sheet, top: str | None = None) -> str:
    """The whole list as text (HTML): numbered like the roll, with what the teacher needs."""
    course = found.course
    head = (
        f"<b>{html.escape(course.name)}</b> · {wording.day(t, found.date)} "
        f"{wording.span(t, course.starts_at, course.ends_at)} · {html.escape(course.venue)}"
    )
    rest, gone = len(found.remaining), len(found.gone)
    away = len(found.pupils) - rest - gone
    counts = " · ".join(
        [
            t.ngettext("{n} child still in class", "{n} children still in class", rest).format(
                n=rest
            ),
            t.ngettext("{n} left", "{n} left", gone).format(n=gone),
            t.ngettext("{n} away", "{n} away", away).format(n=away),
        ]
    )

    def lines(adults: bool) -> list[str]:
        return [
            " ".join([f"{p.number}. {html.escape(p.name)}", *_marks(t, p, adults=adults)])
            for p in found.pupils
        ]

    body = lines(True)
    if sum(len(x) for x in body) > TOO_LONG:
        body = lines(False)  # 50 children with their adults named would not fit one message
    parts = [html.escape(top)] if top else []
    parts += [head, counts, ""]
    parts += body or [t.gettext("No children are enrolled.")]
    if found.access >= Access.MARK and found.remaining:
        parts += ["", t.gettext("Tap a child to mark how they left.")]
    elif found.access < Access.MARK:
        parts += ["", t.gettext("You can see this list; its teacher marks it.")]
    return "\n".join(parts)


def list_markup(
    t: Translator, found: Sheet, *, gone: bool = False, page: int = 0
) -> InlineKeyboardMarkup:
    """Buttons for the children still in class (or, to correct, those gone), eight a page."""
    rows: list[list[InlineKeyboardButton]] = []
    sid = found.session_id
    if found.access >= Access.MARK and sid is not None:
        shown = found.gone if gone else found.remaining
        pages = max(1, -(-len(shown) // PAGE_MAX))
        page = min(max(page, 0), pages - 1)
        buttons = [
            _button(f"{p.number} {p.name}", f"dm:c:{sid}:{p.id}:{page}")
            for p in shown[page * PAGE_MAX : (page + 1) * PAGE_MAX]
        ]
        rows += grid(buttons)
        rows.append(pager(page, pages, lambda n: f"dm:l:{sid}:{int(gone)}:{n}"))
        more = []
        if found.remaining and not gone:
            more.append(
                _button(
                    t.gettext("All the rest: by a guardian"),
                    f"dm:r:{sid}:{found.version}:{len(found.remaining)}",
                )
            )
        if gone:
            more.append(_button(t.gettext("Still in class"), f"dm:l:{sid}:0:0"))
        elif found.gone:
            n = len(found.gone)
            more.append(
                _button(
                    t.ngettext("Left ({n}) · correct", "Left ({n}) · correct", n).format(n=n),
                    f"dm:l:{sid}:1:0",
                )
            )
        rows += grid(more)
    rows.append(nav(t, back="dm:d:0", cancel=CLOSE))
    return InlineKeyboardMarkup([r for r in rows if r])


def card_text(t: Translator, found: Sheet, pupil: Pupil) -> str:
    lines = [
        f"<b>{pupil.number}. {html.escape(pupil.name)}</b> · {html.escape(found.course.name)}"
    ]
    lines += _marks(t, pupil)
    if pupil.left is not None:
        lines.append(t.gettext("A new choice corrects the one recorded."))
    if not pupil.alone:
        lines.append(
            "🏠 "
            + t.gettext(
                "No guardian has allowed {child} to go home alone; a guardian can allow it in "
                "/pickup."
            ).format(child=html.escape(pupil.name))
        )
    lines += ["", t.gettext("How does {child} leave?").format(child=html.escape(pupil.name))]
    return "\n".join(lines)


def card_markup(t: Translator, found: Sheet, pupil: Pupil, page: int) -> InlineKeyboardMarkup:
    sid, latest = found.session_id, pupil.latest

    def way(code: int, adult: int = 0) -> str:
        return f"dm:w:{sid}:{pupil.id}:{code}:{adult}:{latest}"

    buttons = [_button(t.gettext("By a guardian"), way(1))]
    buttons += [_button(adult_text(t, a), way(2, a.id)) for a in pupil.adults]
    if pupil.alone:
        buttons.append(_button(t.gettext("Home alone"), way(3)))
    buttons.append(_button(t.gettext("Extended care"), way(4)))
    gone = int(pupil.left is not None)
    rows = [*grid(buttons), nav(t, back=f"dm:l:{sid}:{gone}:{page}", cancel=CLOSE)]
    return InlineKeyboardMarkup(rows)


def sessions_markup(t: Translator, day: Sequence[Running], page: int) -> InlineKeyboardMarkup:
    pages = max(1, -(-len(day) // PAGE_MAX))
    page = min(max(page, 0), pages - 1)
    buttons = [
        _button(
            f"{r.course.name} {wording.span(t, r.course.starts_at, r.course.ends_at)}",
            f"dm:s:{r.course.id}:{r.date:%Y%m%d}",
        )
        for r in day[page * PAGE_MAX : (page + 1) * PAGE_MAX]
    ]
    rows = [*grid(buttons, per_row=1), pager(page, pages, lambda n: f"dm:d:{n}")]
    rows.append(nav(t, cancel=CLOSE))
    return InlineKeyboardMarkup([r for r in rows if r])


# ---------------------------------------------------------------------------------------------
# The command


async def begin(update: Update, context: BotContext) -> None:
    """/dismiss: today's sessions, or the only one's list; `/dismiss 3 7 家长` marks."""
    message = update.effective_message
    assert message is not None
    t = context.t
    member = context.member
    if member is None or not (member.has(Role.TEACHER) or member.has(Role.ADMIN)):
        await message.reply_text(t.gettext("This is for teachers."))
        return
    if context.args:
        await _shorthand(update, context, context.args)
        return
    today = _today(t)
    async with context.db.transaction() as session:
        day = await dismissal.day(session, member, today)
        found = None
        if len(day) == 1:
            found = await dismissal.sheet(session, member, day[0].course.id, today, today)
    if not day:
        await message.reply_text(t.gettext("You have no after-school sessions today."))
        return
    if found is not None:
        await message.reply_text(
            list_text(t, found), reply_markup=list_markup(t, found), parse_mode=ParseMode.HTML
        )
        return
    await message.reply_text(
        t.gettext("Which session's dismissal?"), reply_markup=sessions_markup(t, day, 0)
    )


async def on_press(update: Update, context: BotContext) -> None:
    """Every /dismiss button: parse, one guarded call, show."""
    query = update.callback_query
    assert query is not None and query.data is not None
    data = query.data
    if data == CLOSE:
        await query.answer(context.t.gettext("Closed."))
        await edit_markup(query, None)
        return
    if (values := ints(data, "dm:d:", 1)) is not None:
        await _sessions(update, context, values[0])
    elif (values := ints(data, "dm:s:", 2)) is not None:
        await _open(update, context, values[0], values[1])
    elif (values := ints(data, "dm:l:", 3)) is not None and values[1] in (0, 1):
        await _page(update, context, values[0], bool(values[1]), values[2])
    elif (values := ints(data, "dm:c:", 3)) is not None:
        await _card(update, context, values[0], values[1], values[2])
    elif (values := ints(data, "dm:w:", 5)) is not None and values[2] in WAYS:
        await _mark(update, context, values)
    elif (values := ints(data, "dm:r:", 3)) is not None:
        await _ask_rest(update, context, values)
    elif (values := ints(data, "dm:y:", 3)) is not None:
        await _rest(update, context, values)
    else:
        await refuse(update, context, dismissal.REFUSED)


async def _sessions(update: Update, context: BotContext, page: int) -> None:
    query = update.callback_query
    assert query is not None
    t, member = context.t, context.member
    if member is None or not (member.has(Role.TEACHER) or member.has(Role.ADMIN)):
        await refuse(update, context, dismissal.REFUSED)
        return
    async with context.db.transaction() as session:
        day = await dismissal.day(session, member, _today(t))
    await query.answer()
    if not day:
        await edit_or_send(query, t.gettext("You have no after-school sessions today."))
        return
    await edit_or_send(
        query, t.gettext("Which session's dismissal?"), reply_markup=sessions_markup(t, day, page)
    )


def _date(value: int) -> dt.date | None:
    try:
        return dt.date(value // 10000, value // 100 % 100, value % 100)
    except ValueError:
        return None


async def _open(update: Update, context: BotContext, course_id: int, day: int) -> None:
    query = update.callback_query
    assert query is not None
    t = context.t
    date = _date(day)
    if date is None:
        await refuse(update, context, dismissal.REFUSED)
        return
    async with context.db.transaction() as session:
        found = await dismissal.sheet(
            session, context.member, course_id, date, _today(t), pressed=query.data
        )
    if found is None:
        await refuse(update, context, dismissal.REFUSED, audited=True)
        return
    await query.answer()
    await _show_list(query, t, found)


async def _show_list(
    query: Any,
    t: Translator,
    found: Sheet,
    *,
    top: str | None = None,
    gone: bool = False,
    page: int = 0,
) -> None:
    await edit_or_send(
        query,
        list_text(t, found, top),
        reply_markup=list_markup(t, found, gone=gone, page=page),
        parse_mode=ParseMode.HTML,
    )


async def _sheet(
    update: Update, context: BotContext, session_id: int, need: Access = Access.VIEW
) -> Sheet | None:
    """The guarded read a press makes: the list, if the presser may see (or mark) it."""
    query = update.callback_query
    assert query is not None
    async with context.db.transaction() as session:
        found = await dismissal.sheet_of(
            session, context.member, session_id, _today(context.t), need=need, pressed=query.data
        )
    if found is None:
        await refuse(update, context, dismissal.REFUSED, audited=True)
    return found


async def _page(
    update: Update, context: BotContext, session_id: int, gone: bool, page: int
) -> None:
    query = update.callback_query
    assert query is not None
    found = await _sheet(update, context, session_id)
    if found is None:
        return
    await query.answer()
    await _show_list(query, context.t, found, gone=gone, page=page)


async def _card(
    update: Update, context: BotContext, session_id: int, student_id: int, page: int
) -> None:
    query = update.callback_query
    assert query is not None
    t = context.t
    found = await _sheet(update, context, session_id, Access.MARK)
    if found is None:
        return
    pupil = found.pupil(student_id)
    if pupil is None:
        await refuse(update, context, dismissal.REFUSED)
        return
    await query.answer()
    await edit_or_send(
        query,
        card_text(t, found, pupil),
        reply_markup=card_markup(t, found, pupil, page),
        parse_mode=ParseMode.HTML,
    )


async def _mark(update: Update, context: BotContext, values: list[int]) -> None:
    query = update.callback_query
    assert query is not None
    t = context.t
    session_id, student_id, code, adult, latest = values
    async with context.db.transaction() as session:
        done = await dismissal.mark(
            session,
            context.member,
            session_id,
            student_id,
            WAYS[code],
            expected=latest,
            person_id=adult or None,
            now=_now(),
            today=_today(t),
            pressed=query.data,
        )
    if done is None:
        await refuse(update, context, dismissal.REFUSED, audited=True)
        return
    pupil = done.pupils[0]
    if done.outcome is Outcome.DONE:
        result = left_line(t, pupil)
        await query.answer(result)
        await _show_list(query, t, done.sheet, top=result)
        return
    if done.outcome is Outcome.RACED and pupil.left is not None:
        text = t.gettext(
            "Another device marked {child} meanwhile: {time} {how}. Nothing was changed."
        ).format(child=pupil.name, time=_clock(t, pupil.left.left_at), how=how(t, pupil.left))
    elif done.outcome is Outcome.NOT_PERMITTED:
        text = t.gettext(
            "{child} may not go home alone: no guardian has given permission. Ask a guardian "
            "to give it in /pickup, or choose another way."
        ).format(child=pupil.name)
    elif done.outcome is Outcome.NO_ADULT:
        text = t.gettext("This adult is no longer on file for {child}.").format(child=pupil.name)
    else:
        text = t.gettext("The list changed meanwhile. Nothing was changed.")
    await query.answer(text[:200], show_alert=True)
    await edit_or_send(
        query,
        card_text(t, done.sheet, pupil),
        reply_markup=card_markup(t, done.sheet, pupil, 0),
        parse_mode=ParseMode.HTML,
    )


async def _ask_rest(update: Update, context: BotContext, values: list[int]) -> None:
    query = update.callback_query
    assert query is not None
    t = context.t
    session_id, version, count = values
    found = await _sheet(update, context, session_id, Access.MARK)
    if found is None:
        return
    await query.answer()
    rest = found.remaining
    if found.version != version or len(rest) != count:
        top = t.gettext("The list changed meanwhile. Here it is as it is now.")
        await _show_list(query, t, found, top=top)
        return
    text = t.ngettext(
        "Mark the {n} child still in class as picked up by a guardian?",
        "Mark all {n} children still in class as picked up by a guardian?",
        len(rest),
    ).format(n=len(rest))
    names = wording.joined(t, (f"{p.number}. {html.escape(p.name)}" for p in rest))
    text += "\n" + names + "\n\n" + t.gettext("Children on leave or absent are not included.")
    rows = [
        [_button(t.gettext("Confirm"), f"dm:y:{session_id}:{version}:{count}")],
        nav(t, back=f"dm:l:{session_id}:0:0", cancel=CLOSE),
    ]
    await edit_or_send(
        query, text, reply_markup=InlineKeyboardMarkup(rows), parse_mode=ParseMode.HTML
    )


async def _rest(update: Update, context: BotContext, values: list[int]) -> None:
    query = update.callback_query
    assert query is not None
    t = context.t
    session_id, version, count = values
    async with context.db.transaction() as session:
        done = await dismissal.mark_rest(
            session,
            context.member,
            session_id,
            version=version,
            count=count,
            now=_now(),
            today=_today(t),
            pressed=query.data,
        )
    if done is None:
        await refuse(update, context, dismissal.REFUSED, audited=True)
        return
    if done.outcome is Outcome.DONE:
        top = _rest_line(t, done)
        await query.answer(top[:200])
        await _show_list(query, t, done.sheet, top=top)
        return
    text = t.gettext("The list changed meanwhile. Nothing was changed; here it is as it is now.")
    await query.answer(text, show_alert=True)
    await _show_list(query, t, done.sheet, top=text)


def _rest_line(t: Translator, done: Marked) -> str:
    """✅ 17:52 由家长接走：1. 李小明、4. 赵六."""
    first = done.pupils[0].left
    assert first is not None
    return "✅ " + t.gettext("{time} picked up by a guardian: {children}").format(
        time=_clock(t, first.left_at),
        children=wording.joined(t, (f"{p.number}. {p.name}" for p in done.pupils)),
    )


# ---------------------------------------------------------------------------------------------
# The shorthand: /dismiss 3 7 家长 (with several sessions: /dismiss 剪纸 3 7 家长)


def _way_of(word: str) -> DismissalWay | None:
    lowered = word.lower()
    return next((w for w, words in WORDS.items() if lowered in words), None)


async def _shorthand(update: Update, context: BotContext, args: Sequence[str]) -> None:
    message = update.effective_message
    assert message is not None
    t = context.t
    member = context.member
    assert member is not None
    tokens = [x for x in re.split(r"[\s,，、]+", " ".join(args)) if x]
    numbers = [int(x) for x in tokens if x.isascii() and x.isdigit() and len(x) <= 4]
    words = [x for x in tokens if not (x.isascii() and x.isdigit())]
    usage = t.gettext(
        "Write the children's numbers and how they left, like /dismiss 3 7 家长 (or 自行, "
        "延时, or an adult's name or relation)."
    )
    if not numbers or not words:
        await message.reply_text(usage)
        return
    today = _today(t)
    async with context.db.transaction() as session:
        day = [r for r in await dismissal.day(session, member, today) if r.access >= Access.MARK]
        named = [r for r in day if words[0] in r.course.name] if len(words) > 1 else []
        if named:  # the course written first: /dismiss 剪纸 3 7 家长
            words = words[1:]
        chosen = named or day
        found = None
        if len(chosen) == 1:
            found = await dismissal.sheet(session, member, chosen[0].course.id, today, today)
    if not day:
        await message.reply_text(t.gettext("You have no after-school sessions to mark today."))
        return
    if len(chosen) != 1:
        names = wording.joined(t, (r.course.name for r in day))
        await message.reply_text(
            t.gettext(
                "You have several sessions today ({courses}): write the course first, like "
                "/dismiss {course} 3 7 家长."
            ).format(courses=names, course=day[0].course.name)
        )
        return
    assert found is not None and found.session_id is not None
    word = " ".join(words)
    way = _way_of(word)
    lines: list[str] = []
    wanted: list[dismissal.Wanted] = []
    for number in dict.fromkeys(numbers):
        pupil = found.numbered(number)
        if pupil is None:
            lines.append("✗ " + t.gettext("No child has number {number}.").format(number=number))
            continue
        if way is not None:
            wanted.append(dismissal.Wanted(pupil.id, way, pupil.latest))
            continue
        matches = [
            a
            for a in pupil.adults
            if word in a.name or word in dismissal.relation_text(t, a.relation)
        ]
        if len(matches) != 1:
            lines.append(
                "✗ "
                + t.gettext("{number}. {child}: no single adult on file matches {word}.").format(
                    number=number, child=pupil.name, word=word
                )
            )
            continue
        wanted.append(
            dismissal.Wanted(pupil.id, DismissalWay.AUTHORISED, pupil.latest, matches[0].id)
        )
    if wanted:
        async with context.db.transaction() as session:
            done = await dismissal.mark_many(
                session, member, found.session_id, wanted, now=_now(), today=today
            )
        lines += [_outcome_line(t, m) for m in done or []]
    await message.reply_text("\n".join(lines) or usage)


def _outcome_line(t: Translator, done: Marked) -> str:
    """One child of the shorthand: marked, or why not."""
    now = done.pupils[0]
    if done.outcome is Outcome.DONE:
        return left_line(t, now)
    if done.outcome is Outcome.NOT_PERMITTED:
        return "✗ " + t.gettext(
            "{number}. {child} may not go home alone: no guardian has given permission. Ask a "
            "guardian to give it in /pickup."
        ).format(number=now.number, child=now.name)
    if done.outcome is Outcome.RACED and now.left is not None:
        return "✗ " + t.gettext("{number}. {child} was marked meanwhile: {time} {how}.").format(
            number=now.number,
            child=now.name,
            time=_clock(t, now.left.left_at),
            how=how(t, now.left),
        )
    return "✗ " + t.gettext("This adult is no longer on file for {child}.").format(child=now.name)


def handlers() -> list[Any]:
    return [
        CommandHandler("dismiss", begin, filters=filters.ChatType.PRIVATE),
        CallbackQueryHandler(on_press, pattern=r"^dm:"),
    ]
