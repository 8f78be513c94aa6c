"""/ratings: the term-end ratings (双评价) as the school sees them.

For an admin: the window (when it opens and closes, turnout per course — counts only, never
who), buttons to open or close it by hand (each with a confirm step stating what follows),
the results per course once it has closed, and the comments to review one at a time (release
or hide; nobody sees a comment before). For a teacher, or a provider's staff: the results of
their own courses only. Results are shown only for courses with enough ballots
(`bot.services.ratings.Thresholds`), and only after the window has closed.

Presses (`rr:`): `s` status, `o`/`oy:<term>` open (ask, confirm), `c`/`cy:<term>` close,
`r:<page>` results, `d:<course>` a course's results, `g:<course>` its chart, `m[:<after>]`
the next comment to review, `y:<token>`/`n:<token>` release or hide it, `x` close the screen.
Every press re-checks the presser's role on the server.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import html
from io import BytesIO
from typing import Any

from telegram import InlineKeyboardButton, Update
from telegram.ext import CallbackQueryHandler, CommandHandler, filters

from bot import wording
from bot.context import BotContext
from bot.i18n import N_, Translator
from bot.services import charts, ratings
from bot.services.ratings import Result, Status, Window
from handlers.common.keyboards import PAGE_MAX, grid, nav, pager
from handlers.common.presses import as_int, edit_or_send, fields, refuse, say, show_screen
from storage.models import Again, Face, Role, Term, utcnow

STATUS, CLOSE = "rr:s", "rr:x"
FOR_STAFF = N_(
    "Term-end ratings are given by parents with /rate; the results are for the school's "
    "teachers and admins."
)
NO_TERM = N_("No term has a rating window yet.")
STATES = {
    Window.NOT_SET: N_("No rating days are set for this term; you can open it now."),
    Window.WAITING: N_("Opens on {opens} at 18:00 and closes at the end of {closes}."),
    Window.OPEN: N_("Open; closes at the end of {closes}."),
    Window.CLOSED: N_("Closed on {closes}."),
}
HIDDEN = N_("not shown: {n} of {families} answered (at least {min} and {share}% are needed)")


def _percent(part: int, whole: int) -> str:
    return f"{round(100 * part / whole)}%" if whole else "—"


def _mean(value: float | None) -> str:
    return "—" if value is None else f"{value:.1f}"


def _state_line(t: Translator, status: Status) -> str:
    term = status.term
    text = t.gettext(STATES[term.window])
    return text.format(
        opens=wording.day(t, term.opens_on) if term.opens_on else "",
        closes=wording.day(t, term.closes_on) if term.closes_on else "",
    )


def _status_screen(
    t: Translator, status: Status, earlier: Status | None = None
) -> tuple[str, list[list[InlineKeyboardButton]]]:
    """The window of `status`'s term; `earlier`: the last closed window of another term, whose
    results and comments stay one press away into the next term."""
    term = status.term
    lines = [
        t.gettext("⭐ <b>Term-end ratings · {term}</b>").format(term=html.escape(term.name)),
        _state_line(t, status),
    ]
    if term.window in (Window.OPEN, Window.CLOSED):
        lines.append(
            t.gettext("Rated: {done} of {asked} child-and-course ballots ({share}).").format(
                done=status.done, asked=status.asked, share=_percent(status.done, status.asked)
            )
        )
        for course in status.courses[:30]:
            lines.append(
                f"• {html.escape(course.course)} {course.done}/{course.asked}"
                f" ({_percent(course.done, course.asked)})"
            )
        if len(status.courses) > 30:
            lines.append(
                t.ngettext(
                    "… and {n} more course", "… and {n} more courses", len(status.courses) - 30
                ).format(n=len(status.courses) - 30)
            )
        lines.append(t.gettext("Who has or has not rated is never shown, only how many."))
    buttons = []
    if term.window in (Window.NOT_SET, Window.WAITING):
        buttons.append(InlineKeyboardButton(t.gettext("Open now"), callback_data="rr:o"))
    elif term.window is Window.OPEN:
        buttons.append(InlineKeyboardButton(t.gettext("Close now"), callback_data="rr:c"))
    closed = status if term.window is Window.CLOSED else earlier
    if closed is not None:
        label = (
            t.gettext("Results")
            if closed is status
            else t.gettext("Results: {term}").format(term=closed.term.name)
        )
        buttons.append(InlineKeyboardButton(label, callback_data="rr:r:0"))
        if closed.pending_comments:
            label = t.gettext("Comments ({n})").format(n=closed.pending_comments)
            buttons.append(InlineKeyboardButton(label, callback_data="rr:m"))
    return "\n".join(lines), [*grid(buttons), nav(t, cancel=CLOSE)]


async def _closed(context: BotContext) -> Term | None:
    """The term whose results the screens show: the last one whose window closed."""
    assert context.member is not None
    async with context.db.transaction() as session:
        return await ratings.last_closed(session, context.member.school_id)


async def _term(context: BotContext) -> Term | None:
    assert context.member is not None
    async with context.db.transaction() as session:
        return await ratings.window_term(
            session, context.member.school_id, utcnow().astimezone(context.t.timezone).date()
        )


def _is_admin(context: BotContext) -> bool:
    return context.member is not None and context.member.has(Role.ADMIN)


def _is_teacher(context: BotContext) -> bool:
    return context.member is not None and context.member.has(Role.TEACHER)


async def show_ratings(update: Update, context: BotContext) -> None:
    """/ratings: an admin's status screen, a teacher's own results."""
    t = context.t
    if _is_admin(context):
        await _status(update, context, new=True)
    elif _is_teacher(context):
        await _teacher(update, context)
    else:
        message = update.effective_message
        assert message is not None
        await message.reply_text(t.gettext(FOR_STAFF))


async def _status(update: Update, context: BotContext, *, new: bool = False) -> None:
    t = context.t
    term = await _term(context)
    if term is None:
        await show_screen(update, t.gettext(NO_TERM), [nav(t, cancel=CLOSE)], new=new)
        return
    closed = await _closed(context)
    async with context.db.transaction() as session:
        status = await ratings.status(session, term)
        earlier = None
        if closed is not None and closed.id != term.id:
            earlier = await ratings.status(session, closed)
    await show_screen(update, *_status_screen(t, status, earlier), new=new)


def _result_line(t: Translator, name: str, result: Result, limits: ratings.Thresholds) -> str:
    if not result.shown:
        return f"• {html.escape(name)} — " + t.gettext(HIDDEN).format(
            n=result.ballots, families=result.families, min=limits.ballots, share=limits.share
        )
    return (
        f"• <b>{html.escape(name)}</b> {_mean(result.overall)} — "
        + t.gettext("content {content} · teaching {teaching} · care {safety}").format(
            content=_mean(result.mean("content")),
            teaching=_mean(result.mean("teaching")),
            safety=_mean(result.mean("safety")),
        )
        + " · "
        + t.ngettext("{n} ballot", "{n} ballots", result.ballots).format(n=result.ballots)
    )


async def _readable(
    update: Update, context: BotContext, course_id: int | None = None, *, answered: bool = False
) -> ratings.Readable | None:
    """What the presser may read of the last closed window; None when they were refused (and
    told) or no window has closed yet (then the status or the teacher's screen is shown)."""
    query = update.callback_query
    async with context.db.transaction() as session:
        found = await ratings.readable(
            session, context.member, course_id, pressed=query.data if query else None
        )
    if isinstance(found, ratings.Refusal):
        await refuse(update, context, ratings.REFUSED, audited=True, answered=answered)
        return None
    if found is None:
        await (_status(update, context) if _is_admin(context) else _teacher(update, context))
    return found


async def _results_screen(update: Update, context: BotContext, page: int) -> None:
    t = context.t
    seen = await _readable(update, context, answered=True)
    if seen is None:
        return
    found, names, term = seen.results, seen.names, seen.term
    order = sorted(found, key=lambda c: (not found[c].shown, names.get(c, "")))
    pages = max(1, -(-len(order) // PAGE_MAX))
    page = min(max(page, 0), pages - 1)
    shown = order[page * PAGE_MAX : (page + 1) * PAGE_MAX]
    pooled = ratings.pooled(found.values())
    lines = [t.gettext("⭐ <b>Results · {term}</b>").format(term=html.escape(term.name))]
    if pooled.result is not None:
        lines.append(
            t.gettext("School: {mean} across {n} shown courses.").format(
                mean=_mean(pooled.result.overall), n=pooled.courses
            )
        )
    lines.extend(_result_line(t, names.get(c, "?"), found[c], seen.thresholds) for c in shown)
    buttons = [
        InlineKeyboardButton(names.get(c, "?"), callback_data=f"rr:d:{c}")
        for c in shown
        if found[c].shown
    ]
    rows = [
        *grid(buttons),
        pager(page, pages, lambda p: f"rr:r:{p}"),
        nav(t, back=STATUS, cancel=CLOSE),
    ]
    await show_screen(update, "\n".join(lines), rows)


def _distribution(t: Translator, result: Result) -> list[str]:
    lines = []
    for aspect, label in (
        ("content", N_("Content")),
        ("teaching", N_("Teaching")),
        ("safety", N_("Care and safety")),
    ):
        counts = result.scores[aspect]
        spread = " ".join(
            f"{score}★×{n}" for score, n in zip(ratings.SCORES, counts, strict=True) if n
        )
        lines.append(f"{t.gettext(label)} {_mean(result.mean(aspect))}: {spread}")
    again = result.again
    lines.append(
        t.gettext("Would sign up again: yes {yes} · not sure {unsure} · no {no}").format(
            yes=again.get(Again.YES, 0),
            unsure=again.get(Again.UNSURE, 0),
            no=again.get(Again.NO, 0),
        )
    )
    faces = result.faces
    lines.append(
        t.gettext("Children's own view: 😊 {happy} · 😐 {so_so} · 🙁 {unhappy}").format(
            happy=faces.get(Face.HAPPY, 0),
            so_so=faces.get(Face.SO_SO, 0),
            unhappy=faces.get(Face.UNHAPPY, 0),
        )
    )
    return lines


async def _course_screen(update: Update, context: BotContext, course_id: int) -> None:
    t = context.t
    seen = await _readable(update, context, course_id, answered=True)
    if seen is None:
        return
    result, name = seen.results[course_id], seen.names.get(course_id, "?")
    lines = [
        f"⭐ <b>{html.escape(name)}</b> · {html.escape(seen.term.name)}",
        _result_line(t, name, result, seen.thresholds),
    ]
    rows: list[list[InlineKeyboardButton]] = []
    if result.shown:
        lines.extend(_distribution(t, result))
        comments = seen.comments.get(course_id, [])
        if comments:
            lines.append("")
            lines.append(t.gettext("Comments (shown without names):"))
            lines.extend(f"💬 {html.escape(c)}" for c in comments[:15])
        rows.append(
            [InlineKeyboardButton(t.gettext("📊 Chart"), callback_data=f"rr:g:{course_id}")]
        )
    back = "rr:r:0" if _is_admin(context) else "rr:t"
    rows.append(nav(t, back=back, cancel=CLOSE))
    await show_screen(update, "\n".join(lines), rows)


async def _chart(update: Update, context: BotContext, course_id: int) -> None:
    query = update.callback_query
    assert query is not None
    seen = await _readable(update, context, course_id)
    if seen is None:
        return
    result = seen.results[course_id]
    if not result.shown:
        await refuse(update, context, ratings.REFUSED)
        return
    await query.answer()
    title = f"{seen.names.get(course_id, '')} · {seen.term.name}"
    png = await asyncio.to_thread(charts.ratings, context.t, result, title)
    message = query.message
    assert message is not None
    await message.get_bot().send_photo(message.chat.id, BytesIO(png), caption=title)


async def _teacher(update: Update, context: BotContext) -> None:
    t = context.t
    new = update.callback_query is None
    async with context.db.transaction() as session:
        seen = await ratings.readable(session, context.member)
    if isinstance(seen, ratings.Refusal):
        await say(update, t.gettext(FOR_STAFF))
        return
    if seen is None:
        current = await _term(context)
        if current is None:
            await say(update, t.gettext(NO_TERM))
            return
        text = t.gettext(
            "The {term} rating is not closed yet. Results of your courses come after it "
            "closes, for each course enough families rated."
        ).format(term=html.escape(current.name))
        await say(update, text)
        return
    term, found, names = seen.term, seen.results, seen.names
    if not found:
        text = t.gettext(
            "You taught no course in {term}, so there are no ratings to show."
        ).format(term=html.escape(term.name))
        await say(update, text)
        return
    lines = [t.gettext("⭐ <b>Your courses · {term}</b>").format(term=html.escape(term.name))]
    pooled = ratings.pooled(found.values())
    if pooled.result is not None:
        lines.append(
            t.gettext("Across your shown courses: {mean}.").format(
                mean=_mean(pooled.result.overall)
            )
        )
    lines.extend(_result_line(t, names.get(c, "?"), r, seen.thresholds) for c, r in found.items())
    buttons = [
        InlineKeyboardButton(names.get(c, "?"), callback_data=f"rr:d:{c}")
        for c, r in found.items()
        if r.shown
    ]
    await show_screen(
        update, "\n".join(lines), [*grid(buttons[:PAGE_MAX]), nav(t, cancel=CLOSE)], new=new
    )


async def _ask(update: Update, context: BotContext, opening: bool) -> None:
    t = context.t
    term = await _term(context)
    if term is None:
        await _status(update, context)
        return
    window = ratings.window_of(term)
    if (opening and window not in (Window.NOT_SET, Window.WAITING)) or (
        not opening and window is not Window.OPEN
    ):
        await _status(update, context)
        return
    if opening:
        text = t.gettext(
            "Open the {term} rating now? Every guardian of a child who took a course this term "
            "gets an invitation at once. It closes at the end of {closes}."
        )
        confirm = t.gettext("Open")
        data = f"rr:oy:{term.id}"
    else:
        text = t.gettext(
            "Close the {term} rating now? Families can no longer answer or change answers, and "
            "the link from a ballot to its family is destroyed for good: it cannot be "
            "reopened."
        )
        confirm = t.gettext("Close it")
        data = f"rr:cy:{term.id}"
    today = utcnow().astimezone(context.t.timezone).date()
    closes = (
        term.rating_closes_on if term.rating_closes_on and term.rating_closes_on >= today else None
    )
    closes_day = closes or today + dt.timedelta(days=ratings.DEFAULT_DAYS)
    await show_screen(
        update,
        text.format(term=html.escape(term.name), closes=wording.day(t, closes_day)),
        [[InlineKeyboardButton(confirm, callback_data=data)], nav(t, back=STATUS, cancel=CLOSE)],
    )


async def _act(update: Update, context: BotContext, opening: bool, term_id: int) -> None:
    t = context.t
    query = update.callback_query
    async with context.db.transaction() as session:
        acted = await ratings.set_window(
            session,
            context.member,
            term_id,
            utcnow(),
            opening=opening,
            pressed=query.data if query else None,
        )
    if isinstance(acted, ratings.Refusal):
        await refuse(update, context, ratings.REFUSED, audited=True, answered=True)
        return
    found, name = acted.done, acted.term
    if found is None:
        said = (
            t.gettext("The {term} rating was opened already; nothing changed.")
            if opening
            else t.gettext("The {term} rating is not open; nothing changed.")
        )
        await show_screen(
            update, said.format(term=html.escape(name)), [nav(t, back=STATUS, cancel=CLOSE)]
        )
        return
    if isinstance(found, ratings.Opened):
        text = t.ngettext(
            "✅ The {term} rating is open until the end of {closes}: {ballots} course to rate, "
            "{families} guardians invited.",
            "✅ The {term} rating is open until the end of {closes}: {ballots} courses to rate, "
            "{families} guardians invited.",
            found.ballots,
        ).format(
            term=html.escape(found.term),
            closes=wording.day(t, found.closes_on),
            ballots=found.ballots,
            families=found.families,
        )
    else:
        text = t.ngettext(
            "✅ The {term} rating is closed with {n} complete ballot. Results are ready.",
            "✅ The {term} rating is closed with {n} complete ballots. Results are ready.",
            found,
        ).format(term=html.escape(name), n=found)
    await show_screen(
        update,
        text,
        [[InlineKeyboardButton(t.gettext("Status"), callback_data=STATUS)], nav(t, cancel=CLOSE)],
    )


async def _comment(update: Update, context: BotContext, after: str = "") -> None:
    t = context.t
    term = await _closed(context)
    if term is None:
        await _status(update, context)
        return
    async with context.db.transaction() as session:
        found = await ratings.next_comment(session, term, after)
    if found is None:
        await show_screen(
            update,
            t.gettext("No comments are waiting for review."),
            [nav(t, back=STATUS, cancel=CLOSE)],
        )
        return
    text = "\n".join(
        [
            t.ngettext(
                "💬 <b>{course}</b> · {n} comment to review",
                "💬 <b>{course}</b> · {n} comments to review",
                found.left,
            ).format(course=html.escape(found.course), n=found.left),
            "",
            f"<blockquote>{html.escape(found.text)}</blockquote>",
            "",
            t.gettext(
                "Release it to the course's results, which its teacher sees, or hide it (names, "
                "insults, anything that points at a child). It is shown without any name."
            ),
        ]
    )
    buttons = [
        InlineKeyboardButton(t.gettext("Release"), callback_data=f"rr:y:{found.token}"),
        InlineKeyboardButton(t.gettext("Hide"), callback_data=f"rr:n:{found.token}"),
        InlineKeyboardButton(t.gettext("Skip ›"), callback_data=f"rr:m:{found.token}"),
    ]
    await show_screen(update, text, [grid(buttons)[0], nav(t, back=STATUS, cancel=CLOSE)])


async def _review(update: Update, context: BotContext, token: str, release: bool) -> None:
    query = update.callback_query
    assert query is not None
    term = await _closed(context)
    if term is None:
        await refuse(update, context, ratings.REFUSED)
        return
    async with context.db.transaction() as session:
        done = await ratings.review(
            session, context.member, term, token, release, pressed=query.data
        )
    if isinstance(done, ratings.Refusal):
        await refuse(update, context, ratings.REFUSED, audited=True)
        return
    t = context.t
    if done:
        await query.answer(t.gettext("Released") if release else t.gettext("Hidden"))
    else:
        await query.answer(
            t.gettext("Another admin reviewed this comment first."), show_alert=True
        )
    await _comment(update, context)


async def on_press(update: Update, context: BotContext) -> None:
    query = update.callback_query
    assert query is not None and query.data is not None
    data, t = query.data, context.t
    if data == CLOSE:
        await query.answer()
        await edit_or_send(query, t.gettext("Closed. /ratings opens it again."), reply_markup=None)
        return
    if not (_is_admin(context) or _is_teacher(context)):
        await refuse(update, context, ratings.REFUSED, text=t.gettext(FOR_STAFF))
        return
    if data == "rr:t" or (not _is_admin(context) and data == STATUS):
        await query.answer()
        await _teacher(update, context)
        return
    if (parts := fields(data, "rr:d:", 1)) is not None and (
        course := as_int(parts[0])
    ) is not None:
        await query.answer()
        await _course_screen(update, context, course)
        return
    if (parts := fields(data, "rr:g:", 1)) is not None and (
        course := as_int(parts[0])
    ) is not None:
        await _chart(update, context, course)
        return
    if not _is_admin(context):  # what follows is for admins only
        await refuse(update, context, ratings.REFUSED, text=t.gettext(FOR_STAFF))
        return
    if data == STATUS:
        await query.answer()
        await _status(update, context)
    elif data in ("rr:o", "rr:c"):
        await query.answer()
        await _ask(update, context, data == "rr:o")
    elif (parts := fields(data, "rr:oy:", 1) or fields(data, "rr:cy:", 1)) and (
        term_id := as_int(parts[0])
    ) is not None:
        await query.answer()
        await _act(update, context, data.startswith("rr:oy:"), term_id)
    elif (parts := fields(data, "rr:r:", 1)) is not None and (
        page := as_int(parts[0])
    ) is not None:
        await query.answer()
        await _results_screen(update, context, page)
    elif data == "rr:m" or (parts := fields(data, "rr:m:", 1)) is not None:
        await query.answer()
        await _comment(update, context, "" if data == "rr:m" else data[5:][:64])
    elif (parts := fields(data, "rr:y:", 1) or fields(data, "rr:n:", 1)) is not None:
        await _review(update, context, parts[0][:64], data.startswith("rr:y:"))
    else:
        await refuse(update, context, ratings.REFUSED)


def handlers() -> list[Any]:
    return [
        CommandHandler("ratings", show_ratings, filters=filters.ChatType.PRIVATE),
        CallbackQueryHandler(on_press, pattern=r"^rr:"),
    ]
