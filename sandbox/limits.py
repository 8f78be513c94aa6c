"""Telegram's flood limits and injected faults, both switchable at run time.

The flood model (when `Limits.enabled`), checked for every call that sends or edits a message:

- per chat: a token bucket of `chat_burst` (3) refilled at `chat_per_second` (1/s), so a few
  replies may go out at once, as on Telegram, but a steady stream is held to one a second;
- per group or supergroup, in addition: at most `group_per_minute` (20) messages in any
  sliding 60 seconds;
- per bot, for bulk messages only: a token bucket of `bot_burst` messages refilled at
  `bot_per_second` (30/s). A message is a reply, and not bulk, when the person in that chat
  wrote to the bot or pressed one of its buttons within the last `reply_window` seconds:
  each such action lets the bot answer `reply_credit` times there. Telegram's Bot API
  maintainers say there is no bot-wide limit on answers to users, only the per-chat one and
  the guidance for bulk notifications (tdlib/td issue 3034, tdlib/telegram-bot-api issue
  648); `answerCallbackQuery` is not limited at all.

An album (sendMediaGroup) counts each of its messages: it goes out when its first message
would, and then charges all of them (see `RateLimiter.admit` and docs/SANDBOX.md).

A call over any limit is refused with 429 and `retry_after`, the whole seconds until every
limit it hit would allow it again, and consumes nothing. Telegram does not publish its exact
algorithm; this one keeps its documented rates and its observed small bursts.
"""

from __future__ import annotations

import math
import random
from collections import deque
from collections.abc import Callable
from dataclasses import asdict, dataclass, field, fields
from typing import Any


@dataclass
class Limits:
    enabled: bool = False
    bot_per_second: float = 30.0
    bot_burst: int = 30
    chat_per_second: float = 1.0
    chat_burst: int = 3
    group_per_minute: int = 20
    # Answers to a person's own message or press, charged to their chat only (0: none).
    reply_credit: int = 3
    reply_window: float = 60.0
    # A callback query must be answered this soon (only enforced while enabled).
    callback_query_seconds: float = 15.0


@dataclass
class Faults:
    """Network trouble to imitate. Nothing happens with the defaults."""

    enabled: bool = True  # a master switch that keeps the settings below
    delay: float = 0.0  # seconds added to every Bot API call
    jitter: float = 0.0  # plus a uniformly random share of up to this many seconds
    # A link that stalls: every call waits for the next multiple of this many seconds and then
    # goes through with all the others held, in a bunch (0: off).
    stall_every: float = 0.0
    error_rate: float = 0.0  # share of calls answered 502 Bad Gateway, not carried out
    timeout_rate: float = 0.0  # share of calls carried out but answered after `hang_seconds`
    hang_seconds: float = 30.0
    blocked_users: set[int] = field(default_factory=set)  # 403 for calls into their chats
    methods: set[str] | None = None  # lower-case method names delays and errors apply to
    seed: int = 0  # of the random numbers that pick faulty calls, so a run can be repeated


def settings_dict(settings: Limits | Faults) -> dict[str, Any]:
    data = asdict(settings)
    for key, value in data.items():
        if isinstance(value, set):
            data[key] = sorted(value)
    return data


def update_settings(settings: Limits | Faults, changes: dict[str, Any]) -> None:
    """Apply changes from JSON to a settings object; ValueError names a bad field or value."""
    known = {f.name: f for f in fields(settings)}
    for key, value in changes.items():
        if key not in known:
            raise ValueError(f"unknown setting: {key}")
        current = getattr(settings, key)
        if key in ("blocked_users", "methods"):
            if value is None and key == "methods":
                setattr(settings, key, None)
                continue
            if not isinstance(value, list):
                raise ValueError(f"{key} must be a list")
            setattr(
                settings,
                key,
                {int(v) for v in value}
                if key == "blocked_users"
                else {str(v).lower() for v in value},
            )
        elif isinstance(current, bool):
            if not isinstance(value, bool):
                raise ValueError(f"{key} must be true or false")
            setattr(settings, key, value)
        elif isinstance(value, bool) or not isinstance(value, int | float) or value < 0:
            raise ValueError(f"{key} must be a number ≥ 0")
        else:
            setattr(settings, key, type(current)(value))


@dataclass
class FaultPlan:
    delay: float = 0.0
    hang: float = 0.0
    bad_gateway: bool = False


def plan_faults(faults: Faults, method: str, rng: random.Random, now: float) -> FaultPlan:
    """Decide what happens to one call arriving at `now`. Random numbers are drawn only for
    active settings, so the same settings and seed give the same faults for the same sequence
    of calls."""
    if not faults.enabled or (faults.methods is not None and method not in faults.methods):
        return FaultPlan()
    plan = FaultPlan(delay=faults.delay)
    if faults.stall_every > 0:
        plan.delay += faults.stall_every - now % faults.stall_every
    if faults.jitter > 0:
        plan.delay += rng.uniform(0, faults.jitter)
    if faults.timeout_rate > 0 and rng.random() < faults.timeout_rate:
        plan.hang = faults.hang_seconds
    elif faults.error_rate > 0 and rng.random() < faults.error_rate:
        plan.bad_gateway = True
    return plan


class _Bucket:
    __slots__ = ("level", "stamp")

    def __init__(self, level: float, stamp: float) -> None:
        self.level = level
        self.stamp = stamp

    def wait(self, now: float, capacity: float, rate: float) -> float:
        """Seconds until one token is available (refilling first)."""
        self.level = min(capacity, self.level + (now - self.stamp) * rate)
        self.stamp = now
        if self.level >= 1:
            return 0.0
        return (1 - self.level) / rate if rate > 0 else math.inf


class RateLimiter:
    """Flood control state: O(1) per check, one bucket per chat that was written to."""

    def __init__(self, clock: Callable[[], float]) -> None:
        self._clock = clock
        self._bot: _Bucket | None = None
        self._chats: dict[int, _Bucket] = {}
        self._groups: dict[int, deque[float]] = {}
        self._replies: dict[int, tuple[int, float]] = {}  # chat → (answers left, until)

    def reset(self) -> None:
        self._bot = None
        self._chats.clear()
        self._groups.clear()
        self._replies.clear()

    def user_acted(self, limits: Limits, chat_id: int) -> None:
        """A person wrote or pressed a button in the chat: the bot may answer there."""
        now = self._clock()
        if len(self._replies) > 100_000:
            self._replies = {c: r for c, r in self._replies.items() if r[1] >= now}
        self._replies[chat_id] = (limits.reply_credit, now + limits.reply_window)

    def admit(self, limits: Limits, chat_id: int, is_group: bool, messages: int = 1) -> int | None:
        """Count `messages` messages to the chat (an album counts each of its items); or return
        retry_after (seconds) and count nothing.

        An album is let through when its first message would be; the buckets are then charged
        for all of it and may go below empty, so what follows waits until they have refilled. A
        group's minute must have room for the whole album (up to `group_per_minute`).
        """
        if not limits.enabled:
            return None
        now = self._clock()
        bot = self._bot = self._bot or _Bucket(limits.bot_burst, now)
        chat = self._chats.setdefault(chat_id, _Bucket(limits.chat_burst, now))
        left, until = self._replies.get(chat_id, (0, 0.0))
        reply = left > 0 and until >= now
        waits = [chat.wait(now, limits.chat_burst, limits.chat_per_second)]
        if not reply:
            waits.append(bot.wait(now, limits.bot_burst, limits.bot_per_second))
        window = None
        if is_group:
            window = self._groups.setdefault(chat_id, deque())
            while window and window[0] <= now - 60:
                window.popleft()
            allowed = limits.group_per_minute
            room = min(messages, allowed)  # slots the album needs in the window
            if allowed <= 0:
                waits.append(math.inf)
            elif len(window) + room > allowed:
                waits.append(window[len(window) + room - 1 - allowed] + 60 - now)
        longest = max(waits)
        if longest > 0:
            return max(1, math.ceil(longest)) if math.isfinite(longest) else 3600
        if reply:
            self._replies[chat_id] = (max(left - messages, 0), until)
        else:
            bot.level -= messages
        chat.level -= messages
        if window is not None:
            window.extend([now] * messages)
        return None
