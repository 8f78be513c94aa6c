"""Jobs come from the database at start-up and survive a late start."""

from __future__ import annotations

from bot import jobs
from bot.context import KehouApplication
from storage.db import Database
from tests.factories import SchoolData, make_school


async def test_jobs_are_recreated_per_school_with_a_misfire_grace(
    app: KehouApplication, db: Database, school: SchoolData
) -> None:
    second = await make_school(db, code="second")
    assert app.job_queue is not None
    jobs.configure_scheduler(app.job_queue)
    names = await jobs.install_jobs(app, app.runtime)
    per_school = [
        f"{job}:{s.school_id}" for s in (school, second) for job in ("housekeeping", "digest")
    ]
    assert sorted(names) == sorted(["broadcasts", "draws", "offers", "seen", *per_school])
    # Installing again (a restart, or a re-import) replaces jobs instead of doubling them.
    await jobs.install_jobs(app, app.runtime)
    scheduled = list(app.job_queue.jobs())
    assert sorted(j.name for j in scheduled if not j.removed) == sorted(names)
    await app.job_queue.start()
    try:
        job = app.job_queue.get_jobs_by_name(names[0])[-1]
        assert job.job.misfire_grace_time == jobs.JOB_DEFAULTS["misfire_grace_time"]
        assert job.job.coalesce is True
    finally:
        await app.job_queue.stop(wait=False)
