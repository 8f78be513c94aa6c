"""How a guardian wants Kehou's notices: each one at once, or one evening digest."""

from __future__ import annotations

from sqlalchemy import select, update
from sqlalchemy.ext.asyncio import AsyncSession

from bot.services import guard
from bot.services.members import Member
from storage.models import NoticeMode, Role, User

#: A notice choice refused: the presser is no guardian.
REFUSED = "notices.refused"


async def mode_of(session: AsyncSession, member: Member | None) -> NoticeMode | None:
    """The guardian's choice; None for anyone who is not a parent. One statement."""
    if member is None or not member.has(Role.PARENT):
        return None
    mode = await session.scalar(select(User.notice_mode).where(User.id == member.user_id))
    return mode or NoticeMode.INSTANT


async def choose(
    session: AsyncSession, member: Member | None, mode: NoticeMode, *, pressed: str | None = None
) -> bool:
    """Save the guardian's choice; False (refused, audited) for anyone who is not a parent.
    One statement."""
    if not guard.holds(session, member, Role.PARENT, action=REFUSED, pressed=pressed):
        return False
    assert member is not None
    await session.execute(update(User).where(User.id == member.user_id).values(notice_mode=mode))
    return True
