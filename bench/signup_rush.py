"""Benchmark: hundreds of parents press "sign up" for one 30-seat course within one second.

    .venv/bin/python bench/signup_rush.py                 # 500 and 1,000 parents
    .venv/bin/python bench/signup_rush.py --parents 500 --latency 0.05 --broadcast 3000

The real bot (`kehou run`) runs as its own process against the sandbox, which runs here with
Telegram's limits on and adds the simulated Bot API latency (50 ms by default) to every call.
Each parent already has the confirmation screen with the "Confirm sign-up" button; the presses
are spread evenly over one second. Measured from each press: until the bot answered the
callback query (the button stops spinning), and until the result message (enrolled, or
waitlisted with a position) was shown. Meanwhile a broadcast to other parents drains through
the outbox; its rate is measured from the first press to the last result shown.
"""

from __future__ import annotations

import argparse
import asyncio
import datetime as dt
import os
import socket
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from sqlalchemy import func, insert, select, update  # noqa: E402
from telegram import Bot, InlineKeyboardButton, InlineKeyboardMarkup  # noqa: E402

from bot.demo import __file__ as demo_file  # noqa: E402
from bot.services import outbox  # noqa: E402
from bot.services.importer import import_school  # noqa: E402
from bot.services.outbox import NewMessage  # noqa: E402
from bot.transport import AiohttpRequest  # noqa: E402
from sandbox.core import Sandbox  # noqa: E402
from sandbox.server import run_sandbox  # noqa: E402
from storage.db import Database  # noqa: E402
from storage.migrate import upgrade_async  # noqa: E402
from storage.models import (  # noqa: E402
    Course,
    Enrolment,
    EnrolmentStatus,
    Guardianship,
    Priority,
    Role,
    SchoolClass,
    Student,
    Term,
    User,
    UserRole,
)

TOKEN = "555000:SIGNUP-RUSH"
FIRST = 2_000_000
SEATS = 30
BROADCAST_FIRST = 3_000_000  # the broadcast's recipients: other parents than the rush's


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def quantile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(int(q * len(ordered)), len(ordered) - 1)] * 1000


async def prepare(
    database_url: str, parents: int, broadcast: int
) -> tuple[int, list[tuple[int, int]]]:
    """The demo school, one 30-seat course, `parents` parents each with a third-grader, and a
    broadcast to `broadcast` others waiting in the outbox."""
    await upgrade_async(database_url)
    db = Database(database_url)
    report = await import_school(db, Path(demo_file).parent / "school.yaml", actor_label="bench")
    school_id = report.school_id
    now = dt.datetime.now(dt.UTC)
    async with db.transaction() as session:
        await session.execute(
            update(Term).values(
                enrolment_opens_at=now - dt.timedelta(days=1),
                enrolment_closes_at=now + dt.timedelta(days=1),
            )
        )
        course_id = await session.scalar(
            select(Course.id)
            .where(Course.period == 2, Course.grade_min <= 3, Course.grade_max >= 3)
            .order_by(Course.code)
            .limit(1)
        )
        assert course_id is not None
        await session.execute(update(Course).where(Course.id == course_id).values(capacity=SEATS))
        class_id = await session.scalar(select(SchoolClass.id).where(SchoolClass.grade == 3))
        ids = range(FIRST, FIRST + parents)
        await session.execute(
            insert(Student),
            [
                {
                    "school_id": school_id,
                    "class_id": class_id,
                    "student_no": f"R{t}",
                    "name": f"学生{t}",
                    "active": True,
                }
                for t in ids
            ],
        )
        await session.execute(
            insert(User),
            [
                {
                    "school_id": school_id,
                    "telegram_id": t,
                    "chat_id": t,
                    "display_name": f"家长{t}",
                }
                for t in ids
            ],
        )
        users = dict(
            (
                await session.execute(
                    select(User.telegram_id, User.id).where(User.telegram_id >= FIRST)
                )
            ).all()
        )
        students = dict(
            (
                await session.execute(
                    select(Student.student_no, Student.id).where(Student.student_no.like("R%"))
                )
            ).all()
        )
        await session.execute(
            insert(UserRole),
            [{"school_id": school_id, "user_id": users[t], "role": Role.PARENT} for t in ids],
        )
        await session.execute(
            insert(Guardianship),
            [
                {
                    "school_id": school_id,
                    "user_id": users[t],
                    "student_id": students[f"R{t}"],
                    "consent_version": "bench",
                    "consented_at": now,
                    "photo_consent": False,
                }
                for t in ids
            ],
        )
        pairs = [(t, students[f"R{t}"]) for t in ids]
        await outbox.enqueue_many(
            session,
            school_id,
            [
                NewMessage(
                    BROADCAST_FIRST + n,
                    "broadcast",
                    priority=Priority.BULK,
                    text="<b>通知</b>：明天下午课后服务照常进行。",
                )
                for n in range(broadcast)
            ],
        )
    await db.dispose()
    return course_id, pairs


async def run(parents: int, latency: float, broadcast: int) -> dict[str, Any]:
    workdir = tempfile.mkdtemp(prefix="kehou-rush-")
    database_url = f"sqlite+aiosqlite:///{workdir}/rush.sqlite3"
    course_id, pairs = await prepare(database_url, parents, broadcast)

    sandbox = Sandbox(TOKEN, bot_username="kehou_rush_bot")
    for telegram_id, _ in pairs:
        sandbox.add_user(telegram_id, f"家长{telegram_id}")
    recipients = range(BROADCAST_FIRST, BROADCAST_FIRST + broadcast)
    for telegram_id in recipients:
        sandbox.add_user(telegram_id, f"家长{telegram_id}")
    port = free_port()
    runner = await run_sandbox(sandbox, "127.0.0.1", port)
    url = f"http://127.0.0.1:{port}"

    # Each parent is looking at the confirmation screen.
    screens: dict[int, int] = {}
    async with Bot(
        TOKEN, base_url=f"{url}/bot", base_file_url=f"{url}/file/bot", request=AiohttpRequest()
    ) as bot:

        async def screen(telegram_id: int, student_id: int) -> None:
            markup = InlineKeyboardMarkup(
                [
                    [
                        InlineKeyboardButton(
                            "确认报名", callback_data=f"cs:y:{student_id}:{course_id}"
                        )
                    ]
                ]
            )
            sent = await bot.send_message(telegram_id, "为孩子报名这门课程？", reply_markup=markup)
            screens[telegram_id] = sent.message_id

        await asyncio.gather(*(screen(t, s) for t, s in pairs))

    answered: dict[str, float] = {}
    shown: dict[int, float] = {}
    broadcast_sent: list[float] = []
    errors: list[str] = []
    original_emit = sandbox.emit

    def emit(chat: Any, kind: str, **fields: Any) -> None:
        stamp = time.perf_counter()
        if kind == "message" and chat.id >= BROADCAST_FIRST:
            broadcast_sent.append(stamp)
        elif kind == "callback_answer":
            answered[fields["callback_query_id"]] = stamp
            if "问题" in (fields.get("text") or ""):
                errors.append(fields["text"])
        elif kind == "edit" and chat.id not in shown:
            shown[chat.id] = stamp
        original_emit(chat, kind, **fields)

    sandbox.emit = emit  # type: ignore[method-assign]
    sandbox.faults.delay = latency
    # Telegram's limits from here on (the screens above were set up without them).
    sandbox.rate.reset()
    sandbox.limits.enabled = True

    env = {
        **os.environ,
        "TELEGRAM_BOT_TOKEN": TOKEN,
        "KEHOU_DATABASE_URL": database_url,
        "KEHOU_API_BASE_URL": url,
        "KEHOU_LOG_LEVEL": "WARNING",
    }
    process = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "bot.cli", "run", "--no-migrate", env=env
    )
    try:
        deadline = time.monotonic() + 60
        while sandbox.counters.methods.get("getUpdates", 0) < 2:  # polling has begun
            assert time.monotonic() < deadline, "the bot did not start"
            await asyncio.sleep(0.1)
        await asyncio.sleep(1)

        pressed: dict[str, tuple[float, int]] = {}
        start = time.perf_counter()
        for index, (telegram_id, student_id) in enumerate(pairs):
            delay = start + index / parents - time.perf_counter()
            if delay > 0:
                await asyncio.sleep(delay)
            query_id = await sandbox.user_presses(
                telegram_id, telegram_id, screens[telegram_id], f"cs:y:{student_id}:{course_id}"
            )
            pressed[query_id] = (time.perf_counter(), telegram_id)
        deadline = time.monotonic() + 120
        # Polling a counter a benchmark fills in is simplest here.
        while (len(answered) < parents or len(shown) < parents) and time.monotonic() < deadline:  # noqa: ASYNC110
            await asyncio.sleep(0.1)
    finally:
        process.terminate()
        await process.wait()
        await runner.cleanup()

    to_answer = [answered[q] - t for q, (t, _) in pressed.items() if q in answered]
    to_result = [shown[c] - t for q, (t, c) in pressed.items() if c in shown]
    # The broadcast's pace while the rush is handled: first press to last result shown.
    rush_end = max(shown.values(), default=start)
    during = sum(1 for stamp in broadcast_sent if start <= stamp <= rush_end)
    broadcast_rate = during / (rush_end - start) if rush_end > start else 0.0
    db = Database(database_url)
    async with db.transaction() as session:
        counts = dict(
            (
                await session.execute(
                    select(Enrolment.status, func.count())
                    .where(Enrolment.course_id == course_id)
                    .group_by(Enrolment.status)
                )
            ).all()
        )
        positions = sorted(
            (
                await session.scalars(
                    select(Enrolment.waitlist_position).where(
                        Enrolment.course_id == course_id,
                        Enrolment.status == EnrolmentStatus.WAITLISTED,
                    )
                )
            ).all()
        )
    await db.dispose()
    return {
        "parents": parents,
        "latency_ms": latency * 1000,
        "answer_p50": quantile(to_answer, 0.5),
        "answer_p95": quantile(to_answer, 0.95),
        "answer_p99": quantile(to_answer, 0.99),
        "result_p50": quantile(to_result, 0.5),
        "result_p95": quantile(to_result, 0.95),
        "result_p99": quantile(to_result, 0.99),
        "unanswered": parents - len(to_answer),
        "no_result": parents - len(to_result),
        "errors": len(errors),
        "enrolled": counts.get(EnrolmentStatus.ENROLLED, 0),
        "waitlisted": counts.get(EnrolmentStatus.WAITLISTED, 0),
        "positions_ok": positions == list(range(1, parents - SEATS + 1)),
        "broadcast_per_s": broadcast_rate,
        "broadcast_left": broadcast - len(broadcast_sent),
        "rate_limited": sandbox.counters.rate_limited,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--parents", type=int, action="append")
    parser.add_argument("--latency", type=float, default=0.05, help="seconds per Bot API call")
    parser.add_argument(
        "--broadcast", type=int, default=3000, help="recipients of a broadcast draining meanwhile"
    )
    args = parser.parse_args()
    results = []
    for parents in args.parents or [500, 1000]:
        result = asyncio.run(run(parents, args.latency, args.broadcast))
        print(result, file=sys.stderr, flush=True)
        results.append(result)
    print(f"\nPython {sys.version.split()[0]}, {os.cpu_count()} cores, SQLite\n")
    print(
        "| parents | answered p50 / p95 / p99 | result p50 / p95 / p99 | unanswered | errors |"
        " enrolled | waitlisted (positions 1…n) | broadcast during the rush | 429s |"
    )
    print("|---|---|---|---|---|---|---|---|---|")
    for r in results:
        print(
            f"| {r['parents']:,} | {r['answer_p50']:.0f} / {r['answer_p95']:.0f} / "
            f"{r['answer_p99']:.0f} ms | {r['result_p50']:.0f} / {r['result_p95']:.0f} / "
            f"{r['result_p99']:.0f} ms | {r['unanswered']} | {r['errors']} | {r['enrolled']} | "
            f"{r['waitlisted']} ({'yes' if r['positions_ok'] else 'NO'}) | "
            f"{r['broadcast_per_s']:.1f}/s | {r['rate_limited']} |"
        )


if __name__ == "__main__":
    main()
