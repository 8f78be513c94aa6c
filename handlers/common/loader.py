"""Handler group -1: who is writing, and in which language to answer.

It also turns away, before any feature runs, a parent command from someone linked to no
child: they are told where their code is rather than that the command is not for them.
"""

from __future__ import annotations

from telegram import Update
from telegram.constants import ChatType
from telegram.ext import ApplicationHandlerStop

from bot import menus
from bot.context import BotContext
from bot.i18n import Translator
from bot.services import members
from handlers.common.text import how_to_link
from storage.models import utcnow

LOCALE_KEY = "locale"  # the saved language choice, readable before the member is loaded

# /leave, /schedule, /courses …: the commands that need a linked child.
PARENT_COMMANDS = frozenset(c.name for c in menus.COMMANDS if c.roles == menus.PARENT)


async def load_member(update: Update, context: BotContext) -> None:
    """Handler group -1: who is writing; a stranger's parent command goes no further."""
    await identify(update, context)
    if context.member is None and update.effective_user is not None and _parent_command(update):
        await update.effective_message.reply_text(  # type: ignore[union-attr]
            context.t.gettext("This is for parents whose account is linked to their child.")
            + "\n"
            + how_to_link(context.t)
        )
        raise ApplicationHandlerStop


async def identify(update: Update, context: BotContext) -> None:
    """Load the user's membership and pick their translator for the rest of the update."""
    user = update.effective_user
    if user is None:
        return
    async with context.db.reading() as session:  # one statement (two to clear blocked_at)
        context.member = await members.find_member(session, user.id)
    if context.member is not None and members.seen_long_ago(context.member, utcnow()):
        context.runtime.seen.add(context.member.user_id)
    saved = context.member.locale if context.member else None
    if context.user_data is not None:
        if saved is None:
            saved = context.user_data.get(LOCALE_KEY)
        elif context.user_data.get(LOCALE_KEY) != saved:
            # Kept in step with the account, so a handler that answers a press before this
            # loader runs (handler group -2) can still answer in the chosen language.
            context.user_data[LOCALE_KEY] = saved
    zone = context.member.school_timezone if context.member else None
    context.t = context.runtime.i18n.choose(saved, user.language_code, zone)


def saved_translator(update: Update, context: BotContext) -> Translator:
    """The user's translator before the loader ran: their saved choice, else Telegram's."""
    user = update.effective_user
    saved = context.user_data.get(LOCALE_KEY) if context.user_data is not None else None
    return context.runtime.i18n.choose(saved, user.language_code if user else None)


def _parent_command(update: Update) -> bool:
    message = update.message
    if message is None or message.chat.type != ChatType.PRIVATE or not message.text:
        return False
    word = message.text.split(maxsplit=1)[0]
    if not word.startswith("/"):
        return False
    return word[1:].split("@", 1)[0].lower() in PARENT_COMMANDS
