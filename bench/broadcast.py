"""Benchmark: one broadcast to many parents through the sandbox, with and without limits.

    .venv/bin/python bench/broadcast.py                      # 10,000 recipients, limits on and off
    .venv/bin/python bench/broadcast.py --recipients 2000 --mode off
    .venv/bin/python bench/broadcast.py --database-url postgresql+asyncpg://…/kehou_bench

The sandbox runs in a child process (so its work does not eat the worker's CPU); Kehou's
delivery worker runs here exactly as in production, over a fresh database. While the broadcast
drains, a person keeps writing to the bot and getting a direct reply (one a second, Telegram's
per-chat pace) through the same bot and rate limiter, as a handler's answer would; its delay is
the "reply p95". Results print as a Markdown table.
"""

from __future__ import annotations

import argparse
import asyncio
import multiprocessing
import os
import resource
import socket
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import aiohttp

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from sqlalchemy import func, insert, select  # noqa: E402
from telegram import Update  # noqa: E402

from bot.config import Secret, Settings  # noqa: E402
from bot.delivery import DeliveryWorker, SendBudget, answering, make_bot  # noqa: E402
from bot.i18n import I18n  # noqa: E402
from bot.services import outbox  # noqa: E402
from bot.services.outbox import NewMessage  # noqa: E402
from storage.db import Database  # noqa: E402
from storage.migrate import upgrade_async  # noqa: E402
from storage.models import Outbox, OutboxStatus, Priority, School, User  # noqa: E402

TOKEN = "777000:BENCHMARK"
FIRST = 1_000_000
ASKER = 999_999


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def sandbox_process(port: int, recipients: int, ready: Any) -> None:
    """The child: a sandbox with every recipient as a user, serving until killed."""
    from sandbox.core import Sandbox
    from sandbox.server import run_sandbox

    async def main() -> None:
        sandbox = Sandbox(TOKEN, bot_username="kehou_bench_bot")
        sandbox.add_user(ASKER, "asker")
        for telegram_id in range(FIRST, FIRST + recipients):
            sandbox.add_user(telegram_id, f"家长{telegram_id}")
        await run_sandbox(sandbox, "127.0.0.1", port)
        ready.set()
        await asyncio.Event().wait()

    asyncio.run(main())


async def configure(url: str, limits: bool, delay: float) -> None:
    body = {"limits": {"enabled": limits}, "faults": {"delay": delay}}
    async with aiohttp.ClientSession() as http:
        async with http.post(f"{url}/sandbox/api/config", json=body) as answer:
            answer.raise_for_status()


async def counters(url: str) -> dict[str, Any]:
    async with aiohttp.ClientSession() as http:
        async with http.get(f"{url}/sandbox/api/counters") as answer:
            return dict(await answer.json())


async def prepare(database_url: str, recipients: int) -> tuple[Database, float]:
    await upgrade_async(database_url)
    db = Database(database_url)
    async with db.transaction() as session:
        school = School(code="bench", name="基准学校", timezone="Asia/Shanghai")
        session.add(school)
        await session.flush()
        await session.execute(
            insert(User),
            [
                {"school_id": school.id, "telegram_id": t, "chat_id": t, "display_name": str(t)}
                for t in range(FIRST, FIRST + recipients)
            ],
        )
        users = await session.execute(select(User.id, User.chat_id))
        people = [(u, int(c)) for u, c in users.all() if c is not None]
    started = time.perf_counter()
    async with db.transaction() as session:
        await outbox.enqueue_many(
            session,
            school.id,
            [
                NewMessage(
                    chat_id=chat,
                    user_id=user,
                    kind="broadcast",
                    priority=Priority.BULK,
                    text="<b>通知</b>：明天下午课后服务照常进行。",
                    dedupe_key=f"bench:{chat}",
                )
                for user, chat in people
            ],
        )
    return db, time.perf_counter() - started


async def run(args: argparse.Namespace, limits: bool) -> dict[str, Any]:
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    context = multiprocessing.get_context("spawn")
    ready = context.Event()
    child = context.Process(target=sandbox_process, args=(port, args.recipients, ready))
    child.start()
    workdir = tempfile.mkdtemp(prefix="kehou-bench-")
    database_url = args.database_url or f"sqlite+aiosqlite:///{workdir}/bench.sqlite3"
    try:
        await asyncio.to_thread(ready.wait, 60)
        await configure(url, limits, args.delay)
        db, enqueue_seconds = await prepare(database_url, args.recipients)
        rate = Settings().send_rate if limits else 100_000.0
        settings = Settings(
            token=Secret(TOKEN), database_url=database_url, api_base_url=url, send_rate=rate
        )
        budget = SendBudget(rate)
        bot = make_bot(settings, budget)
        await bot.initialize()
        worker = DeliveryWorker(db, bot, I18n(settings.timezone), budget)
        delays: list[float] = []
        done = asyncio.Event()

        async def replies() -> None:
            async with aiohttp.ClientSession() as http:
                while not done.is_set():
                    async with http.post(
                        f"{url}/sandbox/api/chats/{ASKER}/send",
                        json={"user_id": ASKER, "text": "在吗？"},
                    ) as answer:
                        message = (await answer.json())["message"]
                    update = Update.de_json({"update_id": 1, "message": message}, bot)
                    started = time.perf_counter()
                    with answering(update):  # as a handler answering that message
                        await bot.send_message(ASKER, "收到")
                    delays.append(time.perf_counter() - started)
                    await asyncio.sleep(1.0)  # about one message a second per chat

        started = time.perf_counter()
        await worker.start()
        replier = asyncio.create_task(replies())
        while True:
            async with db.transaction() as session:
                left = await session.scalar(
                    select(func.count()).where(
                        Outbox.status.in_((OutboxStatus.PENDING, OutboxStatus.SENDING))
                    )
                )
            if not left and not worker._outcomes:
                break
            await asyncio.sleep(0.2)
        elapsed = time.perf_counter() - started
        done.set()
        await replier
        await worker.stop()
        await bot.shutdown()
        async with db.transaction() as session:
            statuses = dict(
                (
                    await session.execute(
                        select(Outbox.status, func.count()).group_by(Outbox.status)
                    )
                ).all()
            )
        await db.dispose()
        seen = await counters(url)
        per_chat = [
            seen["chats"].get(str(t), {}).get("bot_messages", 0)
            for t in range(FIRST, FIRST + args.recipients)
        ]
        sends = seen["methods"].get("sendMessage", 0)
        return {
            "limits": "on" if limits else "off",
            "recipients": args.recipients,
            "enqueue_s": enqueue_seconds,
            "elapsed_s": elapsed,
            "msgs_per_s": args.recipients / elapsed,
            "sends": sends,
            "429": seen["rate_limited"],
            "429_share": seen["rate_limited"] / max(sends, 1),
            "lost": sum(1 for n in per_chat if n == 0),
            "duplicates": sum(n - 1 for n in per_chat if n > 1),
            "failed": statuses.get(OutboxStatus.FAILED, 0),
            "reply_p50_ms": statistics.median(delays) * 1000 if delays else float("nan"),
            "reply_p95_ms": (
                statistics.quantiles(delays, n=20)[-1] * 1000 if len(delays) >= 2 else float("nan")
            ),
            "replies": len(delays),
            "peak_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
        }
    finally:
        child.kill()
        child.join()


def table(results: list[dict[str, Any]]) -> str:
    head = (
        "| limits | recipients | time | messages/s | 429s (share) | lost | duplicates | "
        "failed | reply p50 / p95 | peak RSS |"
    )
    lines = [head, "|" + "---|" * 10]
    for r in results:
        lines.append(
            f"| {r['limits']} | {r['recipients']:,} | {r['elapsed_s']:.1f} s | "
            f"{r['msgs_per_s']:.1f} | {r['429']} ({r['429_share']:.3%}) | {r['lost']} | "
            f"{r['duplicates']} | {r['failed']} | {r['reply_p50_ms']:.0f} / "
            f"{r['reply_p95_ms']:.0f} ms | {r['peak_rss_mb']:.0f} MB |"
        )
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--recipients", type=int, default=10_000)
    parser.add_argument("--mode", choices=("both", "on", "off"), default="both")
    parser.add_argument("--delay", type=float, default=0.0, help="simulated API latency, s")
    parser.add_argument("--database-url", default=None, help="default: a fresh SQLite file")
    args = parser.parse_args()
    modes = {"both": (True, False), "on": (True,), "off": (False,)}[args.mode]
    results = []
    for limits in modes:
        result = asyncio.run(run(args, limits))
        results.append(result)
        print(result, file=sys.stderr, flush=True)
    print(f"\nPython {sys.version.split()[0]}, {os.cpu_count()} cores\n")
    print(table(results))


if __name__ == "__main__":
    main()
