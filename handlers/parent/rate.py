"""/rate: a family's term-end ratings (双评价), one course at a time, with the child.

`/rate` (or 开始评价 on the invitation, `rt:go`) lists what the family's children are asked to
rate, ✅ on what is done. A course (`rt:b:<child>:<course>`) asks its questions in turn:
content, teaching, care and safety (1–5), would you sign up again, the child's own view (three
faces, or skipped when the child is not there) and an optional comment. `rt:a:<child>:<course>:
<question>:<answer>[:e]` records one answer (``e``: changed from the summary, which is shown
again after it); `rt:n:<child>:<course>:<question>` skips an optional one; `rt:q:…` asks one
again from the summary; `rt:t:<child>:<course>` waits for a typed comment. Every press is
checked again on the server (`bot.services.ratings`): the presser is the child's guardian, the
child took the course, the window is open.
"""

from __future__ import annotations

import html
import warnings
from typing import Any

from telegram import InlineKeyboardButton, Update
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
from bot.services import ratings
from bot.services.ratings import BallotView, Family, Refusal, TermWindow, Window
from handlers.common.keyboards import PAGE_MAX, grid, nav, pager
from handlers.common.presses import as_int, edit_or_send, fields, refuse, say, show_screen
from storage.models import Again, Face, utcnow

LIST, CLOSE = "rt:go", "rt:x"
TYPING = 1
PENDING = "pending_rating_comment"  # user_data: (child, course, changed) of a comment being typed

QUESTION_TEXT = {
    "content": N_(
        "<b>Content</b>: were the activities worthwhile, and what the course promised?\n"
        "1 = poor · 5 = excellent"
    ),
    "teaching": N_(
        "<b>Teaching</b>: did the teacher explain well, keep good order and give your child "
        "attention?\n1 = poor · 5 = excellent"
    ),
    "safety": N_(
        "<b>Care and safety</b>: was your child looked after, safe, and handed over properly at "
        "the end?\n1 = poor · 5 = excellent"
    ),
    "again": N_("Would you sign {child} up for {course} again?"),
    "face": N_(
        "Now ask {child}: “How did you like {course}?” Let {child} tap a face.\n"
        "(Not with you now? Skip it.)"
    ),
    "comment": N_(
        "Anything the school should know about {course}? Write a short comment, or skip.\n"
        "Comments are read by the school first and never shown with a name."
    ),
}
SHORT = {
    "content": N_("Content"),
    "teaching": N_("Teaching"),
    "safety": N_("Care and safety"),
    "again": N_("Sign up again"),
    "face": N_("Child's view"),
    "comment": N_("Comment"),
}
AGAIN = {
    Again.YES: N_("Yes, I would"),
    Again.UNSURE: N_("Not sure"),
    Again.NO: N_("No, I would not"),
}
FACES = {Face.HAPPY: "😊", Face.SO_SO: "😐", Face.UNHAPPY: "🙁"}
REFUSALS = {
    Refusal.NOT_PARENT: N_(
        "Term-end ratings are given by parents. Teachers and admins see the results with /ratings."
    ),
    Refusal.NOT_OPEN: N_(
        "The term-end rating is not open now, so nothing was saved. The school sends a "
        "message when it opens."
    ),
    Refusal.NOT_ASKED: N_("This child is not asked to rate that course this term."),
    Refusal.BAD_ANSWER: N_("That answer is not one of the choices; nothing was saved."),
}


def _closed_text(t: Translator, term: TermWindow) -> str:
    if term.window is Window.WAITING and term.opens_on is not None:
        return t.gettext(
            "The {term} rating opens on {day}. You will get a message then, with a button "
            "to start."
        ).format(term=html.escape(term.name), day=wording.day(t, term.opens_on))
    if term.window is Window.CLOSED and term.closes_on is not None:
        return t.gettext(
            "The {term} rating closed on {day}. Thank you to every family that took part."
        ).format(term=html.escape(term.name), day=wording.day(t, term.closes_on))
    return t.gettext(REFUSALS[Refusal.NOT_OPEN])


def _item_label(item: ratings.Item, several: bool) -> str:
    mark = "✅ " if item.done else ""
    return f"{mark}{item.child}·{item.course}" if several else f"{mark}{item.course}"


async def _list(update: Update, context: BotContext, page: int = 0, *, new: bool = False) -> None:
    t = context.t
    async with context.db.transaction() as session:
        found = await ratings.family(
            session, context.member, utcnow().astimezone(context.t.timezone).date()
        )
    if isinstance(found, Refusal):
        await say(update, t.gettext(REFUSALS[found]))
        return
    if isinstance(found, TermWindow):
        await say(update, _closed_text(t, found))
        return
    await show_screen(update, *_list_screen(t, found, page), new=new)


def _list_screen(
    t: Translator, found: Family, page: int
) -> tuple[str, list[list[InlineKeyboardButton]]]:
    term = found.term
    assert term.closes_on is not None
    if not found.items:
        text = t.gettext(
            "None of your children took an after-school course in {term}, so there is "
            "nothing to rate."
        ).format(term=html.escape(term.name))
        return text, [nav(t, cancel=CLOSE)]
    total = len(found.items)
    done = total - found.left
    lines = [
        t.gettext("⭐ <b>Term-end rating: {term}</b>").format(term=html.escape(term.name)),
        t.ngettext(
            "{done} of {n} course rated. Open until the end of {day}.",
            "{done} of {n} courses rated. Open until the end of {day}.",
            total,
        ).format(done=done, n=total, day=wording.day(t, term.closes_on)),
        "🔒 "
        + t.gettext(
            "Anonymous: answers are kept apart from your name, and the school sees only totals."
        ),
    ]
    if found.left:
        lines.append(t.gettext("Choose a course:"))
    else:
        lines.append(t.gettext("Thank you, all done! You can still change an answer."))
    several = len({i.student_id for i in found.items}) > 1
    pages = max(1, -(-total // PAGE_MAX))
    page = min(max(page, 0), pages - 1)
    shown = found.items[page * PAGE_MAX : (page + 1) * PAGE_MAX]
    buttons = [
        InlineKeyboardButton(
            _item_label(item, several), callback_data=f"rt:b:{item.student_id}:{item.course_id}"
        )
        for item in shown
    ]
    rows = [
        *[[b] for b in buttons],  # "child·course" labels are long: one a row
        pager(page, pages, lambda p: f"rt:l:{p}"),
        nav(t, cancel=CLOSE),
    ]
    return "\n".join(lines), rows


def _heading(t: Translator, view: BallotView) -> str:
    return f"⭐ <b>{html.escape(view.item.child)} · {html.escape(view.item.course)}</b>"


def _question_screen(
    t: Translator, view: BallotView, question: str, changed: bool
) -> tuple[str, list[list[InlineKeyboardButton]]]:
    s, c = view.item.student_id, view.item.course_id
    step = ratings.QUESTIONS.index(question) + 1
    suffix = ":e" if changed else ""
    text = "\n".join(
        [
            _heading(t, view) + f"  ({step}/{len(ratings.QUESTIONS)})",
            "",
            t.gettext(QUESTION_TEXT[question]).format(
                child=html.escape(view.item.child), course=html.escape(view.item.course)
            ),
        ]
    )
    answer = f"rt:a:{s}:{c}:{question}:"
    rows: list[list[InlineKeyboardButton]]
    if question in ("content", "teaching", "safety"):
        current = view.answers[question]
        rows = [
            [
                InlineKeyboardButton(
                    f"·{score}·" if score == current else str(score),
                    callback_data=f"{answer}{score}{suffix}",
                )
                for score in ratings.SCORES
            ]
        ]
    elif question == "again":
        rows = grid(
            [
                InlineKeyboardButton(t.gettext(label), callback_data=f"{answer}{value}{suffix}")
                for value, label in AGAIN.items()
            ]
        )
    elif question == "face":
        rows = [
            [
                InlineKeyboardButton(face, callback_data=f"{answer}{value}{suffix}")
                for value, face in FACES.items()
            ],
            [InlineKeyboardButton(t.gettext("Skip"), callback_data=f"rt:n:{s}:{c}:face{suffix}")],
        ]
    else:
        rows = grid(
            [
                InlineKeyboardButton(
                    t.gettext("✍️ Write a comment"), callback_data=f"rt:t:{s}:{c}{suffix}"
                ),
                InlineKeyboardButton(
                    t.gettext("No comment"), callback_data=f"rt:n:{s}:{c}:comment{suffix}"
                ),
            ]
        )
    back = f"rt:b:{s}:{c}" if changed else LIST
    return text, [*rows, nav(t, back=back, cancel=CLOSE)]


def _answer_text(t: Translator, view: BallotView, question: str) -> str:
    value = view.answers[question]
    if value is None:
        return "—"
    if question in ("content", "teaching", "safety"):
        return "★" * int(value) + "☆" * (5 - int(value)) + f" {value}"
    if question == "again":
        return t.gettext(AGAIN[Again(value)])
    if question == "face":
        return FACES[Face(value)]
    return html.escape(str(value))


def _summary_screen(
    t: Translator, view: BallotView
) -> tuple[str, list[list[InlineKeyboardButton]]]:
    s, c = view.item.student_id, view.item.course_id
    lines = [_heading(t, view), ""]
    for question in ratings.QUESTIONS:
        lines.append(
            t.gettext("{question}: {answer}").format(
                question=t.gettext(SHORT[question]), answer=_answer_text(t, view, question)
            )
        )
    lines.append("")
    closes = view.term.closes_on
    assert closes is not None
    if view.complete:
        lines.append(
            t.gettext("✅ Saved. You can change any answer until the end of {day}.").format(
                day=wording.day(t, closes)
            )
        )
    else:
        lines.append(t.gettext("Not finished yet: the first four answers are needed."))
    change = [
        InlineKeyboardButton(t.gettext(SHORT[q]), callback_data=f"rt:q:{s}:{c}:{q}")
        for q in ratings.QUESTIONS
    ]
    rows = [*grid(change)]
    rows.append([InlineKeyboardButton(t.gettext("Other courses ›"), callback_data=LIST)])
    rows.append(nav(t, cancel=CLOSE))
    return "\n".join(lines), rows


async def _show_ballot(
    update: Update,
    context: BotContext,
    view: BallotView,
    after: str | None,
    *,
    changed: bool = False,
    new: bool = False,
) -> None:
    """The next question after `after` (from the start when None), or the summary when every
    question has been asked or an answer was changed from the summary."""
    t = context.t
    question = None if changed else view.after(after)
    if question is None:
        await show_screen(update, *_summary_screen(t, view), new=new)
    else:
        await show_screen(update, *_question_screen(t, view, question, False), new=new)


async def _refused(update: Update, context: BotContext, found: Refusal) -> None:
    query = update.callback_query
    text = context.t.gettext(REFUSALS[found])
    if query is None:
        message = update.effective_message
        assert message is not None
        await message.reply_text(text)
        return
    await refuse(update, context, ratings.REFUSED, audited=True, text=text)


async def rate(update: Update, context: BotContext) -> None:
    await _list(update, context, new=True)


async def on_press(update: Update, context: BotContext) -> None:
    """Every /rate button: parse, one guarded service call, show."""
    query = update.callback_query
    assert query is not None and query.data is not None
    data, t = query.data, context.t
    if data == CLOSE:
        await query.answer()
        await edit_or_send(query, t.gettext("Closed. /rate opens it again."), reply_markup=None)
        return
    if data == LIST:
        await query.answer()
        await _list(update, context)
        return
    if (parts := fields(data, "rt:l:", 1)) is not None and (page := as_int(parts[0])) is not None:
        await query.answer()
        await _list(update, context, page)
        return
    parsed = _parse(data)
    if parsed is None:
        await refuse(update, context, ratings.REFUSED)
        return
    verb, student_id, course_id, question, value, changed = parsed
    async with context.db.transaction() as session:
        if verb == "a":
            found = await ratings.answer(
                session, context.member, student_id, course_id, question, value, pressed=data
            )
        else:
            found = await ratings.ballot(session, context.member, student_id, course_id, data)
    if isinstance(found, Refusal):
        await _refused(update, context, found)
        return
    await query.answer()  # the next screen says it: no toast (docs/UX.md)
    if verb == "b":
        await _show_ballot(update, context, found, None, changed=found.complete)
    elif verb == "q":
        await show_screen(update, *_question_screen(t, found, question, True))
    elif verb == "t":
        if context.user_data is not None:
            context.user_data[PENDING] = [student_id, course_id, changed]
        await show_screen(
            update,
            _heading(t, found)
            + "\n\n"
            + t.gettext(
                "Please type your comment in one message (at most {max} characters). It is "
                "shown without any name, after the school has read it."
            ).format(max=ratings.MAX_COMMENT),
            [nav(t, back=f"rt:b:{student_id}:{course_id}", cancel=CLOSE)],
        )
    else:  # an answer, or a skipped question: on to the next, or back to the summary
        await _show_ballot(update, context, found, question, changed=changed)


def _parse(data: str) -> tuple[str, int, int, str, str, bool] | None:
    """(verb, child, course, question, answer, changed) of a ballot press, or None."""
    if not data.startswith("rt:") or len(data) < 6:
        return None
    verb = data[3]
    parts = data[5:].split(":")
    changed = parts[-1] == "e"
    if changed:
        parts = parts[:-1]
    shapes = {"b": 2, "t": 2, "q": 3, "n": 3, "a": 4}
    if verb not in shapes or data[4] != ":" or len(parts) != shapes[verb]:
        return None
    student_id, course_id = as_int(parts[0]), as_int(parts[1])
    if student_id is None or course_id is None:
        return None
    question = parts[2] if len(parts) > 2 else ""
    if question and question not in ratings.QUESTIONS:
        return None
    if verb == "n" and question not in ("face", "comment"):
        return None
    value = parts[3] if verb == "a" else ""
    return verb, student_id, course_id, question, value, changed


async def typed(update: Update, context: BotContext) -> int:
    message = update.effective_message
    assert message is not None
    pending = context.user_data.pop(PENDING, None) if context.user_data is not None else None
    if pending is None:
        return ConversationHandler.END
    student_id, course_id, changed = pending
    text = (message.text or "").strip()
    t = context.t
    if not text or len(text) > ratings.MAX_COMMENT:
        if context.user_data is not None:
            context.user_data[PENDING] = pending
        await message.reply_text(
            t.gettext("Please write the comment in words, at most {max} characters.").format(
                max=ratings.MAX_COMMENT
            )
        )
        return TYPING
    async with context.db.transaction() as session:
        found = await ratings.answer(
            session, context.member, int(student_id), int(course_id), "comment", text
        )
    if isinstance(found, Refusal):
        await message.reply_text(t.gettext(REFUSALS[found]))
        return ConversationHandler.END
    await _show_ballot(update, context, found, "comment", changed=bool(changed), new=True)
    return ConversationHandler.END


async def ask_comment(update: Update, context: BotContext) -> int:
    await on_press(update, context)
    has = context.user_data is not None and PENDING in context.user_data
    return TYPING if has else ConversationHandler.END


async def leave_typing(update: Update, context: BotContext) -> int:
    """Any other /rate press while a comment is awaited: the comment is not awaited any more."""
    if context.user_data is not None:
        context.user_data.pop(PENDING, None)
    await on_press(update, context)
    return ConversationHandler.END


def handlers() -> list[Any]:
    private = filters.ChatType.PRIVATE
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", "If 'per_message=False'", PTBUserWarning)
        comment = ConversationHandler(
            entry_points=[CallbackQueryHandler(ask_comment, pattern=r"^rt:t:")],
            states={TYPING: [MessageHandler(private & filters.TEXT & ~filters.COMMAND, typed)]},
            fallbacks=[CallbackQueryHandler(leave_typing, pattern=r"^rt:")],
            name="rating_comment",
            persistent=True,
            allow_reentry=True,
        )
    return [
        comment,
        CommandHandler("rate", rate, filters=private),
        CallbackQueryHandler(on_press, pattern=r"^rt:"),
    ]
