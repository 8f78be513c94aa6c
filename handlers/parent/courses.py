"""/courses and /signup: browse the programme, sign a child up; /withdraw; seat offers.

Everything is driven by buttons whose data names the child and the filters; nothing in them is
trusted: every press re-checks on the server that the presser is the child's guardian and that
the course is one of the child's school. Messages are edited in place. Teachers and admins
browse the programme read-only (child 0 in the data: nothing to sign up for).

Callback data:
    cs:l:<child>:<period>:<category>:<weekday>:<page>   the list
    cs:f:<child>:<period>:<category>:<weekday>          the filter screen
    cs:c:<child>:<course>:<period>:<category>:<weekday>:<page>   a course card
    cs:s:<child>:<course>[:<period>:<category>:<weekday>:<page>]  the confirm screen
    cs:y:<child>:<course>                               sign up (acknowledged in group -2)
    cs:x                                                close (取消)
    of:<enrolment>:<1 accept | 0 decline>               a seat offer
    wd:l:<page> · wd:a:<enrolment> · wd:y:<enrolment>    /withdraw: list, confirm, withdraw
"""

from __future__ import annotations

import html
from typing import Any

from telegram import InlineKeyboardButton, InlineKeyboardMarkup, Update
from telegram.constants import ParseMode
from telegram.error import TelegramError
from telegram.ext import CallbackQueryHandler, CommandHandler, filters

from bot import wording
from bot.context import BotContext
from bot.i18n import N_, Translator
from bot.services import billing, enrolment, fee_rules, timetable
from bot.services.catalogue import CourseInfo
from bot.services.enrolment import CourseFacts, CourseView, Holding, OfferAnswer, Refusal
from bot.services.guard import Child
from bot.services.timetable import Advice
from handlers.common.keyboards import PAGE_MAX, grid, nav, pager
from handlers.common.presses import as_int, edit_or_send, fields, ints, refuse
from storage.models import (
    Allocation,
    Category,
    EnrolmentStatus,
    utcnow,
)

PAGE = PAGE_MAX
CATEGORIES = list(Category)
CLOSE = "cs:x"
SCHEDULE = "sc:v"  # handlers/parent/schedule.py shows the week
FEE_UNITS = {
    "term": N_("{amount} per term"),
    "month": N_("{amount} per month"),
    "session": N_("{amount} per session"),
}
REFUSALS = {
    Refusal.NOT_FOUND: N_("This course is not available."),
    Refusal.WINDOW_CLOSED: N_("Enrolment is not open right now."),
    Refusal.GRADE: N_("This course is not for your child's grade."),
    Refusal.CLASH: N_("Your child already has a course at that time on the same day."),
    Refusal.PROVIDER: N_(
        "This course's provider is not on the approved list, so it cannot be joined."
    ),
    Refusal.FEE_UNDISCLOSED: N_(
        "This course's fee has not been publicly disclosed yet, so it cannot be joined."
    ),
    Refusal.CANCELLED: N_("This course has been cancelled."),
    Refusal.ALREADY: N_("Your child is already signed up for this course."),
    Refusal.TOO_MANY_CHOICES: N_(
        "Your child already has three choices in the draw for this period and day."
    ),
}
HOLDING_TEXTS = {
    EnrolmentStatus.ENROLLED: N_("✅ {child} is enrolled in {course} ({when})."),
    EnrolmentStatus.WAITLISTED: N_("⏳ {child} is on the waitlist of {course} ({when})."),
    EnrolmentStatus.ENTERED: N_("🎲 {child} is in the draw for {course} ({when})."),
}
MARKS = {
    EnrolmentStatus.ENROLLED: "✅ ",
    EnrolmentStatus.WAITLISTED: "⏳ ",
    EnrolmentStatus.ENTERED: "🎲 ",
}
CLASH_MARK = "⚠️ "


def when(t: Translator, course: CourseInfo) -> str:
    """A course's days and time: "周一至周五 16:50–17:50"."""
    return (
        f"{wording.weekday_run(t, enrolment.weekdays_of(course.weekdays))} "
        f"{wording.span(t, course.starts_at, course.ends_at)}"
    )


def _names(child: Child, course: CourseInfo, t: Translator) -> dict[str, str]:
    return {
        "child": html.escape(child.name),
        "course": html.escape(course.name),
        "when": when(t, course),
    }


def _button(label: str, data: str) -> InlineKeyboardButton:
    return InlineKeyboardButton(label, callback_data=data)


def _next_steps(
    t: Translator, child_id: int, *, undo: int | None = None, schedule: bool = True
) -> list[list[InlineKeyboardButton]]:
    """查看课表 · 继续选课 · 撤销: what a result offers next."""
    buttons = []
    if schedule:
        buttons.append(_button(t.gettext("View the week"), SCHEDULE))
    buttons.append(_button(t.gettext("More courses"), f"cs:l:{child_id}:0:0:0:0"))
    if undo is not None:
        buttons.append(_button(t.gettext("Undo"), f"wd:a:{undo}"))
    return grid(buttons)


# ---------------------------------------------------------------------------------------------
# Browsing


async def start_browsing(update: Update, context: BotContext) -> None:
    """/courses or /signup: pick the child (if several), then the list."""
    message = update.effective_message
    assert message is not None
    t = context.t
    browsed = await _browse(update, context, None, 0, 0, 0)
    assert browsed is not None  # no child was named, so none can be refused
    if browsed.child is not None or browsed.read_only:
        _remember_choice(context, False)
        text, markup = _list_view(t, browsed, 0, 0, 0, 0)
        await message.reply_text(text, reply_markup=markup, parse_mode=ParseMode.HTML)
        return
    if not browsed.children:
        await message.reply_text(t.gettext("This is for guardians linked to a child."))
        return
    _remember_choice(context, True)
    await message.reply_text(t.gettext("Which child?"), reply_markup=_child_choice(t, browsed))


# The list of a family with several children offers ‹ 返回 to the choice of child; whether
# there was a choice is remembered here rather than read again on every page of the list.
SEVERAL_CHILDREN = "courses_several_children"


def _remember_choice(context: BotContext, several: bool) -> None:
    """Stored only for families with several children, so a one-child family's /courses
    writes nothing."""
    data = context.user_data
    if data is None or bool(data.get(SEVERAL_CHILDREN)) == several:
        return
    if several:
        data[SEVERAL_CHILDREN] = True
    else:
        data.pop(SEVERAL_CHILDREN, None)


def _child_choice(t: Translator, browsed: enrolment.Browse) -> InlineKeyboardMarkup:
    return InlineKeyboardMarkup(
        [
            *grid([_button(c.name, f"cs:l:{c.id}:0:0:0:0") for c in browsed.children]),
            nav(t, cancel=CLOSE),
        ]
    )


async def on_children(update: Update, context: BotContext) -> None:
    """‹ 返回 from a child's course list: the choice of child again."""
    query = update.callback_query
    assert query is not None
    browsed = await _browse(update, context, None, 0, 0, 0)
    if browsed is None or not browsed.children:
        await refuse(update, context, "enrolment.refused")
        return
    await query.answer()
    _remember_choice(context, True)
    await edit_or_send(
        query, context.t.gettext("Which child?"), reply_markup=_child_choice(context.t, browsed)
    )


def _filters(category: int) -> str | None:
    return CATEGORIES[category - 1].value if category else None


async def _browse(
    update: Update,
    context: BotContext,
    student_id: int | None,
    period: int,
    category: int,
    weekday: int,
) -> enrolment.Browse | None:
    """One transaction: the guard, then the child's catalogue with these filters."""
    query = update.callback_query
    async with context.db.transaction() as session:
        return await enrolment.browse(
            session,
            context.member,
            student_id,
            today=utcnow().astimezone(context.t.timezone).date(),
            period=period or None,
            category=_filters(category),
            weekday=weekday or None,
            pressed=query.data if query else None,
        )


def _filter_names(t: Translator, period: int, category: int, weekday: int) -> list[str]:
    names = []
    if period:
        names.append(wording.period(t, period))
    if category:
        names.append(wording.category(t, CATEGORIES[category - 1]))
    if weekday:
        names.append(t.weekday(weekday, "abbreviated"))
    return names


def _list_view(
    t: Translator,
    browsed: enrolment.Browse,
    period: int,
    category: int,
    weekday: int,
    page: int,
    several: bool = False,
) -> tuple[str, InlineKeyboardMarkup]:
    """At most `PAGE` courses, the pages, and one Filter button (docs/UX.md, convention 1);
    ‹ 返回 to the choice of child when the family has `several` children."""
    child, found = browsed.child, browsed.courses
    student_id = child.id if child is not None else 0
    pages = max((len(found) - 1) // PAGE + 1, 1)
    page = min(page, pages - 1)
    shown = found[page * PAGE : (page + 1) * PAGE]
    state = f"{period}:{category}:{weekday}:{page}"
    title = (
        t.gettext("Courses for {child}").format(child=html.escape(child.name))
        if child is not None
        else t.gettext("This term's courses (read only)")
    )
    lines = [
        f"<b>{title}</b>",
        t.ngettext(
            "{count} course matches. Tap one to see it in full.",
            "{count} courses match. Tap one to see it in full.",
            len(found),
        ).format(count=len(found)),
    ]
    chosen = _filter_names(t, period, category, weekday)
    if chosen:
        lines.append(t.gettext("Filter: {filters}").format(filters=" · ".join(chosen)))
    marks = [browsed.holding.get(f.course.id) for f in shown]
    if any(f.course.id in browsed.clashes for f in shown):
        lines.append(
            t.gettext("⚠️ at the same time as a course {child} has").format(
                child=html.escape(child.name) if child is not None else ""
            )
        )
    if any(marks):
        lines.append(t.gettext("✅ enrolled · ⏳ waitlist · 🎲 in the draw"))
    if browsed.read_only:
        lines.append(t.gettext("Parents sign their children up; here you can read every card."))
    rows = [
        [
            _button(
                _summary(t, f, browsed.holding.get(f.course.id), f.course.id in browsed.clashes),
                f"cs:c:{student_id}:{f.course.id}:{state}",
            )
        ]
        for f in shown
    ]
    base = f"cs:l:{student_id}:{period}:{category}:{weekday}"
    if pages > 1:
        rows.append(pager(page, pages, lambda n: f"{base}:{n}"))
    filter_label = t.gettext("🔍 Filter")
    if chosen:
        filter_label += f" ({len(chosen)})"
    rows.append(
        [
            _button(filter_label, f"cs:f:{student_id}:{period}:{category}:{weekday}"),
            *nav(t, back="cs:k" if several else None, cancel=CLOSE),
        ]
    )
    return "\n".join(lines), InlineKeyboardMarkup(rows)


def _filter_view(
    t: Translator, student_id: int, period: int, category: int, weekday: int
) -> tuple[str, InlineKeyboardMarkup]:
    """Period, category and weekday choices, in phone-sized rows; a choice shows the list."""

    def choice(label: str, selected: bool, p: int, c: int, w: int) -> InlineKeyboardButton:
        return _button(("● " if selected else "") + label, f"cs:l:{student_id}:{p}:{c}:{w}:0")

    periods = [choice(t.gettext("All periods"), period == 0, 0, category, weekday)] + [
        choice(wording.period(t, p), period == p, p, category, weekday) for p in (1, 2)
    ]
    kinds = [choice(t.gettext("All kinds"), category == 0, period, 0, weekday)] + [
        choice(wording.category(t, c), category == i, period, i, weekday)
        for i, c in enumerate(CATEGORIES, 1)
    ]
    days = [choice(t.gettext("Any day"), weekday == 0, period, category, 0)] + [
        choice(t.weekday(d, "abbreviated"), weekday == d, period, category, d) for d in range(1, 6)
    ]
    rows = grid(periods) + grid(kinds) + grid(days)
    rows.append(nav(t, back=f"cs:l:{student_id}:{period}:{category}:{weekday}:0", cancel=CLOSE))
    text = "\n".join(
        [
            "<b>" + t.gettext("Filter the courses") + "</b>",
            t.gettext("Choose a period, a kind of activity or a day."),
        ]
    )
    return text, InlineKeyboardMarkup(rows)


def _summary(t: Translator, f: CourseFacts, holding: EnrolmentStatus | None, clashes: bool) -> str:
    course = f.course
    mark = MARKS.get(holding, "") if holding is not None else (CLASH_MARK if clashes else "")
    days = wording.weekday_run(t, enrolment.weekdays_of(course.weekdays))
    return f"{mark}{course.name} · {days} · {_seats(t, f)}"


def _full(f: CourseFacts) -> bool:
    """No seat left to take now: a sign-up would join the waitlist (lottery courses before the
    draw take entries, whatever the seats)."""
    return f.seats_left == 0 and f.course.allocation is not Allocation.LOTTERY


def _seats(t: Translator, f: CourseFacts) -> str:
    left = f.seats_left
    if left is None:
        return t.gettext("open to all")
    if left > 0:
        return t.ngettext("{n} seat left", "{n} seats left", left).format(n=left)
    if not f.waitlisted:
        return t.gettext("full")
    return t.ngettext(
        "full, {n} child on the waitlist", "full, {n} children on the waitlist", f.waitlisted
    ).format(n=f.waitlisted)


def _fee(t: Translator, f: CourseInfo) -> str:
    if not f.fee_fen:
        return t.gettext("free")
    return t.gettext(FEE_UNITS[f.fee_unit or "term"]).format(amount=t.money(f.fee_fen))


def card_text(t: Translator, f: CourseFacts) -> str:
    """A course as the published schedule must show it: content, teacher, provider, venue,
    days and time, class size, seats, and the disclosed fee."""
    c = f.course
    size = (
        t.gettext("class size {size}").format(size=c.capacity)
        if c.capacity
        else t.gettext("no size limit")
    )
    lines = [
        f"<b>{html.escape(c.name)}</b>",
        f"{wording.category(t, c.category)} · {wording.period(t, c.period)}",
        t.gettext("When: {when}").format(when=when(t, c)),
        t.gettext("Where: {venue}").format(venue=html.escape(c.venue)),
        t.gettext("Teacher: {teacher}").format(teacher=html.escape(f.teacher or "—")),
        t.gettext("Run by: {provider}").format(
            provider=html.escape(f.provider) if f.provider else t.gettext("the school")
        ),
        f"{wording.grades(t, c.grade_min, c.grade_max)} · {size}",
        t.gettext("Seats: {seats}").format(seats=_seats(t, f)),
        t.gettext("Fee: {fee}").format(fee=_fee(t, f.course)),
    ]
    if c.allocation is Allocation.LOTTERY:
        lines.append(
            t.gettext(
                "🎲 Seats are drawn by lot (摇号) when enrolment closes, not first come first "
                "served; rank up to three choices per period and day."
            )
        )
    if c.description:
        lines += ["", html.escape(c.description)]
    return "\n".join(lines)


def _clash_text(
    t: Translator, child: Child, clashes: tuple[CourseInfo, ...] | list[CourseInfo]
) -> str:
    """Which of the child's courses runs at the same time, and on which days."""
    return "\n".join(
        t.gettext("⚠️ At the same time as {child}'s {course} ({when}).").format(
            **_names(child, other, t)
        )
        for other in clashes
    )


def _holding_text(t: Translator, child: Child, course: CourseInfo, holding: Holding) -> str:
    return t.gettext(HOLDING_TEXTS[holding.status]).format(**_names(child, course, t))


async def on_list(update: Update, context: BotContext) -> None:
    """A page of the list, or the list with other filters."""
    query = update.callback_query
    assert query is not None and query.data is not None
    values = ints(query.data, "cs:l:", 5)
    if values is None or values[1] > 2 or values[2] > len(CATEGORIES) or values[3] > 7:
        await refuse(update, context, "enrolment.refused")
        return
    student_id, period, category, weekday, page = values
    browsed = await _browse(update, context, student_id, period, category, weekday)
    if browsed is None:
        await refuse(update, context, enrolment.REFUSED, audited=True)
        return
    await query.answer()
    several = bool((context.user_data or {}).get(SEVERAL_CHILDREN))
    text, markup = _list_view(context.t, browsed, period, category, weekday, page, several)
    await edit_or_send(query, text, reply_markup=markup, parse_mode=ParseMode.HTML)


async def on_filter(update: Update, context: BotContext) -> None:
    """The filter screen: nothing is read, the list that follows checks the child."""
    query = update.callback_query
    assert query is not None and query.data is not None
    values = ints(query.data, "cs:f:", 4)
    if values is None or values[1] > 2 or values[2] > len(CATEGORIES) or values[3] > 7:
        await refuse(update, context, "enrolment.refused")
        return
    await query.answer()
    text, markup = _filter_view(context.t, *values)
    await edit_or_send(query, text, reply_markup=markup, parse_mode=ParseMode.HTML)


async def on_close(update: Update, context: BotContext) -> None:
    """取消: the flow ends; nothing changed."""
    query = update.callback_query
    assert query is not None
    await query.answer()
    await edit_or_send(
        query, context.t.gettext("Closed. Nothing was changed. Send /courses to browse again.")
    )


async def on_card(update: Update, context: BotContext) -> None:
    """A course card, with the child's place in it or what it clashes with."""
    query = update.callback_query
    assert query is not None and query.data is not None
    t = context.t
    values = ints(query.data, "cs:c:", 6)
    if values is None:
        await refuse(update, context, "enrolment.refused")
        return
    student_id, course_id = values[:2]
    state = ":".join(str(v) for v in values[2:])
    async with context.db.transaction() as session:
        view = await enrolment.course_card(
            session, context.member, student_id, course_id, pressed=query.data
        )
    if view is None:
        await refuse(update, context, enrolment.REFUSED, audited=True)
        return
    await query.answer()
    text = card_text(t, view.facts)
    rows: list[list[InlineKeyboardButton]] = []
    child, course = view.child, view.facts.course
    if child is not None:
        if view.holding is not None:
            text += "\n\n" + _holding_text(t, child, course, view.holding)
            rows.append(
                [_button(t.gettext("Leave this course"), f"wd:a:{view.holding.enrolment_id}")]
            )
        elif view.clashes:
            text += "\n\n" + _clash_text(t, child, view.clashes)
        else:
            rows.append(
                [_button(_sign_up_label(t, view.facts), f"cs:s:{student_id}:{course_id}:{state}")]
            )
    rows.append(nav(t, back=f"cs:l:{student_id}:{state}", cancel=CLOSE))
    await edit_or_send(
        query, text, parse_mode=ParseMode.HTML, reply_markup=InlineKeyboardMarkup(rows)
    )


def _sign_up_label(t: Translator, f: CourseFacts) -> str:
    if f.course.allocation is Allocation.LOTTERY:
        return t.gettext("Enter the draw")
    return t.gettext("Join the waitlist") if _full(f) else t.gettext("Sign up")


async def on_confirm_screen(update: Update, context: BotContext) -> None:
    """The step before signing up: what will happen (a seat, a waitlist place, a draw entry)."""
    query = update.callback_query
    assert query is not None and query.data is not None
    t = context.t
    values = ints(query.data, "cs:s:", 6) or ints(query.data, "cs:s:", 2)
    if values is None:
        await refuse(update, context, "enrolment.refused")
        return
    student_id, course_id = values[:2]
    state = ":".join(str(v) for v in values[2:]) or "0:0:0:0"
    async with context.db.transaction() as session:
        view = await enrolment.sign_up_preview(
            session, context.member, student_id, course_id, utcnow(), pressed=query.data
        )
    if view is None or view.child is None:
        await refuse(update, context, enrolment.REFUSED, audited=True)
        return
    await query.answer()
    back = nav(t, back=f"cs:c:{student_id}:{course_id}:{state}", cancel=CLOSE)
    if view.refusal is not None:
        text, rows = _refusal(t, view.child, view.facts.course, view.refusal, view)
        await edit_or_send(
            query,
            text,
            parse_mode=ParseMode.HTML,
            reply_markup=InlineKeyboardMarkup([*rows, back]),
        )
        return
    names = _names(view.child, view.facts.course, t)
    facts = view.facts
    if facts.course.allocation is Allocation.LOTTERY:
        question = t.gettext("Enter {child} in the draw for {course}?").format(**names)
        label = t.gettext("Confirm entry")
    elif _full(facts):
        question = t.gettext(
            "{course} is full. Put {child} on its waitlist? {child} would be number {position}; "
            "if a seat frees up, you will be offered it here."
        ).format(position=facts.waitlisted + 1, **names)
        label = t.gettext("Join the waitlist")
    else:
        question = t.gettext("Sign {child} up for this course?").format(**names)
        label = t.gettext("Confirm sign-up")
    text = "\n".join(
        [
            question,
            "",
            card_text(t, facts),
            "",
            t.gettext(
                "Taking part is voluntary: you can withdraw at any time with /withdraw, and it is "
                "never held against your child."
            ),
        ]
    )
    await edit_or_send(
        query,
        text,
        parse_mode=ParseMode.HTML,
        reply_markup=InlineKeyboardMarkup(
            [[_button(label, f"cs:y:{student_id}:{course_id}")], back]
        ),
    )


def _refusal(
    t: Translator,
    child: Child,
    course: CourseInfo,
    refusal: Refusal,
    view: CourseView | None = None,
    clashes: list[CourseInfo] | None = None,
) -> tuple[str, list[list[InlineKeyboardButton]]]:
    """Why not, and what to do next (docs/UX.md, convention 4)."""
    found_clashes = list(view.clashes) if view is not None else (clashes or [])
    if refusal is Refusal.CLASH and found_clashes:
        other = found_clashes[0]
        text = t.gettext(
            "{child} cannot join {course}: it runs at the same time as {other} ({when}), "
            "which {child} already has. Leave that course first (/withdraw), or choose another."
        ).format(
            child=html.escape(child.name),
            course=html.escape(course.name),
            other=html.escape(other.name),
            when=when(t, other),
        )
        return text, [[_button(t.gettext("View the week"), SCHEDULE)]]
    if refusal is Refusal.ALREADY and view is not None and view.holding is not None:
        text = _holding_text(t, child, course, view.holding)
        return text, grid(
            [
                _button(t.gettext("View the week"), SCHEDULE),
                _button(t.gettext("Leave this course"), f"wd:a:{view.holding.enrolment_id}"),
            ]
        )
    if refusal is Refusal.ALREADY:
        text = t.gettext("{child} already has a place in {course} ({when}).").format(
            **_names(child, course, t)
        )
        return text, [[_button(t.gettext("View the week"), SCHEDULE)]]
    return html.escape(course.name) + "\n" + t.gettext(REFUSALS[refusal]), []


async def acknowledge_sign_up(update: Update, context: BotContext) -> None:
    """Handler group -2: answer a sign-up press before anything else runs.

    In a rush of hundreds of parents, the checks and the sign-up queue for a moment; the button
    must not keep spinning meanwhile. Nothing is trusted or decided here: the press is only
    acknowledged, without a toast: the result replaces the confirm screen moments later, and a
    "Signing up…" left on screen beside a waitlist place would contradict it.
    """
    query = update.callback_query
    assert query is not None
    await query.answer()


async def on_sign_up(update: Update, context: BotContext) -> None:
    """The press was acknowledged in group -2 (`acknowledge_sign_up`): never answer it again."""
    query = update.callback_query
    assert query is not None and query.data is not None
    t = context.t
    values = ints(query.data, "cs:y:", 2)
    if values is None:
        await refuse(update, context, "enrolment.refused", answered=True)
        return
    student_id, course_id = values
    outcome = await enrolment.confirm_sign_up(
        context.db, context.member, student_id, course_id, pressed=query.data
    )
    if outcome is None:
        await refuse(update, context, enrolment.REFUSED, answered=True, audited=True)
        return
    context.runtime.wake_delivery()  # the other guardians are told
    result, course = outcome.result, outcome.course
    names = _names(outcome.child, course, t)
    if isinstance(result, Refusal):
        text, rows = _refusal(t, outcome.child, course, result, clashes=outcome.clashes)
        rows.append(nav(t, back=f"cs:c:{student_id}:{course_id}:0:0:0:0", cancel=CLOSE))
        await edit_or_send(
            query, text, parse_mode=ParseMode.HTML, reply_markup=InlineKeyboardMarkup(rows)
        )
        return
    if result.status is EnrolmentStatus.ENROLLED:
        text = t.gettext("✅ {child} is enrolled in {course}, {when}.").format(**names)
        found = timetable.advice(outcome.week, course.term_id)
        if found is not None:
            text += "\n\n" + advice_text(t, found)
    elif result.status is EnrolmentStatus.ENTERED:
        text = t.gettext(
            "🎲 {child} is in the draw for {course} ({when}), as choice {rank}. Seats are drawn "
            "by lot when enrolment closes, and you will be told the result and the draw's seed."
        ).format(rank=result.draw_rank, **names)
    else:
        text = t.gettext(
            "⏳ {course} is full: {child} is on its waitlist at position {position} ({when}). "
            "If a seat frees up, we will offer it to you here."
        ).format(position=result.waitlist_position, **names)
    await edit_or_send(
        query,
        text,
        parse_mode=ParseMode.HTML,
        reply_markup=InlineKeyboardMarkup(
            _next_steps(t, outcome.child.id, undo=result.enrolment_id)
        ),
    )


def advice_text(t: Translator, advice: Advice) -> str:
    """The "1+N" guidance (`timetable.advice`), as advice only, never a requirement."""
    if advice.meets:
        return t.gettext(
            '💡 This week follows the "1+N" guidance: an interest activity every day, with '
            "science and sports among them."
        )
    lines = [
        t.gettext(
            '💡 Advice only, not required: the "1+N" guidance suggests an interest activity in '
            "period 2 every day, with science and sports among them."
        )
    ]
    if advice.days_without_interest:
        lines.append(
            t.gettext("· No interest activity yet on {days}.").format(
                days=wording.weekday_run(t, advice.days_without_interest)
            )
        )
    if advice.without_science:
        lines.append(t.gettext("· No science course yet."))
    if advice.without_sports:
        lines.append(t.gettext("· No sports course yet."))
    return "\n".join(lines)


# ---------------------------------------------------------------------------------------------
# Seat offers

OFFER_TEXTS = {
    OfferAnswer.ACCEPTED: N_("✅ Seat accepted: {child} is enrolled in {course}, {when}."),
    OfferAnswer.DECLINED: N_(
        "You declined the seat in {course} ({when}) for {child}. It goes to the next child on "
        "the waitlist."
    ),
    OfferAnswer.EXPIRED: N_(
        "Sorry, the seat in {course} ({when}) for {child} was not claimed in time and has "
        "moved on."
    ),
    OfferAnswer.ALREADY_ACCEPTED: N_(
        "This seat was already accepted: {child} is enrolled in {course}, {when}."
    ),
    OfferAnswer.NONE: N_(
        "The offer of a seat in {course} ({when}) for {child} is no longer open."
    ),
}
COPY_TEXTS = {
    OfferAnswer.ACCEPTED: enrolment.OFFER_ACCEPTED_BY_OTHER,
    OfferAnswer.DECLINED: enrolment.OFFER_DECLINED_BY_OTHER,
}


async def on_offer(update: Update, context: BotContext) -> None:
    """Accept or decline a freed seat; the other guardians' copies then show the outcome."""
    query = update.callback_query
    assert query is not None and query.data is not None
    t = context.t
    values = ints(query.data, "of:", 2)
    if values is None or values[1] not in (0, 1):
        await refuse(update, context, "enrolment.refused")
        return
    enrolment_id, accept = values
    async with context.db.transaction() as session:
        reply = await enrolment.reply_to_offer(
            session, context.member, enrolment_id, bool(accept), pressed=query.data
        )
    if reply is None:
        await refuse(update, context, enrolment.REFUSED, audited=True)
        return
    context.runtime.wake_delivery()
    await query.answer()
    place = reply.place
    text = t.gettext(OFFER_TEXTS[reply.answer]).format(**_names(place.child, place.course, t))
    enrolled = reply.answer in (OfferAnswer.ACCEPTED, OfferAnswer.ALREADY_ACCEPTED)
    await edit_or_send(
        query,
        text,
        parse_mode=ParseMode.HTML,
        reply_markup=InlineKeyboardMarkup(_next_steps(t, place.child.id, schedule=enrolled)),
    )
    copy = COPY_TEXTS.get(reply.answer)
    if copy is None:
        return
    for held in reply.copies:
        reader = context.runtime.i18n.get(held.locale, t.timezone.key)
        try:
            await context.bot.edit_message_text(
                reader.gettext(copy).format(
                    child=html.escape(place.child.name),
                    course=html.escape(place.course.name),
                    days=wording.weekday_run(reader, enrolment.weekdays_of(place.course.weekdays)),
                    start=reader.time(place.course.starts_at),
                    end=reader.time(place.course.ends_at),
                ),
                chat_id=held.chat_id,
                message_id=held.message_id,
                parse_mode=ParseMode.HTML,
            )
        except TelegramError:
            pass  # deleted, too old to edit, or the bot was blocked: the notice still goes


# ---------------------------------------------------------------------------------------------
# Withdrawal


async def start_withdraw(update: Update, context: BotContext) -> None:
    """/withdraw: the children's places, one button each."""
    message = update.effective_message
    assert message is not None
    text, markup = await _withdraw_list(context, 0)
    await message.reply_text(text, reply_markup=markup)


async def _withdraw_list(
    context: BotContext, page: int
) -> tuple[str, InlineKeyboardMarkup | None]:
    t = context.t
    async with context.db.transaction() as session:
        children, held = await enrolment.places(session, context.member)
    if not children:
        return t.gettext("This is for guardians linked to a child."), None
    if not held:
        return t.gettext("Your children are not signed up for any course."), None
    pages = (len(held) - 1) // PAGE + 1
    page = min(page, pages - 1)
    rows = []
    for place in held[page * PAGE : (page + 1) * PAGE]:
        label = f"{place.child.name} · {place.course.name}"
        if place.status is EnrolmentStatus.WAITLISTED:
            label += " · " + t.gettext("waitlist")
        elif place.status is EnrolmentStatus.ENTERED:
            label += " · " + t.gettext("draw")
        rows.append([_button(label, f"wd:a:{place.enrolment_id}")])
    if pages > 1:
        rows.append(pager(page, pages, lambda n: f"wd:l:{n}"))
    rows.append(nav(t, cancel=CLOSE))
    return t.gettext("Which course should your child leave for good?"), InlineKeyboardMarkup(rows)


WITHDRAW_QUESTIONS = {
    EnrolmentStatus.ENROLLED: N_(
        "Take {child} out of {course} ({when}) for good, from {date}? {child} no longer "
        "attends it, and the seat goes to the next child on the waitlist."
    ),
    EnrolmentStatus.WAITLISTED: N_(
        "Take {child} off the waitlist of {course} ({when})? {child} would not be offered a "
        "seat that frees up."
    ),
    EnrolmentStatus.ENTERED: N_(
        "Withdraw {child}'s entry in the draw for {course} ({when})? {child}'s later choices "
        "move up."
    ),
}
WITHDRAWN_TEXTS = {
    EnrolmentStatus.ENROLLED: N_("{child} has left {course}, {when}."),
    EnrolmentStatus.WAITLISTED: N_("{child} is off the waitlist of {course}, {when}."),
    EnrolmentStatus.ENTERED: N_("{child}'s entry in the draw for {course} ({when}) is withdrawn."),
}


async def on_withdraw(update: Update, context: BotContext) -> None:
    """wd:l a page of places, wd:a the confirm step with its consequences, wd:y withdraw."""
    query = update.callback_query
    assert query is not None and query.data is not None
    t = context.t
    parts = fields(query.data, "wd:", 2)
    number = as_int(parts[1]) if parts is not None else None
    if parts is None or parts[0] not in ("a", "y", "l") or number is None:
        await refuse(update, context, "enrolment.refused")
        return
    action = parts[0]
    if action == "l":
        await query.answer()
        text, markup = await _withdraw_list(context, number)
        await edit_or_send(query, text, reply_markup=markup)
        return
    enrolment_id = number
    today = utcnow().astimezone(t.timezone).date()
    done = False
    async with context.db.transaction() as session:
        place = await enrolment.place_of(session, context.member, enrolment_id, pressed=query.data)
        if place is not None and context.member is not None and action == "y":
            done = await enrolment.withdraw_place(session, context.member, place, from_date=today)
        preview = None
        if place is not None and action == "a" and place.status is EnrolmentStatus.ENROLLED:
            preview = await billing.preview_for(session, place.enrolment_id, today)
    if place is None:
        await refuse(update, context, enrolment.REFUSED, audited=True)
        return
    await query.answer()
    names = _names(place.child, place.course, t)
    if action == "a":
        if place.status not in WITHDRAW_QUESTIONS:
            await edit_or_send(
                query,
                t.gettext("{child} is no longer in {course}.").format(**names),
                parse_mode=ParseMode.HTML,
                reply_markup=InlineKeyboardMarkup(_next_steps(t, place.child.id)),
            )
            return
        lines = [
            t.gettext(WITHDRAW_QUESTIONS[place.status]).format(date=wording.day(t, today), **names)
        ]
        if place.status is EnrolmentStatus.ENROLLED:
            lines.append(fee_consequence(t, place.course, preview))
        lines.append(
            t.gettext("Withdrawing is always possible and is never held against your child.")
        )
        await edit_or_send(
            query,
            "\n".join(lines),
            parse_mode=ParseMode.HTML,
            reply_markup=InlineKeyboardMarkup(
                [
                    [_button(t.gettext("Withdraw"), f"wd:y:{enrolment_id}")],
                    nav(t, back="wd:l:0", cancel=CLOSE),
                ]
            ),
        )
        return
    context.runtime.wake_delivery()
    text = (
        t.gettext(WITHDRAWN_TEXTS[place.status]).format(**names)
        if done and place.status in WITHDRAWN_TEXTS
        else t.gettext("{child} is no longer in {course}.").format(**names)
    )
    await edit_or_send(
        query,
        text,
        parse_mode=ParseMode.HTML,
        reply_markup=InlineKeyboardMarkup(_next_steps(t, place.child.id)),
    )


def fee_consequence(
    t: Translator, found: CourseInfo, preview: billing.LeavingPreview | None
) -> str:
    """What leaving means for the fee: the figure the disclosed rule gives, computed by the
    same service that writes it when the withdrawal is confirmed (bot.services.billing)."""
    if not found.fee_fen:
        return t.gettext("The course is free: nothing changes for fees.")
    fee = _fee(t, found)
    if preview is None or not preview.billed:
        return t.gettext(
            "Fee: {fee}. No bill has been issued for it yet: days after leaving are not charged."
        ).format(fee=fee)
    if preview.back_fen <= 0:
        return t.gettext(
            "Fee: {fee}. Under the disclosed refund rule nothing comes back for leaving now."
        ).format(fee=fee)
    if preview.rule is not None and preview.rule.settle is fee_rules.Settle.CREDIT:
        text = N_("Under the disclosed refund rule, {amount} is credited to the next bill.")
    elif preview.paid:
        text = N_("Under the disclosed refund rule, {amount} is refunded to you.")
    else:
        text = N_("Under the disclosed refund rule, the bill goes down by {amount}.")
    return (
        t.gettext("Fee: {fee}.").format(fee=fee)
        + " "
        + t.gettext(text).format(amount=t.money(preview.back_fen))
    )


def handlers() -> list[Any]:
    private = filters.ChatType.PRIVATE
    return [
        CommandHandler(["courses", "signup"], start_browsing, filters=private),
        CommandHandler("withdraw", start_withdraw, filters=private),
        CallbackQueryHandler(on_list, pattern=r"^cs:l:"),
        CallbackQueryHandler(on_children, pattern=r"^cs:k$"),
        CallbackQueryHandler(on_filter, pattern=r"^cs:f:"),
        CallbackQueryHandler(on_card, pattern=r"^cs:c:"),
        CallbackQueryHandler(on_confirm_screen, pattern=r"^cs:s:"),
        CallbackQueryHandler(on_sign_up, pattern=r"^cs:y:"),
        CallbackQueryHandler(on_close, pattern=r"^cs:x$"),
        CallbackQueryHandler(on_offer, pattern=r"^of:"),
        CallbackQueryHandler(on_withdraw, pattern=r"^wd:"),
    ]
