"""Scheduled work, derived from the database whenever the bot starts."""

from __future__ import annotations

import datetime as dt
import logging
from zoneinfo import ZoneInfo

from sqlalchemy import delete, select
from telegram.ext import Application, JobQueue

from bot.context import BotContext, Runtime
from bot.services import enrolment, invites, lottery, members, outbox
from storage.models import Invite, School, utcnow

log = logging.getLogger(__name__)

# APScheduler skips a run that starts more than misfire_grace_time late (default: 1 s), which
# after a restart or a busy event loop silently drops a day's work. Allow an hour, and run a
# job that missed several times only once.
JOB_DEFAULTS = {"misfire_grace_time": 3600, "coalesce": True, "max_instances": 1}
HOUSEKEEPING_AT = dt.time(3, 0)
KEEP_DEAD_INVITES = dt.timedelta(days=90)


def configure_scheduler(job_queue: JobQueue) -> None:  # type: ignore[type-arg]
    """Give every job Kehou's defaults; call before the scheduler starts."""
    job_queue.scheduler.configure(job_defaults=JOB_DEFAULTS, **job_queue.scheduler_configuration)


async def install_jobs(application: Application, runtime: Runtime) -> list[str]:  # type: ignore[type-arg]
    """(Re)create every scheduled job from the database; returns the job names."""
    job_queue = application.job_queue
    assert job_queue is not None
    from bot import broadcasting

    async with runtime.db.transaction() as session:
        schools = list(
            await session.execute(select(School.id, School.timezone, School.digest_time))
        )
    names = []

    def replace(name: str) -> str:
        for old in job_queue.get_jobs_by_name(name):
            old.schedule_removal()
        names.append(name)
        return name

    for school_id, timezone, digest_time in schools:
        zone = ZoneInfo(timezone)
        job_queue.run_daily(
            housekeeping,
            time=HOUSEKEEPING_AT.replace(tzinfo=zone),
            name=replace(f"housekeeping:{school_id}"),
            data=school_id,
        )
        job_queue.run_daily(
            broadcasting.send_digests,  # type: ignore[arg-type]
            time=digest_time.replace(tzinfo=zone),
            name=replace(f"digest:{school_id}"),
            data=school_id,
        )
    job_queue.run_repeating(record_seen, interval=30, first=30, name=replace("seen"))
    # Seat offers past their deadline move on to the next child on the waitlist.
    job_queue.run_repeating(expire_offers, interval=60, first=5, name=replace("offers"))
    # When enrolment closes, lottery courses are drawn and admins asked about small courses.
    job_queue.run_repeating(run_draws, interval=60, first=10, name=replace("draws"))
    # Scheduled broadcasts, re-pings and progress: one job for every school.
    job_queue.run_repeating(
        broadcasting.tick,  # type: ignore[arg-type]
        interval=broadcasting.TICK_SECONDS,
        first=0.5,
        name=replace("broadcasts"),
    )
    log.info("scheduled %d jobs", len(names))
    return names


async def record_seen(context: BotContext) -> None:
    """Write who wrote to the bot lately, in one statement (see members.mark_seen)."""
    await flush_seen(context.runtime)


async def flush_seen(runtime: Runtime) -> None:
    users, runtime.seen = runtime.seen, set()
    if users:
        async with runtime.db.transaction() as session:
            await members.mark_seen(session, users, utcnow())


async def expire_offers(context: BotContext) -> None:
    async with context.db.transaction() as session:
        moved = await enrolment.expire_offers(session, utcnow())
    if moved:
        log.info("seat offers expired in %d courses", len(moved))
        context.runtime.wake_delivery()


async def run_draws(context: BotContext) -> None:
    async with context.db.transaction() as session:
        drawn = await lottery.run_due_draws(session, utcnow())
        small = await enrolment.ask_about_small_courses(session, utcnow())
    if drawn:
        log.info("lottery drawn for terms %s", drawn)
    if drawn or small:
        context.runtime.wake_delivery()


async def housekeeping(context: BotContext) -> None:
    """Nightly, in the school's time zone: forget what no longer needs keeping."""
    assert context.job is not None
    school_id = context.job.data
    async with context.db.transaction() as session:
        await invites.forget_failures(session, older_than=invites.FAILURE_WINDOW)
        await outbox.clear_old_content(session, utcnow(), school_id)  # type: ignore[arg-type]
        # Codes that were used or expired long ago protect nothing and name children.
        await session.execute(
            delete(Invite).where(
                Invite.school_id == school_id,
                Invite.expires_at < utcnow() - KEEP_DEAD_INVITES,
            )
        )
