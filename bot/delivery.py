"""Delivery: the outbox worker that sends due rows to Telegram under its limits.

- **Two kinds of sending.** Telegram limits a bot per chat (about one message a second with
  short bursts; 20 a minute in a group) and asks that bulk notifications — what a bot sends
  on its own — stay within about 30 a second; there is no bot-wide limit on answers to a
  person's own action, and `answerCallbackQuery` is not limited at all (the Bot API
  maintainers in tdlib/td issue 3034 and tdlib/telegram-bot-api issue 648). So a send into
  the chat of the update being handled (see `answering`) draws from that chat's bucket only;
  everything else — the outbox worker, a job editing a status message, a handler writing to
  another chat — draws from the bulk bucket as well.
- **Budget.** `SendBudget` holds the limits as leaky buckets (aiolimiter): the bulk rate, one
  bucket per private chat (a small burst, then one a second) and per group (20 a minute).
  The worker and the direct replies (through `ReplyRateLimiter`, PTB's rate-limiter hook)
  share the per-chat buckets, so together they stay within each chat's limit. With
  `KEHOU_LIMITS=off` (benchmarks against a local Bot API server) every bucket lets everything
  through at once; a 429 still pauses sending.
- **Bunching.** Sends held up on the way (a slow network, a stalled server) arrive together,
  and Telegram counts them when they arrive. So the bulk bucket holds only a quarter second of
  sending, and a worker keeps only half a second's worth awaiting answers: a bunch released at
  once stays within the limit (`test_a_stalling_link_does_not_turn_into_a_flood`).
- **429.** Telegram answers 429 for the bot, without saying which limit was hit; whichever call
  gets one pauses every send, replies and bulk alike, for the time Telegram asks (only
  `answerCallbackQuery`, which Telegram does not limit, goes on during a pause).
- **Albums.** A row with an album attachment is one sendMediaGroup call but one message per
  photo, each drawn from the budget like the parts of a long text; a 429 on the album retries
  the whole row, a 429 on a text after it is waited out in place (`_later_part`) rather than
  sending the album again.
- **Priorities.** Claimed rows wait in a local heap, urgent first.
- **Crash safety.** A row is claimed in the database (status ``sending`` with a lease) before it
  is sent and its outcome is written right after (in small batches). Each worker writes a
  heartbeat every `HEARTBEAT_SECONDS` (``delivery_workers``); the rows of a worker silent for
  `outbox.WORKER_ALIVE` are taken over by the next claim of any live worker, and a restarted
  process gives back its dead predecessors' rows at once (same host, process gone). A
  worker that cannot write its heartbeat for `FENCE_SECONDS` stops sending and, once it can
  again, gives back what it held, so two live workers never send the same queued row. A
  process killed between Telegram's answer and the outcome write sends that row again: at
  most once more per in-flight message. Several workers share the table on PostgreSQL
  (``SKIP LOCKED``) and divide the bulk rate by the number of live workers.
- **Errors.** Network errors and 5xx retry with backoff up to `MAX_ATTEMPTS`; 403 marks the
  person as having blocked the bot and stops writing to them; a group upgraded to a supergroup
  is followed to its new id.
"""

from __future__ import annotations

import asyncio
import contextlib
import contextvars
import dataclasses
import datetime as dt
import heapq
import itertools
import logging
import math
import os
import random
import signal
import socket
import time
from collections.abc import Callable, Coroutine, Iterator
from typing import Any

from aiolimiter import AsyncLimiter
from sqlalchemy import func, select
from telegram import (
    InlineKeyboardButton,
    InlineKeyboardMarkup,
    InputFile,
    InputMediaPhoto,
    Message,
    Update,
)
from telegram.constants import ParseMode
from telegram.error import BadRequest, ChatMigrated, Forbidden, NetworkError, RetryAfter
from telegram.ext import BaseRateLimiter, ExtBot

from bot.config import Settings
from bot.i18n import I18n, Translator
from bot.services import (
    growth,  # noqa: F401 - registers its document maker (outbox.MAKERS)
    outbox,
)
from bot.services.outbox import Claimed, MessageTooLong, Outcome
from bot.transport import AiohttpRequest
from storage.db import Database
from storage.models import Outbox, OutboxStatus, utcnow

log = logging.getLogger(__name__)

# Bot API methods that put a message in a chat, and so count against Telegram's limits.
SENDING_METHODS = frozenset(
    m.lower()
    for m in (
        "sendMessage",
        "sendPhoto",
        "sendDocument",
        "sendMediaGroup",
        "copyMessage",
        "forwardMessage",
        "editMessageText",
        "editMessageCaption",
        "editMessageReplyMarkup",
    )
)
OUTBOX_CALL = {"outbox": True}  # rate_limit_args of the worker's own calls: already counted
NOT_LIMITED = frozenset({"answercallbackquery"})  # Telegram sets no limit on these
HEARTBEAT_SECONDS = 2.0
# A bucket's rate when limits are off (`KEHOU_LIMITS=off`): never reached, and finite, because
# aiolimiter computes with it.
UNLIMITED = 1e9
# Stop sending when the heartbeat could not be written for this long: well before other workers
# take the rows over (`outbox.WORKER_ALIVE`, 10 s), leaving room for clocks a little apart.
FENCE_SECONDS = 6.0
# The bulk bucket holds this many seconds of sending: after a quiet spell the worker starts at
# once, but never with more than a quarter second's worth in one go.
BULK_BURST_SECONDS = 0.25
# Bulk sends awaiting Telegram's answer, in seconds of the worker's rate (at least
# `MIN_IN_FLIGHT`): enough to keep the rate up with answers that take half a second, and no more,
# because sends held up on the way (a slow network, a server that stalls) and then let through
# together arrive as a burst, and every send in flight can be part of it.
IN_FLIGHT_SECONDS = 0.5
MIN_IN_FLIGHT = 8
# Sends of a later part of a row (after an album, say) that met a 429 before it is given up:
# see `DeliveryWorker._later_part`.
LATER_PART_TRIES = 3

# The chat whose update the current task is handling (None outside a handler).
_answering: contextvars.ContextVar[int | None] = contextvars.ContextVar(
    "kehou_answering_chat", default=None
)
# Worker ids started in this process: a restarted process may have its predecessor's pid.
_local_workers: set[str] = set()


@contextlib.contextmanager
def answering(update: object) -> Iterator[None]:
    """Sends into this update's chat, in the tasks run inside, are replies to a person."""
    chat = update.effective_chat if isinstance(update, Update) else None
    token = _answering.set(chat.id if chat is not None else None)
    try:
        yield
    finally:
        _answering.reset(token)


def _seconds(value: float | dt.timedelta) -> float:
    return value.total_seconds() if isinstance(value, dt.timedelta) else float(value)


class SendBudget:
    """Telegram's send limits as leaky buckets: bulk (overall) and per chat.

    `limited=False` (`KEHOU_LIMITS=off`) lifts them all: the bulk bucket and every chat's let
    everything through at once. Only a 429 from the server still pauses sending.
    """

    def __init__(
        self,
        rate: float,
        *,
        chat_burst: int = 3,
        chat_per_second: float = 1.0,
        group_per_minute: int = 20,
        limited: bool = True,
    ) -> None:
        self.limited = limited
        self.rate = rate if limited else UNLIMITED
        self.share = 1  # live workers dividing the rate
        self.overall = _bulk_bucket(self.rate)  # bulk only: replies never draw from it
        self.chat_burst = chat_burst
        self.chat_per_second = chat_per_second
        self.group_interval = 60 / group_per_minute * 1.03  # a little margin on the window
        self._chats: dict[int, AsyncLimiter] = {}
        self._unlimited = AsyncLimiter(UNLIMITED, 1)  # every chat's bucket when not limited
        self._paused_until = 0.0

    def set_share(self, workers: int) -> None:
        workers = max(workers, 1)
        if workers != self.share:
            self.share = workers
            self.overall = _bulk_bucket(self.rate / workers)
            if self.limited:
                log.info("send budget: %.1f messages/s (%d workers)", self.rate / workers, workers)

    @property
    def per_worker(self) -> float:
        """This worker's part of the bulk rate (messages a second)."""
        return self.rate / self.share

    def chat(self, chat_id: int) -> AsyncLimiter:
        if not self.limited:
            return self._unlimited
        limiter = self._chats.get(chat_id)
        if limiter is None:
            if len(self._chats) > 50_000:
                self._prune()
            if chat_id < 0:  # groups: 20 a minute, spread out
                limiter = AsyncLimiter(1, self.group_interval)
            else:
                limiter = AsyncLimiter(self.chat_burst, self.chat_burst / self.chat_per_second)
            self._chats[chat_id] = limiter
        return limiter

    def _prune(self) -> None:
        idle = [c for c, lim in self._chats.items() if lim.has_capacity(lim.max_rate)]
        for chat_id in idle:
            del self._chats[chat_id]

    def pause(self, seconds: float) -> None:
        """Telegram said 429: nobody sends until it allows again.

        Global even when the call was a reply to one chat: the 429 is the bot's, and does not
        say which limit was hit, so the safe reading is that the whole bot must wait.
        """
        until = time.monotonic() + seconds
        if until > self._paused_until:
            self._paused_until = until
            log.warning("Telegram asked to wait %.0f s; all sends paused", seconds)

    async def wait_unpaused(self) -> None:
        # The pause may be extended while we sleep (another 429), so look again after it.
        while (wait := self._paused_until - time.monotonic()) > 0:  # noqa: ASYNC110
            await asyncio.sleep(wait)

    async def acquire(self, chat_id: int | None) -> None:
        """A bulk send: the overall bucket, then the chat's."""
        await self.wait_unpaused()
        await self.overall.acquire()
        if chat_id is not None:
            await self.chat(chat_id).acquire()

    async def acquire_reply(self, chat_id: int) -> None:
        """A reply into the chat of the person's own update: that chat's bucket only."""
        await self.wait_unpaused()
        await self.chat(chat_id).acquire()


def _bulk_bucket(rate: float) -> AsyncLimiter:
    """A leaky bucket that lets `rate` messages a second through, holding at most
    `BULK_BURST_SECONDS` of them (and at least one)."""
    seconds = max(BULK_BURST_SECONDS, 1 / rate)
    return AsyncLimiter(rate * seconds, seconds)


class ReplyRateLimiter(BaseRateLimiter[dict[str, Any]]):
    """PTB's rate-limiter hook for every call not made by the outbox worker, without a queue.

    A send into the chat whose update is being handled is a reply (per-chat bucket only);
    any other send is bulk (overall and per-chat); `answerCallbackQuery` is not limited. The
    worker's own calls pass `OUTBOX_CALL` and are not counted twice. On 429 the whole bot
    pauses and the call is retried once.
    """

    def __init__(self, budget: SendBudget) -> None:
        self.budget = budget

    async def initialize(self) -> None:
        return None

    async def shutdown(self) -> None:
        return None

    async def process_request(
        self,
        callback: Callable[..., Coroutine[Any, Any, bool | dict[str, Any] | list[dict[str, Any]]]],
        args: Any,
        kwargs: dict[str, Any],
        endpoint: str,
        data: dict[str, Any],
        rate_limit_args: dict[str, Any] | None,
    ) -> bool | dict[str, Any] | list[dict[str, Any]]:
        if rate_limit_args and rate_limit_args.get("outbox"):
            return await callback(*args, **kwargs)
        method = endpoint.lower()
        counted = method in SENDING_METHODS
        chat_id = _int_or_none(data.get("chat_id")) if counted else None
        reply = chat_id is not None and chat_id == _answering.get()
        for attempt in (1, 2):
            if method in NOT_LIMITED and attempt == 1:
                pass  # not even a pause holds the button's answer back
            elif reply:
                assert chat_id is not None
                await self.budget.acquire_reply(chat_id)
            elif counted:
                await self.budget.acquire(chat_id)
            else:
                await self.budget.wait_unpaused()
            try:
                return await callback(*args, **kwargs)
            except RetryAfter as exc:
                self.budget.pause(_seconds(exc.retry_after))
                if attempt == 2:
                    raise
        raise AssertionError("unreachable")


def _int_or_none(value: Any) -> int | None:
    try:
        return int(value)
    except (TypeError, ValueError):
        return None


@dataclasses.dataclass(order=True)
class _Queued:
    priority: int
    seq: int
    row: Claimed = dataclasses.field(compare=False)
    queued_at: float = dataclasses.field(compare=False, default=0.0)
    epoch: int = dataclasses.field(compare=False, default=0)  # see DeliveryWorker._epoch


class DeliveryWorker:
    """Claims due outbox rows and sends them; see the module docstring."""

    def __init__(
        self,
        db: Database,
        bot: ExtBot[Any],
        i18n: I18n,
        budget: SendBudget,
        *,
        worker_id: str | None = None,
        lease: dt.timedelta = dt.timedelta(seconds=120),
        poll_seconds: float = 0.5,
        max_in_flight: int = 100,
        heartbeat_seconds: float = HEARTBEAT_SECONDS,
    ) -> None:
        self.db = db
        self.bot = bot
        self.i18n = i18n
        self.budget = budget
        self.worker_id = worker_id or f"{socket.gethostname()}:{os.getpid()}:{id(self):x}"
        self.lease = lease
        self.poll_seconds = poll_seconds
        self.max_in_flight = max_in_flight
        self.heartbeat_seconds = heartbeat_seconds
        self._queue: list[_Queued] = []
        self._seq = itertools.count()
        self._outcomes: list[Outcome] = []
        self._blocked: set[int] = set()
        self._in_flight: set[asyncio.Task[None]] = set()
        self._landed = asyncio.Event()  # a send in flight got its answer
        self._wake = asyncio.Event()
        self._queued = asyncio.Event()
        self._tasks: list[asyncio.Task[None]] = []
        self._running = False
        # When the last heartbeat written was stamped (monotonic), and a count that goes up
        # each time the worker gives back its queue after a heartbeat gap: rows queued in an
        # older epoch may belong to another worker by now and are never sent from here.
        self._heartbeat_ok = time.monotonic()
        self._epoch = 0
        self.sent = 0  # counters for logs and benchmarks
        self.failed = 0

    # -----------------------------------------------------------------------------------
    # Life cycle

    async def start(self) -> None:
        if self._running:
            return
        self._running = True
        _local_workers.add(self.worker_id)
        await self._forget_predecessors()
        await self._heartbeat()
        loops = (self._claim_loop, self._dispatch_loop, self._flush_loop, self._heartbeat_loop)
        self._tasks = [asyncio.create_task(loop(), name=loop.__name__) for loop in loops]
        log.info("delivery worker %s started", self.worker_id)

    async def stop(self) -> None:
        """Stop claiming, finish the sends under way, record them, give the rest back."""
        if not self._running:
            return
        self._running = False
        self._wake.set()
        self._queued.set()
        for task in self._tasks:
            task.cancel()
        for task in self._tasks:
            with contextlib.suppress(asyncio.CancelledError):
                await task
        if self._in_flight:
            await asyncio.gather(*self._in_flight, return_exceptions=True)
        await self._flush()
        unsent = [q.row.id for q in self._queue]
        self._queue.clear()
        async with self.db.transaction() as session:
            await outbox.release(session, self.worker_id, unsent)
            await outbox.forget_workers(session, [self.worker_id])
        _local_workers.discard(self.worker_id)
        log.info("delivery worker %s stopped", self.worker_id)

    async def _forget_predecessors(self) -> None:
        """Workers of this host whose process is gone (we are their restart): their rows are
        due at once rather than when their heartbeat has aged."""
        async with self.db.transaction() as session:
            dead = [w for w in await outbox.claimers(session) if _dead_on_this_host(w)]
            await outbox.forget_workers(session, dead)
        if dead:
            log.info("giving back the rows of stopped workers %s", ", ".join(sorted(dead)))

    def wake(self) -> None:
        """New rows were committed: look for them now rather than at the next poll."""
        self._wake.set()

    async def idle(
        self,
        timeout: float = 30,  # noqa: ASYNC109 - a test helper's contract
        within: dt.timedelta = dt.timedelta(minutes=10),
    ) -> None:
        """Wait until no row is pending or sending with a time before `within` from now, and
        nothing is queued, in flight or unrecorded here (for tests and benchmarks)."""
        deadline = time.monotonic() + timeout
        while True:
            self.wake()
            if not self._queue and not self._in_flight and not self._outcomes:
                async with self.db.transaction() as session:
                    waiting = await session.scalar(
                        select(func.count()).where(
                            Outbox.status.in_((OutboxStatus.PENDING, OutboxStatus.SENDING)),
                            Outbox.not_before <= utcnow() + within,
                        )
                    )
                if not waiting:
                    return
            if time.monotonic() > deadline:
                raise TimeoutError("the outbox did not drain in time")
            await asyncio.sleep(0.1)

    # -----------------------------------------------------------------------------------
    # Loops

    def _buffer_size(self) -> int:
        """How many rows to hold locally: about two seconds of sending, within bounds."""
        return min(max(10, int(self.budget.rate / self.budget.share * 2)), 2000)

    async def _claim_loop(self) -> None:
        while self._running:
            # While our heartbeat is late, claim nothing: others may be taking our rows.
            room = 0 if self._fenced() else self._buffer_size() - len(self._queue)
            claimed: list[Claimed] = []
            if room > 0:
                try:
                    async with self.db.transaction() as session:
                        claimed = await outbox.claim(
                            session, self.worker_id, limit=room, lease=self.lease
                        )
                except Exception:
                    log.exception("claiming outbox rows failed; trying again")
                    await asyncio.sleep(1)
                    continue
                now = time.monotonic()
                for row in claimed:
                    queued = _Queued(row.priority, next(self._seq), row, now, self._epoch)
                    heapq.heappush(self._queue, queued)
                if claimed:
                    self._queued.set()
            if room > 0 and len(claimed) == room:
                await asyncio.sleep(0)  # more may be due: claim again at once
                continue
            self._wake.clear()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._wake.wait(), self.poll_seconds)

    def _flight_limit(self) -> int:
        """How many sends may await Telegram's answer at once (see `IN_FLIGHT_SECONDS`)."""
        wanted = math.ceil(self.budget.per_worker * IN_FLIGHT_SECONDS)
        return min(self.max_in_flight, max(MIN_IN_FLIGHT, wanted))

    async def _room_in_flight(self) -> None:
        while len(self._in_flight) >= self._flight_limit():
            self._landed.clear()
            await self._landed.wait()

    async def _dispatch_loop(self) -> None:
        while self._running:
            item = self._next_ready()
            if item is None:
                self._queued.clear()
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(self._queued.wait(), 0.05)
                continue
            if self._fenced():
                self._give_back([item])
                continue
            try:
                await self._room_in_flight()
                await self.budget.wait_unpaused()
                await self.budget.overall.acquire()
                await self.budget.chat(item.row.chat_id).acquire()
            except asyncio.CancelledError:  # stopping: the row goes back with the others
                heapq.heappush(self._queue, item)
                raise
            if item.epoch != self._epoch or self._fenced():
                # Our heartbeat lapsed while we waited: another worker may hold the row now.
                # Give it back (nothing happens if it was taken) rather than send it twice.
                self._give_back([item])
                continue
            task = asyncio.create_task(self._send(item.row))
            self._in_flight.add(task)

            task.add_done_callback(self._landed_one)

    def _landed_one(self, task: asyncio.Task[None]) -> None:
        self._in_flight.discard(task)
        self._landed.set()

    def _next_ready(self) -> _Queued | None:
        """The most urgent queued row whose chat may take a message now.

        A row that waited here for half its lease (a busy group) goes back to the table, so
        the lease never runs out on a row that is still queued.
        """
        skipped: list[_Queued] = []
        found = None
        too_old = time.monotonic() - self.lease.total_seconds() / 2
        while self._queue:
            item = heapq.heappop(self._queue)
            if self.budget.chat(item.row.chat_id).has_capacity():
                found = item
                break
            if item.queued_at < too_old:
                self._outcomes.append(
                    Outcome(item.row.id, OutboxStatus.PENDING, count_attempt=False)
                )
                continue
            skipped.append(item)
        for item in skipped:
            heapq.heappush(self._queue, item)
        return found

    async def _flush_loop(self) -> None:
        while self._running:
            await asyncio.sleep(0.1)
            try:
                await self._flush()
            except Exception:
                log.exception("recording outbox outcomes failed; trying again")
                await asyncio.sleep(1)

    async def _flush(self) -> None:
        if not self._outcomes and not self._blocked:
            return
        outcomes, self._outcomes = self._outcomes, []
        blocked, self._blocked = self._blocked, set()
        now = utcnow()
        try:
            async with self.db.transaction() as session:
                await outbox.record(session, self.worker_id, outcomes, now)
                for chat_id in blocked:
                    await outbox.mark_blocked(session, chat_id, now)
        except Exception:
            self._outcomes[:0] = outcomes
            self._blocked |= blocked
            raise

    async def _heartbeat_loop(self) -> None:
        while self._running:
            await asyncio.sleep(self.heartbeat_seconds)
            try:
                await self._heartbeat()
            except Exception:
                log.exception("delivery heartbeat failed")

    async def _heartbeat(self) -> None:
        stamped = time.monotonic()
        async with self.db.transaction() as session:
            live = await outbox.heartbeat(session, self.worker_id, utcnow())
        if stamped - self._heartbeat_ok > FENCE_SECONDS:
            # We were silent long enough to be taken for dead: what we hold may be another
            # worker's now. Give it all back; the claim loop takes what is still free.
            self._epoch += 1
            if self._queue:
                log.warning("delivery heartbeat lapsed; giving back %d rows", len(self._queue))
            self._give_back(self._queue)
            self._queue = []
        self._heartbeat_ok = stamped
        self.budget.set_share(live)

    def _give_back(self, items: list[_Queued]) -> None:
        """Unsent rows go back to the table (only those still ours: `outbox.record`)."""
        self._outcomes.extend(
            Outcome(q.row.id, OutboxStatus.PENDING, count_attempt=False) for q in items
        )

    def _fenced(self) -> bool:
        """True when our heartbeat is old enough that others may soon take our rows."""
        return time.monotonic() - self._heartbeat_ok > FENCE_SECONDS

    # -----------------------------------------------------------------------------------
    # Sending one row

    async def _send(self, row: Claimed) -> None:
        try:
            outcome = await self._attempt(row)
        except Exception as exc:  # a bug must not kill the worker; the row is retried later
            log.exception("sending outbox row %s failed unexpectedly", row.id)
            outcome = self._retry(row, f"{type(exc).__name__}: {exc}")
        if outcome is not None:
            if outcome.status is OutboxStatus.SENT:
                self.sent += 1
            elif outcome.status in (OutboxStatus.FAILED, OutboxStatus.BLOCKED):
                self.failed += 1
            self._outcomes.append(outcome)

    async def _attempt(self, row: Claimed) -> Outcome | None:
        t = self.i18n.get(row.locale, row.timezone)
        try:
            rendered = outbox.render(row, t)
        except (MessageTooLong, KeyError, ValueError, IndexError) as exc:
            log.error("outbox row %s cannot be rendered: %s", row.id, exc)
            return Outcome(row.id, OutboxStatus.FAILED, error=f"cannot render: {exc}")
        if rendered.attachment is not None and rendered.attachment["type"] == "made":
            try:
                rendered = await self._made(rendered, t)
            except (LookupError, ValueError) as exc:
                log.error("outbox row %s: its document cannot be made: %s", row.id, exc)
                return Outcome(row.id, OutboxStatus.FAILED, error=f"cannot make: {exc}")
        try:
            message = await self._deliver(row.chat_id, rendered)
        except RetryAfter as exc:
            seconds = _seconds(exc.retry_after)
            self.budget.pause(seconds)
            retry_at = utcnow() + dt.timedelta(seconds=seconds)
            return Outcome(
                row.id, OutboxStatus.PENDING, error="429", retry_at=retry_at, count_attempt=False
            )
        except ChatMigrated as exc:
            new_id = int(exc.new_chat_id)
            async with self.db.transaction() as session:
                await outbox.migrate_chat(session, row.chat_id, new_id)
            moved = dataclasses.replace(row, chat_id=new_id)
            queued = _Queued(row.priority, next(self._seq), moved, time.monotonic())
            heapq.heappush(self._queue, queued)
            self._queued.set()
            return None
        except Forbidden as exc:
            if row.chat_id > 0:
                self._blocked.add(row.chat_id)
                return Outcome(row.id, OutboxStatus.BLOCKED, error=exc.message)
            return Outcome(row.id, OutboxStatus.FAILED, error=exc.message)
        except BadRequest as exc:
            return Outcome(row.id, OutboxStatus.FAILED, error=exc.message)
        except NetworkError as exc:  # timeouts, 5xx, connection trouble: try again later
            return self._retry(row, exc.message)
        return Outcome(
            row.id,
            OutboxStatus.SENT,
            message_id=message.message_id,
            chat_id=row.chat_id,
        )

    async def _made(self, rendered: outbox.Rendered, t: Translator) -> outbox.Rendered:
        """The rendered row with its "made" attachment made: a document in the reader's
        language, from what the database holds now (`outbox.MAKERS`)."""
        attachment = rendered.attachment
        assert attachment is not None
        # Makers register themselves when their module is imported (`growth` above).
        make = outbox.MAKERS.get(attachment.get("maker", ""))
        if make is None:
            raise LookupError(f"no document maker {attachment.get('maker')!r}")
        async with self.db.reading() as session:
            name, data = await make(session, dict(attachment.get("args") or {}), t)
        document = {"type": "document", "file": InputFile(data, filename=name)}
        return dataclasses.replace(rendered, attachment=document)

    def _retry(self, row: Claimed, error: str) -> Outcome:
        if row.attempts >= outbox.MAX_ATTEMPTS:
            return Outcome(row.id, OutboxStatus.FAILED, error=error)
        backoff = min(2**row.attempts, 300) * random.uniform(0.75, 1.25)
        retry_at = utcnow() + dt.timedelta(seconds=backoff)
        return Outcome(row.id, OutboxStatus.PENDING, error=error, retry_at=retry_at)

    async def _deliver(self, chat_id: int, rendered: outbox.Rendered) -> Message:
        """Send the parts in order; the attachment goes with the first, the buttons ride on the
        last. Returns the last message sent (its id is the row's message_id).

        An album (sendMediaGroup) is one call but one message per photo, and Telegram counts
        each: the dispatcher paid for the first, the others draw from the budget before the
        album goes, as the later parts of a long text do. A 429 on the album (or on any first
        part) reaches `_attempt`, which pauses sending and retries the whole row later.
        """
        markup = _markup(rendered.buttons)
        parts = rendered.parts
        album = rendered.album
        message: Message | None = None
        for index, text in enumerate(parts):
            if index > 0:  # the dispatcher paid for the first part
                await self.budget.acquire(chat_id)
            last = index == len(parts) - 1
            reply_markup = markup if last else None
            if index == 0 and album is not None:
                # The chat's tokens first (an album of several photos waits for its chat), then
                # the bot-wide ones, so what the bulk budget counted goes out when it counted it.
                for _ in album[1:]:
                    await self.budget.chat(chat_id).acquire()
                for _ in album[1:]:
                    await self.budget.wait_unpaused()
                    await self.budget.overall.acquire()
                media = [
                    InputMediaPhoto(
                        file_id,
                        caption=text if number == 0 and text else None,
                        parse_mode=ParseMode.HTML if number == 0 and text else None,
                    )
                    for number, file_id in enumerate(album)
                ]
                # Never buttons here: `outbox.render` puts them on a text part after an album.
                sent = await self.bot.send_media_group(chat_id, media, rate_limit_args=OUTBOX_CALL)
                message = sent[-1]
            elif index == 0 and rendered.attachment is not None:
                attachment = rendered.attachment
                kwargs: dict[str, Any] = {
                    "chat_id": chat_id,
                    "caption": text or None,
                    "parse_mode": ParseMode.HTML,
                    "reply_markup": reply_markup,
                    "rate_limit_args": OUTBOX_CALL,
                }
                if attachment["type"] == "photo":
                    message = await self.bot.send_photo(photo=attachment["file_id"], **kwargs)
                else:
                    document = attachment.get("file") or attachment["file_id"]
                    message = await self.bot.send_document(document=document, **kwargs)
            elif index == 0:
                message = await self.bot.send_message(
                    chat_id,
                    text,
                    parse_mode=ParseMode.HTML,
                    reply_markup=reply_markup,
                    rate_limit_args=OUTBOX_CALL,
                )
            else:
                message = await self._later_part(chat_id, text, reply_markup)
        assert message is not None
        return message

    async def _later_part(
        self, chat_id: int, text: str, markup: InlineKeyboardMarkup | None
    ) -> Message:
        """A part after the first: what came before it (an album, a photo, the start of a long
        text) is in the chat already.

        A 429 here is waited out and the part sent again, rather than given to `_attempt`:
        retrying the row would send what is already in the chat a second time (ten photos of
        an album, again), which is worse than a late text. Only a short wait is taken here,
        well inside the row's lease so no other worker takes the row meanwhile; a longer one,
        or any other error, fails the attempt as before, and the whole row is retried later:
        a parent then sees the first parts twice, but never misses the text.
        """
        for attempt in range(1, LATER_PART_TRIES + 1):
            try:
                return await self.bot.send_message(
                    chat_id,
                    text,
                    parse_mode=ParseMode.HTML,
                    reply_markup=markup,
                    rate_limit_args=OUTBOX_CALL,
                )
            except RetryAfter as exc:
                seconds = _seconds(exc.retry_after)
                if attempt == LATER_PART_TRIES or seconds > self.lease.total_seconds() / 4:
                    raise
                self.budget.pause(seconds)
                await self.budget.acquire(chat_id)
        raise AssertionError("unreachable")


def _dead_on_this_host(worker_id: str) -> bool:
    """Whether a worker id (host:pid:suffix) names a worker of this host that is gone."""
    host, _, rest = worker_id.partition(":")
    pid_text, _, _ = rest.partition(":")
    if host != socket.gethostname() or not pid_text.isdigit():
        return False
    pid = int(pid_text)
    if pid == os.getpid():  # a container restarted with the same pid: not one of ours
        return worker_id not in _local_workers
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return True
    except PermissionError:  # another user's live process
        return False
    return False


def _markup(buttons: list[list[dict[str, str]]] | None) -> InlineKeyboardMarkup | None:
    if not buttons:
        return None
    return InlineKeyboardMarkup(
        [
            [
                InlineKeyboardButton(b["label"], url=b["url"])
                if "url" in b
                else InlineKeyboardButton(b["label"], callback_data=b["data"])
                for b in line
            ]
            for line in buttons
        ]
    )


def make_bot(settings: Settings, budget: SendBudget) -> ExtBot[Any]:
    """A bot for a process that only delivers (no updates): `kehou deliver`, benchmarks."""
    return ExtBot(
        settings.require_token(),
        base_url=settings.bot_base_url or "https://api.telegram.org/bot",
        base_file_url=settings.bot_base_file_url or "https://api.telegram.org/file/bot",
        request=AiohttpRequest(connection_pool_size=256),
        rate_limiter=ReplyRateLimiter(budget),
    )


async def serve(settings: Settings) -> None:
    """`kehou deliver`: a delivery worker alone, until SIGINT or SIGTERM.

    Run several (on PostgreSQL) to share the sending; they divide the bot's rate between them.
    """
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGINT, signal.SIGTERM):
        with contextlib.suppress(NotImplementedError):
            loop.add_signal_handler(signum, stop.set)
    db = Database(settings.database_url)
    budget = SendBudget(settings.send_rate, limited=settings.limits)
    bot = make_bot(settings, budget)
    i18n = I18n(settings.timezone, settings.default_locale)
    worker = DeliveryWorker(db, bot, i18n, budget)
    async with bot:
        await worker.start()
        try:
            await stop.wait()
        finally:
            await worker.stop()
            await db.dispose()
