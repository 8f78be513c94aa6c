"""Who is writing: the Telegram account's Kehou user, roles and language."""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass

from sqlalchemy import bindparam, select, update
from sqlalchemy.ext.asyncio import AsyncSession

from storage.models import Role, School, User, UserRole

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


# Built once (a hot statement: every update runs it). One row per role of each of the
# account's memberships, most recently used school first; a member without roles gives one row.
_MEMBER = (
    select(
        User.id,
        User.school_id,
        User.chat_id,
        User.locale,
        User.last_seen_at,
        User.blocked_at,
        School.name,
        School.timezone,
        School.catalogue_version,
        UserRole.role,
    )
    .join(School, School.id == User.school_id)
    .outerjoin(UserRole, UserRole.user_id == User.id)
    .where(User.telegram_id == bindparam("p_telegram_id"))
    .order_by(User.last_seen_at.desc(), User.id.desc())
)
_UNBLOCK = (
    update(User)
    .where(User.telegram_id == bindparam("p_telegram_id"))
    .values(blocked_at=None)
    .execution_options(synchronize_session=False)
)


async def find_member(session: AsyncSession, telegram_id: int) -> Member | None:
    """The account's most recently used school membership, or None for a stranger."""
    rows = (await session.execute(_MEMBER, {"p_telegram_id": telegram_id})).all()
    if not rows:
        return None
    first = rows[0]
    user_id, school_id, chat_id, locale, last_seen_at, blocked_at = first[:6]
    school_name, school_timezone, catalogue_version = first[6:9]
    if blocked_at is not None:
        # Whoever writes to the bot has not blocked it (any more): they can be reached again.
        await session.execute(_UNBLOCK, {"p_telegram_id": telegram_id})
    return Member(
        user_id=user_id,
        school_id=school_id,
        school_name=school_name,
        telegram_id=telegram_id,
        chat_id=chat_id,
        locale=locale,
        roles=frozenset(row.role for row in rows if row.id == user_id and row.role is not None),
        last_seen_at=last_seen_at,
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


async def set_locale(session: AsyncSession, telegram_id: int, locale: str) -> None:
    """Save the language choice on every school membership of the account."""
    await session.execute(
        update(User).where(User.telegram_id == telegram_id).values(locale=locale)
    )
