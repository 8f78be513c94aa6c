"""The JobQueue only wakes the ledger's ticker; what is due comes from the database."""

from __future__ import annotations

from bot import jobs
from bot.context import KehouApplication
from storage.db import Database
from tests.factories import SchoolData, make_school


async def test_the_job_queue_only_wakes_the_ticker_and_installing_again_does_not_double(
    app: KehouApplication, db: Database, school: SchoolData
) -> None:
    await make_school(db, code="second")
    assert app.job_queue is not None
    jobs.configure_scheduler(app.job_queue)
    names = await jobs.install_jobs(app, app.runtime)
    # No per-school timers in memory any more: a digest or a broadcast is a ledger run.
    assert sorted(names) == ["broadcasts", "ledger", "seen"]
    await jobs.install_jobs(app, app.runtime)
    scheduled = list(app.job_queue.jobs())
    assert sorted(j.name for j in scheduled if not j.removed) == sorted(names)
    await app.job_queue.start()
    try:
        job = app.job_queue.get_jobs_by_name("ledger")[-1]
        assert job.job.misfire_grace_time == jobs.JOB_DEFAULTS["misfire_grace_time"]
        assert job.job.coalesce is True
    finally:
        await app.job_queue.stop(wait=False)
