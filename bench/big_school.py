"""Benchmark: Kehou at the demo school and at a generated school of 10,000 students.

    .venv/bin/python bench/big_school.py                      # the demo school and 10,000
    .venv/bin/python bench/big_school.py --students 617 --students 10000
    .venv/bin/python bench/big_school.py --students 2000 --requests 20 --active 100 --rounds 2

Each school gets a fresh SQLite database: the demo school (`bot/demo/school.yaml`) and the
generated ones (`bot.demo.big.build_school`), every one populated the same way (`populate`:
teachers, an admin and guardians bound, children signed up through the sign-up service), with
the term running today and today a school day (a weekend runs Wednesday's timetable, 调休).

Kehou runs as it does in production, `kehou run` in its own process, polling the sandbox
(docs/SANDBOX.md) that runs here over HTTP, as in bench/signup_rush.py. For each school:

- **start-up**: from starting the process to the first ``getUpdates`` the sandbox receives;
- **latency** of `/courses` (until the course list shows), `/roster` of a teacher (until the
  last session's message: the teachers with the most children today are asked in turn) and
  `/schedule` of a parent (until the calendar file, or the week's text for a child with no
  course), `--requests` of each, one at a time (each parent asks once), after a warm-up;
- **memory**: the process's resident set (VmRSS) idle after start, after the latency runs and
  after `--active` parents (each a different one, 50 at a time) have each sent `/courses`,
  pressed a course card and sent `/schedule`; and the peak (VmHWM).

Then start-up alone, `--rounds` times in turn: a bare python-telegram-bot echo bot (PTB's
defaults, one handler), and `kehou run` (which checks the token and the schema first) and
`kehou run --no-migrate` on each school's database. And `python -X importtime` of `kehou run`:
where the start-up goes. And after each school's run, the services behind each command are
called in this process on its database with every SQL statement timed: where a request's
database time goes.

Send limits are off on both sides, as in bench/throughput.py: the sandbox enforces none and
Kehou runs with `KEHOU_LIMITS=off`, so a teacher asked again within a second is not paced by
their chat's bucket and the latency is Kehou's own work.

The exit status is 1 when a request failed (an error, no answer in 60 s) or a bot did not
start, 0 otherwise, whether the targets were met or not.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import datetime as dt
import json
import os
import random
import re
import shutil
import socket
import statistics
import sys
import tempfile
import time
from collections import defaultdict
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from zoneinfo import ZoneInfo  # noqa: E402

from sqlalchemy import event, func, select  # noqa: E402

from bot.demo import big  # noqa: E402
from bot.demo.generate import HERE as DEMO_DIR  # noqa: E402
from bot.services import enrolment, leaves, members, timetable  # noqa: E402
from bot.services.importer import import_school  # noqa: E402
from sandbox.core import Sandbox  # noqa: E402
from sandbox.server import run_sandbox  # noqa: E402
from storage.db import Database  # noqa: E402
from storage.migrate import upgrade_async  # noqa: E402
from storage.models import (  # noqa: E402
    Course,
    Enrolment,
    EnrolmentStatus,
    School,
    SchoolClass,
    Student,
    utcnow,
)

JSON = dict[str, Any]
KEHOU = str(Path(sys.executable).with_name("kehou"))
ECHO_TOKEN = "555020:BIG-SCHOOL-ECHO"
APOLOGIES = ("抱歉，系统出了点问题", "Sorry, something went wrong")
ANSWER_TIMEOUT = 60.0
START_TIMEOUT = 60.0
ACTIVE_AT_ONCE = 50
TARGETS = {"ratio": 1.5, "rss_mb": 150.0, "startup_s": 1.0}


def say(text: str) -> None:
    print(text, file=sys.stderr, flush=True)


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def quantile_ms(values: Sequence[float], q: float) -> float:
    if not values:
        return float("nan")
    ordered = sorted(values)
    return ordered[min(int(q * len(ordered)), len(ordered) - 1)] * 1000


def memory_mb(pid: int) -> tuple[float, float]:
    """The process's resident set now and at its peak (VmRSS, VmHWM), in MB."""
    found = {}
    with open(f"/proc/{pid}/status") as status:
        for line in status:
            key, _, value = line.partition(":")
            if key in ("VmRSS", "VmHWM"):
                found[key] = int(value.split()[0]) / 1024
    return found["VmRSS"], found["VmHWM"]


class BenchError(Exception):
    """A run could not be carried out: a bot did not start or died."""


# ---------------------------------------------------------------------------------------------
# The schools


@dataclass
class Parent:
    telegram_id: int
    name: str
    messages: int  # what /schedule sends: the week, and a calendar file if the child has courses


@dataclass
class Teacher:
    telegram_id: int
    name: str
    messages: int  # /roster: one message per session today
    children: int


@dataclass
class Prepared:
    """A school ready to be served: its database and the people who will write."""

    label: str
    url: str
    path: Path
    students: int
    facts: JSON
    seconds: dict[str, float]
    parents: list[Parent]
    teachers: list[Teacher]


async def prepare_demo(workdir: Path, seed: int) -> Prepared:
    path = workdir / "demo.sqlite3"
    url = f"sqlite+aiosqlite:///{path}"
    await upgrade_async(url)
    db = Database(url)
    try:
        started = time.perf_counter()
        report = await import_school(db, DEMO_DIR / "school.yaml", actor_label="bench")
        seconds = {"import": time.perf_counter() - started}
        population = await big.populate(db, report.school_id, seed=seed, progress=say)
        seconds |= population.seconds
        return await finish(db, "demo school", url, path, report.school_id, population, seconds)
    finally:
        await db.dispose()


async def prepare_big(workdir: Path, students: int, seed: int) -> Prepared:
    path = workdir / f"school-{students}.sqlite3"
    url = f"sqlite+aiosqlite:///{path}"
    await upgrade_async(url)
    db = Database(url)
    try:
        school = await big.build_school(db, students, seed=seed, progress=say)
        say(big.summary(school.plan))
        label = f"{students:,} students"
        school_id = school.report.school_id
        return await finish(db, label, url, path, school_id, school.population, school.seconds)
    finally:
        await db.dispose()


async def finish(
    db: Database,
    label: str,
    url: str,
    path: Path,
    school_id: int,
    population: big.Population,
    seconds: dict[str, float],
) -> Prepared:
    """Open the school for today; the parents who will write (each with one child), and the
    teachers with the most children on today's roster."""
    await big.open_for_today(db, school_id, weekday_today=True)
    async with db.transaction() as session:
        zone = await session.scalar(select(School.timezone).where(School.id == school_id))
        today = utcnow().astimezone(ZoneInfo(zone or "Asia/Shanghai")).date()
        with_courses = set(
            await session.scalars(
                select(Enrolment.student_id)
                .where(Enrolment.status == EnrolmentStatus.ENROLLED)
                .distinct()
            )
        )
        teachers = []
        for bound in population.teachers:
            member = await members.find_member(session, bound.telegram_id)
            assert member is not None
            sessions = await leaves.roster(session, member, today)
            if sessions:
                children = sum(len(kids) for _, kids in sessions)
                teachers.append(Teacher(bound.telegram_id, bound.name, len(sessions), children))
        facts = {
            "students": await session.scalar(select(func.count()).select_from(Student)),
            "classes": await session.scalar(select(func.count()).select_from(SchoolClass)),
            "courses": await session.scalar(select(func.count()).select_from(Course)),
            "enrolments": await session.scalar(select(func.count()).select_from(Enrolment)),
            "guardians": len(population.guardians),
            "teachers": len(population.teachers),
        }
    parents = [
        Parent(g.telegram_id, g.name, 2 if g.children[0] in with_courses else 1)
        for g in population.guardians
        if len(g.children) == 1
    ]
    random.Random(len(parents)).shuffle(parents)
    teachers.sort(key=lambda t: (-t.children, t.telegram_id))
    return Prepared(
        label, url, path, int(facts["students"] or 0), facts, seconds, parents, teachers[:10]
    )


# ---------------------------------------------------------------------------------------------
# Watching the sandbox


class Watch:
    """What the bot sends and edits in each chat, stamped, and the requests waiting for it."""

    def __init__(self, sandbox: Sandbox) -> None:
        self.seen: dict[int, list[tuple[float, str, JSON]]] = defaultdict(list)
        self.waiting: dict[int, tuple[Callable[[list[JSON]], bool], asyncio.Future[float]]] = {}
        self.first_poll: float | None = None
        original_emit = sandbox.emit
        original_method = sandbox.api.method

        def emit(chat: Any, kind: str, **fields: Any) -> None:
            stamp = time.perf_counter()
            original_emit(chat, kind, **fields)
            message = fields.get("message")
            if kind not in ("message", "edit") or not message or not message["outgoing"]:
                return
            seen = self.seen[chat.id]
            seen.append((stamp, kind, message))
            waiter = self.waiting.get(chat.id)
            if waiter is not None and not waiter[1].done():
                if waiter[0]([m for _, _, m in seen]):
                    waiter[1].set_result(stamp)

        def method(name: str) -> Any:
            if self.first_poll is None and name.lower() == "getupdates":
                self.first_poll = time.perf_counter()
            return original_method(name)

        sandbox.emit = emit  # type: ignore[method-assign]
        sandbox.api.method = method  # type: ignore[method-assign]

    def expect(self, chat_id: int, done: Callable[[list[JSON]], bool]) -> asyncio.Future[float]:
        self.seen[chat_id] = []
        future: asyncio.Future[float] = asyncio.get_running_loop().create_future()
        self.waiting[chat_id] = (done, future)
        return future


def text_of(message: JSON) -> str:
    return str(message.get("text") or message.get("caption") or "")


def buttons(message: JSON, prefix: str) -> list[str]:
    rows = (message.get("reply_markup") or {}).get("inline_keyboard", [])
    return [
        b["callback_data"]
        for row in rows
        for b in row
        if str(b.get("callback_data", "")).startswith(prefix)
    ]


@dataclass
class Tally:
    latencies: dict[str, list[float]] = field(default_factory=lambda: defaultdict(list))
    failures: list[str] = field(default_factory=list)


class People:
    def __init__(self, sandbox: Sandbox, watch: Watch, tally: Tally) -> None:
        self.sandbox, self.watch, self.tally = sandbox, watch, tally

    async def ask(
        self,
        what: str,
        chat: int,
        done: Callable[[list[JSON]], bool],
        *,
        send: str | None = None,
        press: tuple[int, str] | None = None,
        record: bool = True,
    ) -> list[JSON] | None:
        """Send or press, then wait until `done` holds for what the bot sent since; the
        messages, or None when the answer was an error or did not come."""
        answered = self.watch.expect(chat, done)
        started = time.perf_counter()
        try:
            if send is not None:
                await self.sandbox.user_sends(chat, chat, send)
            else:
                assert press is not None
                await self.sandbox.user_presses(chat, chat, *press)
            stamp = await asyncio.wait_for(answered, ANSWER_TIMEOUT)
        except TimeoutError:
            self.tally.failures.append(f"{what} in chat {chat}: no answer in time")
            return None
        finally:
            self.watch.waiting.pop(chat, None)
        shown = [m for _, _, m in self.watch.seen[chat]]
        if any(a in text_of(m) for m in shown for a in APOLOGIES):
            self.tally.failures.append(f"{what} in chat {chat}: {text_of(shown[-1])[:100]}")
            return None
        if record:
            self.tally.latencies[what].append(stamp - started)
        return shown

    async def courses(self, parent: Parent, record: bool = True) -> JSON | None:
        shown = await self.ask(
            "/courses",
            parent.telegram_id,
            lambda ms: any(buttons(m, "cs:c:") for m in ms),
            send="/courses",
            record=record,
        )
        return next((m for m in shown if buttons(m, "cs:c:")), None) if shown else None

    async def card(self, parent: Parent, listing: JSON, pick: int) -> bool:
        cards = buttons(listing, "cs:c:")
        target = listing["message_id"]
        shown = await self.ask(
            "card",
            parent.telegram_id,
            lambda ms: any(m["message_id"] == target for m in ms),
            press=(target, cards[pick % len(cards)]),
        )
        return shown is not None

    async def schedule(self, parent: Parent, record: bool = True) -> bool:
        want = parent.messages
        shown = await self.ask(
            "/schedule",
            parent.telegram_id,
            lambda ms: len(ms) >= want,
            send="/schedule",
            record=record,
        )
        return shown is not None

    async def roster(self, teacher: Teacher, record: bool = True) -> bool:
        want = teacher.messages
        shown = await self.ask(
            "/roster",
            teacher.telegram_id,
            lambda ms: len(ms) >= want,
            send="/roster",
            record=record,
        )
        return shown is not None


# ---------------------------------------------------------------------------------------------
# Running a bot


@dataclass
class Started:
    process: asyncio.subprocess.Process
    sandbox: Sandbox
    watch: Watch
    runner: Any
    seconds: float  # from starting the process to the first getUpdates


def kehou_command(no_migrate: bool = False) -> list[str]:
    return [KEHOU, "run", *(["--no-migrate"] if no_migrate else [])]


def echo_command() -> list[str]:
    return [sys.executable, str(Path(__file__).resolve().with_name("echo_bot.py"))]


@contextlib.asynccontextmanager
async def serving(
    command: list[str],
    token: str,
    database_url: str | None,
    workdir: Path,
    log_name: str,
    users: Sequence[tuple[int, str]] = (),
) -> Any:
    """The sandbox with these users and the bot polling it, until the block ends."""
    sandbox = Sandbox(token, bot_username="kehou_big_school_bot")
    for telegram_id, name in users:
        sandbox.add_user(telegram_id, name)
    watch = Watch(sandbox)
    port = free_port()
    runner = await run_sandbox(sandbox, "127.0.0.1", port)
    url = f"http://127.0.0.1:{port}"
    env = {k: v for k, v in os.environ.items() if not k.startswith(("KEHOU_", "TELEGRAM_"))}
    env |= {
        "PYTHONPATH": str(ROOT),
        "TELEGRAM_BOT_TOKEN": token,
        "KEHOU_API_BASE_URL": url,
        "KEHOU_LOG_LEVEL": "WARNING",
        # No pacing of sends: what is measured is the bot's own work (docs/PERFORMANCE.md).
        "KEHOU_LIMITS": "off",
        "ECHO_TOKEN": token,
        "ECHO_API_BASE_URL": url,
    }
    if database_url:
        env["KEHOU_DATABASE_URL"] = database_url
    process: asyncio.subprocess.Process | None = None
    log_path = workdir / f"{log_name}.log"
    try:
        with log_path.open("wb") as log:
            started = time.perf_counter()
            process = await asyncio.create_subprocess_exec(
                *command, env=env, cwd=workdir, stdout=log, stderr=log
            )
        deadline = time.monotonic() + START_TIMEOUT
        while watch.first_poll is None:
            if process.returncode is not None:
                raise BenchError(f"{log_name} exited with {process.returncode}: {tail(log_path)}")
            if time.monotonic() > deadline:
                raise BenchError(f"{log_name} did not poll in {START_TIMEOUT:.0f} s")
            await asyncio.sleep(0.005)
        yield Started(process, sandbox, watch, runner, watch.first_poll - started)
    finally:
        if process is not None:
            await stop_process(process)
        await runner.cleanup()


def tail(path: Path, lines: int = 15) -> str:
    try:
        return "\n".join(path.read_text(errors="replace").splitlines()[-lines:])
    except OSError:
        return ""


async def stop_process(process: asyncio.subprocess.Process) -> None:
    if process.returncode is not None:
        return
    with contextlib.suppress(ProcessLookupError):
        process.terminate()
    try:
        await asyncio.wait_for(process.wait(), 15)
    except TimeoutError:
        with contextlib.suppress(ProcessLookupError):
            process.kill()
        await process.wait()


async def measure(school: Prepared, args: argparse.Namespace, workdir: Path, token: str) -> JSON:
    """One school: start-up, the latency of each command, the memory under active parents."""
    requests, active = args.requests, args.active
    warm = 5
    needed = 2 * (requests + warm) + active
    if len(school.parents) < needed:
        raise BenchError(
            f"{school.label}: {len(school.parents)} parents with one child, {needed} needed"
        )
    if not school.teachers:
        raise BenchError(f"{school.label}: no teacher has children on today's roster")
    courses_by = school.parents[: requests + warm]
    schedule_by = school.parents[requests + warm : 2 * (requests + warm)]
    actives = school.parents[2 * (requests + warm) : needed]
    users = [(p.telegram_id, p.name) for p in school.parents[:needed]]
    users += [(t.telegram_id, t.name) for t in school.teachers]
    tally = Tally()
    result: JSON = {"school": school.label, "facts": school.facts, "seconds": school.seconds}
    async with serving(
        kehou_command(), token, school.url, workdir, f"kehou-{school.students}", users
    ) as run:
        result["startup_s"] = run.seconds
        await asyncio.sleep(2)  # the jobs that run at start (digest, housekeeping) settle
        pid = run.process.pid
        result["rss_idle_mb"] = memory_mb(pid)[0]
        people = People(run.sandbox, run.watch, tally)
        teachers = school.teachers
        for n in range(warm):
            await people.courses(courses_by[requests + n], record=False)
            await people.schedule(schedule_by[requests + n], record=False)
            await people.roster(teachers[n % len(teachers)], record=False)
        for parent in courses_by[:requests]:
            await people.courses(parent)
        for n in range(requests):
            await people.roster(teachers[n % len(teachers)])
        for parent in schedule_by[:requests]:
            await people.schedule(parent)
        result["rss_after_latency_mb"] = memory_mb(pid)[0]

        gate = asyncio.Semaphore(ACTIVE_AT_ONCE)
        busy = Tally()
        doing = People(run.sandbox, run.watch, busy)

        async def act(index: int, parent: Parent) -> None:
            async with gate:
                listing = await doing.courses(parent)
                if listing is not None and await doing.card(parent, listing, index):
                    await doing.schedule(parent)

        started = time.perf_counter()
        await asyncio.gather(*(act(i, p) for i, p in enumerate(actives)))
        result["active_s"] = time.perf_counter() - started
        await asyncio.sleep(1)
        result["rss_active_mb"], result["rss_peak_mb"] = memory_mb(pid)
        tally.failures += busy.failures
        result["active_p50_ms"] = {k: quantile_ms(v, 0.5) for k, v in busy.latencies.items()}
    result["latency_ms"] = {
        what: {"p50": quantile_ms(v, 0.5), "p95": quantile_ms(v, 0.95), "n": len(v)}
        for what, v in tally.latencies.items()
    }
    result["roster_children"] = statistics.mean(t.children for t in teachers)
    result["failures"] = tally.failures
    return result


async def startups(schools: list[Prepared], args: argparse.Namespace, workdir: Path) -> JSON:
    """Start-up alone, the bots in turn, `--rounds` times: seconds to the first getUpdates."""
    bots: list[tuple[str, list[str], str | None]] = [("echo bot (PTB)", echo_command(), None)]
    for school in schools:
        bots.append((f"kehou run · {school.label}", kehou_command(), school.url))
        bots.append((f"kehou run --no-migrate · {school.label}", kehou_command(True), school.url))
    found: dict[str, list[float]] = defaultdict(list)
    for number in range(args.rounds):
        for name, command, url in bots:
            token = ECHO_TOKEN if url is None else f"55503{number}:BIG-SCHOOL-START"
            async with serving(command, token, url, workdir, "startup") as run:
                found[name].append(run.seconds)
            say(f"start-up round {number + 1}, {name}: {run.seconds:.2f} s")
    return {name: sorted(values) for name, values in found.items()}


# ---------------------------------------------------------------------------------------------
# Where a request's database time goes


FROM = re.compile(r"\bFROM (\w+)")


def statement_name(sql: str) -> str:
    """A statement, short: its start and the table it reads."""
    flat = " ".join(sql.split())
    table = FROM.search(flat)
    return flat[:44] + (f" … FROM {table.group(1)}" if table and len(flat) > 44 else "")


async def statements(school: Prepared, count: int) -> JSON:
    """The services behind each command, called here on the school's database as the handlers
    call them (the loader's `find_member`, then one transaction), with every SQL statement
    timed by SQLAlchemy's cursor events; `count` parents and the roster teachers in turn."""
    db = Database(school.url)
    doing = ["warm-up"]
    timed: dict[str, dict[str, list[float]]] = defaultdict(lambda: defaultdict(list))
    walls: dict[str, list[float]] = defaultdict(list)

    @event.listens_for(db.engine.sync_engine, "before_cursor_execute")
    def before(conn: Any, cursor: Any, sql: str, *_: Any) -> None:
        conn.info["kehou.bench.t"] = time.perf_counter()

    @event.listens_for(db.engine.sync_engine, "after_cursor_execute")
    def after(conn: Any, cursor: Any, sql: str, *_: Any) -> None:
        spent = time.perf_counter() - conn.info["kehou.bench.t"]
        timed[doing[0]][statement_name(sql)].append(spent)

    async def timed_call(name: str, telegram_id: int, call: Callable[..., Any]) -> None:
        doing[0] = "loader"
        started = time.perf_counter()
        async with db.transaction() as session:
            member = await members.find_member(session, telegram_id)
        walls["loader"].append(time.perf_counter() - started)
        assert member is not None
        doing[0] = name
        started = time.perf_counter()
        async with db.transaction() as session:
            await call(session, member)
        walls[name].append(time.perf_counter() - started)

    def courses(session: Any, member: Any) -> Any:
        return enrolment.browse(session, member, None, today=today)

    def schedule(session: Any, member: Any) -> Any:
        return timetable.weeks(session, member, today)

    def roster(session: Any, member: Any) -> Any:
        return leaves.roster(session, member, today)

    try:
        async with db.transaction() as session:
            zone = await session.scalar(select(School.timezone))
        today = utcnow().astimezone(ZoneInfo(zone or "Asia/Shanghai")).date()
        warm = school.parents[-1]
        await timed_call("warm-up", warm.telegram_id, courses)  # loads the catalogue
        timed.clear()
        walls.clear()
        for parent in school.parents[:count]:
            await timed_call("/courses", parent.telegram_id, courses)
            await timed_call("/schedule", parent.telegram_id, schedule)
        for n in range(count):
            await timed_call(
                "/roster", school.teachers[n % len(school.teachers)].telegram_id, roster
            )
    finally:
        await db.dispose()
    found: JSON = {}
    for name in ("loader", "/courses", "/roster", "/schedule"):
        calls = len(walls[name])
        rows = sorted(timed[name].items(), key=lambda kv: -sum(kv[1]))
        found[name] = {
            "ms": statistics.median(walls[name]) * 1000,
            "statements": sum(len(v) for v in timed[name].values()) / calls,
            "sql_ms": sum(sum(v) for v in timed[name].values()) / calls * 1000,
            "top": [(sql, sum(v) / len(v) * 1000, len(v) / calls) for sql, v in rows[:3]],
        }
    return found


# ---------------------------------------------------------------------------------------------
# Where the start-up goes


IMPORT_LINE = re.compile(r"import time:\s+(\d+) \|\s+(\d+) \| (\s*)(\S+)")
FIRST_PARTY = ("bot", "handlers", "storage", "sandbox", "locales")


async def import_times(school: Prepared, workdir: Path) -> JSON:
    """`python -X importtime` of `kehou run` until it polls: each library's own import time
    (its modules' self time), and which of Kehou's modules first imported it."""
    command = [sys.executable, "-X", "importtime", "-m", "bot.cli", "run"]
    token = "555040:BIG-SCHOOL-IMPORTS"
    async with serving(command, token, school.url, workdir, "importtime") as run:
        seconds = run.seconds
    rows = []
    for line in (workdir / "importtime.log").read_text(errors="replace").splitlines():
        matched = IMPORT_LINE.match(line)
        if matched:
            own, total, indent, name = matched.groups()
            rows.append((int(own), int(total), len(indent) // 2, name))
    by_root: dict[str, int] = defaultdict(int)
    for own, _, _, name in rows:
        by_root[name.split(".")[0]] += own
    # importtime lists a module after what it imported; its importer is the next line with
    # less depth. The first-party module nearest above a library's first line imported it.
    importer: dict[str, str] = {}
    for index, (_, _, depth, name) in enumerate(rows):
        root = name.split(".")[0]
        if root in importer or root in FIRST_PARTY:
            continue
        want = depth
        for _, _, up_depth, up_name in rows[index + 1 :]:
            if up_depth < want:
                want = up_depth
                if up_name.split(".")[0] in FIRST_PARTY:
                    importer[root] = up_name
                    break
        else:  # imported while `kehou run` runs, not while a module is being imported
            importer[root] = "bot.cli (`run`)"
    top = sorted(by_root.items(), key=lambda kv: -kv[1])[:15]
    ours = [r for r in rows if r[3].split(".")[0] in FIRST_PARTY]
    return {
        "seconds_to_first_poll": seconds,
        "total_import_ms": sum(own for own, *_ in rows) / 1000,
        "by_package_ms": [(name, ms / 1000, importer.get(name, "")) for name, ms in top],
        "own_modules_ms": [(name, own / 1000) for own, _, _, name in sorted(ours)[::-1][:6]],
    }


# ---------------------------------------------------------------------------------------------
# The report


def report(
    results: list[JSON], starts: JSON, imports: JSON | None, args: argparse.Namespace
) -> str:
    base = results[0]
    lines = [
        f"Python {sys.version.split()[0]}, {os.cpu_count()} cores, SQLite; "
        f"{args.requests} requests of each command, {args.active} active parents",
        "",
        "| school | students | classes | courses | guardians | enrolments | "
        "import | bind | sign-ups |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    for r in results:
        f, s = r["facts"], r["seconds"]
        lines.append(
            f"| {r['school']} | {f['students']:,} | {f['classes']} | {f['courses']} | "
            f"{f['guardians']:,} | {f['enrolments']:,} | {s.get('import', 0):.1f} s | "
            f"{s.get('bind', 0):.1f} s | {s.get('sign_up', 0):.1f} s |"
        )
    lines += [
        "",
        "| school | /courses p50 / p95 | /roster p50 / p95 | /schedule p50 / p95 |"
        " RSS idle | after latency | after active | peak | failures |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    for r in results:
        cells = []
        for what in ("/courses", "/roster", "/schedule"):
            found = r["latency_ms"].get(what)
            cells.append(f"{found['p50']:.0f} / {found['p95']:.0f} ms" if found else "—")
        lines.append(
            f"| {r['school']} | {' | '.join(cells)} | {r['rss_idle_mb']:.0f} MB | "
            f"{r['rss_after_latency_mb']:.0f} MB | {r['rss_active_mb']:.0f} MB | "
            f"{r['rss_peak_mb']:.0f} MB | {len(r['failures'])} |"
        )
    lines += [
        "",
        "The services behind each command, called in the benchmark's process on each database "
        f"({args.requests} calls each; the loader runs before every command): median time, "
        "SQL statements and their time per call, and the statements that take longest "
        "(mean ms × statements per call):",
        "",
        "| school | step | median | statements | SQL | longest statements |",
        "|---|---|---|---|---|---|",
    ]
    for r in results:
        for step, found in r["statements"].items():
            top = "; ".join(f"`{sql}` {ms:.2f} ms × {n:.1f}" for sql, ms, n in found["top"][:2])
            lines.append(
                f"| {r['school']} | {step} | {found['ms']:.2f} ms | {found['statements']:.1f} | "
                f"{found['sql_ms']:.2f} ms | {top} |"
            )
    for r in results[1:]:
        lines += [
            "",
            f"Ratio {r['school']} / {base['school']} (target ≤ {TARGETS['ratio']}×):",
            "",
        ]
        lines += ["| command | p50 | p95 |", "|---|---|---|"]
        for what in ("/courses", "/roster", "/schedule"):
            a, b = base["latency_ms"].get(what), r["latency_ms"].get(what)
            if a and b:
                lines.append(
                    f"| {what} | {b['p50'] / a['p50']:.2f}× | {b['p95'] / a['p95']:.2f}× |"
                )
    lines += [
        "",
        "Children on the rosters asked (the teachers with the most today), on average: "
        + ", ".join(f"{r['school']} {r['roster_children']:.0f}" for r in results),
        f"Active parents ({args.active}, {ACTIVE_AT_ONCE} at a time): "
        + "; ".join(f"{r['school']} {r['active_s']:.1f} s" for r in results),
        "",
        f"Start-up, process start to the first getUpdates ({args.rounds} rounds; median, min):",
        "",
        "| bot | median | min |",
        "|---|---|---|",
    ]
    for name, values in starts.items():
        lines.append(f"| {name} | {statistics.median(values):.2f} s | {min(values):.2f} s |")
    if imports:
        lines += [
            "",
            f"`python -X importtime -m bot.cli run`: {imports['total_import_ms']:.0f} ms of "
            f"imports, first getUpdates after {imports['seconds_to_first_poll']:.2f} s "
            "(importtime itself slows it). Each package's own import time:",
            "",
            "| package | ms | first imported by |",
            "|---|---|---|",
        ]
        for name, ms, importer in imports["by_package_ms"]:
            lines.append(f"| {name} | {ms:.0f} | {importer} |")
        lines += [
            "",
            "Kehou's own modules that take longest to import (self time): "
            + ", ".join(f"{name} {ms:.0f} ms" for name, ms in imports["own_modules_ms"]),
        ]
    return "\n".join(lines)


async def bench(args: argparse.Namespace) -> tuple[list[JSON], JSON, JSON | None]:
    workdir = Path(tempfile.mkdtemp(prefix="kehou-big-school-"))
    try:
        started = time.perf_counter()
        schools = [await prepare_demo(workdir, args.seed)]
        say(f"the demo school is ready after {time.perf_counter() - started:.1f} s")
        for students in args.students or [10_000]:
            started = time.perf_counter()
            schools.append(await prepare_big(workdir, students, args.seed))
            say(f"{students:,} students are ready after {time.perf_counter() - started:.1f} s")
        results = []
        for number, school in enumerate(schools):
            result = await measure(school, args, workdir, f"55501{number}:BIG-SCHOOL")
            result["statements"] = await statements(school, args.requests)
            say(json.dumps(result, ensure_ascii=False, default=str))
            results.append(result)
        starts = await startups(schools, args, workdir)
        imports = None if args.no_importtime else await import_times(schools[-1], workdir)
        return results, starts, imports
    finally:
        shutil.rmtree(workdir, ignore_errors=True)


def main() -> int:
    parser = argparse.ArgumentParser(description=(__doc__ or "").split("\n")[0])
    parser.add_argument(
        "--students",
        type=int,
        action="append",
        help="a generated school of this many students (repeatable; default 10,000)",
    )
    parser.add_argument("--requests", type=int, default=50, help="of each command (default 50)")
    parser.add_argument(
        "--active", type=int, default=500, help="parents active before memory is read"
    )
    parser.add_argument("--rounds", type=int, default=5, help="start-up measurements per bot")
    parser.add_argument("--seed", type=int, default=big.SEED)
    parser.add_argument("--no-importtime", action="store_true")
    parser.add_argument("--json", metavar="FILE", help="also write the results as JSON")
    args = parser.parse_args()
    try:
        results, starts, imports = asyncio.run(bench(args))
    except BenchError as error:
        print(f"big_school: {error}", file=sys.stderr)
        return 1
    print(f"\n{dt.date.today()}\n")
    print(report(results, starts, imports, args))
    if args.json:
        Path(args.json).write_text(
            json.dumps(
                {"schools": results, "startup_s": starts, "imports": imports},
                ensure_ascii=False,
                indent=2,
                default=str,
            )
            + "\n"
        )
    return 1 if any(r["failures"] for r in results) else 0


if __name__ == "__main__":
    sys.exit(main())
