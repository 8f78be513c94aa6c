"""Jobs come from the database at start-up and survive a late start."""

from __future__ import annotations

from bot import jobs
from bot.context import KehouApplication
from storage.db import Database
from tests.factories import SchoolData, make_school


async def test_jobs_are_recreated_per_school_with_a_misfire_grace(
    app: KehouApplication, db: Database, school: SchoolData
) -> None:
    await make_school(db, code="second")
    assert app.job_queue is not None
    jobs.configure_scheduler(app.job_queue)
    names = await jobs.install_jobs(app, app.runtime)
    assert len(names) == 2
    # Installing again (a restart, or a re-import) replaces jobs instead of doubling them.
    await jobs.install_jobs(app, app.runtime)
    scheduled = [j for j in app.job_queue.jobs() if j.name and j.name.startswith("housekeeping")]
    assert sorted(j.name for j in scheduled if not j.removed) == sorted(names)
    await app.job_queue.start()
    try:
        job = app.job_queue.get_jobs_by_name(names[0])[-1]
        assert job.job.misfire_grace_time == jobs.JOB_DEFAULTS["misfire_grace_time"]
        assert job.job.coalesce is True
    finally:
        await app.job_queue.stop(wait=False)
