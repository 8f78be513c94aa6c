"""One-time invite codes: the only way a Telegram account gets a role in a school.

A code is 16 characters of Crockford's base32 (80 random bits), shown in groups of four so it
can be typed from a printed letter, and used as-is in a `/start` deep link. Only its SHA-256
is stored: with 80 random bits there is nothing to brute-force offline, so no slow hash or
salt is needed, while a leaked database still gives away no usable code.
"""

from __future__ import annotations

import datetime as dt
import enum
import hashlib
import secrets
from dataclasses import dataclass

from sqlalchemy import delete, func, select, update
from sqlalchemy.ext.asyncio import AsyncSession

from bot.services import audit
from storage.models import (
    Guardianship,
    Invite,
    InviteAttempt,
    Role,
    School,
    SchoolClass,
    Student,
    Teacher,
    User,
    UserRole,
    utcnow,
)

ALPHABET = "0123456789ABCDEFGHJKMNPQRSTVWXYZ"  # Crockford: no I, L, O, U
CODE_LENGTH = 16  # 16 × 5 bits = 80 bits
MAX_FAILURES = 5
FAILURE_WINDOW = dt.timedelta(minutes=15)
CONSENT_VERSION = "2026-11"

# Characters people type by mistake, read back as what they meant.
_CONFUSABLE = str.maketrans({"O": "0", "I": "1", "L": "1", "U": "V"})


def new_code() -> str:
    return "".join(secrets.choice(ALPHABET) for _ in range(CODE_LENGTH))


def normalise(text: str) -> str | None:
    """A typed or linked code in canonical form, or None if it cannot be a code."""
    cleaned = "".join(c for c in text.upper() if c not in " -_").translate(_CONFUSABLE)
    if len(cleaned) != CODE_LENGTH or any(c not in ALPHABET for c in cleaned):
        return None
    return cleaned


def pretty(code: str) -> str:
    """XXXX-XXXX-XXXX-XXXX, the way a code is printed."""
    return "-".join(code[i : i + 4] for i in range(0, len(code), 4))


def code_hash(code: str) -> str:
    return hashlib.sha256(code.encode()).hexdigest()


class Refusal(enum.StrEnum):
    THROTTLED = "throttled"
    UNKNOWN = "unknown"
    EXPIRED = "expired"
    USED = "used"
    ALREADY_LINKED = "already_linked"


@dataclass(frozen=True)
class InvitePreview:
    """What a valid code will do, shown before the account is linked."""

    invite_id: int
    role: Role
    school_id: int
    school_name: str
    student_name: str | None
    class_name: str | None
    teacher_name: str | None


@dataclass(frozen=True)
class Redeemed:
    user_id: int
    school_id: int
    role: Role
    roles: frozenset[Role]
    student_name: str | None


async def create_invite(
    session: AsyncSession,
    *,
    school_id: int,
    role: Role,
    ttl: dt.timedelta,
    student_id: int | None = None,
    teacher_id: int | None = None,
    label: str | None = None,
    created_by_user_id: int | None = None,
    actor_label: str | None = None,
) -> str:
    """Issue a code; the plain code is returned once and never stored."""
    code = new_code()
    invite = Invite(
        school_id=school_id,
        role=role,
        code_hash=code_hash(code),
        student_id=student_id,
        teacher_id=teacher_id,
        label=label,
        created_by_user_id=created_by_user_id,
        expires_at=utcnow() + ttl,
    )
    session.add(invite)
    await session.flush()
    audit.record(
        session,
        school_id,
        "invite.create",
        actor_user_id=created_by_user_id,
        actor_label=actor_label,
        target=("invite", invite.id),
        details={"role": role.value, "student_id": student_id, "teacher_id": teacher_id},
    )
    return code


async def _throttled(session: AsyncSession, telegram_id: int, now: dt.datetime) -> bool:
    failures = await session.scalar(
        select(func.count())
        .select_from(InviteAttempt)
        .where(
            InviteAttempt.telegram_id == telegram_id,
            InviteAttempt.attempted_at > now - FAILURE_WINDOW,
        )
    )
    return (failures or 0) >= MAX_FAILURES


async def inspect(session: AsyncSession, telegram_id: int, text: str) -> InvitePreview | Refusal:
    """Check a code without using it. A wrong guess is counted; too many are refused.

    The caller must commit even on a refusal, so that the failure is remembered.
    """
    now = utcnow()
    if await _throttled(session, telegram_id, now):
        return Refusal.THROTTLED
    code = normalise(text)
    if code is None:
        # Text that cannot be a code cannot guess one either: refuse it without counting.
        return Refusal.UNKNOWN
    invite = await session.scalar(select(Invite).where(Invite.code_hash == code_hash(code)))
    if invite is None or invite.revoked_at is not None:
        session.add(InviteAttempt(telegram_id=telegram_id, attempted_at=now))
        return Refusal.UNKNOWN
    if invite.used_at is not None:
        return Refusal.USED
    if invite.expires_at <= now:
        return Refusal.EXPIRED
    return await _preview(session, invite, telegram_id)


@dataclass(frozen=True)
class Joined:
    """A staff code used at once: what it was, and the account it made."""

    preview: InvitePreview
    redeemed: Redeemed


async def use_code(
    session: AsyncSession,
    text: str,
    *,
    telegram_id: int,
    chat_id: int,
    display_name: str,
    locale: str | None,
) -> InvitePreview | Joined | Refusal:
    """A typed or deep-linked code, in one transaction: a teacher's or an admin's is used at
    once (`Joined`); a guardian's is only inspected (`InvitePreview`), since it needs their
    consent first (`redeem` with `photo_consent`). As with `inspect`, commit even a refusal."""
    preview = await inspect(session, telegram_id, text)
    if isinstance(preview, Refusal) or preview.role is Role.PARENT:
        return preview
    redeemed = await redeem(
        session,
        invite_id=preview.invite_id,
        telegram_id=telegram_id,
        chat_id=chat_id,
        display_name=display_name,
        locale=locale,
    )
    return redeemed if isinstance(redeemed, Refusal) else Joined(preview, redeemed)


async def _preview(
    session: AsyncSession, invite: Invite, telegram_id: int
) -> InvitePreview | Refusal:
    school_name = await session.scalar(select(School.name).where(School.id == invite.school_id))
    student_name = class_name = teacher_name = None
    if invite.student_id is not None:
        row = (
            await session.execute(
                select(Student.name, SchoolClass.name)
                .join(SchoolClass, SchoolClass.id == Student.class_id)
                .where(Student.id == invite.student_id)
            )
        ).one()
        student_name, class_name = row
        already = await session.scalar(
            select(Guardianship.id)
            .join(User, User.id == Guardianship.user_id)
            .where(User.telegram_id == telegram_id, Guardianship.student_id == invite.student_id)
        )
        if already is not None:
            return Refusal.ALREADY_LINKED
    if invite.teacher_id is not None:
        teacher_name = await session.scalar(
            select(Teacher.name).where(Teacher.id == invite.teacher_id)
        )
    return InvitePreview(
        invite_id=invite.id,
        role=invite.role,
        school_id=invite.school_id,
        school_name=school_name or "",
        student_name=student_name,
        class_name=class_name,
        teacher_name=teacher_name,
    )


async def redeem(
    session: AsyncSession,
    *,
    invite_id: int,
    telegram_id: int,
    chat_id: int,
    display_name: str,
    locale: str | None,
    photo_consent: bool | None = None,
) -> Redeemed | Refusal:
    """Use an invite: make or find the school's user, grant the role, link the child.

    A parent invite needs the guardian's consent first (`photo_consent` not None means the
    privacy notice was accepted). Single use is enforced by one conditional UPDATE, so two
    accounts racing for the same code cannot both win.
    """
    now = utcnow()
    claimed = await session.execute(
        update(Invite)
        .where(
            Invite.id == invite_id,
            Invite.used_at.is_(None),
            Invite.revoked_at.is_(None),
            Invite.expires_at > now,
        )
        .values(used_at=now)
    )
    if claimed.rowcount != 1:  # type: ignore[attr-defined]
        invite_state = await session.get(Invite, invite_id)
        if invite_state is not None and invite_state.used_at is not None:
            return Refusal.USED
        return Refusal.EXPIRED
    invite = await session.get(Invite, invite_id)
    assert invite is not None
    if invite.role is Role.PARENT and photo_consent is None:
        raise ValueError("a parent invite needs the guardian's consent first")

    user = await session.scalar(
        select(User).where(User.school_id == invite.school_id, User.telegram_id == telegram_id)
    )
    if user is None:
        user = User(
            school_id=invite.school_id,
            telegram_id=telegram_id,
            chat_id=chat_id,
            display_name=display_name,
            locale=locale,
            last_seen_at=now,
            roles=[],
        )
        session.add(user)
        await session.flush()
    else:
        user.chat_id = chat_id
        user.last_seen_at = now
    if invite.role not in user.role_set:
        user.roles.append(UserRole(school_id=invite.school_id, role=invite.role))

    student_name = None
    if invite.student_id is not None:
        student_name = await session.scalar(
            select(Student.name).where(Student.id == invite.student_id)
        )
        existing = await session.scalar(
            select(Guardianship).where(
                Guardianship.user_id == user.id, Guardianship.student_id == invite.student_id
            )
        )
        if existing is None:
            session.add(
                Guardianship(
                    school_id=invite.school_id,
                    user_id=user.id,
                    student_id=invite.student_id,
                    consent_version=CONSENT_VERSION,
                    consented_at=now,
                    photo_consent=bool(photo_consent),
                )
            )
    if invite.teacher_id is not None:
        await session.execute(
            update(Teacher).where(Teacher.id == invite.teacher_id).values(user_id=user.id)
        )
    invite.used_by_user_id = user.id
    audit.record(
        session,
        invite.school_id,
        "invite.redeem",
        actor_user_id=user.id,
        target=("invite", invite.id),
        details={"role": invite.role.value, "photo_consent": photo_consent},
    )
    await session.flush()
    return Redeemed(
        user_id=user.id,
        school_id=invite.school_id,
        role=invite.role,
        roles=user.role_set,
        student_name=student_name,
    )


async def forget_failures(session: AsyncSession, older_than: dt.timedelta) -> int:
    """Housekeeping: drop wrong-guess records that no longer count towards a throttle."""
    result = await session.execute(
        delete(InviteAttempt).where(InviteAttempt.attempted_at < utcnow() - older_than)
    )
    return result.rowcount or 0  # type: ignore[attr-defined]
