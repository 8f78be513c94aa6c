"""/linkclass and /unlinkclass: an admin links a class's parent group, typed in that group.

``/linkclass 3-2`` (the class code, or its name) links at once; ``/linkclass`` alone shows the
school's classes as buttons, a page at a time. The class then has this chat as its parent
group (`SchoolClass.group_chat_id`) with its daily updates posted there (`group_updates`): the
same text and photos the families get, never anything about one child. ``/unlinkclass`` undoes
it. Both are audited.

A class group stays quiet (docs/UX.md, 8): the answer is ONE short message, and the class
picker becomes that answer when a class is pressed. Anyone in the group can type the command or
press the buttons, so the server checks each time that the sender is an admin of the school; a
refusal is audited and told in private (or not at all), never in front of the group.

These commands are meant for groups, so they are not in `bot.menus.COMMANDS` (whose commands
are all `PRIVATE_ONLY`, redirected out of groups by `handlers.common.groups`).

Callback data (never trusted; the group is the chat the button is in, never a field):
``lc:k:<class>`` a class · ``lc:p:<page>`` a page · ``lc:x`` cancel.
"""

from __future__ import annotations

import html

from telegram import InlineKeyboardButton, InlineKeyboardMarkup, Message, Update
from telegram.constants import ParseMode
from telegram.error import TelegramError
from telegram.ext import CallbackQueryHandler, CommandHandler, filters

from bot import wording
from bot.context import BotContext
from bot.i18n import Translator
from bot.services import updates
from bot.services.updates import ClassInfo, Linked
from handlers.common.keyboards import PAGE_MAX, grid, nav, pager
from handlers.common.presses import edit_or_send, ints, refuse

CANCEL = "lc:x"


def _names(t: Translator, found: tuple[ClassInfo, ...] | list[ClassInfo]) -> str:
    return wording.joined(t, (c.name for c in found))


def _linked_text(t: Translator, linked: Linked) -> str:
    name = html.escape(linked.school_class.name)
    lines = [
        t.gettext(
            "Linked: this is the parent group of {klass}. The class's daily updates will also "
            "be posted here, never anything about one child."
        ).format(klass=name)
    ]
    if linked.moved_from:
        lines.append(
            t.gettext("It is no longer the group of {classes}.").format(
                classes=html.escape(_names(t, linked.moved_from))
            )
        )
    if linked.replaced:
        lines.append(
            t.gettext("{klass}'s previous group no longer gets its updates.").format(klass=name)
        )
    return "\n".join(lines)


def _picker(
    t: Translator, found: list[ClassInfo], page: int, note: str | None = None
) -> tuple[str, InlineKeyboardMarkup]:
    pages = max(1, -(-len(found) // PAGE_MAX))
    page = min(max(page, 0), pages - 1)
    shown = found[page * PAGE_MAX : (page + 1) * PAGE_MAX]
    rows = grid([InlineKeyboardButton(c.name, callback_data=f"lc:k:{c.id}") for c in shown])
    rows.append(pager(page, pages, lambda n: f"lc:p:{n}"))
    rows.append(nav(t, cancel=CANCEL))
    text = t.gettext("Which class's parent group is this?")
    if note:
        text = note + "\n" + text
    return text, InlineKeyboardMarkup([r for r in rows if r])


async def _tell_privately(update: Update, context: BotContext) -> None:
    """A refusal in a group: to the sender's private chat if Kehou has one, else nowhere."""
    await refuse(update, context, updates.LINK_REFUSED, audited=True)
    member = context.member
    if member is None or member.chat_id is None:
        return
    try:
        await context.bot.send_message(
            member.chat_id,
            context.t.gettext(
                "Only the school's admins can link a class's parent group. If this group should "
                "get the class's daily updates, please ask the school office."
            ),
        )
    except TelegramError:
        pass  # blocked, or no chat: the group still hears nothing


async def link(update: Update, context: BotContext) -> None:
    """/linkclass [class] typed in a group."""
    message = update.effective_message
    chat = update.effective_chat
    assert message is not None and chat is not None
    t = context.t
    typed = " ".join(context.args or []).strip()
    async with context.db.transaction() as session:
        found: list[ClassInfo] | None = None  # None: refused (and audited)
        if typed:
            result = await updates.link_class(session, context.member, chat.id, code=typed)
            if isinstance(result, str):  # no such class: the picker, to choose it
                found = await updates.classes(session, context.member)
        else:
            result = None
            found = await updates.classes(session, context.member)
    if isinstance(result, Linked):
        await message.reply_text(_linked_text(t, result), parse_mode=ParseMode.HTML)
        return
    if found is None:
        await _tell_privately(update, context)
        return
    if not found:
        await message.reply_text(t.gettext("The school has no classes yet: import them first."))
        return
    note = (
        t.gettext("There is no class “{code}”.").format(code=html.escape(typed))
        if isinstance(result, str)
        else None
    )
    text, markup = _picker(t, found, 0, note)
    await message.reply_text(text, reply_markup=markup, parse_mode=ParseMode.HTML)


async def link_in_private(update: Update, context: BotContext) -> None:
    """/linkclass in a private chat: say where it is typed."""
    message = update.effective_message
    assert message is not None
    await message.reply_text(
        context.t.gettext(
            "Type /linkclass in the class's parent group, after adding me to it, for example "
            "“/linkclass 3-2”. Only the school's admins can link a group."
        )
    )


async def on_press(update: Update, context: BotContext) -> None:
    """A class or a page of the picker, pressed by whoever is in the group."""
    query = update.callback_query
    assert query is not None and query.data is not None
    t = context.t
    if query.data == CANCEL:
        return await _cancel(update, context)
    chosen = ints(query.data, "lc:k:", 1)
    page = ints(query.data, "lc:p:", 1)
    chat = update.effective_chat
    if (chosen is None and page is None) or chat is None or chat.type == "private":
        await refuse(update, context, updates.LINK_REFUSED)
        return
    if chosen is not None:
        async with context.db.transaction() as session:
            result = await updates.link_class(
                session, context.member, chat.id, class_id=chosen[0], pressed=query.data
            )
        if not isinstance(result, Linked):
            await _refuse_press(update, context)
            return
        await query.answer()
        await edit_or_send(query, _linked_text(t, result), parse_mode=ParseMode.HTML)
        return
    assert page is not None
    async with context.db.transaction() as session:
        found = await updates.classes(session, context.member, pressed=query.data)
    if found is None:
        await _refuse_press(update, context)
        return
    await query.answer()
    text, markup = _picker(t, found, page[0])
    await edit_or_send(query, text, reply_markup=markup, parse_mode=ParseMode.HTML)


async def _refuse_press(update: Update, context: BotContext) -> None:
    """A press the service refused and audited: the presser alone is told why."""
    await refuse(
        update,
        context,
        updates.LINK_REFUSED,
        audited=True,
        text=context.t.gettext("Only the school's admins can link a class's parent group."),
    )


async def _cancel(update: Update, context: BotContext) -> None:
    """取消: the picker goes, so the group keeps nothing of it."""
    query = update.callback_query
    assert query is not None
    async with context.db.transaction() as session:
        allowed = await updates.classes(session, context.member, pressed=query.data)
    if allowed is None:
        await _refuse_press(update, context)
        return
    await query.answer()
    message = query.message
    if isinstance(message, Message):
        try:
            await message.delete()
            return
        except TelegramError:
            pass
    await edit_or_send(query, context.t.gettext("Cancelled: nothing was linked."))


async def unlink(update: Update, context: BotContext) -> None:
    """/unlinkclass typed in a group."""
    message = update.effective_message
    chat = update.effective_chat
    assert message is not None and chat is not None
    t = context.t
    async with context.db.transaction() as session:
        served = await updates.unlink_class(session, context.member, chat.id)
    if served is None:
        await _tell_privately(update, context)
        return
    if not served:
        await message.reply_text(t.gettext("This group is not linked to any class."))
        return
    await message.reply_text(
        t.gettext("Unlinked: this group no longer gets the daily updates of {classes}.").format(
            classes=_names(t, served)
        )
    )


def handlers() -> list[CommandHandler | CallbackQueryHandler]:  # type: ignore[type-arg]
    groups = filters.ChatType.GROUPS
    return [
        CommandHandler("linkclass", link, filters=groups),
        CommandHandler("unlinkclass", unlink, filters=groups),
        CommandHandler(
            ["linkclass", "unlinkclass"], link_in_private, filters=filters.ChatType.PRIVATE
        ),
        CallbackQueryHandler(on_press, pattern=r"^lc:"),
    ]
