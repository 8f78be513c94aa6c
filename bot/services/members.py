"""Who is writing: the Telegram account's Kehou user, roles and language."""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass

from sqlalchemy import select, update
from sqlalchemy.ext.asyncio import AsyncSession

from storage.models import NoticeMode, Role, School, User

# Writing last_seen_at on every update would turn each read into a write; once a minute is
# plenty for "most recently used school".
_SEEN_RESOLUTION = dt.timedelta(minutes=1)


@dataclass(frozen=True)
class Member:
    """A Telegram account as one school knows it."""

    user_id: int
    school_id: int
    school_name: str
    telegram_id: int
    chat_id: int | None
    locale: str | None
    roles: frozenset[Role]
    last_seen_at: dt.datetime | None = None
    school_timezone: str | None = None  # the zone "today" and typed times are read in
    catalogue_version: int | None = None  # of the school's programme (bot.services.catalogue)

    def has(self, role: Role) -> bool:
        return role in self.roles


async def find_member(session: AsyncSession, telegram_id: int) -> Member | None:
    """The account's most recently used school membership, or None for a stranger."""
    row = (
        await session.execute(
            select(User, School.name, School.timezone, School.catalogue_version)
            .join(School, School.id == User.school_id)
            .where(User.telegram_id == telegram_id)
            .order_by(User.last_seen_at.desc(), User.id.desc())
            .limit(1)
        )
    ).first()
    if row is None:
        return None
    user, school_name, school_timezone, catalogue_version = row
    if user.blocked_at is not None:
        # Whoever writes to the bot has not blocked it (any more): they can be reached again.
        await session.execute(
            update(User).where(User.telegram_id == telegram_id).values(blocked_at=None)
        )
    return Member(
        user_id=user.id,
        school_id=user.school_id,
        school_name=school_name,
        telegram_id=user.telegram_id,
        chat_id=user.chat_id,
        locale=user.locale,
        roles=user.role_set,
        last_seen_at=user.last_seen_at,
        school_timezone=school_timezone,
        catalogue_version=catalogue_version,
    )


def seen_long_ago(member: Member, now: dt.datetime) -> bool:
    """Worth recording that the member was seen (see `mark_seen`)."""
    return member.last_seen_at is None or now - member.last_seen_at > _SEEN_RESOLUTION


async def mark_seen(session: AsyncSession, user_ids: set[int], now: dt.datetime) -> None:
    """Record, in one statement, that these users wrote to the bot.

    Kept out of the update's own path: a rush of hundreds of parents must not queue for
    hundreds of small writes. The loader collects ids and a job writes them twice a minute.
    """
    if user_ids:
        await session.execute(
            update(User).where(User.id.in_(sorted(user_ids))).values(last_seen_at=now)
        )


async def set_notice_mode(session: AsyncSession, user_id: int, mode: NoticeMode) -> None:
    await session.execute(update(User).where(User.id == user_id).values(notice_mode=mode))


async def notice_mode(session: AsyncSession, user_id: int) -> NoticeMode:
    mode = await session.scalar(select(User.notice_mode).where(User.id == user_id))
    return mode or NoticeMode.INSTANT


async def set_locale(session: AsyncSession, telegram_id: int, locale: str) -> None:
    """Save the language choice on every school membership of the account."""
    await session.execute(
        update(User).where(User.telegram_id == telegram_id).values(locale=locale)
    )
