"""Both guardians kept in step (docs/UX.md, convention 5).

What one guardian does for a child — a sign-up, a leave, a withdrawal, an accepted offer — is
told to the child's other guardians through the outbox, in each reader's own language.
"""

from __future__ import annotations

from typing import Any

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from bot.services import outbox
from bot.services.outbox import NewMessage
from storage.models import Guardianship, Priority, User


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
    """Enqueue `template` for every guardian of the child the bot can write to, except the one
    who acted; one statement to find them. `params` may name the actor with ``{"$msgid": …}``
    or a plain value. Returns the outbox ids (none when the child has one guardian)."""
    rows = await session.execute(
        select(User.id, User.chat_id)
        .join(Guardianship, Guardianship.user_id == User.id)
        .where(Guardianship.student_id == student_id, User.chat_id.is_not(None))
    )
    others = [
        (user_id, chat_id)
        for user_id, chat_id in rows.all()
        if user_id != actor_user_id and chat_id is not None
    ]
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
            for user_id, chat_id in others
        ],
    )
