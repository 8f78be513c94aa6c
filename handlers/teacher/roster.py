"""/roster: a teacher's sessions today, who is away and who is collected early."""

from __future__ import annotations

import html

from telegram import Update
from telegram.constants import ParseMode
from telegram.ext import CommandHandler, filters

from bot.context import BotContext
from bot.services import leaves
from storage.models import Role, utcnow


async def show(update: Update, context: BotContext) -> None:
    message = update.effective_message
    assert message is not None
    t = context.t
    if context.member is None or not context.member.has(Role.TEACHER):
        await message.reply_text(t.gettext("This is for teachers."))
        return
    today = utcnow().astimezone(t.timezone).date()
    async with context.db.transaction() as session:
        sessions = await leaves.roster(session, context.member, today)
    if not sessions:
        await message.reply_text(t.gettext("You have no after-school sessions today."))
        return
    for course, children in sessions:
        away = [(c, x) for c, x in children if x is not None and x.pickup_at is None]
        early = [(c, x) for c, x in children if x is not None and x.pickup_at is not None]
        lines = [
            f"<b>{html.escape(course.name)}</b> · {t.time(course.starts_at)}–"
            f"{t.time(course.ends_at)} · {html.escape(course.venue)}",
            t.gettext("{present} of {total} children expected.").format(
                present=len(children) - len(away), total=len(children)
            ),
        ]
        if away:
            lines.append(t.gettext("Away today:"))
            lines += [
                f"• {html.escape(c.name)}" + (f" ({html.escape(x.reason)})" if x.reason else "")
                for c, x in away
            ]
        if early:
            lines.append(t.gettext("Collected early:"))
            lines += [
                f"• {html.escape(c.name)} {t.time(x.pickup_at)}"  # type: ignore[arg-type]
                for c, x in sorted(early, key=lambda p: p[1].pickup_at)  # type: ignore[arg-type,return-value]
            ]
        await message.reply_text("\n".join(lines), parse_mode=ParseMode.HTML)


def handlers() -> list[CommandHandler]:  # type: ignore[type-arg]
    return [CommandHandler("roster", show, filters=filters.ChatType.PRIVATE)]
