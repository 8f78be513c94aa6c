"""/courses and /signup: browse the programme, sign a child up; /withdraw; seat offers.

Everything is driven by buttons whose data names the child and the filters; nothing in them is
trusted: every press re-checks on the server that the presser is the child's guardian and that
the course is one of the child's school. Messages are edited in place.
"""

from __future__ import annotations

import html
from collections.abc import Iterable
from typing import Any

from telegram import InlineKeyboardButton, InlineKeyboardMarkup, Update
from telegram.constants import ParseMode
from telegram.ext import CallbackQueryHandler, CommandHandler, filters

from bot.context import BotContext
from bot.i18n import N_, Translator
from bot.services import enrolment, fees
from bot.services.catalogue import CourseInfo
from bot.services.enrolment import CourseFacts, OfferAnswer, Refusal
from handlers.common.presses import as_int, edit_or_send, fields, ints, refuse
from storage.models import (
    Allocation,
    Category,
    EnrolmentStatus,
    utcnow,
)

PAGE = 6
CATEGORIES = list(Category)
CATEGORY_NAMES = {
    Category.HOMEWORK: N_("Homework help"),
    Category.SCIENCE: N_("Science"),
    Category.ARTS: N_("Arts"),
    Category.SPORTS: N_("Sports"),
    Category.LABOUR: N_("Labour"),
    Category.READING: N_("Reading"),
    Category.WELLBEING: N_("Wellbeing and safety"),
    Category.OFF_CAMPUS: N_("Off campus"),
}
PERIOD_NAMES = {1: N_("Period 1 · homework help"), 2: N_("Period 2 · enrichment")}
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


# ---------------------------------------------------------------------------------------------
# Browsing


async def start_browsing(update: Update, context: BotContext) -> None:
    """/courses or /signup: pick the child (if several), then the list."""
    message = update.effective_message
    assert message is not None
    t = context.t
    browsed = await _browse(update, context, None, 0, 0, 0)
    assert browsed is not None  # no child was named, so none can be refused
    if browsed.child is not None:
        text, markup = _list_view(t, browsed, 0, 0, 0, 0)
        await message.reply_text(text, reply_markup=markup, parse_mode=ParseMode.HTML)
        return
    if not browsed.children:
        await message.reply_text(t.gettext("This is for guardians linked to a child."))
        return
    await message.reply_text(
        t.gettext("Which child?"),
        reply_markup=InlineKeyboardMarkup(
            [
                [InlineKeyboardButton(c.name, callback_data=f"cs:l:{c.id}:0:0:0:0")]
                for c in browsed.children
            ]
        ),
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


def _list_view(
    t: Translator,
    browsed: enrolment.Browse,
    period: int,
    category: int,
    weekday: int,
    page: int,
) -> tuple[str, InlineKeyboardMarkup]:
    child, found = browsed.child, browsed.courses
    assert child is not None
    student_id = child.id
    pages = max((len(found) - 1) // PAGE + 1, 1)
    page = min(page, pages - 1)
    shown = found[page * PAGE : (page + 1) * PAGE]
    state = f"{period}:{category}:{weekday}:{page}"
    lines = [
        "<b>" + t.gettext("Courses for {child}").format(child=html.escape(child.name)) + "</b>",
        t.gettext("{count} courses match. Tap one to see it in full.").format(count=len(found)),
    ]
    rows = [
        [
            InlineKeyboardButton(
                _summary(t, f), callback_data=f"cs:c:{student_id}:{f.course.id}:{state}"
            )
        ]
        for f in shown
    ]
    nav = []
    if page > 0:
        nav.append(
            InlineKeyboardButton(
                "‹", callback_data=f"cs:l:{student_id}:{period}:{category}:{weekday}:{page - 1}"
            )
        )
    nav.append(
        InlineKeyboardButton(f"{page + 1}/{pages}", callback_data=f"cs:l:{student_id}:{state}")
    )
    if page < pages - 1:
        nav.append(
            InlineKeyboardButton(
                "›", callback_data=f"cs:l:{student_id}:{period}:{category}:{weekday}:{page + 1}"
            )
        )
    rows.append(nav)

    def choice(label: str, selected: bool, data: str) -> InlineKeyboardButton:
        return InlineKeyboardButton(("● " if selected else "") + label, callback_data=data)

    base = f"cs:l:{student_id}"
    rows.append(
        [choice(t.gettext("All"), period == 0, f"{base}:0:{category}:{weekday}:0")]
        + [
            choice(
                t.gettext("Period {n}").format(n=p),
                period == p,
                f"{base}:{p}:{category}:{weekday}:0",
            )
            for p in (1, 2)
        ]
    )
    cats = [choice(t.gettext("All kinds"), category == 0, f"{base}:{period}:0:{weekday}:0")] + [
        choice(t.gettext(CATEGORY_NAMES[c]), category == i, f"{base}:{period}:{i}:{weekday}:0")
        for i, c in enumerate(CATEGORIES, 1)
    ]
    rows += [cats[i : i + 3] for i in range(0, len(cats), 3)]
    rows.append(
        [choice(t.gettext("Any day"), weekday == 0, f"{base}:{period}:{category}:0:0")]
        + [
            choice(t.weekday(d, "abbreviated"), weekday == d, f"{base}:{period}:{category}:{d}:0")
            for d in range(1, 6)
        ]
    )
    return "\n".join(lines), InlineKeyboardMarkup(rows)


def _summary(t: Translator, f: CourseFacts) -> str:
    course = f.course
    seats = _seats(t, f, short=True)
    return f"{course.name} · {t.weekdays(enrolment.weekdays_of(course.weekdays))} · {seats}"


def _seats(t: Translator, f: CourseFacts, short: bool = False) -> str:
    left = f.seats_left
    if left is None:
        return t.gettext("open to all")
    if left > 0:
        return t.gettext("{n} seats left").format(n=left)
    return t.gettext("full, {n} waiting").format(n=f.waitlisted)


def _fee(t: Translator, f: CourseInfo) -> str:
    if not f.fee_fen:
        return t.gettext("free")
    return t.gettext(FEE_UNITS[f.fee_unit or "term"]).format(amount=t.money(f.fee_fen))


def card_text(t: Translator, f: CourseFacts) -> str:
    """A course as the published schedule must show it: content, teacher, provider, venue,
    days and time, class size, seats, and the disclosed fee."""
    c = f.course
    lines = [
        f"<b>{html.escape(c.name)}</b>",
        f"{t.gettext(CATEGORY_NAMES[c.category])} · {t.gettext(PERIOD_NAMES[c.period])}",
        t.gettext("When: {days} {start}–{end}").format(
            days=t.weekdays(enrolment.weekdays_of(c.weekdays)),
            start=t.time(c.starts_at),
            end=t.time(c.ends_at),
        ),
        t.gettext("Where: {venue}").format(venue=html.escape(c.venue)),
        t.gettext("Teacher: {teacher}").format(teacher=html.escape(f.teacher or "—")),
        t.gettext("Run by: {provider}").format(
            provider=html.escape(f.provider) if f.provider else t.gettext("the school")
        ),
        t.gettext("Grades {low}–{high} · class size {size}").format(
            low=c.grade_min, high=c.grade_max, size=c.capacity or t.gettext("no limit")
        ),
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


async def on_list(update: Update, context: BotContext) -> None:
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
    text, markup = _list_view(context.t, browsed, period, category, weekday, page)
    await edit_or_send(query, text, reply_markup=markup, parse_mode=ParseMode.HTML)


async def on_card(update: Update, context: BotContext) -> None:
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
    await edit_or_send(
        query,
        card_text(t, view.facts),
        parse_mode=ParseMode.HTML,
        reply_markup=InlineKeyboardMarkup(
            [
                [
                    InlineKeyboardButton(
                        t.gettext("Sign up"), callback_data=f"cs:s:{student_id}:{course_id}"
                    )
                ],
                [
                    InlineKeyboardButton(
                        t.gettext("‹ Back"), callback_data=f"cs:l:{student_id}:{state}"
                    )
                ],
            ]
        ),
    )


async def on_confirm_screen(update: Update, context: BotContext) -> None:
    query = update.callback_query
    assert query is not None and query.data is not None
    t = context.t
    values = ints(query.data, "cs:s:", 2)
    if values is None:
        await refuse(update, context, "enrolment.refused")
        return
    student_id, course_id = values
    async with context.db.transaction() as session:
        view = await enrolment.sign_up_preview(
            session, context.member, student_id, course_id, utcnow(), pressed=query.data
        )
    if view is None:
        await refuse(update, context, enrolment.REFUSED, audited=True)
        return
    await query.answer()
    if view.refusal is not None:
        await edit_or_send(
            query,
            card_text(t, view.facts) + "\n\n" + t.gettext(REFUSALS[view.refusal]),
            parse_mode=ParseMode.HTML,
        )
        return
    text = "\n".join(
        [
            t.gettext("Sign {child} up for this course?").format(
                child=html.escape(view.child.name)
            ),
            "",
            card_text(t, view.facts),
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
            [
                [
                    InlineKeyboardButton(
                        t.gettext("Confirm sign-up"),
                        callback_data=f"cs:y:{student_id}:{course_id}",
                    )
                ],
                [
                    InlineKeyboardButton(
                        t.gettext("‹ Back"), callback_data=f"cs:c:{student_id}:{course_id}:0:0:0:0"
                    )
                ],
            ]
        ),
    )


async def acknowledge_sign_up(update: Update, context: BotContext) -> None:
    """Handler group -2: answer a sign-up press before anything else runs.

    In a rush of hundreds of parents, the checks and the sign-up queue for a moment; the button
    must not keep spinning meanwhile. Nothing is trusted or decided here: the press is only
    acknowledged, in the language Telegram reports (the member is not loaded yet).
    """
    query = update.callback_query
    assert query is not None
    t = context.runtime.i18n.choose(None, query.from_user.language_code)
    await query.answer(t.gettext("Signing up…"))


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
    result = outcome.result
    names = {"child": html.escape(outcome.child.name), "course": html.escape(outcome.course.name)}
    if isinstance(result, Refusal):
        await edit_or_send(query, t.gettext(REFUSALS[result]))
        return
    if result.status is EnrolmentStatus.ENROLLED:
        text = t.gettext("✅ {child} is enrolled in {course}.").format(**names)
    elif result.status is EnrolmentStatus.ENTERED:
        text = t.gettext(
            "🎲 {child} is in the draw for {course}, as choice {rank}. Seats are drawn by lot "
            "when enrolment closes, and you will be told the result and the draw's seed."
        ).format(rank=result.draw_rank, **names)
    else:
        text = t.gettext(
            "The course is full: {child} is on the waitlist at position {position}. "
            "If a seat frees up, we will offer it to you here."
        ).format(position=result.waitlist_position, **names)
    text += "\n\n" + plan_advice(t, outcome.plan)
    await edit_or_send(query, text, parse_mode=ParseMode.HTML)


def plan_advice(t: Translator, courses: Iterable[CourseInfo]) -> str:
    """The "1+N" guidance, as advice only (never a requirement)."""
    advice = enrolment.advise(courses)
    if advice.meets:
        return t.gettext(
            '💡 This week\'s plan follows the "1+N" guidance: an interest activity every day, '
            "and science."
        )
    notes = []
    if advice.days_without_interest:
        notes.append(
            t.gettext("no interest activity on {days}").format(
                days=t.weekdays(advice.days_without_interest)
            )
        )
    if not advice.has_science:
        notes.append(t.gettext("no science course"))
    separator = "；" if t.locale.startswith("zh") else "; "
    return t.gettext(
        '💡 Advice only: the "1+N" guidance suggests an interest activity every day, and '
        "science ({notes})."
    ).format(notes=separator.join(notes))


# ---------------------------------------------------------------------------------------------
# Seat offers


async def on_offer(update: Update, context: BotContext) -> None:
    query = update.callback_query
    assert query is not None and query.data is not None
    t = context.t
    values = ints(query.data, "of:", 2)
    if values is None or values[1] not in (0, 1):
        await refuse(update, context, "enrolment.refused")
        return
    enrolment_id, accept = values
    async with context.db.transaction() as session:
        place = await enrolment.place_of(session, context.member, enrolment_id, pressed=query.data)
        if place is not None and context.member is not None:
            answer = await enrolment.answer_offer(
                session, enrolment_id, bool(accept), user_id=context.member.user_id
            )
    if place is None:
        await refuse(update, context, enrolment.REFUSED, audited=True)
        return
    context.runtime.wake_delivery()
    texts = {
        OfferAnswer.ACCEPTED: N_("✅ Seat accepted: your child is enrolled."),
        OfferAnswer.DECLINED: N_("Declined. The seat goes to the next child on the waitlist."),
        OfferAnswer.EXPIRED: N_("Sorry, this offer has expired and the seat has moved on."),
        OfferAnswer.ALREADY_ACCEPTED: N_(
            "This seat was already accepted: your child is enrolled."
        ),
        OfferAnswer.NONE: N_("This offer is no longer open."),
    }
    await query.answer()
    await edit_or_send(query, t.gettext(texts[answer]))


# ---------------------------------------------------------------------------------------------
# Withdrawal


async def start_withdraw(update: Update, context: BotContext) -> None:
    message = update.effective_message
    assert message is not None
    t = context.t
    async with context.db.transaction() as session:
        children, held = await enrolment.places(session, context.member)
    if not children:
        await message.reply_text(t.gettext("This is for guardians linked to a child."))
        return
    rows = []
    for place in held:
        label = f"{place.child.name} · {place.course.name}"
        if place.status is EnrolmentStatus.WAITLISTED:
            label += " · " + t.gettext("waitlist")
        elif place.status is EnrolmentStatus.ENTERED:
            label += " · " + t.gettext("draw")
        rows.append([InlineKeyboardButton(label, callback_data=f"wd:a:{place.enrolment_id}")])
    if not rows:
        await message.reply_text(t.gettext("Your children are not signed up for any course."))
        return
    await message.reply_text(
        t.gettext("Which course should your child leave for good?"),
        reply_markup=InlineKeyboardMarkup(rows),
    )


async def on_withdraw(update: Update, context: BotContext) -> None:
    query = update.callback_query
    assert query is not None and query.data is not None
    t = context.t
    parts = fields(query.data, "wd:", 2)
    enrolment_id = as_int(parts[1]) if parts is not None else None
    if parts is None or parts[0] not in ("a", "y") or enrolment_id is None:
        await refuse(update, context, "enrolment.refused")
        return
    action = parts[0]
    today = utcnow().astimezone(t.timezone).date()
    done = False
    async with context.db.transaction() as session:
        place = await enrolment.place_of(session, context.member, enrolment_id, pressed=query.data)
        if place is not None and context.member is not None and action == "y":
            done = await enrolment.withdraw_place(session, context.member, place, from_date=today)
    if place is None:
        await refuse(update, context, enrolment.REFUSED, audited=True)
        return
    await query.answer()
    course = html.escape(place.course.name)
    if action == "a":
        await edit_or_send(
            query,
            t.gettext("Withdraw from {course} from {date}?").format(
                course=course, date=t.date(today)
            )
            + "\n"
            + fee_consequence(t, place.course)
            + "\n"
            + t.gettext("Withdrawing is always possible and is never held against your child."),
            parse_mode=ParseMode.HTML,
            reply_markup=InlineKeyboardMarkup(
                [
                    [
                        InlineKeyboardButton(
                            t.gettext("Withdraw"), callback_data=f"wd:y:{enrolment_id}"
                        )
                    ]
                ]
            ),
        )
        return
    context.runtime.wake_delivery()
    await edit_or_send(
        query,
        t.gettext("Done: your child has left {course}.").format(course=course)
        if done
        else t.gettext("Your child is no longer in this course."),
        parse_mode=ParseMode.HTML,
    )


def fee_consequence(t: Translator, found: CourseInfo) -> str:
    """What leaving means for the fee, under the disclosed standard (bot.services.fees)."""
    rule = fees.withdrawal_fee(found.fee_fen, found.fee_unit).rule
    texts = {
        fees.AfterWithdrawal.FREE: N_("The course is free: nothing changes for fees."),
        fees.AfterWithdrawal.SESSIONS_AFTER_NOT_CHARGED: N_(
            "Fee: {fee}. Sessions after you leave are not charged."
        ),
        fees.AfterWithdrawal.MONTHS_AFTER_NOT_CHARGED: N_(
            "Fee: {fee}. Months after the one you leave in are not charged."
        ),
        fees.AfterWithdrawal.UNUSED_PART_REFUNDED: N_(
            "Fee: {fee}. The school refunds the unused part under the disclosed fee standard."
        ),
    }
    return t.gettext(texts[rule]).format(fee=_fee(t, found))


def handlers() -> list[Any]:
    private = filters.ChatType.PRIVATE
    return [
        CommandHandler(["courses", "signup"], start_browsing, filters=private),
        CommandHandler("withdraw", start_withdraw, filters=private),
        CallbackQueryHandler(on_list, pattern=r"^cs:l:"),
        CallbackQueryHandler(on_card, pattern=r"^cs:c:"),
        CallbackQueryHandler(on_confirm_screen, pattern=r"^cs:s:"),
        CallbackQueryHandler(on_sign_up, pattern=r"^cs:y:"),
        CallbackQueryHandler(on_offer, pattern=r"^of:"),
        CallbackQueryHandler(on_withdraw, pattern=r"^wd:"),
    ]
