"""Both guardians kept in step (docs/UX.md, convention 5).

What one guardian does for a child — a sign-up, a leave, a withdrawal, an accepted offer — is
told to the child's other guardians through the outbox, in each reader's own language. This is
also where a child's guardians are found and written to for any news about the child, and what
names a copy already sent that is edited once its buttons no longer hold.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from bot.services import outbox
from bot.services.outbox import NewMessage
from storage.models import Guardianship, Priority, User


@dataclass(frozen=True)
class SentCopy:
    """A message a guardian already has, to edit when its buttons no longer hold (another
    guardian answered the offer, or confirmed the notice)."""

    chat_id: int
    message_id: int
    locale: str  # the reader's, else the school's: the language the copy was written in


async def guardian_chats(
    session: AsyncSession, student_ids: Iterable[int]
) -> dict[int, list[tuple[int, int]]]:
    """Student id → (user id, chat id) of each guardian the bot can write to; one query."""
    rows = await session.execute(
        select(Guardianship.student_id, User.id, User.chat_id)
        .join(User, User.id == Guardianship.user_id)
        .where(Guardianship.student_id.in_(list(student_ids)), User.chat_id.is_not(None))
    )
    found: dict[int, list[tuple[int, int]]] = {}
    for student_id, user_id, chat_id in rows.all():
        if chat_id is not None:
            found.setdefault(student_id, []).append((user_id, chat_id))
    return found


async def tell(
    session: AsyncSession,
    school_id: int,
    guardians: Iterable[tuple[int, int]],
    *,
    kind: str,
    template: str,
    params: dict[str, Any],
    dedupe: str,
    buttons: list[list[dict[str, Any]]] | None = None,
) -> list[int]:
    """Enqueue `template` for each (user id, chat id), as news they are waiting for; one
    statement. The dedupe key is made per reader from `dedupe`."""
    return await outbox.enqueue_many(
        session,
        school_id,
        [
            NewMessage(
                chat_id=chat_id,
                user_id=user_id,
                kind=kind,
                priority=Priority.INTERACTIVE,
                template=template,
                params=params,
                buttons=buttons,
                dedupe_key=f"{dedupe}:{user_id}",
            )
            for user_id, chat_id in guardians
        ],
    )


async def tell_other_guardians(
    session: AsyncSession,
    school_id: int,
    student_id: int,
    actor_user_id: int | None,
    *,
    kind: str,
    template: str,
    params: dict[str, Any],
    dedupe: str,
    buttons: list[list[dict[str, Any]]] | None = None,
) -> list[int]:
    """`tell` every guardian of the child except the one who acted. `params` may name the
    actor with ``{"$msgid": …}`` or a plain value. Returns the outbox ids (none when the child
    has one guardian)."""
    guardians = (await guardian_chats(session, [student_id])).get(student_id, [])
    return await tell(
        session,
        school_id,
        [(user_id, chat_id) for user_id, chat_id in guardians if user_id != actor_user_id],
        kind=kind,
        template=template,
        params=params,
        dedupe=dedupe,
        buttons=buttons,
    )
