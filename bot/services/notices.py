"""How a guardian wants Kehou's messages: the school's notices at once or in one daily digest;
the teachers' daily updates at once, in the evening digest or not at all; and whether to be
told how their child left school. Absence alerts and other urgent messages always come at once.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from sqlalchemy import select, update
from sqlalchemy.ext.asyncio import AsyncSession

from bot.services import guard
from bot.services.members import Member
from storage.models import NoticeMode, Role, UpdateMode, User

#: A notice choice refused: the presser is no guardian.
REFUSED = "notices.refused"


@dataclass(frozen=True)
class Choices:
    """A guardian's three choices, as the /notices screen shows them."""

    notices: NoticeMode
    updates: UpdateMode
    dismissal: bool  # told how the child left ("张琪 17:52 由家长接走")


_CHOICES = (User.notice_mode, User.update_mode, User.dismissal_notice)


def _choices(row: Any) -> Choices:
    notices, updates, dismissal = row
    return Choices(notices or NoticeMode.INSTANT, updates or UpdateMode.DIGEST, bool(dismissal))


async def choices_of(session: AsyncSession, member: Member | None) -> Choices | None:
    """The guardian's choices; None for anyone who is not a parent. One statement."""
    if member is None or not member.has(Role.PARENT):
        return None
    row = (await session.execute(select(*_CHOICES).where(User.id == member.user_id))).first()
    return _choices(row) if row is not None else None


async def mode_of(session: AsyncSession, member: Member | None) -> NoticeMode | None:
    """The guardian's choice for notices; None for anyone who is not a parent."""
    found = await choices_of(session, member)
    return found.notices if found is not None else None


async def _save(
    session: AsyncSession, member: Member | None, pressed: str | None, **values: Any
) -> Choices | None:
    """Save one choice (re-checking the parent role on the server); the choices afterwards,
    or None (refused, audited). One statement."""
    if not guard.holds(session, member, Role.PARENT, action=REFUSED, pressed=pressed):
        return None
    assert member is not None
    row = (
        await session.execute(
            update(User).where(User.id == member.user_id).values(**values).returning(*_CHOICES)
        )
    ).first()
    return _choices(row) if row is not None else None


async def choose(
    session: AsyncSession, member: Member | None, mode: NoticeMode, *, pressed: str | None = None
) -> Choices | None:
    """Notices at once or in the daily digest; None (refused, audited) for a non-parent."""
    return await _save(session, member, pressed, notice_mode=mode)


async def choose_updates(
    session: AsyncSession, member: Member | None, mode: UpdateMode, *, pressed: str | None = None
) -> Choices | None:
    """Daily updates at once, in the evening digest, or muted; None (refused, audited) for a
    non-parent. Absence alerts are not updates: muting these never mutes them."""
    return await _save(session, member, pressed, update_mode=mode)


async def choose_dismissal(
    session: AsyncSession, member: Member | None, on: bool, *, pressed: str | None = None
) -> Choices | None:
    """Be told, or not, how the child left school; None (refused, audited) for a non-parent."""
    return await _save(session, member, pressed, dismissal_notice=on)
