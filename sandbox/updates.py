"""Updates for the bot: the pending queue, long polling, and delivery to a webhook."""

from __future__ import annotations

import asyncio
import json
import logging
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass

import aiohttp

from sandbox.model import JSON, ApiError, Counters, Signal

log = logging.getLogger(__name__)

# Without allowed_updates, Telegram sends every kind but these.
NOT_BY_DEFAULT = frozenset({"chat_member", "message_reaction", "message_reaction_count"})
WEBHOOK_CONFLICT = (
    "Conflict: can't use getUpdates method while webhook is active; "
    "use deleteWebhook to delete the webhook first"
)
POLL_CONFLICT = (
    "Conflict: terminated by other getUpdates request; "
    "make sure that only one bot instance is running"
)


class UpdateQueue:
    """Updates not yet confirmed by the bot, oldest first, each taken at most O(limit) work."""

    def __init__(self, counters: Counters) -> None:
        self.pending: deque[JSON] = deque()
        self.last_id = 0
        self.allowed: frozenset[str] | None = None  # None: Telegram's default set
        self.signal = Signal()
        self._counters = counters
        self._poll_generation = 0

    def push(self, kind: str, payload: JSON) -> JSON | None:
        """Queue an update unless the bot asked not to receive its kind (Telegram filters at
        creation: a change of allowed_updates does not affect updates already queued)."""
        allowed = kind not in NOT_BY_DEFAULT if self.allowed is None else kind in self.allowed
        if not allowed:
            self._counters.updates["filtered"] += 1
            return None
        self.last_id += 1
        update = {"update_id": self.last_id, kind: payload}
        self.pending.append(update)
        self._counters.updates["queued"] += 1
        self.signal.fire()
        return update

    def set_allowed(self, kinds: object) -> None:
        if kinds is None:
            return  # not given: the previous setting stays
        if not isinstance(kinds, list) or not all(isinstance(k, str) for k in kinds):
            raise ApiError(400, "Bad Request: can't parse allowed updates JSON object")
        self.allowed = frozenset(kinds) if kinds else None

    def confirm(self, offset: int) -> None:
        """getUpdates' offset: forget updates below it; a negative one keeps the last -offset."""
        if offset < 0:
            while len(self.pending) > -offset:
                self.pending.popleft()
                self._counters.updates["confirmed"] += 1
            return
        while self.pending and self.pending[0]["update_id"] < offset:
            self.pending.popleft()
            self._counters.updates["confirmed"] += 1

    def drop_all(self) -> None:
        self._counters.updates["dropped"] += len(self.pending)
        self.pending.clear()
        self.signal.fire()

    def take(self, limit: int) -> list[JSON]:
        count = min(limit, len(self.pending))
        return [self.pending[i] for i in range(count)]

    async def poll(
        self, limit: int, seconds: float, stopped: Callable[[], bool], webhook: Callable[[], bool]
    ) -> list[JSON]:
        """Long polling: answer as soon as there is an update, or with none after `seconds`.

        A newer getUpdates ends an older one with 409, as on Telegram.
        """
        self._poll_generation += 1
        generation = self._poll_generation
        self.signal.fire()  # wake an older poll so it can see it was superseded
        deadline = time.monotonic() + seconds
        while True:
            if generation != self._poll_generation:
                raise ApiError(409, POLL_CONFLICT)
            if webhook():
                raise ApiError(409, WEBHOOK_CONFLICT)
            batch = self.take(limit)
            remaining = deadline - time.monotonic()
            if batch or remaining <= 0 or stopped():
                self._counters.updates["sent"] += len(batch)
                return batch
            await self.signal.wait(remaining)


@dataclass
class WebhookConfig:
    url: str
    secret_token: str | None = None
    max_connections: int = 40
    ip_address: str | None = None
    allowed_updates: list[str] | None = None
    has_custom_certificate: bool = False


class Webhook:
    """Delivers queued updates to the webhook URL one at a time, in order, retrying failures
    with a doubling delay (from `backoff` up to `max_backoff` seconds), as Telegram does."""

    def __init__(
        self,
        queue: UpdateQueue,
        counters: Counters,
        *,
        backoff: float = 0.5,
        max_backoff: float = 10.0,
        timeout: float = 10.0,
    ) -> None:
        self.queue = queue
        self.config: WebhookConfig | None = None
        self.last_error_date: int | None = None
        self.last_error_message: str | None = None
        self._counters = counters
        self._backoff = backoff
        self._max_backoff = max_backoff
        self._timeout = timeout
        self._wake = Signal()
        self._closing = False
        self._task: asyncio.Task[None] | None = None

    @property
    def active(self) -> bool:
        return self.config is not None

    def set(self, config: WebhookConfig) -> None:
        self.config = config
        self._closing = False
        self.last_error_date = self.last_error_message = None
        self._wake.fire()
        self.queue.signal.fire()
        if self._task is None or self._task.done():
            self._task = asyncio.get_running_loop().create_task(self._run())

    def delete(self) -> None:
        self.config = None
        self.last_error_date = self.last_error_message = None
        self._wake.fire()
        self.queue.signal.fire()

    async def close(self) -> None:
        """Stop delivering, without waiting for a slow receiver to answer."""
        self._closing = True
        task, self._task = self._task, None
        if task is not None and not task.done():
            task.cancel()
            await asyncio.gather(task, return_exceptions=True)

    def info(self) -> JSON:
        """getWebhookInfo's WebhookInfo."""
        config = self.config
        result: JSON = {
            "url": config.url if config else "",
            "has_custom_certificate": bool(config and config.has_custom_certificate),
            "pending_update_count": len(self.queue.pending),
        }
        if config is not None:
            result["max_connections"] = config.max_connections
            if config.ip_address:
                result["ip_address"] = config.ip_address
            if config.allowed_updates is not None:
                result["allowed_updates"] = config.allowed_updates
        if self.last_error_date is not None:
            result["last_error_date"] = self.last_error_date
            result["last_error_message"] = self.last_error_message
        return result

    async def _run(self) -> None:
        failures = 0
        timeout = aiohttp.ClientTimeout(total=self._timeout)
        async with aiohttp.ClientSession(timeout=timeout) as session:
            while not self._closing and self.config is not None:
                if not self.queue.pending:
                    await self.queue.signal.wait(3600)
                    continue
                update = self.queue.pending[0]
                error = await self._post(session, self.config, update)
                if error is None:
                    failures = 0
                    if self.queue.pending and self.queue.pending[0] is update:
                        self.queue.pending.popleft()
                        self._counters.updates["confirmed"] += 1
                    continue
                failures += 1
                self.last_error_date = int(time.time())
                self.last_error_message = error
                self._counters.updates["webhook_failures"] += 1
                delay = min(self._max_backoff, self._backoff * 2 ** (failures - 1))
                await self._wake.wait(delay)

    async def _post(
        self, session: aiohttp.ClientSession, config: WebhookConfig, update: JSON
    ) -> str | None:
        """POST one update; None on success, else Telegram's wording of what went wrong."""
        headers = {"Content-Type": "application/json"}
        if config.secret_token:
            headers["X-Telegram-Bot-Api-Secret-Token"] = config.secret_token
        body = json.dumps(update, ensure_ascii=False).encode()
        self._counters.updates["webhook_posts"] += 1
        self._counters.updates["sent"] += 1
        try:
            async with session.post(config.url, data=body, headers=headers) as response:
                await response.read()
                if 200 <= response.status < 300:
                    return None
                return f"Wrong response from the webhook: {response.status} {response.reason}"
        except TimeoutError:
            return "Read timeout expired"
        except aiohttp.ClientConnectorError:
            return "Connection refused"
        except aiohttp.ClientError as exc:
            log.debug("webhook delivery failed", exc_info=True)
            return f"Connection error: {type(exc).__name__}"
