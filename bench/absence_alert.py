"""Benchmark: the absence alert from the teacher's submit to the guardian's chat while a
10,000-recipient broadcast drains, Telegram's limits on.

    .venv/bin/python bench/absence_alert.py                     # 20 alerts, a 10,000 broadcast
    .venv/bin/python bench/absence_alert.py --alerts 40 --every 2
    .venv/bin/python bench/absence_alert.py --quick             # 5 alerts, 2,000 recipients
    .venv/bin/python bench/absence_alert.py --database-url postgresql+asyncpg://…/kehou_bench

As bench/broadcast.py: the sandbox (docs/SANDBOX.md) runs in a child process with its limits
on, and Kehou's delivery worker (`bot.delivery.DeliveryWorker`) runs here as in production,
at the default send rate (29/s), over a fresh database. The database holds a generated school
(`bot.demo.big.build_school`, `--students` 600 by default: what is measured is the outbox, not
the school's size; bench/attendance.py measures the roll at 10,000 students) and `--recipients`
other parents, to whom a broadcast is queued at BULK priority.

The worker starts; once the broadcast is draining (`--lead` seconds), every `--every` seconds
a teacher submits the roll of one of today's sessions (a different course each time, each a
fresh session) with one child absent without leave and everyone else present, through
`bot.services.attendance.submit` in one transaction as the handler does, then wakes the worker
as the application does after a commit (`Runtime.wake_delivery` → `DeliveryWorker.wake`).
Measured for each alert: from the start of the submit until the sandbox shows the alert in
each of the child's guardians' chats (polled every 50 ms), and until its outbox rows are
`sent`. The broadcast is not waited for: the worker stops after the last alert arrived, and
what it sent meanwhile is reported as messages per second.
"""

from __future__ import annotations

import argparse
import asyncio
import datetime as dt
import importlib.util
import json
import multiprocessing
import os
import shutil
import sys
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import aiohttp

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(HERE))

from sqlalchemy import func, insert, select  # noqa: E402

from bench.broadcast import TOKEN, configure, counters, free_port  # noqa: E402
from bot.config import Secret, Settings  # noqa: E402
from bot.delivery import DeliveryWorker, SendBudget, make_bot  # noqa: E402
from bot.demo import big  # noqa: E402
from bot.i18n import I18n  # noqa: E402
from bot.services import attendance, family, members, outbox, sessions  # noqa: E402
from bot.services.outbox import NewMessage  # noqa: E402
from storage.db import Database  # noqa: E402
from storage.migrate import upgrade_async  # noqa: E402
from storage.models import Outbox, OutboxStatus, Priority, User, utcnow  # noqa: E402

FIRST = 1_000_000  # the broadcast's recipients, as in bench/broadcast.py
TARGET_S = 60.0
POLL_S = 0.05


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


async def started_child(child: Any, ready: Any) -> None:
    """Wait for the sandbox child to serve; fail at once if it died."""
    deadline = time.monotonic() + 120
    while not ready.is_set():
        if not child.is_alive() or time.monotonic() > deadline:
            raise RuntimeError("the sandbox process did not start")
        await asyncio.sleep(0.05)


def sandbox_process(port: int, people: list[int], recipients: int, ready: Any) -> None:
    """The child: a sandbox with the school's people and the broadcast's recipients."""
    from sandbox.core import Sandbox
    from sandbox.server import run_sandbox

    async def main() -> None:
        sandbox = Sandbox(TOKEN, bot_username="kehou_bench_bot")
        for telegram_id in people:
            sandbox.add_user(telegram_id, f"用户{telegram_id}")
        for telegram_id in range(FIRST, FIRST + recipients):
            sandbox.add_user(telegram_id, f"家长{telegram_id}")
        await run_sandbox(sandbox, "127.0.0.1", port)
        ready.set()
        await asyncio.Event().wait()

    asyncio.run(main())


async def queue_broadcast(db: Database, school_id: int, recipients: int) -> None:
    """`recipients` more parents of the school, and one broadcast to them at BULK priority."""
    now = utcnow()
    async with db.transaction() as session:
        await session.execute(
            insert(User),
            [
                {"school_id": school_id, "telegram_id": t, "chat_id": t, "display_name": str(t)}
                for t in range(FIRST, FIRST + recipients)
            ],
        )
        people = (
            await session.execute(
                select(User.id, User.chat_id).where(
                    User.telegram_id.between(FIRST, FIRST + recipients - 1)
                )
            )
        ).all()
        await outbox.enqueue_many(
            session,
            school_id,
            [
                NewMessage(
                    chat_id=int(chat),
                    user_id=user,
                    kind="broadcast",
                    priority=Priority.BULK,
                    text="<b>通知</b>：明天下午课后服务照常进行。",
                    dedupe_key=f"bench-broadcast:{chat}",
                )
                for user, chat in people
                if chat is not None
            ],
            now=now,
        )


async def sessions_today(db: Database, school: big.BigSchool, wanted: int) -> list[Any]:
    """(teacher's Telegram id, course id) of today's sessions with enrolled children, taught
    by teachers with an account."""
    bound = {t.teacher_id: t.telegram_id for t in school.population.teachers}
    async with db.transaction() as session:
        admin = await members.find_member(session, school.population.admin.telegram_id)
        assert admin is not None
        today = await sessions.local_today(session, admin.school_id, utcnow())
        found = []
        for running in await sessions.day_of(session, admin, today, today):
            if running.course.teacher_id in bound and await sessions.roster(
                session, running.course.id
            ):
                found.append((bound[running.course.teacher_id], running.course.id))
    return found[:wanted]


async def one_alert(
    db: Database, telegram_id: int, course_id: int, worker: DeliveryWorker
) -> tuple[float, int, list[int]]:
    """Submit today's roll of one course with one child absent; (when the submit started,
    the child, the guardians' chats)."""
    async with db.transaction() as session:
        member = await members.find_member(session, telegram_id)
        assert member is not None
        today = await sessions.local_today(session, member.school_id, utcnow())
    started = time.perf_counter()
    async with db.transaction() as session:
        roll = await attendance.open_roll(session, member, course_id, today, today)
        assert roll is not None and roll.editable
        free = [line.student_id for line in roll.lines if line.proposed is None]
        chats = await family.guardian_chats(session, free)
        absent = next(s for s in free if chats.get(s))
        marks = {s: attendance.PRESENT for s in free} | {absent: attendance.ABSENT}
    async with db.transaction() as session:
        result = await attendance.submit(
            session, member, course_id, today, marks, roll.version, utcnow()
        )
        assert result.outcome is attendance.Outcome.SAVED and result.alerts == [absent]
    worker.wake()  # as Runtime.wake_delivery() after the handler's commit
    return started, absent, [chat for _, chat in chats[absent]]


async def arrived(http: aiohttp.ClientSession, url: str, chat: int) -> bool:
    async with http.get(f"{url}/sandbox/api/chats/{chat}/messages") as answer:
        found = await answer.json()
    return any("⚠️" in str(m.get("text") or "") for m in found.get("messages", []))


async def run(args: argparse.Namespace) -> dict[str, Any]:
    workdir = tempfile.mkdtemp(prefix="kehou-bench-alert-")
    database_url = args.database_url or f"sqlite+aiosqlite:///{workdir}/bench.sqlite3"
    await upgrade_async(database_url)
    db = Database(database_url)
    child = None
    try:
        school = await rolls.build(db, args.students, seed=args.seed)
        school_id = school.report.school_id
        courses = await sessions_today(db, school, args.alerts)
        if len(courses) < args.alerts:
            raise SystemExit(f"only {len(courses)} sessions today, {args.alerts} wanted")
        await queue_broadcast(db, school_id, args.recipients)
        people = [g.telegram_id for g in school.population.guardians]
        people += [t.telegram_id for t in school.population.teachers]
        port = free_port()
        url = f"http://127.0.0.1:{port}"
        context = multiprocessing.get_context("spawn")
        ready = context.Event()
        child = context.Process(
            target=sandbox_process, args=(port, people, args.recipients, ready)
        )
        child.start()
        await started_child(child, ready)
        await configure(url, True, 0.0)
        settings = Settings(token=Secret(TOKEN), database_url=database_url, api_base_url=url)
        budget = SendBudget(settings.send_rate)
        bot = make_bot(settings, budget)
        await bot.initialize()
        worker = DeliveryWorker(db, bot, I18n(settings.timezone), budget)
        await worker.start()
        started = time.perf_counter()
        await asyncio.sleep(args.lead)
        before = await counters(url)
        window_started = time.perf_counter()
        delivered: list[float] = []  # submit → the last guardian's chat shows it
        first_seen: list[float] = []  # submit → the first guardian's chat shows it
        sent_rows: list[float] = []  # submit → every outbox row of it `sent`
        failures: list[str] = []

        async def follow(telegram_id: int, course_id: int) -> None:
            begun, absent, chats = await one_alert(db, telegram_id, course_id, worker)
            waiting, seen_first = set(chats), None
            async with aiohttp.ClientSession() as http:
                while waiting and time.perf_counter() - begun < 2 * TARGET_S:
                    for chat in list(waiting):
                        if await arrived(http, url, chat):
                            waiting.discard(chat)
                            seen_first = seen_first or time.perf_counter() - begun
                    if waiting:
                        await asyncio.sleep(POLL_S)
            if waiting:
                failures.append(f"child {absent}: no alert in {sorted(waiting)}")
                return
            delivered.append(time.perf_counter() - begun)
            first_seen.append(seen_first or 0.0)
            while time.perf_counter() - begun < 2 * TARGET_S:
                async with db.transaction() as session:
                    pending = await session.scalar(
                        select(func.count()).where(
                            Outbox.kind == "absence",
                            Outbox.chat_id.in_(chats),
                            Outbox.status != OutboxStatus.SENT,
                        )
                    )
                if not pending:
                    sent_rows.append(time.perf_counter() - begun)
                    return
                await asyncio.sleep(POLL_S)

        followers = []
        for telegram_id, course_id in courses:
            followers.append(asyncio.create_task(follow(telegram_id, course_id)))
            await asyncio.sleep(args.every)
        await asyncio.gather(*followers)
        window = time.perf_counter() - window_started
        after = await counters(url)
        async with db.transaction() as session:
            left = await session.scalar(
                select(func.count()).where(
                    Outbox.kind == "broadcast",
                    Outbox.status.in_((OutboxStatus.PENDING, OutboxStatus.SENDING)),
                )
            )
        await worker.stop()
        await bot.shutdown()
        sends = after["methods"].get("sendMessage", 0) - before["methods"].get("sendMessage", 0)
        return {
            "backend": db.engine.dialect.name,
            "students": args.students,
            "recipients": args.recipients,
            "alerts": len(courses),
            "delivered": rolls.spread(delivered),
            "first_guardian": rolls.spread(first_seen),
            "outbox_sent": rolls.spread(sent_rows),
            "window_s": window,
            "since_start_s": time.perf_counter() - started,
            "messages_per_s": sends / window,
            "broadcast_left": left,
            "429": after["rate_limited"],
            "failures": failures,
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


def table(results: Sequence[dict[str, Any]]) -> str:
    lines = [
        f"{dt.date.today()}, Python {sys.version.split()[0]}, {os.cpu_count()} cores",
        "",
        "| backend | alerts | submit → every guardian's chat p50 / p99 / max | first guardian "
        "p50 / p99 | outbox rows sent p50 / p99 | messages/s meanwhile | broadcast left | "
        "429s | failures |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    for r in results:
        d, f, s = r["delivered"], r["first_guardian"], r["outbox_sent"]
        lines.append(
            f"| {r['backend']} | {r['alerts']} | {d['p50']:.0f} / {d['p99']:.0f} / "
            f"{d['max']:.0f} ms | {f['p50']:.0f} / {f['p99']:.0f} ms | {s['p50']:.0f} / "
            f"{s['p99']:.0f} ms | {r['messages_per_s']:.1f} | {r['broadcast_left']:,} of "
            f"{r['recipients']:,} | {r['429']} | {len(r['failures'])} |"
        )
    lines += ["", f"Target: p99 < {TARGET_S:.0f} s from submit to the guardian's chat."]
    return "\n".join(lines)


def main() -> int:
    parser = argparse.ArgumentParser(description=(__doc__ or "").split("\n")[0])
    parser.add_argument("--students", type=int, default=600)
    parser.add_argument("--recipients", type=int, default=10_000)
    parser.add_argument("--alerts", type=int, default=20)
    parser.add_argument("--every", type=float, default=4.0, help="seconds between alerts")
    parser.add_argument("--lead", type=float, default=5.0, help="draining before the first")
    parser.add_argument("--database-url", help="default: a fresh SQLite file")
    parser.add_argument(
        "--postgres", action="store_true", help="a throwaway PostgreSQL cluster (tests/pg.py)"
    )
    parser.add_argument("--seed", type=int, default=big.SEED)
    parser.add_argument("--quick", action="store_true", help="5 alerts, 2,000 recipients")
    parser.add_argument("--json", metavar="FILE", help="also write the results as JSON")
    args = parser.parse_args()
    if args.quick:
        args.alerts, args.recipients, args.every, args.lead = 5, 2_000, 2.0, 2.0
    result = asyncio.run(on_database(args))
    say(json.dumps(result, ensure_ascii=False, default=str))
    print(table([result]))
    if args.json:
        Path(args.json).write_text(json.dumps(result, ensure_ascii=False, indent=2, default=str))
    return 1 if result["failures"] else 0


if __name__ == "__main__":
    sys.exit(main())
