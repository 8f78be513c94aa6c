"""Handler group -1: who is writing, and in which language to answer."""

from __future__ import annotations

from telegram import Update

from bot.context import BotContext
from bot.services import members
from storage.models import utcnow

LOCALE_KEY = "locale"  # a stranger's language choice, kept until they join a school


async def load_member(update: Update, context: BotContext) -> None:
    """Load the user's membership and pick their translator for the rest of the update."""
    user = update.effective_user
    if user is None:
        return
    async with context.db.reading() as session:  # one statement (two to clear blocked_at)
        context.member = await members.find_member(session, user.id)
    if context.member is not None and members.seen_long_ago(context.member, utcnow()):
        context.runtime.seen.add(context.member.user_id)
    saved = context.member.locale if context.member else None
    if saved is None and context.user_data is not None:
        saved = context.user_data.get(LOCALE_KEY)
    zone = context.member.school_timezone if context.member else None
    context.t = context.runtime.i18n.choose(saved, user.language_code, zone)
