"""Invite codes: long, random, hashed, expiring, single use, throttled."""

from __future__ import annotations

import asyncio
import datetime as dt
import math

from sqlalchemy import func, select

from bot.services import invites
from bot.services.invites import InvitePreview, Redeemed, Refusal
from storage.db import Database
from storage.models import AuditLog, Guardianship, Invite, Role, User, utcnow
from tests.factories import SchoolData

DAY = dt.timedelta(days=1)


async def issue(db: Database, school: SchoolData, **kwargs: object) -> str:
    async with db.transaction() as session:
        return await invites.create_invite(
            session,
            school_id=school.school_id,
            ttl=kwargs.pop("ttl", DAY),
            **kwargs,  # type: ignore[arg-type]
        )


async def inspect(db: Database, telegram_id: int, text: str) -> InvitePreview | Refusal:
    async with db.transaction() as session:
        return await invites.inspect(session, telegram_id, text)


async def redeem(
    db: Database, invite_id: int, telegram_id: int, **kw: object
) -> Redeemed | Refusal:
    async with db.transaction() as session:
        return await invites.redeem(
            session,
            invite_id=invite_id,
            telegram_id=telegram_id,
            chat_id=telegram_id,
            display_name="家长",
            locale=None,
            **kw,  # type: ignore[arg-type]
        )


def test_codes_carry_at_least_80_bits_and_read_back_forgivingly() -> None:
    assert invites.CODE_LENGTH * math.log2(len(invites.ALPHABET)) >= 80
    code = invites.new_code()
    assert invites.normalise(invites.pretty(code).lower()) == code
    assert invites.normalise(" " + invites.pretty(code) + " ") == code
    assert invites.normalise("O" * 16) == "0" * 16  # letter O read as zero
    assert invites.normalise("short") is None
    assert len({invites.new_code() for _ in range(1000)}) == 1000


async def test_only_the_hash_is_stored(db: Database, school: SchoolData) -> None:
    code = await issue(db, school, role=Role.PARENT, student_id=school.student_ids["李小明"])
    async with db.transaction() as session:
        stored = await session.scalar(select(Invite))
    assert stored is not None
    assert code not in stored.code_hash
    assert stored.code_hash == invites.code_hash(code)


async def test_parent_code_links_one_child_once(db: Database, school: SchoolData) -> None:
    code = await issue(db, school, role=Role.PARENT, student_id=school.student_ids["李小明"])
    preview = await inspect(db, 501, invites.pretty(code))
    assert isinstance(preview, InvitePreview)
    assert (preview.student_name, preview.class_name) == ("李小明", "三年级1班")

    result = await redeem(db, preview.invite_id, 501, photo_consent=False)
    assert isinstance(result, Redeemed)
    assert result.roles == {Role.PARENT}
    # The same code cannot be used again, by anyone.
    assert await inspect(db, 502, code) is Refusal.USED
    assert await redeem(db, preview.invite_id, 502, photo_consent=True) is Refusal.USED
    async with db.transaction() as session:
        links = (
            await session.execute(select(Guardianship.student_id, User.telegram_id).join(User))
        ).all()
        audit = await session.scalar(
            select(func.count()).select_from(AuditLog).where(AuditLog.action == "invite.redeem")
        )
    assert links == [(school.student_ids["李小明"], 501)]
    assert audit == 1


async def test_two_guardians_and_two_children(db: Database, school: SchoolData) -> None:
    codes = [
        await issue(db, school, role=Role.PARENT, student_id=school.student_ids[name])
        for name in ("李小明", "李小明", "李小红")
    ]
    # Mother links both children with two codes; father links the first with his own code.
    for code, telegram_id in zip(codes, (601, 602, 601), strict=True):
        preview = await inspect(db, telegram_id, code)
        assert isinstance(preview, InvitePreview)
        assert isinstance(
            await redeem(db, preview.invite_id, telegram_id, photo_consent=True), Redeemed
        )
    async with db.transaction() as session:
        rows = (
            await session.execute(
                select(User.telegram_id, func.count())
                .join(Guardianship)
                .group_by(User.telegram_id)
                .order_by(User.telegram_id)
            )
        ).all()
        users = await session.scalar(select(func.count()).select_from(User))
    assert rows == [(601, 2), (602, 1)]
    assert users == 2


async def test_a_second_code_for_a_linked_child_is_refused(
    db: Database, school: SchoolData
) -> None:
    first, second = [
        await issue(db, school, role=Role.PARENT, student_id=school.student_ids["张伟"])
        for _ in range(2)
    ]
    preview = await inspect(db, 701, first)
    assert isinstance(preview, InvitePreview)
    await redeem(db, preview.invite_id, 701, photo_consent=False)
    assert await inspect(db, 701, second) is Refusal.ALREADY_LINKED


async def test_expired_code_is_refused(db: Database, school: SchoolData) -> None:
    code = await issue(db, school, role=Role.TEACHER, teacher_id=school.teacher_id, ttl=-DAY)
    assert await inspect(db, 801, code) is Refusal.EXPIRED


async def test_wrong_guesses_are_throttled_even_for_a_right_code(
    db: Database, school: SchoolData
) -> None:
    code = await issue(db, school, role=Role.ADMIN)
    for _ in range(invites.MAX_FAILURES):
        assert await inspect(db, 901, invites.new_code()) is Refusal.UNKNOWN
    assert await inspect(db, 901, code) is Refusal.THROTTLED
    # Another account is not affected.
    assert isinstance(await inspect(db, 902, code), InvitePreview)


async def test_throttle_forgets_old_failures(db: Database, school: SchoolData) -> None:
    for _ in range(invites.MAX_FAILURES):
        await inspect(db, 903, "AAAA-AAAA-AAAA-AAAA")
    async with db.transaction() as session:
        from sqlalchemy import update

        from storage.models import InviteAttempt

        await session.execute(
            update(InviteAttempt).values(attempted_at=utcnow() - invites.FAILURE_WINDOW * 2)
        )
        assert (
            await invites.forget_failures(session, invites.FAILURE_WINDOW) == invites.MAX_FAILURES
        )
    assert await inspect(db, 903, "AAAA-AAAA-AAAA-AAAA") is Refusal.UNKNOWN


async def test_two_accounts_racing_for_one_code_cannot_both_win(
    db: Database, school: SchoolData
) -> None:
    code = await issue(db, school, role=Role.TEACHER, teacher_id=school.teacher_id)
    preview = await inspect(db, 1001, code)
    assert isinstance(preview, InvitePreview)
    results = await asyncio.gather(
        redeem(db, preview.invite_id, 1001),
        redeem(db, preview.invite_id, 1002),
        return_exceptions=True,
    )
    winners = [r for r in results if isinstance(r, Redeemed)]
    assert len(winners) == 1
    async with db.transaction() as session:
        assert await session.scalar(select(func.count()).select_from(User)) == 1


async def test_text_that_cannot_be_a_code_is_not_counted_as_a_guess(
    db: Database, school: SchoolData
) -> None:
    code = await issue(db, school, role=Role.ADMIN)
    for _ in range(invites.MAX_FAILURES + 2):
        assert await inspect(db, 904, "你好，请问怎么报名？") is Refusal.UNKNOWN
    assert isinstance(await inspect(db, 904, code), InvitePreview)
