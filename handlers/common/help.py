"""/help, and the answer to whatever no feature took: what this user can do, by role."""

from __future__ import annotations

from telegram import InlineKeyboardMarkup, Update

from bot import menus
from bot.context import BotContext
from bot.i18n import Translator
from handlers.common import intents
from handlers.common.text import features, how_to_link, role_names
from storage.models import Role


def _commands(t: Translator, roles: frozenset[Role]) -> str:
    return "\n".join(f"/{c.name} — {t.gettext(c.description)}" for c in menus.commands_for(roles))


async def show_help(update: Update, context: BotContext) -> None:
    """List the commands open to this user; a stranger also learns what Kehou offers."""
    t = context.t
    if context.member is None:
        lines = [
            t.gettext("You are not linked to a school yet."),
            how_to_link(t),
            "",
            t.gettext("As a parent, you can:"),
            features(t),
        ]
    else:
        lines = [
            t.gettext("{school} · you are: {roles}").format(
                school=context.member.school_name, roles=role_names(t, context.roles)
            )
        ]
    lines += ["", _commands(t, context.roles)]
    await update.effective_message.reply_text("\n".join(lines))  # type: ignore[union-attr]


async def not_understood(update: Update, context: BotContext) -> None:
    """Anything in a private chat that no feature took: a text or an unknown command.

    A parent who types what they want in words ("张琪明天请假") is offered that flow; anyone
    else gets the commands open to them.
    """
    t = context.t
    message = update.effective_message
    assert message is not None
    text = message.text or ""
    if context.member is None:
        await message.reply_text(
            t.gettext("Sorry, I did not understand that.") + "\n" + how_to_link(t)
        )
        return
    intent = None if text.startswith("/") else intents.recognise(text)
    if intent is not None and context.member.has(Role.PARENT):
        button = intents.button(t, intent.command)
        await message.reply_text(
            t.gettext(intent.question),
            reply_markup=InlineKeyboardMarkup([[button]]) if button else None,
        )
        return
    await message.reply_text(
        t.gettext("Sorry, I did not understand that. This is what I can do:")
        + "\n\n"
        + _commands(t, context.roles)
    )
