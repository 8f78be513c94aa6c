"""/pickup (接送设置): who may collect a child, and whether the child may go home alone.

Steps: the child (if several) → what is on file, with 删除 beside each adult, 添加接送人,
the home-alone switch → adding: the name (typed), then the relation
(爷爷 / 奶奶 / 外公 / 外婆 or typed) → the settings again, the result on top. Turning home-alone
on first states what it means and asks to confirm. Every press goes through one guarded service
call (`bot.services.dismissal`), which refuses and audits a presser who is not the child's
guardian; the other guardians are told what changed (docs/UX.md, 5). Both guardians see the
same list: it belongs to the child.

Callback data (never trusted; read with `ints`):
``pk:k:<student>`` the child's settings · ``pk:b`` the children · ``pk:c`` close ·
``pk:n:<student>`` add an adult · ``pk:r:<relation>`` the relation (0: typed) ·
``pk:x:<adult>`` remove · ``pk:a:<student>:<0|1>`` home alone off / on (asks first) ·
``pk:A:<student>`` home alone on, confirmed. Whether this guardian is told when the child
leaves is shown here and chosen in /notices.
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
from bot.i18n import Translator
from bot.services import dismissal
from bot.services.dismissal import Change, Changed, Settings
from handlers.common.cancel import cancel
from handlers.common.keyboards import grid, nav
from handlers.common.presses import edit_or_send, ints, refuse, show_screen
from storage.models import Role, utcnow

NAME, RELATION = range(2)
DRAFT = "pending_pickup"
BACK, CLOSE = "pk:b", "pk:c"
KINDS = list(dismissal.RELATIONS)  # pk:r:1 … pk:r:4; 0 asks for a typed relation


def _button(label: str, data: str) -> InlineKeyboardButton:
    return InlineKeyboardButton(label, callback_data=data)


def adult_text(t: Translator, adult: dismissal.Adult) -> str:
    return t.gettext("{relation} ({name})").format(
        relation=dismissal.relation_text(t, adult.relation), name=adult.name
    )


def settings_text(t: Translator, found: Settings, top: str | None = None) -> str:
    child = found.child
    assert child is not None
    name = html.escape(child.name)
    lines = [html.escape(top), ""] if top else []
    lines.append("<b>" + t.gettext("{child} · pick-up").format(child=name) + "</b>")
    lines.append(t.gettext("Adults who may collect {child}:").format(child=name))
    if found.adults:
        lines += [f"• {html.escape(adult_text(t, a))}" for a in found.adults]
    else:
        lines.append(t.gettext("none yet: only guardians."))
    lines.append("")
    if found.alone_at is not None:
        lines.append(
            "🏠 "
            + t.gettext("{child} may go home alone (since {moment}).").format(
                child=name, moment=wording.moment(t, found.alone_at)
            )
        )
    else:
        lines.append(
            "🏠 "
            + t.gettext("{child} is handed to a guardian or an adult above.").format(child=name)
        )
    if found.notice:
        lines.append("🔔 " + t.gettext("You are told when {child} leaves.").format(child=name))
    else:
        lines.append("🔕 " + t.gettext("You are not told when {child} leaves.").format(child=name))
    lines.append(t.gettext("/notices changes whether you are told."))
    return "\n".join(lines)


def settings_rows(t: Translator, found: Settings) -> list[list[InlineKeyboardButton]]:
    child = found.child
    assert child is not None
    rows = [
        [_button(t.gettext("Remove {adult}").format(adult=adult_text(t, a)), f"pk:x:{a.id}")]
        for a in found.adults
    ]
    more = []
    if len(found.adults) < dismissal.MAX_ADULTS:
        more.append(_button(t.gettext("Add an adult"), f"pk:n:{child.id}"))
    if found.alone_at is None:
        more.append(_button(t.gettext("Allow home alone"), f"pk:a:{child.id}:1"))
    else:
        more.append(_button(t.gettext("Stop home alone"), f"pk:a:{child.id}:0"))
    rows += grid(more)
    rows.append(nav(t, back=BACK if len(found.children) > 1 else None, cancel=CLOSE))
    return rows


async def _settings(
    update: Update, context: BotContext, found: Settings, top: str | None = None, **kw: Any
) -> int:
    if found.child is None:
        return await _children(update, context, found, **kw)
    await show_screen(
        update, settings_text(context.t, found, top), settings_rows(context.t, found), **kw
    )
    return ConversationHandler.END


async def _children(
    update: Update, context: BotContext, found: Settings, *, new: bool = False
) -> int:
    t = context.t
    rows = [
        *grid([_button(c.name, f"pk:k:{c.id}") for c in found.children]),
        nav(t, cancel=CLOSE),
    ]
    await show_screen(update, t.gettext("Whose pick-up settings?"), rows, new=new)
    return ConversationHandler.END


async def begin(update: Update, context: BotContext) -> int:
    """/pickup."""
    message = update.effective_message
    assert message is not None
    t = context.t
    if context.user_data is not None:
        context.user_data.pop(DRAFT, None)
    if context.member is None or not context.member.has(Role.PARENT):
        await message.reply_text(t.gettext("This is for guardians linked to a child."))
        return ConversationHandler.END
    async with context.db.transaction() as session:
        found = await dismissal.settings(session, context.member)
    assert found is not None  # no child was named, so none can be refused
    if not found.children:
        await message.reply_text(t.gettext("This is for guardians linked to a child."))
        return ConversationHandler.END
    return await _settings(update, context, found, new=True)


async def on_press(update: Update, context: BotContext) -> int:
    """Every /pickup button: parse, one guarded call, show."""
    query = update.callback_query
    assert query is not None and query.data is not None
    data, t = query.data, context.t
    if data == CLOSE:
        if context.user_data is not None:
            context.user_data.pop(DRAFT, None)
        await query.answer()
        await edit_or_send(query, t.gettext("Closed. /pickup opens it again."), reply_markup=None)
        return ConversationHandler.END
    if data == BACK:
        async with context.db.transaction() as session:
            found = await dismissal.settings(session, context.member)
        if found is None or not found.children:
            await refuse(update, context, dismissal.PICKUP_REFUSED)
            return ConversationHandler.END
        await query.answer()
        return await _children(update, context, found)
    if (values := ints(data, "pk:k:", 1)) is not None:
        return await _open(update, context, values[0])
    if (values := ints(data, "pk:n:", 1)) is not None:
        return await _ask_name(update, context, values[0])
    if (values := ints(data, "pk:r:", 1)) is not None and values[0] <= len(KINDS):
        return await _relation_button(update, context, values[0])
    if (values := ints(data, "pk:x:", 1)) is not None:
        return await _remove(update, context, values[0])
    if (values := ints(data, "pk:a:", 2)) is not None and values[1] in (0, 1):
        if values[1]:
            return await _ask_alone(update, context, values[0])
        return await _alone(update, context, values[0], False)
    if (values := ints(data, "pk:A:", 1)) is not None:
        return await _alone(update, context, values[0], True)
    await refuse(update, context, dismissal.PICKUP_REFUSED)
    return ConversationHandler.END


async def _guarded(update: Update, context: BotContext, student_id: int) -> Settings | None:
    """The child's settings, if the presser is the child's guardian (else refused, audited)."""
    query = update.callback_query
    async with context.db.transaction() as session:
        found = await dismissal.settings(
            session, context.member, student_id, pressed=query.data if query else None
        )
    if found is None or found.child is None:
        await refuse(update, context, dismissal.PICKUP_REFUSED, audited=found is None)
        return None
    return found


async def _open(update: Update, context: BotContext, student_id: int) -> int:
    found = await _guarded(update, context, student_id)
    if found is None:
        return ConversationHandler.END
    assert update.callback_query is not None
    await update.callback_query.answer()
    return await _settings(update, context, found)


async def _ask_name(update: Update, context: BotContext, student_id: int, **kw: Any) -> int:
    t = context.t
    found = await _guarded(update, context, student_id)
    if found is None or found.child is None:
        return ConversationHandler.END
    if update.callback_query is not None:
        await update.callback_query.answer()
    assert context.user_data is not None
    context.user_data[DRAFT] = {"student": student_id}
    text = t.gettext(
        "Who else may collect {child}? Write their name, as the teacher will ask for it."
    ).format(child=html.escape(found.child.name))
    await show_screen(update, text, [nav(t, back=f"pk:k:{student_id}", cancel=CLOSE)], **kw)
    return NAME


async def receive_name(update: Update, context: BotContext) -> int:
    message = update.effective_message
    assert message is not None and message.text is not None
    t = context.t
    draft = (context.user_data or {}).get(DRAFT)
    if not isinstance(draft, dict) or not isinstance(draft.get("student"), int):
        return ConversationHandler.END
    name = dismissal.clean(message.text, dismissal.NAME_MAX)
    if name is None:
        await message.reply_text(
            t.gettext("Please write a name of at most {n} characters.").format(
                n=dismissal.NAME_MAX
            )
        )
        return NAME
    found = await _guarded(update, context, draft["student"])
    if found is None or found.child is None:
        return ConversationHandler.END
    draft["name"] = name
    return await _ask_relation(update, context, found, name)


async def _ask_relation(update: Update, context: BotContext, found: Settings, name: str) -> int:
    t = context.t
    assert found.child is not None
    text = t.gettext(
        "What is {name} to {child}? Choose, or write it (for example 姑姑, 邻居)."
    ).format(name=html.escape(name), child=html.escape(found.child.name))
    buttons = [
        _button(dismissal.relation_text(t, kind), f"pk:r:{n}")
        for n, kind in enumerate(KINDS, start=1)
    ]
    buttons.append(_button(t.gettext("Other…"), "pk:r:0"))
    rows = [*grid(buttons), nav(t, back=f"pk:n:{found.child.id}", cancel=CLOSE)]
    await show_screen(update, text, rows, new=update.callback_query is None)
    return RELATION


async def _relation_button(update: Update, context: BotContext, kind: int) -> int:
    query = update.callback_query
    assert query is not None
    t = context.t
    draft = (context.user_data or {}).get(DRAFT)
    if not isinstance(draft, dict) or not isinstance(draft.get("name"), str):
        await query.answer(t.gettext("This step is over. /pickup opens it again."))
        return ConversationHandler.END
    if kind == 0:
        await query.answer()
        text = t.gettext("Write what {name} is to the child, for example 姑姑 or 邻居.").format(
            name=html.escape(draft["name"])
        )
        back = nav(t, back=f"pk:n:{draft['student']}", cancel=CLOSE)
        await show_screen(update, text, [back])
        return RELATION
    await query.answer()
    return await _add(update, context, KINDS[kind - 1])


async def receive_relation(update: Update, context: BotContext) -> int:
    message = update.effective_message
    assert message is not None and message.text is not None
    relation = dismissal.clean(message.text, dismissal.RELATION_MAX)
    if relation is None:
        await message.reply_text(
            context.t.gettext("Please write the relation in at most {n} characters.").format(
                n=dismissal.RELATION_MAX
            )
        )
        return RELATION
    return await _add(update, context, relation)


async def _add(update: Update, context: BotContext, relation: str) -> int:
    assert context.user_data is not None
    draft = context.user_data.get(DRAFT)
    if not isinstance(draft, dict) or not isinstance(draft.get("name"), str):
        return ConversationHandler.END
    query = update.callback_query
    async with context.db.transaction() as session:
        done = await dismissal.add_adult(
            session,
            context.member,
            draft["student"],
            draft["name"],
            relation,
            now=utcnow(),
            pressed=query.data if query else None,
        )
    context.user_data.pop(DRAFT, None)
    if done is None:
        await refuse(update, context, dismissal.PICKUP_REFUSED, audited=True)
        return ConversationHandler.END
    return await _result(update, context, done, new=query is None)


async def _result(update: Update, context: BotContext, done: Changed, *, new: bool = False) -> int:
    t = context.t
    child = done.settings.child
    assert child is not None
    adult = adult_text(t, done.adult) if done.adult is not None else ""
    if done.result is Change.FULL:
        top = t.ngettext(
            "{child} has {n} adult on file; remove one first.",
            "{child} has {n} adults on file; remove one first.",
            dismissal.MAX_ADULTS,
        ).format(child=child.name, n=dismissal.MAX_ADULTS)
    elif done.result is Change.BAD_NAME:
        top = t.gettext("Please write a name of at most {n} characters.").format(
            n=dismissal.NAME_MAX
        )
    elif done.result is Change.ALREADY:
        top = t.gettext("This was done already; nothing changed.")
    else:
        top = t.gettext("Added: {adult} may collect {child}.").format(
            adult=adult, child=child.name
        )
    return await _settings(update, context, done.settings, top, new=new)


async def _remove(update: Update, context: BotContext, person_id: int) -> int:
    query = update.callback_query
    assert query is not None
    t = context.t
    async with context.db.transaction() as session:
        done = await dismissal.remove_adult(
            session, context.member, person_id, now=utcnow(), pressed=query.data
        )
    if done is None:
        await refuse(update, context, dismissal.PICKUP_REFUSED, audited=True)
        return ConversationHandler.END
    child = done.settings.child
    assert child is not None and done.adult is not None
    adult = adult_text(t, done.adult)
    if done.result is Change.DONE:
        top = t.gettext("Removed: {adult} may no longer collect {child}.").format(
            adult=adult, child=child.name
        )
    else:
        top = t.gettext("{adult} was removed already.").format(adult=adult)
    await query.answer(top[:200])
    return await _settings(update, context, done.settings, top)


async def _ask_alone(update: Update, context: BotContext, student_id: int) -> int:
    """The consequence first: the teacher no longer waits for a guardian."""
    t = context.t
    found = await _guarded(update, context, student_id)
    if found is None or found.child is None:
        return ConversationHandler.END
    assert update.callback_query is not None
    await update.callback_query.answer()
    if found.alone_at is not None:
        top = t.gettext("This was done already; nothing changed.")
        return await _settings(update, context, found, top)
    name = html.escape(found.child.name)
    text = (
        t.gettext(
            "{child} may go home alone after the session: the teacher will no longer wait for "
            "a guardian to collect {child}."
        ).format(child=name)
        + "\n\n"
        + t.gettext("The other guardians are told. You can withdraw it here at any time.")
    )
    rows = [
        [_button(t.gettext("Yes, allow it"), f"pk:A:{student_id}")],
        nav(t, back=f"pk:k:{student_id}", cancel=CLOSE),
    ]
    await show_screen(update, text, rows)
    return ConversationHandler.END


async def _alone(update: Update, context: BotContext, student_id: int, allowed: bool) -> int:
    query = update.callback_query
    assert query is not None
    t = context.t
    async with context.db.transaction() as session:
        done = await dismissal.permit_alone(
            session, context.member, student_id, allowed, now=utcnow(), pressed=query.data
        )
    if done is None:
        await refuse(update, context, dismissal.PICKUP_REFUSED, audited=True)
        return ConversationHandler.END
    child = done.settings.child
    assert child is not None
    if done.result is not Change.DONE:
        top = t.gettext("This was done already; nothing changed.")
    elif allowed:
        top = t.gettext("Saved: {child} may go home alone after the session.").format(
            child=child.name
        )
    else:
        top = t.gettext(
            "Saved: {child} is handed to a guardian or an authorised adult after the session."
        ).format(child=child.name)
    await query.answer(top[:200])
    return await _settings(update, context, done.settings, top)


def handlers() -> list[Any]:
    private = filters.ChatType.PRIVATE
    text = private & filters.TEXT & ~filters.COMMAND
    press: Any = CallbackQueryHandler(on_press, pattern=r"^pk:")
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", "If 'per_message=False'", PTBUserWarning)
        conversation = ConversationHandler(
            entry_points=[CommandHandler("pickup", begin, filters=private), press],
            states={
                NAME: [MessageHandler(text, receive_name)],
                RELATION: [MessageHandler(text, receive_relation)],
            },
            fallbacks=[CommandHandler("cancel", cancel)],
            name="pickup",
            persistent=True,
            allow_reentry=True,
        )
    return [conversation]
