"""Benchmark: Kehou's throughput beside a bare python-telegram-bot echo bot, on one sandbox.

    .venv/bin/python bench/throughput.py                        # 200 parents, 3 rounds
    .venv/bin/python bench/throughput.py --parents 50 --rounds 1 --json -
    .venv/bin/python bench/throughput.py --by-action            # each action's rate and CPU alone
    .venv/bin/python bench/throughput.py --database-url postgresql+asyncpg://…

Two bots take turns against the local sandbox (`docs/SANDBOX.md`), each as its own process
polling it over HTTP: a bare echo bot (PTB's `ApplicationBuilder().token().base_url()` and one
`MessageHandler` that echoes text, nothing else) and Kehou itself (`kehou run`) on a fresh
database holding the demo school and `--parents` parents, each already bound to a child in
grade 3. Send limits are off on both sides: the sandbox enforces none, and Kehou runs with
`KEHOU_LIMITS=off` (neither its bulk budget nor its per-chat buckets pace anything).

Every parent, all of them at once, goes through a realistic mix of six actions, each sent
when the answer to the previous one has shown: `/courses`, a press on a course card, "Sign
up", "Confirm sign-up", `/schedule` and `/leave`. Each button pressed is read from the message
the bot sent or edited before, as a person would see it. The echo bot gets the same number of
text messages from the same number of people, in the same closed loop.

Measured per run, from the first action to the last answer: actions (messages and presses) per
second, the latency from each action to the bot's answer (for a press, the edit that shows the
result; for `/schedule`, the week's text, before the calendar file), and the CPU seconds the
bot's process used per action (from /proc/<pid>/stat). A few warm-up parents go through the mix
first, unmeasured. Echo and Kehou alternate `--rounds` times; each round gives the ratio of
Kehou's actions per second to the echo bot's. The target is Kehou ≥ 0.4× the echo bot.
The exit status is 1 when an action failed (an error, a refusal, no answer) or a bot could
not run, 0 otherwise, whether the target was met or not.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import dataclasses
import functools
import json
import os
import shutil
import signal
import socket
import statistics
import sys
import tempfile
import time
from asyncio import FIRST_COMPLETED
from collections.abc import Awaitable, Callable, Iterable, Sequence
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent


sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "bench"))

from signup_rush import FIRST, prepare  # noqa: E402
from sqlalchemy import make_url, text  # noqa: E402
from sqlalchemy.ext.asyncio import create_async_engine  # noqa: E402

from sandbox.core import Sandbox  # noqa: E402
from sandbox.model import Chat  # noqa: E402
from sandbox.server import run_sandbox  # noqa: E402

JSON = dict[str, Any]
KEHOU_TOKEN = "555001:THROUGHPUT-KEHOU"
ECHO_TOKEN = "555002:THROUGHPUT-ECHO"
TARGET = 0.4  # Kehou's actions per second, as a share of the echo bot's
ACTIONS = ("courses", "card", "sign up", "confirm", "schedule", "leave")
# What each echo user types, one message per action of a parent's mix.
ECHO_TEXTS = ("/courses", "机器人编程", "报名", "确认报名", "/schedule", "/leave")
# The start of Kehou's apology for an error (zh_CN and en): such an answer is a failure.
APOLOGIES = ("抱歉，系统出了点问题", "Sorry, something went wrong")
ACTION_TIMEOUT = 60.0  # seconds for one answer
START_TIMEOUT = 60.0  # seconds for a bot to start polling
CLOCK_TICK = os.sysconf("SC_CLK_TCK")


class BenchError(Exception):
    """A run could not be carried out (a bot did not start, died, or timed out)."""


# ---------------------------------------------------------------------------------------------
# Measuring


def process_cpu(pid: int) -> tuple[float, float]:
    """CPU seconds (user + system) a process has used so far, all its threads and its main
    thread (the event loop), from /proc/<pid>/stat and /proc/<pid>/task/<pid>/stat."""

    def read(path: str) -> float:
        with open(path) as stat:
            fields = stat.read().rsplit(")", 1)[1].split()
        # After the command's closing parenthesis: state is field 3, utime 14 and stime 15.
        return (int(fields[11]) + int(fields[12])) / CLOCK_TICK

    return read(f"/proc/{pid}/stat"), read(f"/proc/{pid}/task/{pid}/stat")


def api_calls(sandbox: Sandbox) -> int:
    """Bot API calls the sandbox has answered, long polls (getUpdates) left out."""
    methods = sandbox.counters.methods
    return sum(n for method, n in methods.items() if method.lower() != "getupdates")


def quantile_ms(values: Sequence[float], q: float) -> float:
    if not values:
        return float("nan")
    ordered = sorted(values)
    return ordered[min(int(q * len(ordered)), len(ordered) - 1)] * 1000


# What an event in a chat means for the action waiting there: "ok", "error", "refused", or None
# when it is not the answer.
Judge = Callable[[str, JSON], str | None]


class Answers:
    """Watches what the sandbox records (`Sandbox.emit`) and wakes the action waiting in a chat.

    One waiter per chat at a time: each person acts only after the previous answer showed.
    """

    def __init__(self, sandbox: Sandbox) -> None:
        self.waiting: dict[int, tuple[Judge, asyncio.Future[tuple[float, str, JSON]]]] = {}
        original = sandbox.emit

        def emit(chat: Chat, kind: str, **fields: Any) -> None:
            stamp = time.perf_counter()
            original(chat, kind, **fields)
            waiter = self.waiting.get(chat.id)
            if waiter is None or waiter[1].done():
                return
            outcome = waiter[0](kind, fields)
            if outcome is not None:
                waiter[1].set_result((stamp, outcome, fields))

        sandbox.emit = emit  # type: ignore[method-assign]

    def expect(self, chat_id: int, judge: Judge) -> asyncio.Future[tuple[float, str, JSON]]:
        future: asyncio.Future[tuple[float, str, JSON]] = (
            asyncio.get_running_loop().create_future()
        )
        self.waiting[chat_id] = (judge, future)
        return future


@dataclasses.dataclass
class Tally:
    """What one run's people did and saw."""

    latencies: dict[str, list[float]] = dataclasses.field(
        default_factory=lambda: {a: [] for a in ACTIONS}
    )
    failures: dict[str, int] = dataclasses.field(default_factory=dict)
    examples: list[str] = dataclasses.field(default_factory=list)

    def fail(self, why: str, example: str) -> None:
        self.failures[why] = self.failures.get(why, 0) + 1
        if len(self.examples) < 5:
            self.examples.append(example)

    @property
    def done(self) -> int:
        return sum(len(v) for v in self.latencies.values())

    def all(self) -> list[float]:
        return [x for v in self.latencies.values() for x in v]


class People:
    """The people of one run, acting through the sandbox and waiting for the bot's answers."""

    def __init__(self, sandbox: Sandbox, answers: Answers, tally: Tally) -> None:
        self.sandbox = sandbox
        self.answers = answers
        self.tally = tally

    async def act(
        self,
        action: str,
        chat_id: int,
        want: Callable[[str, JSON], bool],
        *,
        send: str | None = None,
        press: tuple[int, str] | None = None,
    ) -> JSON | None:
        """Send a message or press a button; the bot's answer (message as the page shows it),
        or None when the answer was an error, a refusal or nothing in time."""

        def judge(kind: str, fields: JSON) -> str | None:
            if kind == "callback_answer" and fields.get("show_alert"):
                return "refused"
            message = fields.get("message")
            if kind not in ("message", "edit") or not message or not message["outgoing"]:
                return None
            shown = message.get("text") or message.get("caption") or ""
            if any(apology in shown for apology in APOLOGIES):
                return "error"
            return "ok" if want(kind, message) else None

        answer = self.answers.expect(chat_id, judge)
        sent = time.perf_counter()
        try:
            if send is not None:
                await self.sandbox.user_sends(chat_id, chat_id, send)
            else:
                assert press is not None
                await self.sandbox.user_presses(chat_id, chat_id, *press)
            stamp, outcome, fields = await asyncio.wait_for(answer, ACTION_TIMEOUT)
        except TimeoutError:
            self.tally.fail("no answer", f"{action} in chat {chat_id}: no answer in time")
            return None
        except Exception as exc:
            self.tally.fail("sandbox", f"{action} in chat {chat_id}: {exc}")
            return None
        finally:
            self.answers.waiting.pop(chat_id, None)
        if outcome != "ok":
            shown = fields.get("text") or (fields.get("message") or {}).get("text") or ""
            self.tally.fail(outcome, f"{action} in chat {chat_id}: {shown[:120]}")
            return None
        self.tally.latencies[action].append(stamp - sent)
        message: JSON = fields["message"]
        return message


def buttons(message: JSON, prefix: str) -> list[str]:
    """The callback data of the message's inline buttons that start with `prefix`."""
    rows = (message.get("reply_markup") or {}).get("inline_keyboard", [])
    return [
        b["callback_data"]
        for row in rows
        for b in row
        if str(b.get("callback_data", "")).startswith(prefix)
    ]


def edit_of(message_id: int) -> Callable[[str, JSON], bool]:
    return lambda kind, m: kind == "edit" and m["message_id"] == message_id


class Person:
    """Someone going through the mix, one action (`step`) at a time."""

    def __init__(self, people: People, telegram_id: int, index: int) -> None:
        self.people = people
        self.chat = telegram_id
        self.index = index

    async def step(self, number: int) -> bool:
        """Action `number` of `ACTIONS`; False when it failed (the person stops there)."""
        raise NotImplementedError


class Parent(Person):
    """A parent's mix: /courses, a course card, Sign up, Confirm, /schedule, /leave."""

    screen = 0  # the message the course list, card and sign-up are shown in, edited in place
    press = ""  # the callback data of the button to press next

    async def step(self, number: int) -> bool:
        people, chat, action = self.people, self.chat, ACTIONS[number]
        if action == "courses":
            listing = await people.act(
                action,
                chat,
                lambda kind, m: kind == "message" and bool(buttons(m, "cs:c:")),
                send="/courses",
            )
            if listing is None:
                return False
            cards = buttons(listing, "cs:c:")
            self.screen = listing["message_id"]
            self.press = cards[self.index % len(cards)]  # spread over the first page's courses
            return True
        if action in ("card", "sign up", "confirm"):
            shown = await people.act(
                action, chat, edit_of(self.screen), press=(self.screen, self.press)
            )
            if shown is None:
                return False
            next_prefix = {"card": "cs:s:", "sign up": "cs:y:"}.get(action)
            if next_prefix is not None:
                found = buttons(shown, next_prefix)
                if not found:
                    people.tally.fail(
                        f"no {next_prefix} button",
                        f"{action} in chat {chat}: {(shown.get('text') or '')[:120]}",
                    )
                    return False
                self.press = found[0]
            return True
        if action == "schedule":
            name = f"学生{chat}"  # the child's name, as signup_rush.prepare gives it
            week = await people.act(
                action,
                chat,
                lambda kind, m: (
                    kind == "message" and "document" not in m and name in (m.get("text") or "")
                ),
                send="/schedule",
            )
            return week is not None
        # The calendar file that may follow the week's text is not /leave's answer: its buttons
        # are.
        menu = await people.act(
            action,
            chat,
            lambda kind, m: kind == "message" and bool(buttons(m, "lv:w:")),
            send="/leave",
        )
        return menu is not None


class EchoUser(Person):
    """As many text messages as a parent's mix has actions, each after the previous echo."""

    async def step(self, number: int) -> bool:
        said = ECHO_TEXTS[number]

        def echoed(kind: str, m: JSON) -> bool:
            return kind == "message" and m.get("text") == said

        return await self.people.act(ACTIONS[number], self.chat, echoed, send=said) is not None


async def whole_mix(person: Person) -> None:
    for number in range(len(ACTIONS)):
        if not await person.step(number):
            return


# ---------------------------------------------------------------------------------------------
# The bots


@dataclasses.dataclass
class Bot:
    name: str
    token: str
    command: list[str]
    env: dict[str, str]
    person: type[Person]


def echo_bot(url: str) -> Bot:
    env = {**os.environ, "ECHO_TOKEN": ECHO_TOKEN, "ECHO_API_BASE_URL": url}
    command = [sys.executable, str(Path(__file__).resolve().with_name("echo_bot.py"))]
    return Bot("echo", ECHO_TOKEN, command, env, EchoUser)


def kehou_bot(url: str, database_url: str) -> Bot:
    env = {
        **os.environ,
        "PYTHONPATH": str(ROOT),
        "TELEGRAM_BOT_TOKEN": KEHOU_TOKEN,
        "KEHOU_DATABASE_URL": database_url,
        "KEHOU_API_BASE_URL": url,
        "KEHOU_LOG_LEVEL": "WARNING",
        "KEHOU_LIMITS": "off",
    }
    command = [sys.executable, "-m", "bot.cli", "run", "--no-migrate"]
    return Bot("kehou", KEHOU_TOKEN, command, env, Parent)


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def tail(path: Path, lines: int = 15) -> str:
    try:
        return "\n".join(path.read_text(errors="replace").splitlines()[-lines:])
    except OSError:
        return ""


async def stop_process(process: asyncio.subprocess.Process) -> None:
    """SIGTERM (both bots stop cleanly on it), then SIGKILL if it takes too long."""
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


async def drive(
    name: str,
    process: asyncio.subprocess.Process,
    people: Iterable[Awaitable[None]],
    timeout: float,  # noqa: ASYNC109 - the run's whole budget, passed down from the command line
) -> bool:
    """Run the people to the end; False if they took longer than `timeout`. Stops at once,
    with BenchError, if the bot's process exits meanwhile."""
    acting: asyncio.Future[Any] = asyncio.ensure_future(asyncio.gather(*people))
    exited: asyncio.Future[Any] = asyncio.ensure_future(process.wait())
    try:
        done, _ = await asyncio.wait(
            {acting, exited}, timeout=timeout, return_when=FIRST_COMPLETED
        )
    finally:
        for task in (acting, exited):
            task.cancel()
        await asyncio.gather(acting, exited, return_exceptions=True)
    if exited in done:
        raise BenchError(f"{name} exited with {process.returncode} during the run")
    if acting in done:
        acting.result()  # an unexpected error in the benchmark itself
        return True
    return False


async def by_actions(
    name: str,
    process: asyncio.subprocess.Process,
    persons: list[Person],
    tally: Tally,
    phases: dict[str, JSON],
    timeout: float,  # noqa: ASYNC109 - the run's whole budget, passed down from the command line
) -> float:
    """Everyone takes action 1, then everyone action 2, …: each action's rate and CPU cost
    alone (in `phases`). Returns the seconds the actions took, pauses between them left out."""
    elapsed = 0.0
    going = persons
    for number, action in enumerate(ACTIONS):
        stopped: list[Person] = []

        async def take(
            person: Person, number: int = number, stopped: list[Person] = stopped
        ) -> None:
            if not await person.step(number):
                stopped.append(person)

        cpu_before = process_cpu(process.pid)[0]
        start = time.perf_counter()
        finished = await drive(name, process, map(take, going), timeout)
        took = time.perf_counter() - start
        await asyncio.sleep(0.5)  # what the bot does after the answer (a calendar file) counts
        cpu = process_cpu(process.pid)[0] - cpu_before
        elapsed += took
        answered = len(tally.latencies[action])
        phases[action] = {
            "actions": answered,
            "actions_per_s": answered / took if took > 0 else 0.0,
            "cpu_ms_per_action": cpu / answered * 1000 if answered else float("nan"),
        }
        if not finished:
            tally.fail("run timed out", f"{action} took more than {timeout:.0f} s")
            break
        going = [p for p in going if p not in stopped]
    return elapsed


async def run_bot(
    make: Callable[[str], Bot],
    first: int,
    parents: int,
    warmup: int,
    workdir: Path,
    label: str,
    timeout: float,  # noqa: ASYNC109 - the run's whole budget, passed down from the command line
    profile: Path | None = None,
    by_action: bool = False,
) -> JSON:
    """Start the sandbox and one bot, run the warm-up and then the measured people."""
    port = free_port()
    bot = make(f"http://127.0.0.1:{port}")
    sandbox = Sandbox(bot.token, bot_username="kehou_throughput_bot")
    everyone = range(first, first + parents + warmup)
    for telegram_id in everyone:
        sandbox.add_user(telegram_id, f"家长{telegram_id}")
    answers = Answers(sandbox)
    runner = await run_sandbox(sandbox, "127.0.0.1", port)
    log_path = workdir / f"{label}.log"
    process: asyncio.subprocess.Process | None = None
    spy: asyncio.subprocess.Process | None = None
    try:
        with log_path.open("wb") as log:
            process = await asyncio.create_subprocess_exec(
                *bot.command, env=bot.env, cwd=workdir, stdout=log, stderr=log
            )
        deadline = time.monotonic() + START_TIMEOUT
        # Polling a counter the sandbox fills in is simplest here.
        while sandbox.counters.methods.get("getUpdates", 0) < 2:
            if process.returncode is not None:
                raise BenchError(f"{bot.name} exited with {process.returncode}")
            if time.monotonic() > deadline:
                raise BenchError(f"{bot.name} did not start polling in {START_TIMEOUT:.0f} s")
            await asyncio.sleep(0.1)
        await asyncio.sleep(0.5)

        warm = People(sandbox, answers, Tally())
        ids = list(everyone)
        warming = (whole_mix(bot.person(warm, t, i)) for i, t in enumerate(ids[parents:]))
        if not await drive(bot.name, process, warming, timeout):
            raise BenchError(f"{bot.name}'s warm-up took more than {timeout:.0f} s")
        if warm.tally.failures:
            raise BenchError(f"{bot.name} failed in the warm-up: {warm.tally.examples}")
        await asyncio.sleep(0.5)

        if profile is not None:
            spy = await asyncio.create_subprocess_exec(
                str(Path(sys.executable).parent / "py-spy"),
                *("record", "--pid", str(process.pid), "--format", "raw"),
                *("--output", str(profile), "--nonblocking", "--rate", "200", "--threads"),
                stdout=asyncio.subprocess.DEVNULL,
                stderr=asyncio.subprocess.DEVNULL,
            )
            await asyncio.sleep(1)
        tally = Tally()
        people = People(sandbox, answers, tally)
        persons = [bot.person(people, t, i) for i, t in enumerate(ids[:parents])]
        phases: dict[str, JSON] = {}
        calls_before = api_calls(sandbox)
        cpu_before, main_before = process_cpu(process.pid)
        own_before = time.process_time()
        if by_action:
            elapsed = await by_actions(bot.name, process, persons, tally, phases, timeout)
        else:
            start = time.perf_counter()
            if not await drive(bot.name, process, map(whole_mix, persons), timeout):
                tally.fail("run timed out", f"the run took more than {timeout:.0f} s")
            elapsed = time.perf_counter() - start
        cpu_after, main_after = process_cpu(process.pid)
        cpu, main_thread = cpu_after - cpu_before, main_after - main_before
        own = time.process_time() - own_before
        calls = api_calls(sandbox) - calls_before
    except Exception:
        if process is not None:
            print(f"--- the end of {bot.name}'s log:\n{tail(log_path)}", file=sys.stderr)
        raise
    finally:
        if spy is not None and spy.returncode is None:
            spy.send_signal(signal.SIGINT)
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(spy.wait(), 30)
            await stop_process(spy)
        if process is not None:
            await stop_process(process)
        await runner.cleanup()

    done = tally.done
    return {
        "bot": bot.name,
        "parents": parents,
        "actions": done,
        "expected": parents * len(ACTIONS),
        "seconds": elapsed,
        "actions_per_s": done / elapsed if elapsed > 0 else 0.0,
        "p50_ms": quantile_ms(tally.all(), 0.5),
        "p99_ms": quantile_ms(tally.all(), 0.99),
        "per_action_ms": {
            a: {"p50": quantile_ms(v, 0.5), "p99": quantile_ms(v, 0.99)}
            for a, v in tally.latencies.items()
            if v
        },
        "cpu_s": cpu,
        "cpu_ms_per_action": cpu / done * 1000 if done else float("nan"),
        "main_thread_cpu_s": main_thread,  # the event loop; the rest is other threads (SQLite)
        "driver_cpu_s": own,  # this process: the sandbox and the people
        "api_calls_per_action": calls / done if done else float("nan"),  # getUpdates left out
        "by_action": phases,  # with --by-action only
        "failures": tally.failures,
        "failure_examples": tally.examples,
        "sandbox_429s": sandbox.counters.rate_limited,
    }


# ---------------------------------------------------------------------------------------------
# Kehou's database


class Databases:
    """A fresh database for every Kehou run, all holding the same school and parents.

    SQLite: prepared once, then the file is copied for each run. PostgreSQL: the `public`
    schema is dropped and everything is prepared again for each run.
    """

    def __init__(self, database_url: str | None, workdir: Path, parents: int) -> None:
        self.url = database_url or f"sqlite+aiosqlite:///{workdir / 'kehou.sqlite3'}"
        self.parents = parents
        parsed = make_url(self.url)
        self.path: Path | None = None
        if parsed.get_backend_name() == "sqlite":
            # Absolute: the bot runs in another working directory.
            self.path = Path(parsed.database or "kehou.sqlite3").resolve()
            self.url = f"sqlite+aiosqlite:///{self.path}"
        self.template = workdir / "template.sqlite3"

    async def prepare_once(self) -> None:
        if self.path is not None:
            await prepare(f"sqlite+aiosqlite:///{self.template}", self.parents, 0)

    async def fresh(self) -> str:
        if self.path is not None:
            for suffix in ("", "-wal", "-shm", "-journal"):
                with contextlib.suppress(FileNotFoundError):
                    os.unlink(f"{self.path}{suffix}")
            shutil.copyfile(self.template, self.path)
        else:
            engine = create_async_engine(self.url)
            try:
                async with engine.begin() as connection:
                    await connection.execute(text("DROP SCHEMA public CASCADE"))
                    await connection.execute(text("CREATE SCHEMA public"))
            finally:
                await engine.dispose()
            await prepare(self.url, self.parents, 0)
        return self.url


# ---------------------------------------------------------------------------------------------
# The rounds and the report


async def bench(args: argparse.Namespace) -> list[JSON]:
    workdir = Path(tempfile.mkdtemp(prefix="kehou-throughput-"))
    rounds: list[JSON] = []
    try:
        databases = Databases(args.database_url, workdir, args.parents + args.warmup)
        started = time.perf_counter()
        await databases.prepare_once()
        print(
            f"prepared the school and {args.parents + args.warmup} parents "
            f"in {time.perf_counter() - started:.1f} s ({workdir})",
            file=sys.stderr,
            flush=True,
        )
        for number in range(1, args.rounds + 1):
            results: JSON = {"round": number}
            for name in ("echo", "kehou"):
                make: Callable[[str], Bot] = echo_bot
                profile = None
                if name == "kehou":
                    make = functools.partial(kehou_bot, database_url=await databases.fresh())
                    if args.profile is not None:
                        profile = Path(f"{args.profile}.round{number}.txt")
                result = await run_bot(
                    make,
                    FIRST,
                    args.parents,
                    args.warmup,
                    workdir,
                    f"{name}-round{number}",
                    args.timeout,
                    profile,
                    args.by_action,
                )
                results[name] = result
                print(
                    f"round {number} {name}: {result['actions']}/{result['expected']} actions "
                    f"in {result['seconds']:.1f} s = {result['actions_per_s']:.1f}/s, "
                    f"p50 {result['p50_ms']:.0f} ms, p99 {result['p99_ms']:.0f} ms, "
                    f"CPU {result['cpu_ms_per_action']:.2f} ms/action "
                    f"({result['cpu_s']:.2f} s, main thread {result['main_thread_cpu_s']:.2f} s), "
                    f"{result['api_calls_per_action']:.2f} Bot API calls/action, "
                    f"failures {result['failures'] or 0}",
                    file=sys.stderr,
                    flush=True,
                )
                for example in result["failure_examples"]:
                    print(f"  {example}", file=sys.stderr)
            echo_rate = results["echo"]["actions_per_s"]
            results["ratio"] = results["kehou"]["actions_per_s"] / echo_rate if echo_rate else 0
            rounds.append(results)
    finally:
        shutil.rmtree(workdir, ignore_errors=True)
    return rounds


def summary(rounds: list[JSON], args: argparse.Namespace) -> JSON:
    ratios = [r["ratio"] for r in rounds]
    median = statistics.median(ratios)
    failed = sum(sum(r[b]["failures"].values()) for r in rounds for b in ("echo", "kehou"))
    return {
        "parents": args.parents,
        "warmup": args.warmup,
        "actions_per_parent": list(ACTIONS),
        "rounds": rounds,
        "median_ratio": median,
        "target_ratio": TARGET,
        "target_met": median >= TARGET and failed == 0,
        "failures": failed,
        "python": sys.version.split()[0],
        "cores": os.cpu_count(),
        "database": "SQLite" if "sqlite" in (args.database_url or "sqlite") else "PostgreSQL",
    }


def table(report: JSON) -> str:
    def side(r: JSON) -> str:
        rate = f"{r['actions_per_s']:.1f}"
        if r["actions"] < r["expected"]:
            rate += f" (only {r['actions']} of {r['expected']} actions)"
        return (
            f"{rate} | {r['p50_ms']:.0f} / {r['p99_ms']:.0f} ms | {r['cpu_ms_per_action']:.2f} ms"
        )

    lines = [
        f"Python {report['python']}, {report['cores']} cores, {report['database']}; "
        f"{report['parents']} parents × {len(ACTIONS)} actions "
        f"({', '.join(ACTIONS)}) per bot and round; send limits off",
        "",
        "| round | echo actions/s | echo p50 / p99 | echo CPU/action | Kehou actions/s |"
        " Kehou p50 / p99 | Kehou CPU/action | Kehou / echo |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for r in report["rounds"]:
        lines.append(
            f"| {r['round']} | {side(r['echo'])} | {side(r['kehou'])} | {r['ratio']:.2f}× |"
        )
    verdict = "met" if report["target_met"] else "NOT met"
    lines += [
        "",
        f"Median Kehou / echo: {report['median_ratio']:.2f}× "
        f"(target ≥ {TARGET}×: {verdict}); failed actions: {report['failures']}",
        "",
        "Kehou's latency per action, p50 / p99 (median over the rounds):",
        "",
        "| " + " | ".join(ACTIONS) + " |",
        "|" + "---|" * len(ACTIONS),
    ]
    cells = []
    for action in ACTIONS:
        found = [r["kehou"]["per_action_ms"].get(action) for r in report["rounds"]]
        found = [f for f in found if f]
        if found:
            p50 = statistics.median(f["p50"] for f in found)
            p99 = statistics.median(f["p99"] for f in found)
            cells.append(f"{p50:.0f} / {p99:.0f} ms")
        else:
            cells.append("—")
    lines.append("| " + " | ".join(cells) + " |")
    if any(r["kehou"]["by_action"] for r in report["rounds"]):
        lines += [
            "",
            "One action at a time (--by-action), median over the rounds:",
            "",
            "| action | echo actions/s | echo CPU/action | Kehou actions/s | Kehou CPU/action |",
            "|---|---|---|---|---|",
        ]
        for action in ACTIONS:
            row = [action]
            for bot in ("echo", "kehou"):
                found = [r[bot]["by_action"].get(action) for r in report["rounds"]]
                found = [f for f in found if f]
                if not found:
                    row += ["—", "—"]
                    continue
                rate = statistics.median(f["actions_per_s"] for f in found)
                cpu = statistics.median(f["cpu_ms_per_action"] for f in found)
                row += [f"{rate:.1f}", f"{cpu:.2f} ms"]
            lines.append("| " + " | ".join(row) + " |")
    return "\n".join(lines)


def main() -> int:
    parser = argparse.ArgumentParser(description=(__doc__ or "").split("\n")[0])
    parser.add_argument("--parents", type=int, default=200, help="people per bot and round")
    parser.add_argument("--rounds", type=int, default=3, help="echo, then Kehou, this many times")
    parser.add_argument(
        "--database-url",
        help="Kehou's database, emptied and prepared anew for every round (default: SQLite "
        "in a temporary folder); a PostgreSQL database loses everything in its public schema",
    )
    parser.add_argument(
        "--warmup", type=int, default=10, help="parents who go first, unmeasured (default 10)"
    )
    parser.add_argument(
        "--timeout", type=float, default=900, help="seconds one bot's run may take (default 900)"
    )
    parser.add_argument(
        "--json", metavar="FILE", help="also write the results as JSON (- for stdout)"
    )
    parser.add_argument(
        "--by-action",
        action="store_true",
        help="everyone takes the first action, then the second, …: each action's rate and CPU "
        "cost alone, in a table of its own",
    )
    parser.add_argument(
        "--profile",
        metavar="PREFIX",
        help="record Kehou with py-spy during each measured run, to PREFIX.roundN.txt",
    )
    args = parser.parse_args()
    if args.parents < 1 or args.rounds < 1 or args.warmup < 0:
        parser.error("--parents and --rounds must be at least 1, --warmup at least 0")
    if args.profile is not None and not (Path(sys.executable).parent / "py-spy").exists():
        parser.error("--profile needs py-spy installed beside this Python")
    try:
        rounds = asyncio.run(bench(args))
    except BenchError as error:
        print(f"throughput: {error}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print("throughput: interrupted", file=sys.stderr)
        return 130
    report = summary(rounds, args)
    out = sys.stderr if args.json == "-" else sys.stdout
    print("\n" + table(report), file=out)
    if args.json == "-":
        print(json.dumps(report, ensure_ascii=False, indent=2))
    elif args.json:
        Path(args.json).write_text(json.dumps(report, ensure_ascii=False, indent=2) + "\n")
    return 1 if report["failures"] else 0


if __name__ == "__main__":
    sys.exit(main())
