"""/note: a teacher's growth notes (成长记录) about a child, kept for the term's growth record.

`/note 张琪 今天主动帮同学搭模型` saves a note; `/note 张琪` shows the teacher's notes of the
child; `/note` alone explains itself and offers today's children. When a name fragment fits
several children, the note waits in `user_data` under a draft id while the teacher picks one:
`gn:s:<draft>:<child>` saves it for that child, `gn:x:<draft>` drops it. `gn:v:<child>` shows a
child's notes, `gn:l:<page>` pages through today's children. Every press re-checks on the
server that the child is one the presser may write about (`bot.services.notes`).
"""

from __future__ import annotations

import html
import secrets

from telegram import InlineKeyboardButton, InlineKeyboardMarkup, Update
from telegram.constants import ParseMode
from telegram.ext import CallbackQueryHandler, CommandHandler, filters

from bot import wording
from bot.context import BotContext
from bot.i18n import N_, Translator
from bot.services import notes
from handlers.common.keyboards import PAGE_MAX, grid, nav, pager
from handlers.common.presses import as_int, edit_or_send, fields, ints, refuse
from storage.models import utcnow

DRAFT = "note_draft"
EXAMPLE = N_("Zhang Qi helped a classmate build the robot today")
SEARCHED = {
    notes.Searched.SCHOOL: N_("the children of the school"),
    notes.Searched.MINE: N_("the children of your courses this term"),
    notes.Searched.MINE_AND_CLASS: N_("the children of your courses this term and of your class"),
}
REFUSALS = {
    notes.Refusal.NOT_STAFF: N_("Growth notes are written by teachers."),
    notes.Refusal.NO_TERM: N_(
        "No term is running today, so there is no growth record to add a note to."
    ),
    notes.Refusal.TOO_LONG: N_("A note can be at most {max} characters. Please shorten it."),
}


def _who(pupil: notes.Pupil) -> str:
    return f"{html.escape(pupil.name)}（{html.escape(pupil.class_name)}）"


def _label(pupil: notes.Pupil) -> str:
    return f"{pupil.name} {pupil.class_code}"


def usage(t: Translator) -> str:
    return t.gettext(
        "Write a note for a child's growth record:\n"
        "<code>/note name-or-number text</code>, e.g. <code>/note {example}</code>\n"
        "<code>/note name</code> alone shows your notes of that child.\n"
        "Parents see the notes only with the term's growth record."
    ).format(example=html.escape(t.gettext(EXAMPLE)))


def render(t: Translator, found: notes.Outcome) -> tuple[str, InlineKeyboardMarkup | None]:
    """The answer to a note, a look-up or a choice (an ambiguous answer is built apart)."""
    if isinstance(found, notes.Refused):
        return t.gettext(REFUSALS[found.reason]).format(max=notes.MAX_TEXT), None
    if isinstance(found, notes.NotFound):
        return (
            t.gettext(
                "No child matching “{query}” among {searched}. "
                "Try part of the name or the student number."
            ).format(query=html.escape(found.query), searched=t.gettext(SEARCHED[found.searched]))
            + "\n\n"
            + usage(t),
            None,
        )
    if isinstance(found, notes.Saved):
        text = (
            t.gettext("✅ Note saved for {child} in the {term} growth record.").format(
                child=_who(found.pupil), term=html.escape(found.term)
            )
            + "\n"
            + t.gettext("Parents will see it only when the term's growth record is sent.")
            + "\n"
            + t.ngettext(
                "You have {n} note for {child} this term.",
                "You have {n} notes for {child} this term.",
                found.count,
            ).format(n=found.count, child=html.escape(found.pupil.name))
        )
        button = InlineKeyboardButton(
            t.gettext("Notes so far"), callback_data=f"gn:v:{found.pupil.id}"
        )
        return text, InlineKeyboardMarkup([[button]])
    assert isinstance(found, notes.Notes)
    child = _who(found.pupil)
    if not found.entries:
        text = t.gettext("No growth notes for {child} yet this term ({term}).").format(
            child=child, term=html.escape(found.term)
        )
    else:
        heading = (
            t.ngettext(
                "{child}: {n} growth note this term ({term}), newest first:",
                "{child}: {n} growth notes this term ({term}), newest first:",
                found.total,
            )
            if found.everyone
            else t.ngettext(
                "{child}: your {n} growth note this term ({term}), newest first:",
                "{child}: your {n} growth notes this term ({term}), newest first:",
                found.total,
            )
        )
        lines = [heading.format(child=child, n=found.total, term=html.escape(found.term))]
        for entry in found.entries:
            by = f" — {html.escape(entry.author)}" if found.everyone and entry.author else ""
            lines.append(
                f"• <i>{wording.moment(t, entry.created_at)}</i>{by}\n{html.escape(entry.text)}"
            )
        if found.total > len(found.entries):
            lines.append(
                t.ngettext(
                    "…and {n} older note.",
                    "…and {n} older notes.",
                    found.total - len(found.entries),
                ).format(n=found.total - len(found.entries))
            )
        text = "\n".join(lines)
    hint = t.gettext("To add one: <code>/note {number} text</code>").format(
        number=html.escape(found.pupil.student_no)
    )
    return f"{text}\n\n{hint}", None


def ambiguous(
    t: Translator, found: notes.Ambiguous, draft: str | None
) -> tuple[str, InlineKeyboardMarkup]:
    """Several children fit: name them as buttons; the note (if any) waits for the choice."""
    lines = [
        t.ngettext(
            "{n} child matches “{query}”.",
            "{n} children match “{query}”.",
            found.total,
        ).format(n=found.total, query=html.escape(found.query))
    ]
    if found.total > len(found.matches):
        lines.append(
            t.ngettext(
                "Showing the first {shown}; type more of the name or the student number.",
                "Showing the first {shown}; type more of the name or the student number.",
                len(found.matches),
            ).format(shown=len(found.matches))
        )
    lines.append(
        t.gettext("Which child is the note for?")
        if draft is not None
        else t.gettext("Whose notes do you want to see?")
    )
    buttons = [
        InlineKeyboardButton(
            _label(p), callback_data=f"gn:s:{draft}:{p.id}" if draft else f"gn:v:{p.id}"
        )
        for p in found.matches
    ]
    rows = grid(buttons)
    if draft is not None:
        rows.append(nav(t, cancel=f"gn:x:{draft}"))
    return "\n".join(lines), InlineKeyboardMarkup(rows)


async def write(update: Update, context: BotContext) -> None:
    """/note [child [text]]: save a note, show a child's notes, or explain and offer today's."""
    message = update.effective_message
    assert message is not None
    parts = (message.text or "").split(maxsplit=2)
    if len(parts) < 2:
        await _today(update, context, page=0)
        return
    query, text = parts[1], parts[2] if len(parts) > 2 else ""
    t = context.t
    async with context.db.transaction() as session:
        found = await notes.note(session, context.member, query, text, utcnow())
    markup: InlineKeyboardMarkup | None
    if isinstance(found, notes.Ambiguous):
        draft = None
        if text.strip():
            draft = secrets.token_hex(4)
            assert context.user_data is not None
            context.user_data[DRAFT] = {"id": draft, "text": text.strip()}
        shown, markup = ambiguous(t, found, draft)
    else:
        shown, markup = render(t, found)
    await message.reply_text(shown, parse_mode=ParseMode.HTML, reply_markup=markup)


async def _today(update: Update, context: BotContext, page: int) -> None:
    """How /note works, with today's children as buttons to their notes."""
    t = context.t
    async with context.db.transaction() as session:
        found = await notes.today_children(session, context.member, utcnow())
    if isinstance(found, notes.Refused):
        text, markup = render(t, found)
    else:
        text, markup = usage(t), None
        if found:
            pages = -(-len(found) // PAGE_MAX)
            page = min(page, pages - 1)
            shown = found[page * PAGE_MAX : (page + 1) * PAGE_MAX]
            text += "\n\n" + t.ngettext(
                "Today's child ({n}): tap to see your notes.",
                "Today's children ({n}): tap one to see your notes.",
                len(found),
            ).format(n=len(found))
            rows = grid(
                [InlineKeyboardButton(_label(p), callback_data=f"gn:v:{p.id}") for p in shown]
            )
            paging = pager(page, pages, lambda n: f"gn:l:{n}")
            if paging:
                rows.append(paging)
            markup = InlineKeyboardMarkup(rows)
    if update.callback_query is not None:
        await edit_or_send(
            update.callback_query, text, parse_mode=ParseMode.HTML, reply_markup=markup
        )
        await update.callback_query.answer()
        return
    message = update.effective_message
    assert message is not None
    await message.reply_text(text, parse_mode=ParseMode.HTML, reply_markup=markup)


async def choose_child(update: Update, context: BotContext) -> None:
    """A child pressed under an ambiguous note: save the waiting note for them."""
    query = update.callback_query
    assert query is not None
    parts = fields(query.data, "gn:s:", 2)
    student_id = as_int(parts[1]) if parts is not None else None
    if parts is None or student_id is None:
        await refuse(update, context, notes.REFUSED)
        return
    draft = (context.user_data or {}).get(DRAFT)
    if not isinstance(draft, dict) or draft.get("id") != parts[0]:
        # An earlier choice, already made or replaced by a newer note: nothing to save.
        await query.answer(context.t.gettext("This choice is out of date."), show_alert=True)
        return
    async with context.db.transaction() as session:
        found = await notes.save_for(
            session,
            context.member,
            student_id,
            str(draft.get("text", "")),
            utcnow(),
            pressed=query.data,
        )
    if isinstance(found, notes.Refused) and found.reason is notes.Refusal.NOT_STAFF:
        await refuse(update, context, notes.REFUSED, audited=True)
        return
    assert context.user_data is not None
    context.user_data.pop(DRAFT, None)
    await query.answer()
    text, markup = render(context.t, found)
    await edit_or_send(query, text, parse_mode=ParseMode.HTML, reply_markup=markup)


async def drop_note(update: Update, context: BotContext) -> None:
    """取消 under an ambiguous note: nothing is saved."""
    query = update.callback_query
    assert query is not None
    parts = fields(query.data, "gn:x:", 1)
    if parts is None:
        await refuse(update, context, notes.REFUSED)
        return
    draft = (context.user_data or {}).get(DRAFT)
    if isinstance(draft, dict) and draft.get("id") == parts[0] and context.user_data is not None:
        context.user_data.pop(DRAFT, None)
    await query.answer()
    await edit_or_send(query, context.t.gettext("No note was saved."))


async def show_notes(update: Update, context: BotContext) -> None:
    """A child pressed: the presser's notes of that child so far."""
    query = update.callback_query
    assert query is not None
    parsed = ints(query.data, "gn:v:", 1)
    if parsed is None:
        await refuse(update, context, notes.REFUSED)
        return
    async with context.db.transaction() as session:
        found = await notes.notes_of(
            session, context.member, parsed[0], utcnow(), pressed=query.data
        )
    if isinstance(found, notes.Refused) and found.reason is notes.Refusal.NOT_STAFF:
        await refuse(update, context, notes.REFUSED, audited=True)
        return
    await query.answer()
    text, markup = render(context.t, found)
    await edit_or_send(query, text, parse_mode=ParseMode.HTML, reply_markup=markup)


async def turn_page(update: Update, context: BotContext) -> None:
    """‹ 2/3 › under today's children."""
    query = update.callback_query
    assert query is not None
    parsed = ints(query.data, "gn:l:", 1)
    if parsed is None:
        await refuse(update, context, notes.REFUSED)
        return
    await _today(update, context, page=parsed[0])


def handlers() -> list[CommandHandler | CallbackQueryHandler]:  # type: ignore[type-arg]
    return [
        CommandHandler("note", write, filters=filters.ChatType.PRIVATE),
        CallbackQueryHandler(choose_child, pattern=r"^gn:s:"),
        CallbackQueryHandler(drop_note, pattern=r"^gn:x:"),
        CallbackQueryHandler(show_notes, pattern=r"^gn:v:"),
        CallbackQueryHandler(turn_page, pattern=r"^gn:l:"),
    ]
