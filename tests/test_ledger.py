"""The scheduler ledger: each run exactly once, missed runs by their staleness rule, deadlines
that never fall at night and get back what an outage took. The clock is driven by hand."""

from __future__ import annotations

import datetime as dt
from pathlib import Path

from sqlalchemy import select, update

from bot import jobs
from bot.context import KehouApplication
from bot.services import broadcasts, deadlines, ledger
from bot.services.broadcasts import Audience, AudienceKind
from storage.db import Database
from storage.models import (
    Broadcast,
    BroadcastStatus,
    Enrolment,
    EnrolmentStatus,
    JobRun,
    Outbox,
    OutboxStatus,
    Role,
    School,
    User,
)
from tests.factories import SchoolData, add_member
from tests.harness import FakeUser

SHANGHAI = dt.timezone(dt.timedelta(hours=8))
ADMIN, MOM = 800, 801


def local(day: int, hour: int, minute: int = 0) -> dt.datetime:
    """A time in the test school's zone (Asia/Shanghai), as UTC."""
    return dt.datetime(2026, 12, day, hour, minute, tzinfo=SHANGHAI).astimezone(dt.UTC)


async def runs(db: Database, job: str, due_at: dt.datetime | None = None) -> list[JobRun]:
    async with db.transaction() as session:
        found = await session.scalars(select(JobRun).where(JobRun.job == job).order_by(JobRun.id))
        return [r for r in found.all() if due_at is None or r.due_at == due_at]


async def held_for_digest(db: Database, school: SchoolData) -> int:
    """A parent who reads notices in the digest, with one notice held for it; the school's
    digest is at 19:00."""
    mom = await add_member(db, school, MOM, {Role.PARENT}, ("李小明",))
    async with db.transaction() as session:
        await session.execute(update(School).values(digest_time=dt.time(19, 0)))
        session.add(
            Outbox(
                school_id=school.school_id,
                user_id=mom,
                chat_id=MOM,
                kind="notice",
                text="明天停课",
                status=OutboxStatus.HELD,
            )
        )
    return mom


async def digests(db: Database) -> int:
    async with db.transaction() as session:
        return len((await session.scalars(select(Outbox).where(Outbox.kind == "digest"))).all())


async def test_two_processes_ticking_one_ledger_run_each_digest_once(
    app: KehouApplication, db: Database, school: SchoolData
) -> None:
    await held_for_digest(db, school)
    one, two = jobs.Scheduler(app.runtime), jobs.Scheduler(app.runtime)
    before, after = local(2, 18, 59), local(2, 19)
    await one.tick(before)  # the first tick records yesterday's digest as stale
    # Both wake just after 19:00: only one of them sends the digest.
    ran = [*await one.tick(after), *await two.tick(after)]
    assert ran.count("digest") == 1
    assert await digests(db) == 1
    (run,) = await runs(db, "digest", local(2, 19))
    assert run.finished_at is not None and run.error is None
    assert run.outcome == "1 digests"
    # The claim itself: a second claim of the same run is refused.
    async with db.transaction() as session:
        assert not await ledger.claim(session, "digest", school.school_id, local(2, 19), "x")


async def test_a_digest_missed_while_down_is_sent_at_start_the_same_evening(
    app: KehouApplication, db: Database, school: SchoolData
) -> None:
    await held_for_digest(db, school)
    await jobs.Scheduler(app.runtime).tick(local(2, 18))
    # Down from 18:00 to 20:30: the 19:00 digest goes out once at start, not tomorrow.
    restarted = jobs.Scheduler(app.runtime)
    assert "digest" in await restarted.tick(local(2, 20, 30))
    assert await digests(db) == 1
    assert "digest" not in await restarted.tick(local(2, 20, 31))


async def test_a_digest_of_a_past_evening_is_not_sent_at_night(
    app: KehouApplication, db: Database, school: SchoolData
) -> None:
    await held_for_digest(db, school)
    await jobs.Scheduler(app.runtime).tick(local(2, 18))
    # Down until 01:00: yesterday's digest is recorded as stale, nothing is sent at night.
    assert "digest" in await jobs.Scheduler(app.runtime).tick(local(3, 1))
    assert await digests(db) == 0
    (run,) = await runs(db, "digest", local(2, 19))
    assert run.outcome is not None and run.outcome.startswith("stale")


async def scheduled(db: Database, school: SchoolData, when: dt.datetime) -> int:
    admin = await add_member(db, school, ADMIN, {Role.ADMIN})
    await add_member(db, school, MOM, {Role.PARENT}, ("李小明",))
    async with db.transaction() as session:
        broadcast = await broadcasts.create(
            session,
            school.school_id,
            sender_user_id=admin,
            text="<b>周五演出</b>",
            audience=Audience(AudienceKind.PARENTS),
            scheduled_for=when,
            now=when - dt.timedelta(days=1),
        )
        return broadcast.id


async def test_a_broadcast_due_long_ago_waits_for_the_admin(
    app: KehouApplication, db: Database, school: SchoolData
) -> None:
    broadcast_id = await scheduled(db, school, local(2, 9))
    # Kehou comes back at 12:00, three hours late (the school allows two): held, admin asked.
    assert f"broadcast:{broadcast_id}" in await jobs.Scheduler(app.runtime).tick(local(2, 12))
    async with db.transaction() as session:
        broadcast = await session.get(Broadcast, broadcast_id)
        assert broadcast is not None
        assert broadcast.status is BroadcastStatus.SCHEDULED and broadcast.held_at is not None
        sent = list((await session.scalars(select(Outbox))).all())
    assert [(r.chat_id, r.kind) for r in sent] == [(ADMIN, "broadcast_late")]
    assert sent[0].buttons == [
        [
            {"label": broadcasts.SEND_NOW_LABEL, "data": f"lb:s:{broadcast_id}"},
            {"label": broadcasts.CANCEL_LATE_LABEL, "data": f"lb:q:{broadcast_id}"},
        ]
    ]
    # Later ticks leave it waiting; the admin's "send now" starts it.
    await jobs.Scheduler(app.runtime).tick(local(2, 12, 5))
    async with db.transaction() as session:
        admin = await session.scalar(select(User.id).where(User.telegram_id == ADMIN))
        assert admin is not None
        count = await broadcasts.send_held(
            session, school.school_id, broadcast_id, admin, local(2, 12, 6)
        )
        assert count == 1
        again = await broadcasts.send_held(
            session, school.school_id, broadcast_id, admin, local(2, 12, 6)
        )
        assert again is None


async def test_a_broadcast_a_little_late_goes_out_at_start(
    app: KehouApplication, db: Database, school: SchoolData
) -> None:
    broadcast_id = await scheduled(db, school, local(2, 9))
    assert f"broadcast:{broadcast_id}" in await jobs.Scheduler(app.runtime).tick(local(2, 10))
    async with db.transaction() as session:
        broadcast = await session.get(Broadcast, broadcast_id)
        assert broadcast is not None and broadcast.status is BroadcastStatus.SENDING


async def test_a_reminder_missed_while_down_waits_for_the_morning(
    app: KehouApplication, db: Database, school: SchoolData
) -> None:
    admin = await add_member(db, school, ADMIN, {Role.ADMIN})
    await add_member(db, school, MOM, {Role.PARENT}, ("李小明",))
    async with db.transaction() as session:
        broadcast = await broadcasts.create(
            session,
            school.school_id,
            sender_user_id=admin,
            text="请交回执",
            audience=Audience(AudienceKind.PARENTS),
            ack=True,
            reping_hours=4,
            now=local(2, 9),
        )
        await session.execute(
            update(Broadcast).where(Broadcast.id == broadcast.id).values(started_at=local(2, 9))
        )
        await session.execute(update(Outbox).values(status=OutboxStatus.SENT))
    # Due at 13:00; Kehou was down and comes back at 23:00: the reminder waits for 07:00.
    key = f"reping:{broadcast.id}"
    assert key not in await jobs.Scheduler(app.runtime).tick(local(2, 23))
    assert key not in await jobs.Scheduler(app.runtime).tick(local(3, 6, 59))
    assert key in await jobs.Scheduler(app.runtime).tick(local(3, 7))
    async with db.transaction() as session:
        reminders = (
            await session.scalars(select(Outbox.chat_id).where(Outbox.kind == "broadcast_reping"))
        ).all()
    assert reminders == [MOM]
    (run,) = await runs(db, key)
    assert run.due_at == local(2, 13)


async def test_an_offer_deadline_at_night_moves_to_the_morning(
    db: Database, school: SchoolData
) -> None:
    async with db.transaction() as session:
        row = await session.get(School, school.school_id)
        assert row is not None
        # Made at 13:39 with 12 hours: 01:39 is in the quiet hours, so 07:00 that morning.
        assert deadlines.family_deadline(row, local(2, 13, 39), 12) == local(3, 7)
        assert deadlines.family_deadline(row, local(2, 8), 12) == local(2, 20)
        assert deadlines.family_deadline(row, local(2, 10), 12) == local(3, 7)


async def offer(db: Database, school: SchoolData, deadline: dt.datetime) -> int:
    from tests.test_enrolment import make_course

    course = await make_course(db, school, "LEDGER", capacity=1)
    async with db.transaction() as session:
        enrolment = Enrolment(
            school_id=school.school_id,
            student_id=school.student_ids["李小明"],
            course_id=course,
            status=EnrolmentStatus.WAITLISTED,
            waitlist_position=1,
            offer_expires_at=deadline,
        )
        session.add(enrolment)
        await session.flush()
        return enrolment.id


async def test_offers_get_back_the_time_kehou_was_down(
    app: KehouApplication, db: Database, school: SchoolData
) -> None:
    await add_member(db, school, MOM, {Role.PARENT}, ("李小明",))
    enrolment_id = await offer(db, school, local(2, 12))
    await jobs.Scheduler(app.runtime).tick(local(2, 10))
    # Down from 10:00 to 15:00: the family had two hours left and gets them after the restart,
    # instead of the offer expiring seconds after start.
    restarted = jobs.Scheduler(app.runtime)
    assert "offers" not in await restarted.tick(local(2, 15))
    async with db.transaction() as session:
        row = await session.get(Enrolment, enrolment_id)
        assert row is not None and row.status is EnrolmentStatus.WAITLISTED
        assert row.offer_expires_at == local(2, 17)
    (run,) = await runs(db, "downtime")
    assert run.outcome is not None and "1 offers extended" in run.outcome
    # The family is told the new deadline, with the buttons to answer.
    async with db.transaction() as session:
        (told,) = (
            await session.scalars(select(Outbox).where(Outbox.kind == "seat_offer_extended"))
        ).all()
    assert told.chat_id == MOM and told.params is not None
    assert told.params["deadline"] == {"$datetime": local(2, 17).isoformat()}
    assert told.buttons is not None and told.buttons[0][0]["data"] == f"of:{enrolment_id}:1"
    # A second process starting now sees no downtime and extends nothing again.
    await jobs.Scheduler(app.runtime).tick(local(2, 15) + dt.timedelta(seconds=10))
    assert len(await runs(db, "downtime")) == 1


async def test_a_run_killed_between_claim_and_finish_is_recorded_and_run_again_once(
    app: KehouApplication, db: Database, school: SchoolData
) -> None:
    await held_for_digest(db, school)
    dead = jobs.Scheduler(app.runtime)
    await dead.tick(local(2, 19) - dt.timedelta(seconds=10))
    # The process claims the 19:00 digest and is killed before its work commits.
    async with db.transaction() as session:
        assert await ledger.claim(session, "digest", school.school_id, local(2, 19), dead.worker)
    (run,) = await runs(db, "digest", local(2, 19))
    assert run.claimed_by == dead.worker and run.finished_at is None  # recorded, unfinished
    # Another process, while the dead one's heartbeat is fresh, leaves the run alone.
    live = jobs.Scheduler(app.runtime)
    assert "digest" not in await live.tick(local(2, 19))
    assert await digests(db) == 0
    # Once the heartbeat is DEAD_AFTER old, the run is taken over and done once.
    later = local(2, 19) + ledger.DEAD_AFTER + dt.timedelta(seconds=5)
    assert (await live.tick(later)).count("digest") == 1
    assert await digests(db) == 1
    (run,) = await runs(db, "digest", local(2, 19))
    assert run.claimed_by == live.worker and run.finished_at is not None
    # The dead process, if it was only slow, cannot finish the run it lost.
    async with db.transaction() as session:
        assert not await ledger.finish(
            session, "digest", school.school_id, local(2, 19), dead.worker, outcome="late"
        )
    assert "digest" not in await live.tick(later + dt.timedelta(seconds=5))
    assert await digests(db) == 1


async def test_an_error_is_recorded_with_the_run(
    app: KehouApplication, db: Database, school: SchoolData
) -> None:
    broadcast_id = await scheduled(db, school, local(2, 9))
    async with db.transaction() as session:
        await session.execute(
            update(Broadcast).where(Broadcast.id == broadcast_id).values(audience={"kind": "x"})
        )
    app.errors_expected = True  # type: ignore[attr-defined]
    await jobs.Scheduler(app.runtime).tick(local(2, 9, 1))
    (run,) = await runs(db, f"broadcast:{broadcast_id}")
    assert run.finished_at is not None and run.outcome == "error"
    assert run.error is not None and "ValueError" in run.error


def test_the_school_file_sets_quiet_hours_and_the_late_broadcast_limit(tmp_path: Path) -> None:
    from bot.services.importer import load_and_validate
    from tests.test_importer import SMALL, find, problems_of, write_small

    line = "school: {code: small, name: 小河小学, timezone: Asia/Shanghai}"
    defaults = load_and_validate(write_small(tmp_path)).school
    assert (defaults.quiet_from, defaults.quiet_until) == (dt.time(21), dt.time(7))
    assert defaults.late_broadcast_hours == 2
    text = SMALL.replace(
        line,
        "school: {code: small, name: 小河小学, quiet_from: '22:00', quiet_until: '06:30',"
        " late_broadcast_hours: 5}",
    )
    school = load_and_validate(write_small(tmp_path, text)).school
    assert (school.quiet_from, school.quiet_until) == (dt.time(22), dt.time(6, 30))
    assert school.late_broadcast_hours == 5
    broken = SMALL.replace(
        line,
        "school: {code: small, name: 小河小学, quiet_from: '22:00', late_broadcast_hours: -1}",
    )
    problems = problems_of(write_small(tmp_path, broken))
    assert "go together" in find(problems, "school", "quiet_until").message
    find(problems, "school", "late_broadcast_hours")


async def test_the_admins_go_ahead_on_a_late_broadcast_is_checked_and_truthful(
    app: KehouApplication, make_user, db: Database, school: SchoolData
) -> None:  # type: ignore[no-untyped-def]
    broadcast_id = await scheduled(db, school, local(2, 9))
    await jobs.Scheduler(app.runtime).tick(local(2, 12))  # held, admins asked
    parent = make_user(MOM)
    await parent.press(f"lb:s:{broadcast_id}")  # a parent pressing it changes nothing
    admin = make_user(ADMIN)
    assert "已撤销" in FakeUser.texts(await admin.press(f"lb:c:{broadcast_id}"))
    assert "已经发出或已撤销" in FakeUser.texts(await admin.press(f"lb:s:{broadcast_id}"))
    async with db.transaction() as session:
        found = await session.get(Broadcast, broadcast_id)
        assert found is not None and found.status is BroadcastStatus.CANCELLED
        kinds = (await session.scalars(select(Outbox.kind))).all()
    assert "broadcast" not in kinds
