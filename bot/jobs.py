"""Scheduled work: every periodic job's due runs go through the scheduler ledger.

PTB's JobQueue only wakes `tick` every few seconds (and flushes who was seen lately, and follows
broadcast progress). Each tick asks every job which runs are due at `now` — the digest at the
school's digest time, a scheduled broadcast at its time, a re-ping, offer expiry, the lottery
draw and the minimum-size check when enrolment closes, a teacher's roll reminder, the admins'
patrol record, the nightly housekeeping — and claims
each in the ledger (`bot.services.ledger`), so a run happens exactly once however many
processes tick one database and however long Kehou was down. A run missed while Kehou was
down is run once at the next tick, unless it is past its job's staleness limit: then it is
recorded as stale (a digest of a past evening) or held for an admin (a late broadcast).
See docs/SCHEDULER.md.
"""

from __future__ import annotations

import datetime as dt
import logging
import uuid
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from zoneinfo import ZoneInfo

from sqlalchemy import delete, exists, select
from sqlalchemy.ext.asyncio import AsyncSession
from telegram.ext import Application, JobQueue

from bot import broadcasting
from bot.context import BotContext, Runtime
from bot.services import (
    broadcasts,
    deadlines,
    enrolment,
    evening,
    fee_notices,
    growth,
    invites,
    ledger,
    lottery,
    members,
    outbox,
    patrol,
    ratings,
)
from storage.models import (
    Broadcast,
    Enrolment,
    EnrolmentStatus,
    Invite,
    LotteryDraw,
    School,
    Term,
    utcnow,
)

log = logging.getLogger(__name__)

# The JobQueue only wakes the ticker; a late wake-up loses nothing (the ledger knows what is
# due), so coalesce missed wake-ups into one.
JOB_DEFAULTS = {"misfire_grace_time": 3600, "coalesce": True, "max_instances": 1}
TICK_SECONDS = 5.0
HOUSEKEEPING_AT = dt.time(3, 0)
# Rating invitations and reminders go at this local time: after school, when a parent can
# answer with the child (the child's own view is asked of the child).
RATING_AT = dt.time(18, 0)
KEEP_DEAD_INVITES = dt.timedelta(days=90)
# Growth records found due this long after the term's last day are not sent by themselves.
GROWTH_LATE = dt.timedelta(days=7)


@dataclass(frozen=True)
class Due:
    """One run of a job: its ledger key and whether it is past the job's staleness limit."""

    job: str  # the ledger's job name: "digest", or "broadcast:17" for one broadcast's start
    school_id: int
    due_at: dt.datetime
    stale: bool = False

    @property
    def kind(self) -> str:
        return self.job.split(":", 1)[0]


Finder = Callable[[AsyncSession, dt.datetime], Awaitable[list[Due]]]
Runner = Callable[["Scheduler", AsyncSession, Due, dt.datetime], Awaitable[str]]


# --- when each job is due ---------------------------------------------------------------------


def last_local(zone: ZoneInfo, at: dt.time, now: dt.datetime) -> dt.datetime:
    """The latest local `at` not after `now`, in UTC."""
    local = now.astimezone(zone)
    when = dt.datetime.combine(local.date(), at, tzinfo=zone)
    if when > local:
        when = dt.datetime.combine(local.date() - dt.timedelta(days=1), at, tzinfo=zone)
    return when.astimezone(dt.UTC)


async def _schools(session: AsyncSession) -> list[School]:
    return list((await session.scalars(select(School).order_by(School.id))).all())


async def _daily(
    session: AsyncSession, now: dt.datetime, job: str, at: Callable[[School], dt.time]
) -> list[Due]:
    """Each school's run of `job`, daily at its local time `at`; stale once that day is over."""
    found = []
    for school in await _schools(session):
        zone = ZoneInfo(school.timezone)
        due_at = last_local(zone, at(school), now)
        same_day = due_at.astimezone(zone).date() == now.astimezone(zone).date()
        found.append(Due(job, school.id, due_at, stale=not same_day))
    return found


async def due_digests(session: AsyncSession, now: dt.datetime) -> list[Due]:
    """Each school's digest, at its digest time."""
    return await _daily(session, now, "digest", lambda s: s.digest_time)


async def due_patrols(session: AsyncSession, now: dt.datetime) -> list[Due]:
    """Each school's patrol record, at its patrol time."""
    return await _daily(session, now, "patrol", lambda s: s.patrol_time)


async def due_fee_reminders(session: AsyncSession, now: dt.datetime) -> list[Due]:
    """Each school's fee reminders, at its reminder time."""
    return await _daily(session, now, "fees", lambda s: s.fee_reminder_time)


def _local(zone: ZoneInfo, day: dt.date, at: dt.time) -> dt.datetime:
    return dt.datetime.combine(day, at, tzinfo=zone).astimezone(dt.UTC)


async def due_ratings(session: AsyncSession, now: dt.datetime) -> list[Due]:
    """Each term's rating window: closed at the end of its last day, reminders at the rating
    time two days before and on that day, opened at the rating time of its first day (an
    opening missed until after the last day is stale: it never opens by itself)."""
    found = []
    rows = await session.execute(
        select(Term, School.timezone)
        .join(School, School.id == Term.school_id)
        .where(Term.rating_closed_at.is_(None), Term.rating_closes_on.is_not(None))
        .order_by(Term.id)
    )
    for term, timezone in rows:
        zone = ZoneInfo(timezone)
        today = now.astimezone(zone).date()
        closes_on = term.rating_closes_on
        assert closes_on is not None
        if term.rating_opened_at is not None:
            close_at = _local(zone, closes_on + dt.timedelta(days=1), dt.time(0, 0))
            if close_at <= now:
                found.append(Due(f"ratings:close:{term.id}", term.school_id, close_at))
                continue
            for day in (closes_on - dt.timedelta(days=2), closes_on):
                at = _local(zone, day, RATING_AT)
                if at <= now and at >= term.rating_opened_at:
                    job = f"ratings:remind:{term.id}:{day.isoformat()}"
                    found.append(Due(job, term.school_id, at, stale=today != day))
        elif term.rating_opens_on is not None:
            open_at = _local(zone, term.rating_opens_on, RATING_AT)
            if open_at <= now:
                job = f"ratings:open:{term.id}"
                found.append(Due(job, term.school_id, open_at, stale=today > closes_on))
    return found


async def due_growth(session: AsyncSession, now: dt.datetime) -> list[Due]:
    """Each term's growth records, at the school's digest time on the term's last day; stale
    when that was more than `GROWTH_LATE` ago (a term that ended before Kehou knew it, or a
    long outage): such records go out only when an admin releases them with /growth."""
    found = []
    rows = await session.execute(
        select(Term, School.timezone, School.digest_time)
        .join(School, School.id == Term.school_id)
        .where(Term.growth_released_at.is_(None), Term.ends_on <= now.date() + dt.timedelta(1))
    )
    for term, timezone, digest_time in rows:
        at = _local(ZoneInfo(timezone), term.ends_on, digest_time)
        if at <= now:
            late = now - at > GROWTH_LATE
            found.append(Due(f"growth:{term.id}", term.school_id, at, stale=late))
    return found


async def due_rolls(session: AsyncSession, now: dt.datetime) -> list[Due]:
    """One run per session whose roll is not in its school's reminder time after the start."""
    return [Due(d.job, d.school_id, d.due_at) for d in await patrol.rolls_due(session, now)]


async def due_housekeeping(session: AsyncSession, now: dt.datetime) -> list[Due]:
    """Nightly at 03:00 in each school's zone; never stale (the latest missed night runs)."""
    return [
        Due("housekeeping", s.id, last_local(ZoneInfo(s.timezone), HOUSEKEEPING_AT, now))
        for s in await _schools(session)
    ]


async def due_broadcasts(session: AsyncSession, now: dt.datetime) -> list[Due]:
    """Scheduled broadcasts whose time has come; stale past the school's late_broadcast_hours."""
    found = []
    for broadcast in await broadcasts.due_scheduled(session, now):
        assert broadcast.scheduled_for is not None
        limit = await session.scalar(
            select(School.late_broadcast_hours).where(School.id == broadcast.school_id)
        )
        late = now - broadcast.scheduled_for > dt.timedelta(hours=limit or 0)
        found.append(
            Due(f"broadcast:{broadcast.id}", broadcast.school_id, broadcast.scheduled_for, late)
        )
    return found


async def due_repings(session: AsyncSession, now: dt.datetime) -> list[Due]:
    found = []
    for broadcast in await broadcasts.due_repings(session, now):
        school = await session.get(School, broadcast.school_id)
        assert school is not None
        if deadlines.in_quiet_hours(school, now):
            continue  # missed while Kehou was down, and it is night now: it waits for morning
        due_at = broadcasts.reping_due(school, broadcast)
        found.append(Due(f"reping:{broadcast.id}", broadcast.school_id, due_at))
    return found


async def due_offers(session: AsyncSession, now: dt.datetime) -> list[Due]:
    """Offer expiry, in one-minute slots, only when an open offer is past its deadline."""
    expired = await session.scalar(
        select(
            exists().where(
                Enrolment.status == EnrolmentStatus.WAITLISTED,
                Enrolment.offer_expires_at.is_not(None),
                Enrolment.offer_expires_at <= now,
            )
        )
    )
    if not expired:
        return []
    return [Due("offers", ledger.DEPLOYMENT, now.replace(second=0, microsecond=0))]


async def _closed_terms(session: AsyncSession, now: dt.datetime) -> list[Term]:
    rows = await session.scalars(
        select(Term).where(
            Term.enrolment_closes_at.is_not(None),
            Term.enrolment_closes_at <= now,
            Term.ends_on >= now.date(),
        )
    )
    return list(rows.all())


async def due_draws(session: AsyncSession, now: dt.datetime) -> list[Due]:
    """A term's lottery, once its enrolment has closed and until it is drawn."""
    found = []
    for term in await _closed_terms(session, now):
        drawn = await session.scalar(select(exists().where(LotteryDraw.term_id == term.id)))
        if not drawn:
            assert term.enrolment_closes_at is not None
            found.append(Due(f"draw:{term.id}", term.school_id, term.enrolment_closes_at))
    return found


async def due_minimum_checks(session: AsyncSession, now: dt.datetime) -> list[Due]:
    """The minimum-size question, once per term when its enrolment has closed (after the draw)."""
    found = []
    for term in await _closed_terms(session, now):
        assert term.enrolment_closes_at is not None
        found.append(Due(f"minimum:{term.id}", term.school_id, term.enrolment_closes_at))
    return found


# --- what each run does -----------------------------------------------------------------------


async def run_digest(sched: Scheduler, session: AsyncSession, due: Due, now: dt.datetime) -> str:
    if due.stale:
        # That evening is over; what was held waits for the next digest rather than at night.
        return "stale: held messages wait for the next digest"
    # The day's evening message per guardian, with their held notices folded in; then the
    # held notices of everyone else (a day without service, a family without a session).
    day = due.due_at.astimezone(ZoneInfo(await _zone(session, due.school_id))).date()
    built = await evening.build(session, sched.runtime.i18n, due.school_id, day, now)
    count = await evening.fold_held(session, sched.runtime.i18n, due.school_id, now)
    if built.families:
        return f"{built.families} evening messages ({built.held} notices in them), {count} digests"
    return f"{count} digests"


async def run_patrol(sched: Scheduler, session: AsyncSession, due: Due, now: dt.datetime) -> str:
    if due.stale:
        return "stale: that day is over"
    day = due.due_at.astimezone(ZoneInfo(await _zone(session, due.school_id))).date()
    return await patrol.send_record(session, sched.runtime.i18n, due.school_id, day, now)


async def run_fee_reminders(
    sched: Scheduler, session: AsyncSession, due: Due, now: dt.datetime
) -> str:
    if due.stale:
        return "stale: that day is over"
    day = due.due_at.astimezone(ZoneInfo(await _zone(session, due.school_id))).date()
    sent = await fee_notices.send_reminders(session, due.school_id, day)
    return f"{sent} fee reminders"


async def run_roll(sched: Scheduler, session: AsyncSession, due: Due, now: dt.datetime) -> str:
    parsed = patrol.parse_job(due.job)
    if parsed is None:
        return "not a session"
    return await patrol.remind(session, due.school_id, *parsed, now)


async def _zone(session: AsyncSession, school_id: int) -> str:
    zone = await session.scalar(select(School.timezone).where(School.id == school_id))
    return zone or "Asia/Shanghai"


async def run_broadcast(
    sched: Scheduler, session: AsyncSession, due: Due, now: dt.datetime
) -> str:
    broadcast = await session.get(Broadcast, int(due.job.split(":")[1]))
    assert broadcast is not None
    if due.stale:
        if not await broadcasts.hold(session, broadcast, now):
            return "not scheduled any more"
        asked = await broadcasts.ask_about_late(session, broadcast, now)
        return f"held: {asked} admins asked"
    count = await broadcasts.start(session, broadcast, now)
    return "not scheduled any more" if count is None else f"started: {count} recipients"


async def run_reping(sched: Scheduler, session: AsyncSession, due: Due, now: dt.datetime) -> str:
    broadcast = await session.get(Broadcast, int(due.job.split(":")[1]))
    assert broadcast is not None
    return f"{await broadcasts.reping(session, broadcast, now)} re-pinged"


async def run_offers(sched: Scheduler, session: AsyncSession, due: Due, now: dt.datetime) -> str:
    moved = await enrolment.expire_offers(session, now)
    return f"offers expired in {len(moved)} courses"


async def run_draw(sched: Scheduler, session: AsyncSession, due: Due, now: dt.datetime) -> str:
    return f"terms drawn: {await lottery.run_due_draws(session, now)}"


async def run_minimum(sched: Scheduler, session: AsyncSession, due: Due, now: dt.datetime) -> str:
    return f"courses asked about: {await enrolment.ask_about_small_courses(session, now)}"


async def run_ratings(sched: Scheduler, session: AsyncSession, due: Due, now: dt.datetime) -> str:
    _, step, term_id, *rest = due.job.split(":")
    term = await session.get(Term, int(term_id))
    school = await session.get(School, due.school_id)
    if term is None or school is None:
        return "no such term"
    if step == "open":
        if due.stale:
            return "stale: its closing day has passed; an admin may open it with /ratings"
        opened = await ratings.open_window(session, school, term, now)
        if opened is None:
            return "already open"
        return f"opened: {opened.ballots} ballots, {opened.families} guardians invited"
    if step == "remind":
        if due.stale:
            return "stale: that day is over"
        day = dt.date.fromisoformat(rest[0])
        return f"{await ratings.remind(session, school, term, day)} reminded"
    closed = await ratings.close_window(session, school, term, now)
    return "not open" if closed is None else f"closed: {closed} complete ballots"


async def run_growth(sched: Scheduler, session: AsyncSession, due: Due, now: dt.datetime) -> str:
    if due.stale:
        return "stale: the term ended long ago; an admin may release it with /growth"
    term = await session.get(Term, int(due.job.split(":")[1]))
    school = await session.get(School, due.school_id)
    if term is None or school is None:
        return "no such term"
    return f"{await growth.release(session, school, term, now)} growth records"


async def run_housekeeping(
    sched: Scheduler, session: AsyncSession, due: Due, now: dt.datetime
) -> str:
    await housekeeping(session, due.school_id, now)
    return "done"


async def housekeeping(session: AsyncSession, school_id: int, now: dt.datetime) -> None:
    """Nightly, in the school's time zone: forget what no longer needs keeping."""
    await invites.forget_failures(session, older_than=invites.FAILURE_WINDOW)
    await outbox.clear_old_content(session, now, school_id)
    # Codes that were used or expired long ago protect nothing and name children.
    await session.execute(
        delete(Invite).where(
            Invite.school_id == school_id,
            Invite.expires_at < now - KEEP_DEAD_INVITES,
        )
    )
    await ledger.prune(session, now)


# In this order each tick: a draw comes before the minimum-size check of the same term.
JOBS: dict[str, tuple[Finder, Runner]] = {
    "broadcast": (due_broadcasts, run_broadcast),
    "reping": (due_repings, run_reping),
    "offers": (due_offers, run_offers),
    "draw": (due_draws, run_draw),
    "minimum": (due_minimum_checks, run_minimum),
    "digest": (due_digests, run_digest),
    "roll": (due_rolls, run_roll),
    "patrol": (due_patrols, run_patrol),
    "fees": (due_fee_reminders, run_fee_reminders),
    "ratings": (due_ratings, run_ratings),
    "growth": (due_growth, run_growth),
    "housekeeping": (due_housekeeping, run_housekeeping),
}


# --- the ticker -------------------------------------------------------------------------------


@dataclass
class Scheduler:
    """One process's ticker over the shared ledger."""

    runtime: Runtime
    worker: str = field(default_factory=lambda: f"jobs-{uuid.uuid4().hex[:12]}")
    started: dt.datetime = field(default_factory=utcnow)
    ticks: int = 0

    async def tick(self, now: dt.datetime) -> list[str]:
        """Run everything due at `now`; returns the ledger keys this process ran."""
        db = self.runtime.db
        if self.ticks == 0:
            await self._after_downtime(now)
        async with db.transaction() as session:
            await ledger.beat(session, self.worker, self.started, now)
        self.ticks += 1
        ran = await self._orphans(now)
        for find, _ in JOBS.values():
            async with db.transaction() as session:
                fresh = [
                    d
                    for d in await find(session, now)
                    if not await ledger.claimed(session, d.job, d.school_id, d.due_at)
                ]
            for due in fresh:
                if await self._claim(due, now):
                    ran.append(await self._run(due, now))
        if ran:
            self.runtime.wake_delivery()
        return ran

    async def _after_downtime(self, now: dt.datetime) -> None:
        """At start-up: if no process ticked for a while, give open offers the time back.

        Claim and extension commit together, so a second process starting at the same time
        waits on the claim and then sees the deadlines already extended.
        """
        async with self.runtime.db.transaction() as session:
            last = await ledger.last_alive(session, self.worker)
            if last is None or now - last < ledger.DOWN_AFTER:
                return
            if not await ledger.claim(session, "downtime", ledger.DEPLOYMENT, last, self.worker):
                return
            extended = await deadlines.extend_for_downtime(session, last, now)
            await enrolment.tell_extended(session, extended)
            await ledger.finish(
                session,
                "downtime",
                ledger.DEPLOYMENT,
                last,
                self.worker,
                outcome=f"down {now - last}; {len(extended)} offers extended",
                now=now,
            )
        log.warning("Kehou was down for %s; %d seat offers extended", now - last, len(extended))

    async def _claim(self, due: Due, now: dt.datetime) -> bool:
        async with self.runtime.db.transaction() as session:
            return await ledger.claim(
                session, due.job, due.school_id, due.due_at, self.worker, now
            )

    async def _run(self, due: Due, now: dt.datetime) -> str:
        """The work and the run's `finish` commit together; an error is recorded on its own."""
        _, run = JOBS[due.kind]
        try:
            async with self.runtime.db.transaction() as session:
                outcome = await run(self, session, due, now)
                if not await ledger.finish(
                    session,
                    due.job,
                    due.school_id,
                    due.due_at,
                    self.worker,
                    outcome=outcome,
                    now=now,
                ):
                    raise LostRun(due.job)
        except LostRun:
            log.warning("run %s went to another process; its work here is undone", due.job)
            return due.job
        except Exception as error:
            log.exception("run %s for school %s failed", due.job, due.school_id)
            async with self.runtime.db.transaction() as session:
                await ledger.finish(
                    session,
                    due.job,
                    due.school_id,
                    due.due_at,
                    self.worker,
                    outcome="error",
                    error=f"{type(error).__name__}: {error}"[:2000],
                    now=now,
                )
            return due.job
        log.info("run %s for school %s: %s", due.job, due.school_id, outcome)
        return due.job

    async def _orphans(self, now: dt.datetime) -> list[str]:
        """Runs claimed by a process that died before finishing them: run them here."""
        ran = []
        async with self.runtime.db.transaction() as session:
            left = await ledger.orphans(session, now)
        for run in left:
            if run.job.split(":", 1)[0] not in JOBS:
                continue
            async with self.runtime.db.transaction() as session:
                if not await ledger.take_over(session, run, self.worker, now):
                    continue
            log.warning("run %s of %s taken over after it stopped", run.job, run.claimed_by)
            due = await self._recheck(run.job, run.school_id, run.due_at, now)
            ran.append(await self._run(due, now))
        return ran

    async def _recheck(
        self, job: str, school_id: int, due_at: dt.datetime, now: dt.datetime
    ) -> Due:
        """The taken-over run with its staleness as of now (a digest may be stale by now)."""
        find, _ = JOBS[job.split(":", 1)[0]]
        async with self.runtime.db.transaction() as session:
            for due in await find(session, now):
                if (due.job, due.school_id, due.due_at) == (job, school_id, due_at):
                    return due
        # No longer due (a broadcast cancelled meanwhile): the runner finds nothing to do.
        return Due(job, school_id, due_at, stale=job.startswith(("digest", "patrol", "fees")))


class LostRun(Exception):
    """This process was taken for dead and its run given to another."""


# --- the JobQueue -----------------------------------------------------------------------------


def configure_scheduler(job_queue: JobQueue) -> None:  # type: ignore[type-arg]
    """Give every job Kehou's defaults; call before the scheduler starts."""
    job_queue.scheduler.configure(job_defaults=JOB_DEFAULTS, **job_queue.scheduler_configuration)


async def install_jobs(application: Application, runtime: Runtime) -> list[str]:  # type: ignore[type-arg]
    """Start the ticker and the two in-memory jobs; returns the job names.

    Nothing here depends on the schools: what is due comes from the database on every tick,
    so installing again (a re-import) only replaces the wake-ups.
    """
    job_queue = application.job_queue
    assert job_queue is not None
    application.bot_data.setdefault("scheduler", Scheduler(runtime))
    names = []

    def replace(name: str) -> str:
        for old in job_queue.get_jobs_by_name(name):
            old.schedule_removal()
        names.append(name)
        return name

    job_queue.run_repeating(tick, interval=TICK_SECONDS, first=0.5, name=replace("ledger"))
    job_queue.run_repeating(record_seen, interval=30, first=30, name=replace("seen"))
    # Broadcast progress: finished broadcasts marked done, senders' status messages edited.
    job_queue.run_repeating(
        broadcasting.tick,  # type: ignore[arg-type]
        interval=broadcasting.TICK_SECONDS,
        first=0.5,
        name=replace("broadcasts"),
    )
    log.info("scheduled %d jobs", len(names))
    return names


async def tick(context: BotContext) -> None:
    scheduler: Scheduler = context.bot_data["scheduler"]
    await scheduler.tick(utcnow())


async def record_seen(context: BotContext) -> None:
    """Write who wrote to the bot lately, in one statement (see members.mark_seen)."""
    await flush_seen(context.runtime)


async def flush_seen(runtime: Runtime) -> None:
    users, runtime.seen = runtime.seen, set()
    if users:
        async with runtime.db.transaction() as session:
            await members.mark_seen(session, users, utcnow())
