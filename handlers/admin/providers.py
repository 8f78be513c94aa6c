"""/providers for school admins: the term's evaluation of each outside provider (社会力量), the
admins' own review of it, and the evidence for the bureau's whitelist review as CSV or XLSX.

    pv:l:<o|s>:<page>      the list: outside providers (o) or the school's own (s), 8 a page
    pv:c:<provider>:<page> a provider's card: ratings, attendance, withdrawals, review, flags
    pv:r:<provider>        review it: the score step (starts a draft in user_data)
    pv:s:<draft>:<score>   the score chosen: the optional note (typed), or 跳过
    pv:k:<draft>           no note: the confirm step
    pv:b:<draft>           back to the score step
    pv:y:<draft>           save (compare-and-set: a review saved meanwhile is shown instead)
    pv:e:<provider>:<c|x>  export the provider's evidence as CSV (c) or XLSX (x)
    pv:a                   export every provider as XLSX
    pv:x                   close

Every press asks the service again whether the presser is an admin of the provider's school
(`bot.services.providers`); callback data names ids only and is parsed with `presses.ints` /
`fields`. A draft's buttons carry its random id: a button of an earlier draft does nothing.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import html
import secrets
import warnings
from fractions import Fraction
from io import BytesIO
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
from bot.services import providers, sheets
from bot.services.providers import (
    ASPECT_NAMES,
    FACE_MARKS,
    KINDS,
    REFUSED,
    WHITELIST,
    Board,
    Evaluation,
    Review,
    Saved,
)
from bot.services.ratings import ASPECTS, SCORES
from handlers.common.cancel import cancel
from handlers.common.keyboards import PAGE_MAX, grid, nav, pager
from handlers.common.presses import as_int, edit_or_send, fields, ints, refuse, show_screen
from storage.models import Face, ProviderKind, Role, utcnow

NOTE = 1  # the conversation's one state: waiting for the typed note
CLOSE = "pv:x"
DRAFT = "pending_provider_review"  # "pending…": /cancel drops it (handlers.common.cancel)
LABEL_MAX = 14  # characters of a provider's name on a button
NOT_FOR_YOU = N_(
    "Provider evaluations are for the school's admins. Families rate their child's courses "
    "when the school opens the term-end rating."
)


def _now() -> Any:
    return utcnow()


def _today(context: BotContext) -> Any:
    return _now().astimezone(context.t.timezone).date()


def _button(label: str, data: str) -> InlineKeyboardButton:
    return InlineKeyboardButton(label, callback_data=data)


def _draft(context: BotContext, draft_id: str) -> dict[str, Any] | None:
    """The admin's current review draft if the press belongs to it."""
    found = (context.user_data or {}).get(DRAFT)
    if isinstance(found, dict) and found.get("id") == draft_id:
        return found
    return None


# --- words ------------


def _percent(share: Any, *, up: bool = False) -> str:
    return providers.percent_text(share, up=up)


def _review_line(t: Translator, review: Review | None) -> str:
    if review is None:
        return t.gettext("School's review: not yet")
    line = t.gettext("School's review: {score} of 5").format(score=review.score)
    if review.note:
        line += " · “" + html.escape(review.note) + "”"
    return (
        line
        + " — "
        + t.gettext("{who}, {when}").format(
            who=html.escape(review.reviewer or t.gettext("an admin")),
            when=wording.moment(t, review.reviewed_at),
        )
    )


def card_text(t: Translator, board: Board, e: Evaluation) -> str:
    """A provider's term on one screen; every flag named in words with its threshold."""
    assert board.term is not None
    lines = [
        "<b>"
        + html.escape(e.name)
        + "</b>"
        + t.gettext(" ({kind})").format(kind=t.gettext(KINDS[e.kind])),
        t.gettext("{term} · whitelist: {status}").format(
            term=html.escape(board.term.name), status=t.gettext(WHITELIST[e.whitelist])
        ),
    ]
    if e.contract_starts_on or e.contract_ends_on:
        lines.append(
            t.gettext("Contract: {start} to {end}").format(
                start=t.date(e.contract_starts_on) if e.contract_starts_on else "—",
                end=t.date(e.contract_ends_on) if e.contract_ends_on else "—",
            )
        )
    names = wording.joined(t, (html.escape(c.name) for c in e.courses))
    lines.append(
        t.ngettext("{n} course: {names}", "{n} courses: {names}", len(e.courses)).format(
            n=len(e.courses), names=names
        )
    )
    if e.cancelled:
        lines.append(
            t.ngettext(
                "{n} more course was cancelled by the school and is not counted.",
                "{n} more courses were cancelled by the school and are not counted.",
                e.cancelled,
            ).format(n=e.cancelled)
        )
    pooled = e.ratings
    if not e.ratings_closed:
        lines.append(t.gettext("Families' ratings: shown once the term-end rating has closed."))
    elif pooled.result is None:
        lines.append(t.gettext("Families' ratings: none can be shown yet."))
    else:
        result = pooled.result
        aspects = " · ".join(
            t.gettext("{aspect} {score}").format(
                aspect=t.gettext(ASPECT_NAMES[a]),
                score=providers.score_text(providers.mean(result, a) or Fraction(0)),
            )
            for a in ASPECTS
        )
        score = e.score
        lines.append(
            t.gettext("Families' ratings: overall {score} ({aspects})").format(
                score=providers.score_text(score) if score is not None else "—",
                aspects=aspects,
            )
        )
        again = providers.again_share(result)
        faces = " ".join(f"{FACE_MARKS[f]} {result.faces.get(f, 0)}" for f in Face)
        lines.append(
            t.gettext("Would sign up again: {share} · children: {faces}").format(
                share=_percent(again) if again is not None else "—", faces=faces
            )
        )
        lines.append(
            t.ngettext(
                "From {ballots} ballots on {n} course",
                "From {ballots} ballots on {n} courses",
                pooled.courses,
            ).format(ballots=result.ballots, n=pooled.courses)
        )
    if pooled.hidden and e.ratings_closed:
        lines.append(
            t.ngettext(
                "{n} course had too few ballots to be shown and is not counted.",
                "{n} courses had too few ballots to be shown and are not counted.",
                pooled.hidden,
            ).format(n=pooled.hidden)
        )
    rate = e.attendance_rate
    if rate is None or e.attendance is None:
        lines.append(t.gettext("Attendance: no roll taken yet."))
    else:
        lines.append(
            t.ngettext(
                "Attendance {rate} ({n} mark)",
                "Attendance {rate} ({n} marks)",
                e.attendance.marked,
            ).format(rate=_percent(rate), n=e.attendance.marked)
        )
    withdrawal = e.withdrawal
    if withdrawal is None:
        lines.append(t.gettext("Withdrawals: no child enrolled."))
    else:
        lines.append(
            t.ngettext(
                "Withdrawals {rate} ({left} of {n} place given up)",
                "Withdrawals {rate} ({left} of {n} places given up)",
                e.enrolled,
            ).format(rate=_percent(withdrawal, up=True), left=e.withdrew, n=e.enrolled)
        )
    if e.kind is ProviderKind.OUTSIDE:
        lines.append(_review_line(t, e.review))
    if e.flags:
        lines.append("⚠️ " + t.gettext("Below standard:"))
        lines += ["• " + providers.flag_text(t, f) for f in e.flags]
    else:
        lines.append("✅ " + t.gettext("Meets every standard the school has set."))
    return "\n".join(lines)


# --- screens ------------


async def _board(
    update: Update,
    context: BotContext,
    *,
    provider_id: int | None = None,
    include_school: bool = False,
) -> Board | None:
    """The service's answer for this presser; a refusal is told here (audited already)."""
    query = update.callback_query
    async with context.db.transaction() as session:
        found = await providers.board(
            session,
            context.member,
            _today(context),
            provider_id=provider_id,
            include_school=include_school,
            pressed=query.data if query else None,
        )
    if found is None:
        await _refused(update, context)
    return found


async def _refused(update: Update, context: BotContext) -> None:
    if update.callback_query is not None:
        await refuse(update, context, REFUSED, audited=True)
    elif update.effective_message is not None:
        await update.effective_message.reply_text(context.t.gettext(NOT_FOR_YOU))


async def _list(update: Update, context: BotContext, scope: str, page: int) -> None:
    t = context.t
    found = await _board(update, context, include_school=True)
    if found is None:
        return
    if update.callback_query is not None:
        await update.callback_query.answer()
    if found.term is None:
        await show_screen(
            update,
            t.gettext("There is no term yet: import the school file first."),
            [nav(t, cancel=CLOSE)],
        )
        return
    outside = [e for e in found.evaluations if e.kind is ProviderKind.OUTSIDE]
    own = [e for e in found.evaluations if e.kind is ProviderKind.SCHOOL]
    shown = own if scope == "s" else outside
    pages = max(1, -(-len(shown) // PAGE_MAX))
    page = min(page, pages - 1)
    title = (
        t.gettext("School-run courses · {term}")
        if scope == "s"
        else t.gettext("Outside providers · {term}")
    )
    lines = ["<b>" + html.escape(title.format(term=found.term.name)) + "</b>"]
    if not shown:
        lines.append(
            t.gettext("No course this term is run by the school itself.")
            if scope == "s"
            else t.gettext("No outside provider runs a course this term.")
        )
    else:
        flagged = sum(1 for e in shown if e.flagged)
        lines.append(
            t.ngettext(
                "{n} provider runs courses this term.",
                "{n} providers run courses this term.",
                len(shown),
            ).format(n=len(shown))
        )
        if flagged:
            lines.append(
                t.ngettext(
                    "⚠️ {n} falls short of a standard or has no review yet.",
                    "⚠️ {n} fall short of a standard or have no review yet.",
                    flagged,
                ).format(n=flagged)
            )
        lines.append(t.gettext("Choose one to see its figures, review it or export them."))
    chunk = shown[page * PAGE_MAX : (page + 1) * PAGE_MAX]
    buttons = [
        _button(("⚠️ " if e.flagged else "") + _short(e.name), f"pv:c:{e.provider_id}:{page}")
        for e in chunk
    ]
    more = []
    if outside and scope != "s":
        more.append(_button(t.gettext("Export all"), "pv:a"))
    if scope == "s":
        more.append(_button(t.gettext("Outside providers"), "pv:l:o:0"))
    elif own:
        more.append(_button(t.gettext("School-run"), "pv:l:s:0"))
    rows = [
        *grid(buttons),
        pager(page, pages, lambda n: f"pv:l:{scope}:{n}"),
        *grid(more),
        nav(t, cancel=CLOSE),
    ]
    await show_screen(update, "\n".join(lines), rows)


def _short(name: str) -> str:
    return name if len(name) <= LABEL_MAX else name[: LABEL_MAX - 1] + "…"


async def _card(update: Update, context: BotContext, provider_id: int, page: int = 0) -> None:
    t = context.t
    found = await _board(update, context, provider_id=provider_id)
    if found is None:
        return
    query = update.callback_query
    if query is not None:
        await query.answer()
    scope = "o"
    if found.term is None or not found.evaluations:
        await show_screen(
            update,
            t.gettext("This provider runs no course this term."),
            [nav(t, back="pv:l:o:0", cancel=CLOSE)],
        )
        return
    e = found.evaluations[0]
    if e.kind is ProviderKind.SCHOOL:
        scope = "s"
    actions = []
    if e.kind is ProviderKind.OUTSIDE:
        actions.append(_button(t.gettext("Review"), f"pv:r:{e.provider_id}"))
    actions += [
        _button(t.gettext("Export CSV"), f"pv:e:{e.provider_id}:c"),
        _button(t.gettext("Export XLSX"), f"pv:e:{e.provider_id}:x"),
    ]
    rows = [*grid(actions), nav(t, back=f"pv:l:{scope}:{page}", cancel=CLOSE)]
    await show_screen(update, card_text(t, found, e), rows)


async def _score_step(update: Update, context: BotContext, draft: dict[str, Any]) -> None:
    t = context.t
    text = t.gettext(
        "Your review of {provider} for {term}: how well did it serve the school this term? "
        "5 is best."
    ).format(provider=html.escape(draft["name"]), term=html.escape(draft["term_name"]))
    if draft.get("previous") is not None:
        text += "\n" + t.gettext("It now has {score} of 5; saving replaces it.").format(
            score=draft["previous"]
        )
    scores = [_button(str(n), f"pv:s:{draft['id']}:{n}") for n in SCORES]
    rows = [scores, nav(t, back=f"pv:c:{draft['provider']}:0", cancel=CLOSE)]
    await show_screen(update, text, rows)


async def _note_step(update: Update, context: BotContext, draft: dict[str, Any]) -> None:
    t = context.t
    text = t.gettext(
        "{provider}: {score} of 5. Type a short note for the record (what went well, what did "
        "not), or press Skip."
    ).format(provider=html.escape(draft["name"]), score=draft["score"])
    rows = [
        [_button(t.gettext("Skip"), f"pv:k:{draft['id']}")],
        nav(t, back=f"pv:b:{draft['id']}", cancel=CLOSE),
    ]
    await show_screen(update, text, rows)


async def _confirm_step(
    update: Update, context: BotContext, draft: dict[str, Any], *, new: bool = False
) -> None:
    t = context.t
    lines = [
        t.gettext("Save the school's review of {provider} for {term}: {score} of 5?").format(
            provider=html.escape(draft["name"]),
            term=html.escape(draft["term_name"]),
            score=draft["score"],
        )
    ]
    if draft.get("note"):
        lines.append(t.gettext("Note: {note}").format(note=html.escape(draft["note"])))
    lines.append(t.gettext("The other admins see it, and it goes into the bureau's export."))
    rows = [
        [_button("✅ " + t.gettext("Save"), f"pv:y:{draft['id']}")],
        nav(t, back=f"pv:s:{draft['id']}:{draft['score']}", cancel=CLOSE),
    ]
    await show_screen(update, "\n".join(lines), rows, new=new)


# --- callbacks ------------


async def begin(update: Update, context: BotContext) -> int:
    """/providers: the list of this term's providers, or a polite refusal."""
    await _list(update, context, "o", 0)
    return ConversationHandler.END


async def on_press(update: Update, context: BotContext) -> int:
    """Any pv: press: parsed, re-checked on the server, then the step it asks for."""
    query = update.callback_query
    assert query is not None
    data = query.data or ""
    if context.member is None or not context.member.has(Role.ADMIN):
        await refuse(update, context, REFUSED)
        return ConversationHandler.END
    t = context.t
    step = data.split(":")[1] if data.count(":") >= 1 else ""
    if data == CLOSE:
        if context.user_data is not None:
            context.user_data.pop(DRAFT, None)
        await query.answer()
        await edit_or_send(query, t.gettext("Closed. Send /providers to see them again."))
        return ConversationHandler.END
    if step == "l":
        parts = fields(data, "pv:l:", 2)
        page = as_int(parts[1]) if parts else None
        if parts is None or parts[0] not in ("o", "s") or page is None:
            await refuse(update, context, REFUSED)
            return ConversationHandler.END
        await _list(update, context, parts[0], page)
        return ConversationHandler.END
    if step == "c":
        numbers = ints(data, "pv:c:", 2)
        if numbers is None:
            await refuse(update, context, REFUSED)
            return ConversationHandler.END
        await _card(update, context, numbers[0], numbers[1])
        return ConversationHandler.END
    if step == "r":
        numbers = ints(data, "pv:r:", 1)
        if numbers is None:
            await refuse(update, context, REFUSED)
            return ConversationHandler.END
        return await _start_review(update, context, numbers[0])
    if step in ("s", "k", "b", "y"):
        return await _draft_press(update, context, step)
    if step == "e":
        parts = fields(data, "pv:e:", 2)
        provider_id = as_int(parts[0]) if parts else None
        if parts is None or provider_id is None or parts[1] not in ("c", "x"):
            await refuse(update, context, REFUSED)
            return ConversationHandler.END
        await _export(update, context, provider_id, parts[1])
        return ConversationHandler.END
    if data == "pv:a":
        await _export(update, context, None, "x")
        return ConversationHandler.END
    await refuse(update, context, REFUSED)
    return ConversationHandler.END


async def _start_review(update: Update, context: BotContext, provider_id: int) -> int:
    found = await _board(update, context, provider_id=provider_id)
    if found is None:
        return ConversationHandler.END
    query = update.callback_query
    assert query is not None
    t = context.t
    if found.term is None or not found.evaluations:
        await query.answer()
        await show_screen(
            update,
            t.gettext("This provider runs no course this term."),
            [nav(t, back="pv:l:o:0", cancel=CLOSE)],
        )
        return ConversationHandler.END
    e = found.evaluations[0]
    if e.kind is not ProviderKind.OUTSIDE:
        await refuse(update, context, REFUSED)
        return ConversationHandler.END
    await query.answer()
    draft = {
        "id": secrets.token_hex(4),
        "provider": e.provider_id,
        "name": e.name,
        "term": found.term.id,
        "term_name": found.term.name,
        # The review this admin saw: saving fails if another admin saved since.
        "expected": e.review.reviewed_at.isoformat() if e.review else None,
        "previous": e.review.score if e.review else None,
        "score": None,
        "note": None,
    }
    if context.user_data is not None:
        context.user_data[DRAFT] = draft
    await _score_step(update, context, draft)
    return ConversationHandler.END


async def _draft_press(update: Update, context: BotContext, step: str) -> int:
    query = update.callback_query
    assert query is not None
    t = context.t
    count = 2 if step == "s" else 1
    parts = fields(query.data, f"pv:{step}:", count)
    if parts is None:
        await refuse(update, context, REFUSED)
        return ConversationHandler.END
    draft = _draft(context, parts[0])
    if draft is None:
        # The admin's own earlier screen: stale, not forged (docs/BUTTONS.md).
        await query.answer(
            t.gettext("This screen is out of date. Send /providers to start again."),
            show_alert=True,
        )
        return ConversationHandler.END
    if step == "s":
        score = as_int(parts[1])
        if score not in SCORES:
            await refuse(update, context, REFUSED)
            return ConversationHandler.END
        await query.answer()
        draft["score"] = score
        await _note_step(update, context, draft)
        return NOTE
    if step == "b":
        await query.answer()
        await _score_step(update, context, draft)
        return ConversationHandler.END
    if draft.get("score") is None:
        await query.answer()
        await _score_step(update, context, draft)
        return ConversationHandler.END
    if step == "k":
        await query.answer()
        draft["note"] = None
        await _confirm_step(update, context, draft)
        return ConversationHandler.END
    return await _save(update, context, draft)


async def receive_note(update: Update, context: BotContext) -> int:
    """The typed note of a review: kept in the draft, then the confirm step."""
    message = update.effective_message
    assert message is not None
    t = context.t
    draft = (context.user_data or {}).get(DRAFT)
    if context.member is None or not context.member.has(Role.ADMIN):
        await message.reply_text(t.gettext(NOT_FOR_YOU))
        return ConversationHandler.END
    if not isinstance(draft, dict) or draft.get("score") is None:
        await message.reply_text(
            t.gettext("This screen is out of date. Send /providers to start again.")
        )
        return ConversationHandler.END
    draft["note"] = (message.text or "").strip()[: providers.NOTE_MAX] or None
    await _confirm_step(update, context, draft, new=True)
    return ConversationHandler.END


async def _save(update: Update, context: BotContext, draft: dict[str, Any]) -> int:
    query = update.callback_query
    assert query is not None
    t = context.t
    expected = dt.datetime.fromisoformat(draft["expected"]) if draft.get("expected") else None
    async with context.db.transaction() as session:
        done = await providers.review(
            session,
            context.member,
            int(draft["provider"]),
            int(draft["term"]),
            int(draft["score"]),
            draft.get("note"),
            _now(),
            expected=expected,
            pressed=query.data,
        )
    if done.outcome is Saved.REFUSED:
        await refuse(update, context, REFUSED, audited=True)
        return ConversationHandler.END
    await query.answer()
    if context.user_data is not None:
        context.user_data.pop(DRAFT, None)
    provider = html.escape(done.provider or draft["name"])
    term = html.escape(done.term or draft["term_name"])
    card = _button(t.gettext("View provider"), f"pv:c:{draft['provider']}:0")
    listing = _button(t.gettext("All providers"), "pv:l:o:0")
    if done.outcome is Saved.SAVED:
        text = t.gettext(
            "Saved: the school's review of {provider} for {term}, {score} of 5."
        ).format(provider=provider, term=term, score=draft["score"])
        rows = [*grid([card, listing]), nav(t, cancel=CLOSE)]
    elif done.outcome is Saved.STALE and done.review is not None:
        text = t.gettext(
            "Not saved: {who} saved a review of {provider} meanwhile ({score} of 5, {when}). "
            "Look at it, then review again if you still want to change it."
        ).format(
            who=html.escape(done.review.reviewer or t.gettext("an admin")),
            provider=provider,
            score=done.review.score,
            when=wording.moment(t, done.review.reviewed_at),
        )
        rows = [
            *grid([_button(t.gettext("Review again"), f"pv:r:{draft['provider']}"), card]),
            nav(t, cancel=CLOSE),
        ]
    else:
        text = t.gettext("Nothing was saved for {provider}.").format(provider=provider)
        rows = [*grid([card, listing]), nav(t, cancel=CLOSE)]
    await show_screen(update, text, rows)
    return ConversationHandler.END


async def _export(update: Update, context: BotContext, provider_id: int | None, kind: str) -> None:
    query = update.callback_query
    assert query is not None and query.message is not None
    t = context.t
    async with context.db.transaction() as session:
        found = await providers.export_for(
            session, context.member, t, _today(context), provider_id, pressed=query.data
        )
    if found is None:
        await refuse(update, context, REFUSED, audited=True)
        return
    if not found.sheets:
        await query.answer(t.gettext("This provider runs no course this term."), show_alert=True)
        return
    await query.answer(t.gettext("Preparing the file…"))
    base = t.gettext("provider evaluation")
    name = f"{base}-{found.provider or t.gettext('all')}-{found.term}"
    if kind == "c":
        first = found.sheets[0]
        data = await asyncio.to_thread(sheets.write_csv, first.header, first.rows)
        filename = name + ".csv"
    else:
        data = await asyncio.to_thread(sheets.write_xlsx, found.sheets)
        filename = name + ".xlsx"
    await context.bot.send_document(
        query.message.chat.id,
        BytesIO(data),
        filename=filename.replace("/", "_"),
        caption=t.gettext(
            "{what} · {term}: the evidence for the bureau's whitelist review."
        ).format(what=found.provider or t.gettext("All providers"), term=found.term),
    )


def handlers() -> list[Any]:
    private = filters.ChatType.PRIVATE
    with warnings.catch_warnings():
        # One draft per admin and chat; every press is re-checked against the current draft.
        warnings.filterwarnings("ignore", "If 'per_message=False'", PTBUserWarning)
        conversation = ConversationHandler(
            entry_points=[
                CommandHandler("providers", begin, filters=private),
                CallbackQueryHandler(on_press, pattern=r"^pv:"),
            ],
            states={
                NOTE: [MessageHandler(private & filters.TEXT & ~filters.COMMAND, receive_note)]
            },
            fallbacks=[CommandHandler("cancel", cancel)],
            name="providers",
            persistent=True,
            allow_reentry=True,
        )
    return [conversation]
