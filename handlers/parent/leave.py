"""/leave: take a child out of a session, a day or several days, or collect them early.

Steps: the child (if several) → a day on which the child has sessions (each named by date,
only the child's own session days) → which session, the whole day, or an early pick-up time →
an optional reason → recorded, naming the child, course, day and time, with 撤销 and 查看课表.
Every screen has 返回 and 取消. Other dates, or a range of them, can be written instead. The
draft lives in `user_data`; every press re-reads the child through the guarded service call
(`leaves.overview`), which refuses and audits a presser who is not the child's guardian.

Callback data (never trusted; read with `fields`/`ints`):
``lv:k:<student>`` child · ``lv:m:<page>`` more days · ``lv:w:<day>`` a day (`key`: 20261207) ·
``lv:w:<day>:<period>`` its session (0: the whole day) · ``lv:p:<day>`` pick-up times that day ·
``lv:t:<day>:<HHMM>`` a pick-up time · ``lv:d`` other dates (typed) · ``lv:b`` back to the days ·
``lv:u:<day>[:<last>]`` whole days from a day (to another) · ``lv:c`` cancel · ``lv:r:<code>``
reason · ``lv:x:<leave>`` take back (here and in /schedule); 查看课表 is /schedule's ``sc:v``.
"""

from __future__ import annotations

import datetime as dt
import html
import warnings
from collections.abc import Sequence
from typing import Any

from telegram import InlineKeyboardButton, InlineKeyboardMarkup, Message, Update
from telegram.ext import (
    CallbackQueryHandler,
    CommandHandler,
    ConversationHandler,
    MessageHandler,
    filters,
)
from telegram.warnings import PTBUserWarning

from bot import wording
from bot.context import BotContext
from bot.i18n import N_, Translator
from bot.services import leaves
from bot.services import when as typed
from bot.services.catalogue import CourseInfo
from bot.services.leaves import LeaveRefusal
from handlers.common.cancel import cancel
from handlers.common.keyboards import PAGE_MAX, grid, nav
from handlers.common.presses import (
    as_int,
    edit_markup,
    edit_or_send,
    fields,
    ints,
    refuse,
    show_screen,
)
from storage.models import Leave, Role, utcnow

WHAT, DATES, PICKUP, REASON = range(4)
DRAFT = "pending_leave"
REASONS = {"ill": N_("Ill"), "family": N_("Family matter"), "other": N_("Other")}
REFUSALS = {
    LeaveRefusal.PAST: N_("That day has passed."),
    LeaveRefusal.NO_SESSION: N_("Your child has no after-school session then."),
    LeaveRefusal.TOO_LATE: N_(
        "It is too late to change this session online: the school needs to know {minutes} "
        "minutes before it starts. Please tell the teacher directly."
    ),
    LeaveRefusal.ALREADY: N_("This is already recorded."),
    LeaveRefusal.BAD_TIME: N_("The pick-up time must be during the session."),
    LeaveRefusal.TOO_LONG: N_("Please choose at most 31 days at a time."),
}
DAYS_A_PAGE = PAGE_MAX - 2  # the pick-up and other-dates buttons share the first screen
PICKUP_TIMES = PAGE_MAX
BACK, CANCEL = "lv:b", "lv:c"
SCHEDULE = "sc:v"  # 查看课表: handlers.parent.schedule shows the week


def _now() -> dt.datetime:
    return utcnow()


def _today(t: Translator) -> dt.date:
    return _now().astimezone(t.timezone).date()


def key(day: dt.date) -> str:
    """A day in callback data: 20261207. A date, not "n days from today", so a screen pressed
    after midnight still means the day it showed."""
    return f"{day:%Y%m%d}"


def _date(value: int, today: dt.date) -> dt.date | None:
    """The day a button names (`key`; a number below `HORIZON` is an older screen's "n days
    from today"), or None if the data names no date."""
    if value < leaves.HORIZON:
        return today + dt.timedelta(days=value)
    try:
        return dt.date(value // 10000, value // 100 % 100, value % 100)
    except ValueError:
        return None


def _colon(t: Translator) -> str:
    return "：" if t.locale.startswith("zh") else ": "


def _button(label: str, data: str) -> InlineKeyboardButton:
    return InlineKeyboardButton(label, callback_data=data)


# ---------------------------------------------------------------------------------------------
# Words for a leave


def what(t: Translator, leave: Leave, sessions: Sequence[CourseInfo] = ()) -> str:
    """What a leave takes the child out of, without the day: "剪纸（非遗） 16:50–17:50"."""
    names = wording.joined(t, (c.name for c in sessions))
    if leave.pickup_at is not None:
        text = t.gettext("picked up at {time}").format(time=t.time(leave.pickup_at))
        return f"{text} · {names}" if names else text
    if leave.period is None:
        whole = t.gettext("the whole day")
        return f"{whole} · {names}" if names else whole
    if sessions:
        start, end = min(c.starts_at for c in sessions), max(c.ends_at for c in sessions)
        return f"{names} {wording.span(t, start, end)}"
    return wording.period(t, leave.period)


def describe(t: Translator, leave: Leave, sessions: Sequence[CourseInfo] = ()) -> str:
    """A recorded leave in a list: "12月7日周一 剪纸（非遗） 16:50–17:50"."""
    return f"{wording.day(t, leave.date)} {what(t, leave, sessions)}"


def courses_of(leave: Leave, enrolled: Sequence[CourseInfo]) -> list[CourseInfo]:
    """The child's courses a leave concerns, by weekday and period (for lists that have no
    calendar at hand; a swapped working day shows no course name)."""
    bit = 1 << leave.date.weekday()
    return sorted(
        (
            c
            for c in enrolled
            if c.weekdays & bit and (leave.period is None or c.period == leave.period)
        ),
        key=lambda c: c.starts_at,
    )


def take_back_button(t: Translator, leave: Leave) -> InlineKeyboardButton:
    if leave.pickup_at is not None:
        short = t.time(leave.pickup_at)
    elif leave.period is None:
        short = t.gettext("the whole day")
    else:
        short = wording.period(t, leave.period)
    label = t.gettext("Take back {day} {what}").format(day=wording.day(t, leave.date), what=short)
    return _button(label, f"lv:x:{leave.id}")


def upcoming_block(
    t: Translator, away: Sequence[Leave], enrolled: Sequence[CourseInfo]
) -> list[str]:
    """/schedule's upcoming leaves and pick-ups (HTML lines); `take_back_markup` gives each its
    撤销 button (`take_back_markup`; any beyond its buttons from its day in /leave)."""
    if not away:
        return []
    lines = ["<b>" + t.gettext("Leaves and early pick-ups") + "</b>"]
    lines += [html.escape(describe(t, x, courses_of(x, enrolled))) for x in away]
    return lines


def take_back_markup(t: Translator, away: Sequence[Leave]) -> InlineKeyboardMarkup | None:
    """/schedule's 撤销 buttons, one for each upcoming leave or pick-up (`upcoming_block`)."""
    rows = [[take_back_button(t, x)] for x in away[: PAGE_MAX - 1]]  # 📅 makes PAGE_MAX
    return InlineKeyboardMarkup(rows) if rows else None


def _tell_teacher(t: Translator, sessions: Sequence[CourseInfo]) -> str:
    """Whom to tell when it is too late online: the session's teacher (the school file holds
    no teacher's phone, so the parent contacts them directly)."""
    teachers = list(dict.fromkeys(c.teacher for c in sessions if c.teacher))
    if not teachers:
        return t.gettext("Please tell the teacher directly.")
    return t.gettext("Please tell {teacher} (the teacher of {course}) directly.").format(
        teacher=html.escape(wording.joined(t, teachers)),
        course=html.escape(wording.joined(t, (c.name for c in sessions))),
    )


def _too_late(t: Translator, child: str, minutes: int, sessions: Sequence[CourseInfo]) -> str:
    """Why an absence cannot be filed online any more, and whom to tell instead (HTML)."""
    return (
        t.ngettext(
            "It is too late to take {child} out of this session online: the school needs to "
            "know {n} minute before it starts.",
            "It is too late to take {child} out of this session online: the school needs to "
            "know {n} minutes before it starts.",
            minutes,
        ).format(n=minutes, child=html.escape(child))
        + "\n"
        + _tell_teacher(t, sessions)
    )


# ---------------------------------------------------------------------------------------------
# The steps


async def begin(update: Update, context: BotContext) -> int:
    """/leave, or a `go:leave` button (handlers.common.intents) pressed anywhere."""
    message = update.effective_message
    assert message is not None
    t = context.t
    if update.callback_query is not None:
        await update.callback_query.answer()
    if context.member is None or not context.member.has(Role.PARENT):
        await message.reply_text(t.gettext("This is for guardians linked to a child."))
        return ConversationHandler.END
    async with context.db.transaction() as session:
        found = await leaves.overview(session, context.member, _today(t))
    assert found is not None  # no child was named, so none can be refused
    if not found.children:
        await message.reply_text(t.gettext("This is for guardians linked to a child."))
        return ConversationHandler.END
    if found.child is not None:
        return await _ask_day(update, context, found, new=True)
    await show_screen(
        update,
        t.gettext("Which child?"),
        [
            *grid([_button(c.name, f"lv:k:{c.id}") for c in found.children]),
            nav(t, cancel=CANCEL),
        ],
        new=True,
    )
    return WHAT


async def _ask_day(
    update: Update,
    context: BotContext,
    found: leaves.Overview,
    page: int = 0,
    *,
    new: bool = False,
) -> int:
    """The first screen: the child's session days, today's cut-off, what is recorded."""
    t = context.t
    child, rules = found.child, found.rules
    assert context.user_data is not None and child is not None and rules is not None
    context.user_data[DRAFT] = {"student": child.id}
    today, now = _today(t), _now()
    name = html.escape(child.name)
    lines = [t.gettext("When will {child} not take part?").format(child=name)]
    if not found.days:
        lines.append(t.gettext("{child} has no sessions in the coming weeks.").format(child=name))
    todays = found.day(today)
    minutes = int(rules.cutoff.total_seconds() // 60)
    if todays is not None and now < _ends(rules, todays):
        closes = leaves.deadline(rules, today, todays.sessions)
        if now < closes:
            lines.append(
                t.gettext(
                    "Absences for today can be filed until {time}; an early pick-up until you "
                    "collect {child}."
                ).format(time=t.time(closes.astimezone(t.timezone).time()), child=name)
            )
        else:
            lines.append(
                t.gettext(
                    "Absences for today closed at {time}; you can still file an early pick-up."
                ).format(time=t.time(closes.astimezone(t.timezone).time()))
            )
    else:
        lines.append(
            t.ngettext(
                "Absences close {n} minute before a session starts.",
                "Absences close {n} minutes before a session starts.",
                minutes,
            ).format(n=minutes)
        )
    if found.upcoming:
        lines += ["", t.gettext("Already recorded:")]
        lines += [html.escape(describe(t, x, found.sessions_of(x))) for x in found.upcoming]
        lines.append(t.gettext("To take one back, open its day, or use its button in /schedule."))
    pages = max(1, -(-len(found.days) // DAYS_A_PAGE))
    page = min(page, pages - 1)
    shown = found.days[page * DAYS_A_PAGE : (page + 1) * DAYS_A_PAGE]
    buttons = [_button(wording.day(t, d.date), f"lv:w:{key(d.date)}") for d in shown]
    rows = grid(buttons)
    extra = []
    if todays is not None and now < _ends(rules, todays):
        extra.append(_button(t.gettext("Pick up early today…"), f"lv:p:{key(today)}"))
    extra.append(_button(t.gettext("Other days…"), "lv:d"))
    rows += grid(extra)
    paging = []
    if page > 0:
        paging.append(_button(t.gettext("‹ Earlier"), f"lv:m:{page - 1}"))
    if page + 1 < pages:
        paging.append(_button(t.gettext("Later ›"), f"lv:m:{page + 1}"))
    rows.append(paging + nav(t, cancel=CANCEL))
    await show_screen(update, "\n".join(lines), rows, new=new)
    return WHAT


def _ends(rules: leaves.Rules, day: leaves.Day) -> dt.datetime:
    return dt.datetime.combine(day.date, max(c.ends_at for c in day.sessions), rules.zone)


async def _step(update: Update, context: BotContext) -> leaves.Overview | None:
    """The guarded read every press makes: the draft's child, if still the presser's."""
    query = update.callback_query
    draft = (context.user_data or {}).get(DRAFT)
    if not isinstance(draft, dict) or not isinstance(draft.get("student"), int):
        await refuse(update, context, leaves.REFUSED)
        return None
    async with context.db.transaction() as session:
        found = await leaves.overview(
            session,
            context.member,
            _today(context.t),
            draft["student"],
            pressed=query.data if query else None,
        )
    if found is None or found.child is None:
        await refuse(update, context, leaves.REFUSED, audited=True)
        return None
    return found


async def on_press(update: Update, context: BotContext) -> int:
    """Every press of the conversation but the reason: read, check, route."""
    query = update.callback_query
    assert query is not None and query.data is not None
    data = query.data
    if data == CANCEL:
        return await _cancel(update, context)
    if data.startswith("lv:k:"):
        return await _choose_child(update, context)
    found = await _step(update, context)
    if found is None:
        return ConversationHandler.END
    t, child = context.t, found.child
    assert child is not None  # `_step` refused otherwise
    if data == BACK:
        await query.answer()
        return await _ask_day(update, context, found)
    if data == "lv:d":
        await query.answer()
        await show_screen(
            update,
            t.gettext(
                "Which days? Write a date like 12-08, or a range like 12-08 to 12-12. "
                "Days without a session are skipped."
            ),
            [nav(t, back=BACK, cancel=CANCEL)],
        )
        return DATES
    page = ints(data, "lv:m:", 1)
    if page is not None:
        await query.answer()
        return await _ask_day(update, context, found, page[0])
    span = ints(data, "lv:u:", 1) or ints(data, "lv:u:", 2)
    if span is not None:
        return await _several_days(update, context, found, span)
    one = ints(data, "lv:w:", 1) or ints(data, "lv:p:", 1)
    two = ints(data, "lv:w:", 2)
    picked = fields(data, "lv:t:", 2)
    if data == "lv:p":  # an older screen's "pick up early today"
        one = [0]
    offset = one[0] if one else two[0] if two else None
    if picked is not None:
        offset = as_int(picked[0])
    when = _date(offset, _today(t)) if offset is not None else None
    if when is None or (two is not None and two[1] > 2):
        await refuse(update, context, leaves.REFUSED)  # no screen offers such a button
        return ConversationHandler.END
    day = found.day(when)
    if day is None:  # a stale screen's day, or one no longer a session day
        await query.answer(
            t.gettext("{child} has no session that day.").format(child=child.name),
            show_alert=True,
        )
        return await _ask_day(update, context, found)
    await query.answer()
    if picked is not None:
        clock = _clock(picked[1])
        return await _picked_time(update, context, found, day, clock)
    if data.startswith("lv:p"):
        return await _ask_pickup(update, context, found, day)
    if one is not None:
        return await _ask_session(update, context, found, day)
    assert two is not None
    return await _chose_session(update, context, found, day, two[1])


def _clock(text: str) -> dt.time | None:
    if len(text) != 4 or not text.isascii() or not text.isdigit():
        return None
    try:
        return dt.time(int(text[:2]), int(text[2:]))
    except ValueError:
        return None


async def _choose_child(update: Update, context: BotContext) -> int:
    query = update.callback_query
    assert query is not None and query.data is not None
    values = ints(query.data, "lv:k:", 1)
    if values is None:
        await refuse(update, context, leaves.REFUSED)
        return ConversationHandler.END
    async with context.db.transaction() as session:
        found = await leaves.overview(
            session, context.member, _today(context.t), values[0], pressed=query.data
        )
    if found is None:
        await refuse(update, context, leaves.REFUSED, audited=True)
        return ConversationHandler.END
    await query.answer()
    return await _ask_day(update, context, found)


async def _cancel(update: Update, context: BotContext) -> int:
    query = update.callback_query
    assert query is not None
    if context.user_data is not None:
        context.user_data.pop(DRAFT, None)
    await query.answer()
    await edit_or_send(
        query, context.t.gettext("Cancelled: nothing was recorded."), reply_markup=None
    )
    return ConversationHandler.END


def _open(rules: leaves.Rules, day: leaves.Day, now: dt.datetime, period: int | None) -> bool:
    sessions = [c for c in day.sessions if period is None or c.period == period]
    return bool(sessions) and now < leaves.deadline(rules, day.date, sessions)


async def _ask_session(
    update: Update, context: BotContext, found: leaves.Overview, day: leaves.Day
) -> int:
    t, rules, child = context.t, found.rules, found.child
    assert rules is not None and child is not None
    now = _now()
    offset = key(day.date)
    name = html.escape(child.name)
    lines = [f"<b>{html.escape(child.name)} · {wording.day(t, day.date)}</b>"]
    recorded = [x for x in found.upcoming if x.date == day.date]
    buttons: list[InlineKeyboardButton] = []
    for c in day.sessions:
        held = next((x for x in recorded if x.period in (None, c.period)), None)
        closes = leaves.deadline(rules, day.date, [c]).astimezone(t.timezone)
        if held is not None:  # what is recorded is shown, with its 撤销 (docs/UX.md, 4)
            state = what(t, held) if held.pickup_at else t.gettext("leave recorded")
            if all(b.callback_data != f"lv:x:{held.id}" for b in buttons):
                buttons.append(take_back_button(t, held))
        elif now < closes:
            state = t.gettext("absences until {time}").format(time=t.time(closes.time()))
            buttons.append(
                _button(
                    f"{c.name} {wording.span(t, c.starts_at, c.ends_at)}",
                    f"lv:w:{offset}:{c.period}",
                )
            )
        else:
            state = t.gettext("closed for absences")
            buttons.append(
                _button(
                    f"{c.name} {wording.span(t, c.starts_at, c.ends_at)}",
                    f"lv:w:{offset}:{c.period}",
                )
            )
        lines.append(
            f"{wording.period(t, c.period)}{_colon(t)}{html.escape(c.name)} "
            f"{wording.span(t, c.starts_at, c.ends_at)} · {state}"
        )
    lines += ["", t.gettext("Which session will {child} miss?").format(child=name)]
    if len({c.period for c in day.sessions}) > 1 and not recorded:
        buttons.append(_button(t.gettext("The whole day"), f"lv:w:{offset}:0"))
    rows = [[b] for b in buttons]
    more = [_button(t.gettext("Several days…"), f"lv:u:{offset}")]
    if now < _ends(rules, day):
        more.insert(0, _button(t.gettext("Pick up early…"), f"lv:p:{offset}"))
    rows += grid(more)
    rows.append(nav(t, back=BACK, cancel=CANCEL))
    await show_screen(update, "\n".join(lines), rows)
    return WHAT


async def _chose_session(
    update: Update, context: BotContext, found: leaves.Overview, day: leaves.Day, period: int
) -> int:
    t, rules, child = context.t, found.rules, found.child
    assert rules is not None and child is not None and context.user_data is not None
    offset = key(day.date)
    sessions = [c for c in day.sessions if period == 0 or c.period == period]
    if not sessions:
        return await _ask_session(update, context, found, day)
    if not _open(rules, day, _now(), period or None):
        rows = []
        if _now() < _ends(rules, day):
            rows.append([_button(t.gettext("Pick up early instead…"), f"lv:p:{offset}")])
        rows.append(nav(t, back=f"lv:w:{offset}", cancel=CANCEL))
        text = _too_late(t, child.name, child.leave_cutoff_minutes, sessions)
        await show_screen(update, text, rows)
        return WHAT
    context.user_data[DRAFT] = {
        "student": child.id,
        "first": day.date.isoformat(),
        "last": day.date.isoformat(),
        "period": period or None,
        "back": f"lv:w:{offset}",
    }
    summary = t.gettext("Leave for {child}: {what}").format(
        child=html.escape(child.name),
        what=html.escape(_summary(t, day.date, sessions, period or None)),
    )
    return await _ask_reason(update, context, summary)


async def _several_days(
    update: Update, context: BotContext, found: leaves.Overview, span: list[int]
) -> int:
    """Whole days from one session day to another, both picked: no date to type."""
    query = update.callback_query
    assert query is not None
    t, child = context.t, found.child
    assert child is not None and context.user_data is not None
    dates = [_date(n, _today(t)) for n in span]
    if None in dates or (len(dates) == 2 and dates[1] <= dates[0]):  # type: ignore[operator]
        await refuse(update, context, leaves.REFUSED)  # no screen offers such a button
        return ConversationHandler.END
    first = found.day(dates[0]) if dates[0] else None
    last = found.day(dates[-1]) if len(span) == 2 and dates[-1] else None
    if first is None or (len(span) == 2 and last is None):
        await query.answer(
            t.gettext("{child} has no session that day.").format(child=child.name),
            show_alert=True,
        )
        return await _ask_day(update, context, found)
    await query.answer()
    if last is None:
        later = [d for d in found.days if d.date > first.date][:PAGE_MAX]
        text = t.gettext("{child} is away from {day} until which day (whole days)?").format(
            child=html.escape(child.name), day=wording.day(t, first.date)
        )
        buttons = [_button(wording.day(t, d.date), f"lv:u:{span[0]}:{key(d.date)}") for d in later]
        await show_screen(
            update, text, [*grid(buttons), nav(t, back=f"lv:w:{span[0]}", cancel=CANCEL)]
        )
        return WHAT
    context.user_data[DRAFT] = {
        "student": child.id,
        "first": first.date.isoformat(),
        "last": last.date.isoformat(),
        "period": None,
        "back": f"lv:u:{span[0]}",
    }
    summary = t.gettext("Leave for {child}: {first} to {last}, whole days").format(
        child=html.escape(child.name),
        first=wording.day(t, first.date),
        last=wording.day(t, last.date),
    )
    return await _ask_reason(update, context, summary)


def _summary(
    t: Translator,
    day: dt.date,
    sessions: Sequence[CourseInfo],
    period: int | None,
    pickup: dt.time | None = None,
) -> str:
    """ "剪纸（非遗），12月7日周一 16:50–17:50" (and the whole day, or a pick-up time)."""
    names = wording.joined(t, (c.name for c in sessions))
    if pickup is not None:
        return t.gettext("{day} at {time}, from {course}").format(
            day=wording.day(t, day), time=t.time(pickup), course=names
        )
    if period is None:
        return t.gettext("{day}, the whole day ({courses})").format(
            day=wording.day(t, day), courses=names
        )
    start, end = min(c.starts_at for c in sessions), max(c.ends_at for c in sessions)
    return t.gettext("{course}, {day} {time}").format(
        course=names, day=wording.day(t, day), time=wording.span(t, start, end)
    )


def pickup_times(day: leaves.Day, zone: Any, now: dt.datetime) -> list[dt.time]:
    """At most `PICKUP_TIMES` times to collect the child: every session's start and steps of
    10, 15, 20 or 30 minutes within the sessions, still ahead of `now`."""
    first = min(c.starts_at for c in day.sessions)
    last = max(c.ends_at for c in day.sessions)

    def minutes(clock: dt.time) -> int:
        return clock.hour * 60 + clock.minute

    ahead = [
        m
        for m in range(minutes(first), minutes(last))
        if dt.datetime.combine(day.date, dt.time(m // 60, m % 60), zone) > now
        and leaves.pickup_period_of(day.sessions, dt.time(m // 60, m % 60)) is not None
    ]
    starts = {minutes(c.starts_at) for c in day.sessions}
    for step in (10, 15, 20, 30, 60):
        chosen = sorted({m for m in ahead if m % step == 0 or m in starts})
        if len(chosen) <= PICKUP_TIMES:
            break
    return [dt.time(m // 60, m % 60) for m in chosen[:PICKUP_TIMES]]


async def _ask_pickup(
    update: Update, context: BotContext, found: leaves.Overview, day: leaves.Day
) -> int:
    t, rules, child = context.t, found.rules, found.child
    assert rules is not None and child is not None and context.user_data is not None
    offset = key(day.date)
    times = pickup_times(day, rules.zone, _now())
    context.user_data[DRAFT] = {"student": child.id, "day": int(offset)}
    back = nav(t, back=f"lv:w:{offset}", cancel=CANCEL)
    if not times:
        text = t.gettext("{child}'s sessions on {day} are over.").format(
            child=html.escape(child.name), day=wording.day(t, day.date)
        )
        await show_screen(update, text, [back])
        return WHAT
    text = t.gettext(
        "At what time will you collect {child} on {day}? Choose a time, or write one like "
        "{example}."
    ).format(child=html.escape(child.name), day=wording.day(t, day.date), example=t.time(times[0]))
    buttons = [_button(t.time(c), f"lv:t:{offset}:{c:%H%M}") for c in times]
    await show_screen(update, text, [*grid(buttons), back])
    return PICKUP


async def receive_pickup(update: Update, context: BotContext) -> int:
    message = update.effective_message
    assert message is not None and message.text is not None
    t = context.t
    draft = (context.user_data or {}).get(DRAFT)
    if not isinstance(draft, dict) or not isinstance(draft.get("day"), int):
        return ConversationHandler.END
    found = await _step(update, context)
    if found is None:
        return ConversationHandler.END
    when = _date(draft["day"], _today(t))
    day = found.day(when) if when is not None else None
    if day is None:
        return await _ask_day(update, context, found, new=True)
    clock = read_clock(t, message.text, day)
    if clock is None:
        times = pickup_times(day, t.timezone, _now())
        example = t.time(times[0]) if times else t.time(dt.time(16, 50))
        await message.reply_text(
            t.gettext("Please write a time like {example}, or choose one above.").format(
                example=example
            )
        )
        return PICKUP
    return await _picked_time(update, context, found, day, clock)


def read_clock(t: Translator, text: str, day: leaves.Day) -> dt.time | None:
    """A typed time, as `bot.services.when` reads it ("16:50", "4点半", "下午四点半", and in
    English "4:30 pm"). A time without AM/PM that falls outside the day's sessions while twelve
    hours later is inside ("4:30", "4点半") means the afternoon."""
    clock = typed.clock(text, t.locale)
    if clock is not None and clock.hour < 12:
        later = clock.replace(hour=clock.hour + 12)
        if leaves.pickup_period_of(day.sessions, clock) is None and (
            leaves.pickup_period_of(day.sessions, later) is not None
        ):
            clock = later
    return clock


async def _picked_time(
    update: Update,
    context: BotContext,
    found: leaves.Overview,
    day: leaves.Day,
    clock: dt.time | None,
) -> int:
    t, rules, child = context.t, found.rules, found.child
    assert rules is not None and child is not None and context.user_data is not None
    offset = key(day.date)
    period = leaves.pickup_period_of(day.sessions, clock) if clock is not None else None
    back = nav(t, back=f"lv:p:{offset}", cancel=CANCEL)
    if clock is None or period is None:
        text = t.gettext("{child} can be collected early between {time} on {day}.").format(
            child=html.escape(child.name),
            time=wording.span(
                t,
                min(c.starts_at for c in day.sessions),
                max(c.ends_at for c in day.sessions),
            ),
            day=wording.day(t, day.date),
        )
        await show_screen(update, text, [back], new=update.callback_query is None)
        return PICKUP
    if _now() >= dt.datetime.combine(day.date, clock, rules.zone):
        await show_screen(
            update,
            t.gettext("{time} has passed. Please choose a later time.").format(time=t.time(clock)),
            [back],
            new=update.callback_query is None,
        )
        return PICKUP
    sessions = [c for c in day.sessions if c.period == period]
    context.user_data[DRAFT] = {
        "student": child.id,
        "first": day.date.isoformat(),
        "last": day.date.isoformat(),
        "period": period,
        "pickup": clock.strftime("%H:%M"),
        "back": f"lv:p:{offset}",
    }
    summary = t.gettext("Early pick-up of {child}: {what}").format(
        child=html.escape(child.name),
        what=html.escape(_summary(t, day.date, sessions, period, clock)),
    )
    return await _ask_reason(update, context, summary)


async def receive_dates(update: Update, context: BotContext) -> int:
    message = update.effective_message
    assert message is not None and message.text is not None
    t = context.t
    draft = (context.user_data or {}).get(DRAFT)
    if not isinstance(draft, dict):
        return ConversationHandler.END
    today = _today(t)
    days = typed.days(message.text, today)
    found = await _step(update, context)
    if found is None:
        return ConversationHandler.END
    if days is None:  # the child's next session days, to pick instead
        buttons = [
            _button(wording.day(t, d.date), f"lv:w:{key(d.date)}")
            for d in found.days[:DAYS_A_PAGE]
        ]
        text = t.gettext(
            "I could not read that. Choose a day, or write it like 12-08 or 12-08 to 12-12."
        )
        await show_screen(
            update, text, [*grid(buttons), nav(t, back=BACK, cancel=CANCEL)], new=True
        )
        return DATES
    child = found.child
    assert child is not None and context.user_data is not None
    first, last = days
    horizon = today + dt.timedelta(days=leaves.HORIZON - 1)
    known = [d for d in found.days if first <= d.date <= last]
    if first >= today and last <= horizon and not known:
        when = (
            wording.day(t, first)
            if first == last
            else t.gettext("{first} to {last}").format(
                first=wording.day(t, first), last=wording.day(t, last)
            )
        )
        text = t.gettext("{child} has no session on {when}.").format(
            child=html.escape(child.name), when=when
        )
        if found.weekdays:
            text += " " + t.gettext("{child}'s sessions are on {weekdays}.").format(
                child=html.escape(child.name), weekdays=wording.weekday_run(t, found.weekdays)
            )
        await show_screen(update, text, [nav(t, back=BACK, cancel=CANCEL)], new=True)
        return DATES
    context.user_data[DRAFT] = {
        "student": child.id,
        "first": first.isoformat(),
        "last": last.isoformat(),
        "period": None,
        "back": "lv:d",
    }
    if first == last:
        day = found.day(first)
        summary = t.gettext("Leave for {child}: {what}").format(
            child=html.escape(child.name),
            what=html.escape(
                _summary(t, first, day.sessions if day else [], None)
                if day
                else wording.day(t, first)
            ),
        )
    else:
        summary = t.gettext("Leave for {child}: {first} to {last}, whole days").format(
            child=html.escape(child.name),
            first=wording.day(t, first),
            last=wording.day(t, last),
        )
    return await _ask_reason(update, context, summary)


async def _ask_reason(update: Update, context: BotContext, summary: str) -> int:
    t = context.t
    draft = (context.user_data or {}).get(DRAFT) or {}
    back = draft.get("back", BACK)
    rows = [
        [_button(t.gettext(label), f"lv:r:{code}") for code, label in REASONS.items()],
        [_button(t.gettext("No reason"), "lv:r:-")],
        nav(t, back=back, cancel=CANCEL),
    ]
    text = (
        summary
        + "\n\n"
        + t.gettext("A reason for the teacher? Choose one, write your own, or skip.")
    )
    await show_screen(update, text, rows, new=update.callback_query is None)
    return REASON


async def reason_button(update: Update, context: BotContext) -> int:
    query = update.callback_query
    assert query is not None and query.data is not None
    code = query.data.removeprefix("lv:r:")
    if code not in REASONS and code != "-":
        await refuse(update, context, leaves.REFUSED)
        return REASON
    await query.answer()
    reason = context.t.gettext(REASONS[code]) if code in REASONS else None
    return await _record(update, context, reason)


async def reason_text(update: Update, context: BotContext) -> int:
    assert update.effective_message is not None
    return await _record(update, context, update.effective_message.text)


async def _record(update: Update, context: BotContext, reason: str | None) -> int:
    t = context.t
    assert context.user_data is not None
    draft = context.user_data.get(DRAFT)
    if not isinstance(draft, dict) or "first" not in draft:
        return ConversationHandler.END
    request = leaves.Request(
        first=dt.date.fromisoformat(draft["first"]),
        last=dt.date.fromisoformat(draft["last"]),
        period=draft.get("period"),
        pickup_at=dt.time.fromisoformat(draft["pickup"]) if draft.get("pickup") else None,
        reason=reason,
    )
    async with context.db.transaction() as session:
        filed = await leaves.file(session, context.member, draft["student"], request)
    if filed is None:
        context.user_data.pop(DRAFT, None)
        await refuse(update, context, leaves.REFUSED, audited=True)
        return ConversationHandler.END
    new = update.callback_query is None
    child = html.escape(filed.child.name)
    if filed.refusal is not None:
        back = nav(t, back=draft.get("back", BACK), cancel=CANCEL)
        if filed.refusal is LeaveRefusal.TOO_LATE:
            sessions = filed.sessions.get(request.first, [])
            if request.pickup_at is not None:
                text = t.gettext("{time} has passed. Please choose a later time.").format(
                    time=t.time(request.pickup_at)
                )
            else:
                text = _too_late(t, filed.child.name, filed.cutoff_minutes, sessions)
        else:
            text = t.gettext(REFUSALS[filed.refusal]).format(minutes=filed.cutoff_minutes)
        await show_screen(update, text, [back], new=new)
        return REASON
    context.user_data.pop(DRAFT, None)
    made = filed.made
    if len(made) == 1:
        leave = made[0]
        sessions = filed.sessions.get(leave.date, [])
        summary = html.escape(_summary(t, leave.date, sessions, leave.period, leave.pickup_at))
        if leave.pickup_at is not None:
            text = t.gettext("Early pick-up recorded for {child}: {what}").format(
                child=child, what=summary
            )
        else:
            text = t.gettext("Recorded for {child}: {what}").format(child=child, what=summary)
    else:
        text = t.ngettext(
            "Recorded for {child}, {n} day, the whole day:",
            "Recorded for {child}, {n} days, the whole day:",
            len(made),
        ).format(child=child, n=len(made))
        text += "\n" + "\n".join(
            html.escape(describe(t, x, filed.sessions.get(x.date, []))) for x in made
        )
    if reason:
        text += "\n" + t.gettext("Reason: {reason}").format(reason=html.escape(reason))
    text += "\n" + t.gettext("The teacher will see it.")
    rows = grid([take_back_button(t, x) for x in made[: PAGE_MAX - 1]], per_row=1)
    rows.append([_button(t.gettext("View the week"), SCHEDULE)])
    await show_screen(update, text, rows, new=new)
    return ConversationHandler.END


async def take_back(update: Update, context: BotContext) -> None:
    query = update.callback_query
    assert query is not None and query.data is not None
    t = context.t
    values = ints(query.data, "lv:x:", 1)
    if values is None:
        await refuse(update, context, leaves.REFUSED)
        return
    async with context.db.transaction() as session:
        taken = await leaves.take_back(session, context.member, values[0], pressed=query.data)
    if taken is None:
        await refuse(update, context, leaves.REFUSED, audited=True)
        return
    leave, name = taken.leave, taken.child.name
    if taken.result is True:
        await query.answer(
            t.gettext("Taken back: {child} takes part as usual ({leave}).").format(
                child=name, leave=describe(t, leave, taken.sessions)
            ),
            show_alert=True,
        )
        await _drop_button(query, query.data)
    elif taken.result is False:
        await query.answer(t.gettext("This was already taken back."), show_alert=True)
        await _drop_button(query, query.data)
    elif taken.result is LeaveRefusal.TOO_LATE:
        if leave.pickup_at is not None:
            text = t.gettext("The pick-up time has passed; it can no longer be taken back.")
        else:
            minutes = taken.cutoff_minutes
            text = t.ngettext(
                "It is too late to take this back online: the school needs to know {n} minute "
                "before the session starts.",
                "It is too late to take this back online: the school needs to know {n} minutes "
                "before the session starts.",
                minutes,
            ).format(n=minutes)
        text += "\n" + html.unescape(_tell_teacher(t, taken.sessions))
        await query.answer(text[:200], show_alert=True)
    else:
        await query.answer(
            t.gettext(REFUSALS[taken.result]).format(minutes=taken.cutoff_minutes),
            show_alert=True,
        )


async def _drop_button(query: Any, data: str) -> None:
    """Take the pressed 撤销 button off its message; the others stay."""
    message = query.message
    if not isinstance(message, Message) or message.reply_markup is None:
        return
    rows = [
        [b for b in row if b.callback_data != data] for row in message.reply_markup.inline_keyboard
    ]
    rows = [r for r in rows if r]
    await edit_markup(query, InlineKeyboardMarkup(rows) if rows else None)


def handlers() -> list[Any]:
    private = filters.ChatType.PRIVATE
    text = private & filters.TEXT & ~filters.COMMAND
    press: Any = CallbackQueryHandler(on_press, pattern=r"^lv:[kmwptdbcu](:|$)")
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", "If 'per_message=False'", PTBUserWarning)
        conversation = ConversationHandler(
            entry_points=[
                CommandHandler("leave", begin, filters=private),
                CallbackQueryHandler(begin, pattern=r"^go:leave$"),
            ],
            states={
                WHAT: [press],
                DATES: [press, MessageHandler(text, receive_dates)],
                PICKUP: [press, MessageHandler(text, receive_pickup)],
                REASON: [
                    CallbackQueryHandler(reason_button, pattern=r"^lv:r:"),
                    press,
                    MessageHandler(text, reason_text),
                ],
            },
            fallbacks=[
                CommandHandler("cancel", cancel),
                CommandHandler("leave", begin, filters=private),
            ],
            name="leave",
            persistent=True,
            allow_reentry=True,
        )
    return [
        conversation,
        CallbackQueryHandler(take_back, pattern=r"^lv:x:"),
    ]
