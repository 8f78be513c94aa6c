"""/help: what this user can do, by role."""

from __future__ import annotations

from telegram import Update

from bot import menus
from bot.context import BotContext
from handlers.common.text import role_names


async def show_help(update: Update, context: BotContext) -> None:
    """List the commands open to this user."""
    t = context.t
    lines = []
    if context.member is None:
        lines.append(
            t.gettext(
                "You are not linked to a school yet. Send /start and the invite code from "
                "your school's letter."
            )
        )
    else:
        lines.append(
            t.gettext("{school} · you are: {roles}").format(
                school=context.member.school_name, roles=role_names(t, context.roles)
            )
        )
    lines.append("")
    lines.extend(
        f"/{c.name} — {t.gettext(c.description)}" for c in menus.commands_for(context.roles)
    )
    await update.effective_message.reply_text("\n".join(lines))  # type: ignore[union-attr]


async def not_understood(update: Update, context: BotContext) -> None:
    """Anything in a private chat that no feature took: a text or an unknown command."""
    await update.effective_message.reply_text(  # type: ignore[union-attr]
        context.t.gettext("Sorry, I did not understand that. Send /help to see what you can do.")
    )
