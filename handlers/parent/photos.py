"""/photos: a guardian changes, per child, whether photos of the child may be shared."""

from __future__ import annotations

from telegram import InlineKeyboardButton, InlineKeyboardMarkup, Update
from telegram.ext import CallbackQueryHandler, CommandHandler, filters

from bot.context import BotContext
from bot.i18n import Translator
from bot.services import privacy
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
        choices = await privacy.photo_choices(session, context.member.user_id)
    await message.reply_text(
        t.gettext(
            "May teachers share photos in which your child appears in daily updates? "
            "Tap a child to change the choice."
        ),
        reply_markup=_choices_markup(t, choices),
    )


async def toggle_photos(update: Update, context: BotContext) -> None:
    """Apply a tap, after checking on the server that this user is the child's guardian."""
    query = update.callback_query
    assert query is not None and query.data is not None
    t = context.t
    try:
        _, student_text, allowed_text = query.data.split(":")
        student_id, allowed = int(student_text), allowed_text == "1"
    except ValueError:
        await query.answer(t.gettext("This button is no longer active."), show_alert=True)
        return
    member = context.member  # loaded afresh for this press: the button proves nothing
    changed = False
    choices: list[tuple[int, str, bool]] = []
    if member is not None:
        async with context.db.transaction() as session:
            changed = await privacy.set_photo_consent(session, member.user_id, student_id, allowed)
            if changed:
                choices = await privacy.photo_choices(session, member.user_id)
    if not changed:
        await query.answer(t.gettext("This button is no longer active."), show_alert=True)
        return
    await query.answer(t.gettext("Saved."))
    await query.edit_message_reply_markup(reply_markup=_choices_markup(t, choices))


def handlers() -> list[CommandHandler | CallbackQueryHandler]:  # type: ignore[type-arg]
    return [
        CommandHandler("photos", show_photo_choices, filters=filters.ChatType.PRIVATE),
        CallbackQueryHandler(toggle_photos, pattern=r"^photo:"),
    ]
