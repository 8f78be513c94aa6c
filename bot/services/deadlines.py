"""Deadlines given to families: never at night, and not eaten by Kehou's own downtime.

A deadline that falls inside the school's quiet hours (default 21:00–07:00, in the school's
time zone) moves to the end of them, the next morning. When Kehou was down, every open seat
offer gets the time back that the outage took from it. See docs/SCHEDULER.md.
"""

from __future__ import annotations

import datetime as dt
from zoneinfo import ZoneInfo

from sqlalchemy import select, update
from sqlalchemy.ext.asyncio import AsyncSession

from storage.models import Enrolment, EnrolmentStatus, School


def in_quiet_hours(school: School, when: dt.datetime) -> bool:
    """Whether `when` lies in the school's quiet hours (quiet_from == quiet_until: none)."""
    local = when.astimezone(ZoneInfo(school.timezone)).time()
    start, end = school.quiet_from, school.quiet_until
    if start == end:
        return False
    if start < end:
        return start <= local < end
    return local >= start or local < end  # across midnight, the usual case


def out_of_quiet_hours(school: School, when: dt.datetime) -> dt.datetime:
    """`when`, or the end of the quiet hours it falls in (the next quiet_until), in UTC."""
    if not in_quiet_hours(school, when):
        return when
    zone = ZoneInfo(school.timezone)
    local = when.astimezone(zone)
    morning = dt.datetime.combine(local.date(), school.quiet_until, tzinfo=zone)
    if morning <= local:
        morning = dt.datetime.combine(
            local.date() + dt.timedelta(days=1), school.quiet_until, tzinfo=zone
        )
    return morning.astimezone(dt.UTC)


def family_deadline(school: School, start: dt.datetime, hours: int) -> dt.datetime:
    """`hours` after `start`, moved out of the school's quiet hours."""
    return out_of_quiet_hours(school, start + dt.timedelta(hours=hours))


async def offer_deadline(
    session: AsyncSession, school_id: int, start: dt.datetime, hours: int
) -> dt.datetime:
    """The deadline of a seat offer made at `start` (see `family_deadline`)."""
    school = await session.get(School, school_id)
    assert school is not None
    return family_deadline(school, start, hours)


async def extend_for_downtime(
    session: AsyncSession, down_from: dt.datetime, up_at: dt.datetime
) -> list[int]:
    """Give every offer that was still open when Kehou went down the time the outage took.

    An offer due after `down_from` had its last (deadline − down_from) unusable; it gets that
    back from `up_at`, which is the old deadline plus the downtime either way, then moved out
    of quiet hours. Each offer is changed compare-and-set on its old deadline. Returns the
    enrolment ids extended (their families are told the new deadline, `enrolment.tell_extended`).
    """
    downtime = up_at - down_from
    rows = await session.execute(
        select(Enrolment.id, Enrolment.offer_expires_at, School)
        .join(School, School.id == Enrolment.school_id)
        .where(
            Enrolment.status == EnrolmentStatus.WAITLISTED,
            Enrolment.offer_expires_at.is_not(None),
            Enrolment.offer_expires_at > down_from,
        )
    )
    extended = []
    for enrolment_id, deadline, school in rows.all():
        assert deadline is not None
        result = await session.execute(
            update(Enrolment)
            .where(
                Enrolment.id == enrolment_id,
                Enrolment.status == EnrolmentStatus.WAITLISTED,
                Enrolment.offer_expires_at == deadline,
            )
            .values(offer_expires_at=out_of_quiet_hours(school, deadline + downtime))
            .execution_options(synchronize_session=False)
        )
        if result.rowcount == 1:  # type: ignore[attr-defined]
            extended.append(enrolment_id)
    return extended
