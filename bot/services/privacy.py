"""A guardian's rights over their data (PIPL art. 28, 31): see it all, and have it deleted."""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass, field
from typing import Any

from sqlalchemy import delete, func, null, select, update
from sqlalchemy.ext.asyncio import AsyncSession

from bot.services import audit, guard
from bot.services.members import Member
from storage.models import (
    AttendanceMark,
    Course,
    Dismissal,
    Enrolment,
    EnrolmentEvent,
    GrowthNote,
    Guardianship,
    Leave,
    Outbox,
    OutboxStatus,
    PickupPerson,
    RatingTurnout,
    Role,
    School,
    SchoolClass,
    Student,
    User,
    UserRole,
)


@dataclass
class ChildRecord:
    name: str
    student_no: str
    class_name: str
    photo_consent: bool
    consented_at: dt.datetime
    consent_version: str = ""
    enrolments: list[dict[str, Any]] = field(default_factory=list)
    leaves: list[dict[str, Any]] = field(default_factory=list)
    attendance: list[dict[str, Any]] = field(default_factory=list)
    # Who may collect the child, and the standing permission to go home alone (/pickup).
    pickup_people: list[dict[str, Any]] = field(default_factory=list)
    alone_permitted_at: dt.datetime | None = None
    dismissals: list[dict[str, Any]] = field(default_factory=list)
    # The term-end ratings the family was asked for and whether it gave them. What it answered
    # is not here: ballots carry no name, so nobody can find them again (docs/RATINGS.md).
    rated: list[dict[str, Any]] = field(default_factory=list)
    # Teachers' notes released with the child's growth record (课后成长档案).
    growth_notes: list[dict[str, Any]] = field(default_factory=list)


@dataclass
class GuardianRecord:
    """Everything Kehou holds about one account and the children linked to it."""

    school_name: str
    telegram_id: int
    display_name: str
    locale: str | None
    roles: list[str]
    created_at: dt.datetime
    children: list[ChildRecord]
    timezone: str = "Asia/Shanghai"  # the school's: every time is shown in it
    chat_id: int | None = None
    notice_mode: str = "instant"
    update_mode: str = "digest"
    dismissal_notice: bool = False
    blocked_at: dt.datetime | None = None
    last_seen_at: dt.datetime | None = None
    messages: list[dict[str, Any]] = field(default_factory=list)  # time, kind, status

    def as_dict(self) -> dict[str, Any]:
        def plain(value: Any) -> Any:
            if isinstance(value, dt.date | dt.datetime | dt.time):
                return value.isoformat()
            if isinstance(value, list):
                return [plain(v) for v in value]
            if isinstance(value, dict):
                return {k: plain(v) for k, v in value.items()}
            if isinstance(value, ChildRecord):
                return plain(value.__dict__)
            return value

        return {k: plain(v) for k, v in self.__dict__.items()}


async def export(session: AsyncSession, user_id: int) -> GuardianRecord:
    """The guardian's own record, for /mydata."""
    user = await session.get(User, user_id)
    if user is None:
        raise LookupError(user_id)
    school = await session.get(School, user.school_id)
    assert school is not None
    rows = await session.execute(
        select(Guardianship, Student, SchoolClass.name)
        .join(Student, Student.id == Guardianship.student_id)
        .join(SchoolClass, SchoolClass.id == Student.class_id)
        .where(Guardianship.user_id == user_id)
        .order_by(Student.name)
    )
    children = []
    for link, student, class_name in rows:
        child = ChildRecord(
            name=student.name,
            student_no=student.student_no,
            class_name=class_name,
            photo_consent=link.photo_consent,
            consented_at=link.consented_at,
            consent_version=link.consent_version,
        )
        history = await session.execute(
            select(
                Course.name, EnrolmentEvent.status, EnrolmentEvent.note, EnrolmentEvent.created_at
            )
            .join(Enrolment, Enrolment.id == EnrolmentEvent.enrolment_id)
            .join(Course, Course.id == Enrolment.course_id)
            .where(Enrolment.student_id == student.id)
            .order_by(EnrolmentEvent.created_at, EnrolmentEvent.id)
        )
        for course, status, note, at in history:
            child.enrolments.append(
                {"course": course, "status": status.value, "note": note, "at": at}
            )
        for leave in await session.scalars(
            select(Leave).where(Leave.student_id == student.id).order_by(Leave.date, Leave.id)
        ):
            child.leaves.append(
                {
                    "date": leave.date,
                    "period": leave.period,
                    "pickup_at": leave.pickup_at,
                    "reason": leave.reason,
                    "cancelled_at": leave.cancelled_at,
                    "created_at": leave.created_at,
                }
            )
        for mark in await session.scalars(
            select(AttendanceMark)
            .where(AttendanceMark.student_id == student.id)
            .order_by(AttendanceMark.id)
        ):
            child.attendance.append(
                {
                    "session_id": mark.session_id,
                    "status": mark.code,
                    "note": mark.note,
                    "at": mark.created_at,
                }
            )
        child.alone_permitted_at = student.alone_permitted_at
        for person in await session.scalars(
            select(PickupPerson)
            .where(PickupPerson.student_id == student.id)
            .order_by(PickupPerson.id)
        ):
            child.pickup_people.append(
                {
                    "name": person.name,
                    "relation": person.relation,
                    "added_at": person.created_at,
                    "removed_at": person.removed_at,
                }
            )
        for left in await session.scalars(
            select(Dismissal).where(Dismissal.student_id == student.id).order_by(Dismissal.id)
        ):
            child.dismissals.append(
                {"session_id": left.session_id, "way": left.way.value, "at": left.left_at}
            )
        for turnout in await session.scalars(
            select(RatingTurnout)
            .where(RatingTurnout.student_id == student.id)
            .order_by(RatingTurnout.term_id, RatingTurnout.course_id)
        ):
            child.rated.append(
                {"term_id": turnout.term_id, "course_id": turnout.course_id, "done": turnout.done}
            )
        for released in await session.scalars(
            select(GrowthNote)
            .where(GrowthNote.student_id == student.id, GrowthNote.released_at.is_not(None))
            .order_by(GrowthNote.created_at, GrowthNote.id)
        ):
            child.growth_notes.append(
                {
                    "term_id": released.term_id,
                    "text": released.text,
                    "released_at": released.released_at,
                }
            )
        children.append(child)
    messages = [
        {"at": at, "kind": kind, "status": status.value}
        for at, kind, status in await session.execute(
            select(func.coalesce(Outbox.sent_at, Outbox.created_at), Outbox.kind, Outbox.status)
            .where(Outbox.user_id == user_id)
            .order_by(Outbox.created_at, Outbox.id)
        )
    ]
    return GuardianRecord(
        school_name=school.name,
        telegram_id=user.telegram_id,
        display_name=user.display_name,
        locale=user.locale,
        roles=sorted(r.value for r in user.role_set),
        created_at=user.created_at,
        children=children,
        timezone=school.timezone,
        chat_id=user.chat_id,
        notice_mode=user.notice_mode.value,
        update_mode=user.update_mode.value,
        dismissal_notice=user.dismissal_notice,
        blocked_at=user.blocked_at,
        last_seen_at=user.last_seen_at,
        messages=messages,
    )


# A message not yet sent: waiting, held for the evening digest, retrying, or in a worker's hands.
# Cancelling a claimed row wins: the worker records its outcome only while the row is sending.
UNSENT = (OutboxStatus.PENDING, OutboxStatus.HELD, OutboxStatus.SENDING)
SCRUBBED_CHAT_ID = 0  # outbox.chat_id is required; 0 is no Telegram chat


@dataclass(frozen=True)
class Forgotten:
    """What /forget did, for the reply."""

    schools: list[str]
    cancelled: int  # messages that will not be sent
    scrubbed: int  # messages kept for the counts, their content and chat id removed
    account_deleted: bool  # no staff role remains anywhere: every account row is gone


async def forget(session: AsyncSession, telegram_id: int) -> Forgotten:
    """Unlink the guardian from every child, at every school, and delete their own data.

    Children's school records (roster, attendance) belong to the school and stay. Ratings stay
    as anonymous feedback (their user link is cleared). Messages not yet sent are cancelled;
    every message row keeps only its kind, status and times. A user who is also a teacher or
    admin keeps that account and role; only the guardian side is removed.
    """
    users = list(
        await session.scalars(
            select(User).where(User.telegram_id == telegram_id).order_by(User.school_id)
        )
    )
    if not users:
        return Forgotten([], 0, 0, account_deleted=False)
    user_ids = [u.id for u in users]
    school_names = list(
        await session.scalars(
            select(School.name)
            .where(School.id.in_({u.school_id for u in users}))
            .order_by(School.name)
        )
    )
    await session.execute(delete(Guardianship).where(Guardianship.user_id.in_(user_ids)))
    await session.execute(
        delete(UserRole).where(UserRole.user_id.in_(user_ids), UserRole.role == Role.PARENT)
    )
    cancelled = await session.execute(
        update(Outbox)
        .where(Outbox.user_id.in_(user_ids), Outbox.status.in_(UNSENT))
        .values(status=OutboxStatus.CANCELLED, claimed_by=None, locked_until=None)
        .execution_options(synchronize_session=False)
    )
    # Before the accounts go: deleting them clears outbox.user_id, and with it the way back.
    scrubbed = await session.execute(
        update(Outbox)
        .where(Outbox.user_id.in_(user_ids))
        .values(
            chat_id=SCRUBBED_CHAT_ID,
            params=null(),
            text=None,
            buttons=null(),
            attachment=null(),
            last_error=None,
            user_id=None,
        )
        .execution_options(synchronize_session=False)
    )
    whole_account = True
    for user in users:
        await session.refresh(user, ["roles"])
        if user.roles:
            whole_account = False
            continue
        await session.delete(user)
    # The audit rows keep no personal data: only that a guardian used their right.
    for school_id in sorted({u.school_id for u in users}):
        audit.record(
            session, school_id, "guardian.forget", details={"account_deleted": whole_account}
        )
    await session.flush()
    cancelled_count = cancelled.rowcount  # type: ignore[attr-defined]
    return Forgotten(
        schools=school_names,
        cancelled=cancelled_count,
        scrubbed=scrubbed.rowcount - cancelled_count,  # type: ignore[attr-defined]
        account_deleted=whole_account,
    )


#: A photo choice refused: not a parent, or not this child's guardian.
PHOTO_REFUSED = "photo.refused"


async def photo_choices(
    session: AsyncSession, member: Member | None
) -> list[tuple[int, str, bool]]:
    """(student id, name, photos allowed) for each child of this guardian (none unless a
    parent). One statement."""
    user_id = guard.parent(member)
    if user_id is None:
        return []
    rows = await session.execute(
        select(Student.id, Student.name, Guardianship.photo_consent)
        .join(Guardianship, Guardianship.student_id == Student.id)
        .where(Guardianship.user_id == user_id)
        .order_by(Student.name)
    )
    return [(student_id, name, allowed) for student_id, name, allowed in rows]


async def choose_photos(
    session: AsyncSession,
    member: Member | None,
    student_id: int,
    allowed: bool,
    *,
    pressed: str | None = None,
) -> list[tuple[int, str, bool]] | None:
    """A guardian's photo choice for one child, audited when it changes; the choices for all
    their children afterwards. None (refused, audited) unless the member is a parent and one
    of the child's guardians. Two statements, three when the choice changes."""
    user_id = guard.parent(member)
    link = None
    if user_id is not None:
        link = await session.scalar(
            select(Guardianship).where(
                Guardianship.user_id == user_id, Guardianship.student_id == student_id
            )
        )
    if link is None:
        guard.refuse(session, member, PHOTO_REFUSED, pressed)
        return None
    if link.photo_consent != allowed:
        link.photo_consent = allowed
        audit.record(
            session,
            link.school_id,
            "guardian.photo_consent",
            actor_user_id=user_id,
            target=("student", student_id),
            details={"allowed": allowed},
        )
    return await photo_choices(session, member)
