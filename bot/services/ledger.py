"""The scheduler ledger: each due run of a periodic job is claimed once, and every run recorded.

A run is named by (job, school, due time). `claim` inserts that row with
``INSERT … ON CONFLICT DO NOTHING``: of any number of processes ticking the same database,
exactly one gets it. The claim is committed on its own; the job's work and `finish` then commit
together, so a run whose row has no ``finished_at`` did nothing that lasted. Such a run, left
by a process that stopped beating (`beat`), is taken over by a live one (`orphans`,
`take_over`) and run again: that is never a double. See docs/SCHEDULER.md.
"""

from __future__ import annotations

import datetime as dt
from typing import Any

from sqlalchemy import and_, delete, exists, func, select, update
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.ext.asyncio import AsyncSession
from sqlalchemy.orm import aliased

from storage.models import JobRun, utcnow

DEPLOYMENT = 0  # school_id of a run that belongs to the whole deployment
ALIVE = "alive"  # the heartbeat rows of running processes
# A process that has not ticked for this long is taken for dead: its unfinished runs go back.
DEAD_AFTER = dt.timedelta(seconds=30)
# Kehou counts as having been down when no process ticked for this long.
DOWN_AFTER = dt.timedelta(seconds=60)
KEEP_RUNS = dt.timedelta(days=60)


def _insert(session: AsyncSession) -> Any:
    dialect = session.get_bind().dialect.name
    return postgresql.insert if dialect == "postgresql" else sqlite.insert


async def claim(
    session: AsyncSession,
    job: str,
    school_id: int,
    due_at: dt.datetime,
    worker: str,
    now: dt.datetime | None = None,
) -> bool:
    """Claim one run; True for exactly one caller, however many processes try at once."""
    statement = (
        _insert(session)(JobRun)
        .values(
            job=job,
            school_id=school_id,
            due_at=due_at,
            claimed_by=worker,
            started_at=now or utcnow(),
        )
        .on_conflict_do_nothing(index_elements=["job", "school_id", "due_at"])
    )
    result = await session.execute(statement)
    return bool(result.rowcount == 1)  # type: ignore[attr-defined]


def _key(job: str, school_id: int, due_at: dt.datetime) -> Any:
    return and_(JobRun.job == job, JobRun.school_id == school_id, JobRun.due_at == due_at)


async def finish(
    session: AsyncSession,
    job: str,
    school_id: int,
    due_at: dt.datetime,
    worker: str,
    *,
    outcome: str,
    error: str | None = None,
    now: dt.datetime | None = None,
) -> bool:
    """Record the end of a run this worker holds; False if it is no longer this worker's (it
    was taken for dead and the run went to another): then the caller must roll back."""
    result = await session.execute(
        update(JobRun)
        .where(
            _key(job, school_id, due_at),
            JobRun.claimed_by == worker,
            JobRun.finished_at.is_(None),
        )
        .values(finished_at=now or utcnow(), outcome=outcome[:200], error=error)
    )
    return bool(result.rowcount == 1)  # type: ignore[attr-defined]


async def claimed(session: AsyncSession, job: str, school_id: int, due_at: dt.datetime) -> bool:
    found = await session.scalar(select(exists().where(_key(job, school_id, due_at))))
    return bool(found)


async def run_of(
    session: AsyncSession, job: str, school_id: int, due_at: dt.datetime
) -> JobRun | None:
    return await session.scalar(
        select(JobRun)
        .where(_key(job, school_id, due_at))
        .execution_options(populate_existing=True)
    )


# --- processes --------------------------------------------------------------------------------


async def beat(session: AsyncSession, worker: str, started: dt.datetime, now: dt.datetime) -> None:
    """This process is alive at `now` (its row is created by the first beat)."""
    result = await session.execute(
        update(JobRun)
        .where(_key(ALIVE, DEPLOYMENT, started), JobRun.claimed_by == worker)
        .values(finished_at=now)
    )
    if result.rowcount == 0:  # type: ignore[attr-defined]
        await claim(session, ALIVE, DEPLOYMENT, started, worker, now)
        await session.execute(
            update(JobRun)
            .where(_key(ALIVE, DEPLOYMENT, started), JobRun.claimed_by == worker)
            .values(finished_at=now)
        )


async def last_alive(session: AsyncSession, worker: str) -> dt.datetime | None:
    """When any other process last ticked (None: none ever did)."""
    found = await session.scalar(
        select(func.max(JobRun.finished_at)).where(
            JobRun.job == ALIVE, JobRun.claimed_by != worker
        )
    )
    if found is not None and found.tzinfo is None:  # aggregates skip the column's type
        found = found.replace(tzinfo=dt.UTC)
    return found


async def orphans(session: AsyncSession, now: dt.datetime) -> list[JobRun]:
    """Unfinished runs whose process stopped beating more than DEAD_AFTER ago (or never beat)."""
    heart = aliased(JobRun)
    live = exists().where(
        heart.job == ALIVE,
        heart.claimed_by == JobRun.claimed_by,
        heart.finished_at >= now - DEAD_AFTER,
    )
    rows = await session.scalars(
        select(JobRun)
        .where(JobRun.job != ALIVE, JobRun.finished_at.is_(None), ~live)
        .order_by(JobRun.due_at, JobRun.id)
    )
    return list(rows.all())


async def take_over(session: AsyncSession, run: JobRun, worker: str, now: dt.datetime) -> bool:
    """Compare-and-set: the dead process's run becomes this worker's; True for one taker."""
    result = await session.execute(
        update(JobRun)
        .where(
            JobRun.id == run.id,
            JobRun.claimed_by == run.claimed_by,
            JobRun.finished_at.is_(None),
        )
        .values(claimed_by=worker, started_at=now)
        .execution_options(synchronize_session=False)
    )
    return bool(result.rowcount == 1)  # type: ignore[attr-defined]


async def prune(session: AsyncSession, now: dt.datetime) -> None:
    """Forget runs finished long ago, and the heartbeats of processes long gone."""
    await session.execute(delete(JobRun).where(JobRun.finished_at < now - KEEP_RUNS))
