"""Button presses: parsing callback data, and refusing a press that may not act.

Callback data comes from the user's client and is never trusted. Every handler reads it with
`fields` (or `ints`), which checks its shape and keeps each id inside the database's integer
range, and turns away a press it cannot act on with `refuse`, which answers the press and
writes an audit row whoever pressed it.
"""

from __future__ import annotations

from telegram import Update

from bot.context import BotContext
from bot.services import audit

# Ids are 32-bit integers on PostgreSQL (and fit SQLite's 64-bit integers): a larger number in
# a button cannot name a row, and binding it would raise OverflowError in the driver.
MAX_ID = 2**31 - 1


def fields(data: str | None, prefix: str, count: int) -> list[str] | None:
    """The `count` colon-separated fields after `prefix`, or None if the data has another shape."""
    if data is None or not data.startswith(prefix):
        return None
    parts = data[len(prefix) :].split(":")
    return parts if len(parts) == count else None


def as_int(text: str) -> int | None:
    """A non-negative integer an id column can hold, or None."""
    if not (text.isascii() and text.isdigit()) or len(text) > 10:
        return None
    value = int(text)
    return value if value <= MAX_ID else None


def ints(data: str | None, prefix: str, count: int) -> list[int] | None:
    """`count` integers after `prefix` (`of:12:1` → [12, 1]), or None if any is not one."""
    parts = fields(data, prefix, count)
    if parts is None:
        return None
    values = [as_int(p) for p in parts]
    if any(v is None for v in values):
        return None
    return [v for v in values if v is not None]


async def refuse(
    update: Update,
    context: BotContext,
    action: str,
    *,
    answered: bool = False,
    text: str | None = None,
) -> None:
    """Turn a press away: audit it (whatever roles the presser has) and tell them politely.

    `action` names what was refused (``enrolment.refused``, ``course.refused`` …); `answered`
    says the press was acknowledged already, so the explanation is sent as an edit instead.
    """
    query = update.callback_query
    member = context.member
    if member is not None:
        async with context.db.transaction() as session:
            audit.record(
                session,
                member.school_id,
                action,
                actor_user_id=member.user_id,
                details={"callback_data": (query.data or "")[:64]} if query else None,
            )
    message = text or context.t.gettext("This button is no longer active.")
    if query is None:
        return
    if answered:
        await query.edit_message_text(message)
    else:
        await query.answer(message, show_alert=True)
