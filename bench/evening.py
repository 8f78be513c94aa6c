"""Benchmark: the evening digest for 3,000 families: its build time, its delivery through the
sandbox with Telegram's limits on against the 30 messages/s bulk budget, and peak memory.

    .venv/bin/python bench/evening.py                     # ~3,000 families, photos in updates
    .venv/bin/python bench/evening.py --text-only         # updates without photos
    .venv/bin/python bench/evening.py --quick             # a smoke run, 300 students
    .venv/bin/python bench/evening.py --database-url postgresql+asyncpg://…/kehou_bench

The school is made by the generator (`bot.demo.big.build_school`), `--students` 3,200 by
default, which makes about 3,000 families (8 % have two children at the school, 60 % two
guardians with an account), open today. Then the day as a school has it, through the services
where they exist:

- every session of today has its roll submitted (`attendance.submit`, by the school's admin):
  one child absent without leave, one late, the rest present; some children had a leave or an
  early pick-up filed by a guardian that morning (`leaves.announce`);
- a few children have a dismissal on file (`Dismissal` rows: collected by a guardian, gone home
  alone, moved to extended care);
- a quarter of the sessions have a teacher's update (`DailyUpdate`), half of them with two to
  four photos a teacher uploaded to the sandbox (real file ids), so those guardians' digests
  carry an album (`{"type": "album", ...}`, sendMediaGroup) or a photo.

The afternoon's own messages (the alerts, the leave notices) are marked sent, as they would be
by the evening. Then, timed:

- **build**: `bot.services.evening.build(session, i18n, school_id, day, now)` in one
  transaction, as the scheduler's digest run calls it (the commit included), with every SQL
  statement timed;
- **delivery**: Kehou's delivery worker (`bot.delivery.DeliveryWorker`, the default rate of
  29/s) sends the digests to the sandbox (a child process, limits on, as bench/broadcast.py):
  Telegram messages per second (an album of n photos is n messages) from the worker's start
  until the last digest is sent, against 30/s;
- **memory**: the process's peak resident set (VmHWM, reset before the build through
  /proc/self/clear_refs, so the school's generation does not count) during the build and
  during the delivery, and `resource.getrusage` maxrss for the whole process.
"""

from __future__ import annotations

import argparse
import asyncio
import datetime as dt
import importlib.util
import json
import multiprocessing
import os
import random
import resource
import shutil
import struct
import sys
import tempfile
import time
import zlib
from collections import Counter
from pathlib import Path
from typing import Any

import aiohttp

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
sys.path.insert(0, str(ROOT))

from sqlalchemy import func, select, update  # noqa: E402

from bench.broadcast import TOKEN, configure, counters, free_port  # noqa: E402
from bot.config import Secret, Settings  # noqa: E402
from bot.delivery import DeliveryWorker, SendBudget, make_bot  # noqa: E402
from bot.demo import big  # noqa: E402
from bot.i18n import I18n  # noqa: E402
from bot.services import attendance, evening, leaves, members, sessions  # noqa: E402
from storage.db import Database  # noqa: E402
from storage.migrate import upgrade_async  # noqa: E402
from storage.models import (  # noqa: E402
    DailyUpdate,
    Dismissal,
    DismissalWay,
    Outbox,
    OutboxStatus,
    utcnow,
)

TARGET_RATE = 27.0  # 90 % of Telegram's 30 messages a second
BULK = 30.0
NO_DELIVERY: dict[str, Any] = {
    "elapsed_s": 0.0, "messages": 0, "messages_per_s": 0.0, "share_of_30": 0.0, "calls": {},
    "statuses": {}, "errors": [], "429": 0, "peak_rss_mb": 0.0, "timed_out": False,
}  # fmt: skip
LEAVE_SHARE, PICKUP_SHARE, DISMISSED_SHARE = 0.02, 0.01, 0.05
UPDATE_SHARE, PHOTO_SHARE = 0.25, 0.5


def _load(name: str) -> Any:
    """A sibling benchmark as a module (bench/ is not a package)."""
    spec = importlib.util.spec_from_file_location(f"bench_{name}", HERE / f"{name}.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module
    spec.loader.exec_module(module)
    return module


rolls = _load("attendance")
say = rolls.say


def memory_mb() -> tuple[float, float]:
    """This process's resident set now and its peak since the last reset (VmRSS, VmHWM)."""
    found = {}
    with open("/proc/self/status") as status:
        for line in status:
            key, _, value = line.partition(":")
            if key in ("VmRSS", "VmHWM"):
                found[key] = int(value.split()[0]) / 1024
    return found.get("VmRSS", 0.0), found.get("VmHWM", 0.0)


def reset_peak() -> bool:
    """Reset VmHWM to the current resident set (Linux: clear_refs 5); False if not allowed."""
    try:
        with open("/proc/self/clear_refs", "w") as refs:
            refs.write("5")
        return True
    except OSError:
        return False


def png(seed: int) -> bytes:
    """A small valid PNG (8×8, one colour), different for each seed."""

    def chunk(kind: bytes, data: bytes) -> bytes:
        body = kind + data
        return struct.pack(">I", len(data)) + body + struct.pack(">I", zlib.crc32(body))

    pixel = bytes([seed % 256, (seed * 7) % 256, (seed * 13) % 256])
    raw = b"".join(b"\x00" + pixel * 8 for _ in range(8))
    header = struct.pack(">IIBBBBB", 8, 8, 8, 2, 0, 0, 0)
    return (
        b"\x89PNG\r\n\x1a\n"
        + chunk(b"IHDR", header)
        + chunk(b"IDAT", zlib.compress(raw))
        + chunk(b"IEND", b"")
    )


# ---------------------------------------------------------------------------------------------
# The day


async def the_day(
    db: Database,
    school: big.BigSchool,
    photos: list[str],
    *,
    seed: int = 1,
    now: dt.datetime | None = None,
    updates: float = UPDATE_SHARE,
    with_photos: float = PHOTO_SHARE,
    most_photos: int = 4,
) -> dict[str, Any]:
    """Today's rolls, leaves and pick-ups, dismissals and updates (in a share `updates` of
    the sessions, a share `with_photos` of them with photos); what was made."""
    rng = random.Random(seed)
    now = now or utcnow()
    pop = school.population
    teacher_user = {t.teacher_id: t.user_id for t in pop.teachers}
    async with db.transaction() as session:
        admin = await members.find_member(session, pop.admin.telegram_id)
        assert admin is not None
        today = await sessions.local_today(session, admin.school_id, now)
        running = await sessions.day_of(session, admin, today, today)
        enrolled = {r.course.id: await sessions.roster(session, r.course.id) for r in running}
    morning = dt.datetime.combine(today, dt.time(8), sessions_zone(school)).astimezone(dt.UTC)
    facts: Counter[str] = Counter()
    for run in running:
        for child in enrolled[run.course.id]:
            draw = rng.random()
            if draw < LEAVE_SHARE + PICKUP_SHARE:
                pickup = dt.time(16, 30) if draw >= LEAVE_SHARE else None
                async with db.transaction() as session:
                    filed = await leaves.announce(
                        session,
                        child.id,
                        today,
                        run.course.period,
                        user_id=None,
                        reason=None if pickup else "看病",
                        pickup_at=pickup,
                        now=morning,
                    )
                facts["pick-ups" if pickup else "leaves"] += not isinstance(
                    filed, leaves.LeaveRefusal
                )
    for run in running:
        if not enrolled[run.course.id]:
            continue
        async with db.transaction() as session:
            roll = await attendance.open_roll(session, admin, run.course.id, today, today)
            assert roll is not None
            marks, _ = rolls.plan_marks(roll, rng, absent=1, late=1)
            result = await attendance.submit(
                session, admin, run.course.id, today, marks, roll.version, now
            )
            assert result.outcome is attendance.Outcome.SAVED, result.outcome
            facts["rolls"] += 1
            facts["absent"] += len(result.alerts)
            present = [
                line.student_id
                for line in (result.roll or roll).lines
                if line.proposed in (attendance.PRESENT, attendance.LATE)
            ]
            for student_id in present:
                if rng.random() < DISMISSED_SHARE:
                    way = rng.choice([DismissalWay.GUARDIAN, DismissalWay.ALONE,
                                      DismissalWay.EXTENDED])  # fmt: skip
                    session.add(
                        Dismissal(
                            school_id=admin.school_id,
                            session_id=roll.session_id,
                            student_id=student_id,
                            way=way,
                            left_at=dt.datetime.combine(
                                today, run.course.ends_at, sessions_zone(school)
                            ).astimezone(dt.UTC),
                            actor_user_id=teacher_user.get(run.course.teacher_id or 0),
                        )
                    )
                    facts["dismissals"] += 1
            if rng.random() < updates:
                pick = photos and rng.random() < with_photos
                shown = (
                    rng.sample(photos, rng.randint(2, min(most_photos, len(photos))))
                    if pick
                    else []
                )
                session.add(
                    DailyUpdate(
                        school_id=admin.school_id,
                        session_id=roll.session_id,
                        teacher_id=run.course.teacher_id,
                        author_user_id=teacher_user.get(run.course.teacher_id or 0),
                        text=f"今天{run.course.name}：大家完成了练习，表现很好。",
                        photos=shown,
                        unconsented=[],
                        created_at=now,
                    )
                )
                facts["updates"] += 1
                facts["updates with photos"] += bool(shown)
    async with db.transaction() as session:  # the afternoon's messages went out long ago
        await session.execute(
            update(Outbox)
            .where(Outbox.status.in_((OutboxStatus.PENDING, OutboxStatus.SENDING)))
            .values(status=OutboxStatus.SENT, sent_at=now)
        )
    facts["sessions"] = len(running)
    facts["children"] = len({c.id for kids in enrolled.values() for c in kids})
    return {"day": today, **facts}


def sessions_zone(school: big.BigSchool) -> Any:
    return rolls.ZONE


async def build_digest(
    db: Database, school_id: int, day: dt.date, now: dt.datetime
) -> tuple[float, evening.Built]:
    """The digest built and queued in one transaction; (seconds, what was built)."""
    i18n = I18n(rolls.ZONE)
    started = time.perf_counter()
    async with db.transaction() as session:
        built = await evening.build(session, i18n, school_id, day, now)
    return time.perf_counter() - started, built


async def digest_rows(db: Database) -> dict[str, Any]:
    """The evening rows: how many, for how many guardians, with which attachments."""
    async with db.transaction() as session:
        rows = (
            await session.execute(
                select(Outbox.user_id, Outbox.attachment).where(Outbox.kind == evening.KIND)
            )
        ).all()
    kinds = Counter(str((a or {}).get("type", "text")) for _, a in rows)
    return {"rows": len(rows), "guardians": len({u for u, _ in rows}), "attachments": kinds}


# ---------------------------------------------------------------------------------------------
# Delivery


async def started_child(child: Any, ready: Any) -> None:
    """Wait for the sandbox child to serve; fail at once if it died."""
    deadline = time.monotonic() + 120
    while not ready.is_set():
        if not child.is_alive() or time.monotonic() > deadline:
            raise RuntimeError("the sandbox process did not start")
        await asyncio.sleep(0.05)


def sandbox_process(port: int, people: list[int], ready: Any) -> None:
    from sandbox.core import Sandbox
    from sandbox.server import run_sandbox

    async def main() -> None:
        sandbox = Sandbox(TOKEN, bot_username="kehou_bench_bot")
        for telegram_id in people:
            sandbox.add_user(telegram_id, f"用户{telegram_id}")
        await run_sandbox(sandbox, "127.0.0.1", port)
        ready.set()
        await asyncio.Event().wait()

    asyncio.run(main())


async def upload_photos(url: str, teacher: int, count: int) -> list[str]:
    """A teacher sends `count` photos to the bot through the sandbox: their file ids."""
    found: list[str] = []
    async with aiohttp.ClientSession() as http:
        while len(found) < count:
            form = aiohttp.FormData()
            form.add_field("user_id", str(teacher))
            for n in range(min(10, count - len(found))):
                form.add_field(
                    "photo", png(len(found) + n), filename=f"p{len(found) + n}.png",
                    content_type="image/png",
                )  # fmt: skip
            async with http.post(f"{url}/sandbox/api/chats/{teacher}/photos", data=form) as r:
                answer = await r.json()
            for message in answer.get("messages", []):
                sizes = message.get("photo") or []
                if sizes:
                    found.append(sizes[-1]["file_id"])
            if not answer.get("messages"):
                raise RuntimeError(f"the sandbox took no photos: {answer}")
    return found


async def deliver(db: Database, url: str, limit_s: float) -> dict[str, Any]:
    """Run the worker until no evening row is waiting; the rate Telegram saw."""
    settings = Settings(token=Secret(TOKEN), database_url=str(db.engine.url), api_base_url=url)
    budget = SendBudget(settings.send_rate)
    bot = make_bot(settings, budget)
    await bot.initialize()
    worker = DeliveryWorker(db, bot, I18n(settings.timezone), budget)
    before = await counters(url)
    reset_peak()
    started = time.perf_counter()
    await worker.start()
    while time.perf_counter() - started < limit_s:
        async with db.transaction() as session:
            left = await session.scalar(
                select(func.count()).where(
                    Outbox.kind == evening.KIND,
                    Outbox.status.in_((OutboxStatus.PENDING, OutboxStatus.SENDING)),
                )
            )
        if not left and not worker._outcomes:
            break
        await asyncio.sleep(0.2)
    elapsed = time.perf_counter() - started
    await worker.stop()
    await bot.shutdown()
    _, peak = memory_mb()
    after = await counters(url)

    def messages(seen: dict[str, Any]) -> int:
        return sum(int(c.get("bot_messages", 0)) for c in seen["chats"].values())

    async with db.transaction() as session:
        statuses = dict(
            (
                await session.execute(
                    select(Outbox.status, func.count())
                    .where(Outbox.kind == evening.KIND)
                    .group_by(Outbox.status)
                )
            ).all()
        )
        errors = (
            await session.execute(
                select(Outbox.last_error, func.count())
                .where(Outbox.kind == evening.KIND, Outbox.status == OutboxStatus.FAILED)
                .group_by(Outbox.last_error)
            )
        ).all()
    sent = messages(after) - messages(before)
    calls = {
        k: v - before["methods"].get(k, 0)
        for k, v in after["methods"].items()
        if k.startswith("send") and v - before["methods"].get(k, 0)
    }
    return {
        "elapsed_s": elapsed,
        "messages": sent,
        "messages_per_s": sent / elapsed,
        "share_of_30": sent / elapsed / BULK,
        "calls": calls,
        "statuses": {str(k.value if hasattr(k, "value") else k): v for k, v in statuses.items()},
        "errors": [(str(e)[:160], n) for e, n in errors],
        "429": after["rate_limited"] - before["rate_limited"],
        "peak_rss_mb": peak,
        "timed_out": elapsed >= limit_s,
    }


async def run(args: argparse.Namespace) -> dict[str, Any]:
    workdir = tempfile.mkdtemp(prefix="kehou-bench-evening-")
    database_url = args.database_url or f"sqlite+aiosqlite:///{workdir}/bench.sqlite3"
    await upgrade_async(database_url)
    db = Database(database_url)
    child = None
    try:
        started = time.perf_counter()
        school = await rolls.build(db, args.students, seed=args.seed)
        built_school = time.perf_counter() - started
        pop = school.population
        people = [g.telegram_id for g in pop.guardians] + [t.telegram_id for t in pop.teachers]
        port = free_port()
        url = f"http://127.0.0.1:{port}"
        context = multiprocessing.get_context("spawn")
        ready = context.Event()
        child = context.Process(target=sandbox_process, args=(port, people, ready))
        child.start()
        await started_child(child, ready)
        await configure(url, True, 0.0)
        photos = (
            [] if args.text_only else await upload_photos(url, pop.teachers[0].telegram_id, 20)
        )
        started = time.perf_counter()
        day = await the_day(db, school, photos, seed=args.seed, most_photos=args.most_photos)
        day["seconds"] = time.perf_counter() - started
        say(f"the day: {json.dumps(day, ensure_ascii=False, default=str)}")
        statements = rolls.Statements(db)
        reset_peak()
        rss_before, _ = memory_mb()
        now = utcnow()
        with statements.step("build"):
            build_s, built = await build_digest(db, school.report.school_id, day["day"], now)
        _, build_peak = memory_mb()
        rows = await digest_rows(db)
        say(f"built in {build_s:.2f} s: {built}, {rows}")
        delivery = await deliver(db, url, args.timeout) if not args.build_only else NO_DELIVERY
        return {
            "backend": db.engine.dialect.name,
            "students": args.students,
            "families": pop.families,
            "school_s": built_school,
            "day": day,
            "build_s": build_s,
            "built": {"messages": built.families, "held_folded": built.held},
            "rows": rows,
            "statements": statements.summary().get("build"),
            "rss_before_build_mb": rss_before,
            "build_peak_rss_mb": build_peak,
            "delivery": delivery,
            "maxrss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
            "text_only": args.text_only,
        }
    finally:
        if child is not None:
            child.kill()
            child.join()
        await db.dispose()
        shutil.rmtree(workdir, ignore_errors=True)


async def on_database(args: argparse.Namespace) -> dict[str, Any]:
    if not args.postgres:
        return await run(args)
    async with rolls.postgres(args.database_url) as url:
        args.database_url = url
        return await run(args)


def table(r: dict[str, Any]) -> str:
    d, day = r["delivery"], r["day"]
    st = r["statements"] or {"statements": 0, "sql_ms": 0, "top": []}
    return "\n".join(
        [
            f"{dt.date.today()}, Python {sys.version.split()[0]}, {os.cpu_count()} cores, "
            f"{r['backend']}; {r['students']:,} students, {r['families']:,} families; "
            f"{'text only' if r['text_only'] else 'updates with photos'}",
            "",
            f"The day: {day.get('sessions', 0)} sessions, {day.get('children', 0):,} children, "
            f"{day.get('rolls', 0)} rolls ({day.get('absent', 0)} absent), "
            f"{day.get('leaves', 0)} leaves, {day.get('pick-ups', 0)} early pick-ups, "
            f"{day.get('dismissals', 0)} dismissals, {day.get('updates', 0)} updates "
            f"({day.get('updates with photos', 0)} with photos)",
            "",
            "| digests (guardians) | attachments | build | statements | SQL | build peak RSS | "
            "delivery | Telegram messages | messages/s | of 30/s | 429s | sent / failed | "
            "delivery peak RSS | maxrss |",
            "|---|---|---|---|---|---|---|---|---|---|---|---|---|---|",
            f"| {r['rows']['rows']:,} ({r['rows']['guardians']:,}) | "
            + ", ".join(f"{k} {v:,}" for k, v in sorted(r["rows"]["attachments"].items()))
            + f" | {r['build_s'] * 1000:.0f} ms | {st['statements']:.0f} | "
            f"{st['sql_ms']:.0f} ms | {r['build_peak_rss_mb']:.0f} MB "
            f"(from {r['rss_before_build_mb']:.0f}) | {d['elapsed_s']:.1f} s | "
            f"{d['messages']:,} | {d['messages_per_s']:.1f} | {d['share_of_30']:.0%} | "
            f"{d['429']} | {d['statuses'].get('sent', 0):,} / {d['statuses'].get('failed', 0)} | "
            f"{d['peak_rss_mb']:.0f} MB | {r['maxrss_mb']:.0f} MB |",
            "",
            "Send calls: " + ", ".join(f"{k} {v:,}" for k, v in sorted(d["calls"].items())),
            "Failures: " + ("; ".join(f"{e} × {n}" for e, n in d["errors"]) or "none"),
            "Longest statements of the build: "
            + "; ".join(f"`{sql}` {ms:.1f} ms × {n:.0f}" for sql, ms, n in st["top"]),
            f"Target: ≥ {TARGET_RATE:.0f} messages/s (90 % of 30/s).",
        ]
    )


def main() -> int:
    parser = argparse.ArgumentParser(description=(__doc__ or "").split("\n")[0])
    parser.add_argument("--students", type=int, default=3_200, help="≈ 3,000 families")
    parser.add_argument("--text-only", action="store_true", help="updates without photos")
    parser.add_argument("--build-only", action="store_true", help="no delivery")
    parser.add_argument("--most-photos", type=int, default=4, help="in one update (2-10)")
    parser.add_argument("--timeout", type=float, default=600.0, help="for the delivery, s")
    parser.add_argument("--database-url", help="default: a fresh SQLite file")
    parser.add_argument(
        "--postgres", action="store_true", help="a throwaway PostgreSQL cluster (tests/pg.py)"
    )
    parser.add_argument("--seed", type=int, default=big.SEED)
    parser.add_argument("--quick", action="store_true", help="300 students")
    parser.add_argument("--json", metavar="FILE", help="also write the results as JSON")
    args = parser.parse_args()
    if args.quick:
        args.students = 300
    result = asyncio.run(on_database(args))
    say(json.dumps(result, ensure_ascii=False, default=str))
    print(table(result))
    if args.json:
        Path(args.json).write_text(json.dumps(result, ensure_ascii=False, indent=2, default=str))
    return 1 if result["delivery"]["statuses"].get("failed") else 0


if __name__ == "__main__":
    sys.exit(main())
