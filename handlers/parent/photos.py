"""/photos: a guardian changes, per child, whether photos of the child may be shared."""

from __future__ import annotations

from telegram import InlineKeyboardButton, InlineKeyboardMarkup, Update
from telegram.ext import CallbackQueryHandler, CommandHandler, filters

from bot.context import BotContext
from bot.i18n import Translator
from bot.services import privacy
from handlers.common.presses import as_int, edit_or_send, fields, refuse
from storage.models import Role


def _choices_markup(t: Translator, choices: list[tuple[int, str, bool]]) -> InlineKeyboardMarkup:
    rows = []
    for student_id, name, allowed in choices:
        if allowed:
            label = t.gettext("{child}: photos allowed · tap to stop").format(child=name)
        else:
            label = t.gettext("{child}: no photos · tap to allow").format(child=name)
        rows.append(
            [InlineKeyboardButton(label, callback_data=f"photo:{student_id}:{int(not allowed)}")]
        )
    return InlineKeyboardMarkup(rows)


async def show_photo_choices(update: Update, context: BotContext) -> None:
    """List each child with the current photo choice as a toggle button."""
    t = context.t
    message = update.effective_message
    assert message is not None
    if context.member is None or not context.member.has(Role.PARENT):
        await message.reply_text(t.gettext("This is for guardians linked to a child."))
        return
    async with context.db.transaction() as session:
        choices = await privacy.photo_choices(session, context.member)
    await message.reply_text(_question(t), reply_markup=_choices_markup(t, choices))


def _question(t: Translator) -> str:
    return t.gettext(
        "May teachers share photos in which your child appears with parents? "
        "Tap a child to change the choice."
    )


async def toggle_photos(update: Update, context: BotContext) -> None:
    """Apply a tap, after checking on the server that this user is the child's guardian."""
    query = update.callback_query
    assert query is not None
    t = context.t
    parts = fields(query.data, "photo:", 2)
    student_id = as_int(parts[0]) if parts else None
    if parts is None or student_id is None or parts[1] not in ("0", "1"):
        await refuse(update, context, privacy.PHOTO_REFUSED)
        return
    async with context.db.transaction() as session:
        # The member was loaded afresh for this press: the button proves nothing.
        choices = await privacy.choose_photos(
            session, context.member, student_id, parts[1] == "1", pressed=query.data
        )
    if choices is None:  # not a parent, or not this guardian's child: audited
        await refuse(update, context, privacy.PHOTO_REFUSED, audited=True)
        return
    await query.answer(t.gettext("Saved."))
    await edit_or_send(query, _question(t), reply_markup=_choices_markup(t, choices))


def handlers() -> list[CommandHandler | CallbackQueryHandler]:  # type: ignore[type-arg]
    return [
        CommandHandler("photos", show_photo_choices, filters=filters.ChatType.PRIVATE),
        CallbackQueryHandler(toggle_photos, pattern=r"^photo:"),
    ]
