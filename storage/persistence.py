"""PTB persistence in the ``bot_state`` table, written through so a crash loses no step.

One row per piece of state, keyed by ``(kind, key)``:

==================  ==================================================  ====================
kind                key                                                 data
==================  ==================================================  ====================
``user_data``       the Telegram user id, e.g. ``"42"``                 the user's dict
``chat_data``       the Telegram chat id, e.g. ``"-100123"``            the chat's dict
``bot_data``        ``""``                                              the bot's dict
``callback_data``   ``""``                                              ``[keyboards, queries]``
``conversation``    handler name + ``":"`` + ``json.dumps(list(key))``  the state (int or str)
==================  ==================================================  ====================

What may be stored
    ``data`` is a JSON column, so ``user_data``, ``chat_data`` and ``bot_data`` must be plain
    dicts with **string keys** and JSON values (str, int, float, bool, None, lists, dicts with
    string keys); tuples, sets, int keys, datetimes or Telegram objects are refused with a
    ``TypeError`` rather than silently changed on the way through JSON. The same holds for the
    button data of PTB's arbitrary callback data. Conversation states must be ``int`` or ``str``
    (IntEnum/StrEnum members come back as their plain values, which compare and hash equal).
    An empty dict and an ended conversation are stored as no row at all.

When PTB calls ``update_*`` (python-telegram-bot 22, ``telegram/ext/_application.py``)
    ``Application.process_update`` does **not** call the persistence. After the handlers ran it
    only *marks* the update's chat and user ids (``_mark_for_persistence_update``), and a
    ``ConversationHandler`` only records its new state in an in-memory ``TrackingDict``; it
    never calls the persistence itself. Everything is handed to the persistence by
    ``Application.update_persistence()``, which is called only (a) every ``update_interval``
    seconds by a background task started in ``Application.start()``, (b) in
    ``Application.stop()`` and (c) in ``Application.shutdown()`` (followed by ``flush()``).
    A crash therefore loses up to ``update_interval`` seconds of conversation steps, however
    the persistence writes.

    So write-through needs two parts. ``SqlPersistence`` writes every ``update_*`` and
    ``drop_*`` call to the database at once, each in its own short transaction (``flush`` has
    nothing left to do). And :func:`persist_now`, registered as the last handler group::

        application.add_handler(TypeHandler(Update, persist_now), group=100)

    marks the update's user and chat (PTB only does that after *all* groups ran) and calls
    ``application.update_persistence()``, so the state a handler just confirmed to the user is
    committed before the update counts as handled. Only rows whose JSON changed are written:
    the persistence remembers the JSON of every row it loaded or wrote and skips equal writes,
    so a busy bot does not rewrite bot_data or a user's data after every update, and a button
    pressed outside any conversation writes nothing. What one update did change is committed
    together: one transaction, one ``DELETE`` for the rows that went (an ended conversation,
    a draft emptied), one upsert for the rest.

    Limits: ``persist_now`` does not run for an update when a handler raises
    ``ApplicationHandlerStop`` or an error handler stops processing; such updates are persisted
    by the next update or the interval. Handlers with ``block=False`` may still be running when
    it runs; PTB then stores their previous state and catches up later. The reply a handler
    sends goes out before group 100 runs, so a crash in between those two awaits can still lose
    that last step.

``refresh_*`` are no-ops: one bot process owns these rows, and everything is loaded by the
``get_*`` calls of ``Application.initialize()``.
"""

from __future__ import annotations

import json
import logging
from collections.abc import MutableMapping
from contextvars import ContextVar
from typing import Any

from sqlalchemy import delete, select, tuple_
from sqlalchemy.dialects import postgresql, sqlite
from telegram import Update
from telegram.ext import Application, BasePersistence, CallbackContext, PersistenceInput

from storage.db import Database
from storage.models import BotState, utcnow

log = logging.getLogger(__name__)

USER_DATA = "user_data"
CHAT_DATA = "chat_data"
BOT_DATA = "bot_data"
CALLBACK_DATA = "callback_data"
CONVERSATION = "conversation"

#: The handler group :func:`persist_now` belongs in: after every feature handler.
PERSIST_GROUP = 100

_KEY_LENGTH: int = BotState.__table__.c["key"].type.length  # type: ignore[attr-defined]

# The shapes PTB hands over (as in telegram.ext._utils.types, which is private).
JsonDict = dict[str, Any]
ConversationKey = tuple[int | str, ...]
ConversationDict = MutableMapping[ConversationKey, object]
CDCData = tuple[list[tuple[str, float, dict[str, Any]]], dict[str, str]]
# (kind, key) -> (data, its JSON text) to write, or None to delete.
Changes = dict[tuple[str, str], tuple[object, str] | None]

# While `persist_now` runs, the writes of one update collect here, to be committed together.
_BATCH: ContextVar[Changes | None] = ContextVar("kehou_persistence_batch", default=None)


def _canonical(value: object, what: str) -> str:
    """The JSON text of ``value``; TypeError unless JSON gives back exactly ``value``."""
    try:
        text = json.dumps(value, sort_keys=True, allow_nan=False, ensure_ascii=False)
    except (TypeError, ValueError) as exc:
        raise TypeError(f"{what} must be JSON (string keys, JSON values): {exc}") from exc
    if json.loads(text) != value:
        raise TypeError(
            f"{what} does not survive JSON unchanged (int keys, tuples or sets?): {value!r}"
        )
    return text


def conversation_key(name: str, key: ConversationKey) -> str:
    """The ``bot_state.key`` of one conversation of the handler called ``name``."""
    return f"{name}:{json.dumps(list(key))}"


class SqlPersistence(BasePersistence[JsonDict, JsonDict, JsonDict]):
    """PTB persistence in ``bot_state``; every update is committed at once (see module doc).

    Args:
        db: The database; its engine is not disposed here (the application owns it).
        store_data: Which kinds of data to keep; all of them by default.
        update_interval: Seconds between PTB's own runs of ``update_persistence``.
    """

    __slots__ = ("_db", "_written")

    def __init__(
        self,
        db: Database,
        *,
        store_data: PersistenceInput | None = None,
        update_interval: float = 60,
    ) -> None:
        super().__init__(store_data=store_data, update_interval=update_interval)
        self._db = db
        # (kind, key) -> JSON text of the row as this process last loaded or wrote it.
        # No entry means no row.
        self._written: dict[tuple[str, str], str] = {}

    # --- reading, once at start-up ------------------------------------------------------------

    async def _rows(self, kind: str) -> list[BotState]:
        async with self._db.transaction() as session:
            result = await session.scalars(select(BotState).where(BotState.kind == kind))
            return list(result)

    async def _load_dicts(self, kind: str) -> dict[int, JsonDict]:
        loaded: dict[int, JsonDict] = {}
        for row in await self._rows(kind):
            loaded[int(row.key)] = row.data
            self._remember(kind, row.key, row.data)
        return loaded

    def _remember(self, kind: str, key: str, data: object) -> None:
        self._written[kind, key] = json.dumps(
            data, sort_keys=True, allow_nan=False, ensure_ascii=False
        )

    async def get_user_data(self) -> dict[int, JsonDict]:
        return await self._load_dicts(USER_DATA)

    async def get_chat_data(self) -> dict[int, JsonDict]:
        return await self._load_dicts(CHAT_DATA)

    async def get_bot_data(self) -> JsonDict:
        for row in await self._rows(BOT_DATA):
            self._remember(BOT_DATA, row.key, row.data)
            return dict(row.data)
        return {}

    async def get_callback_data(self) -> CDCData | None:
        for row in await self._rows(CALLBACK_DATA):
            self._remember(CALLBACK_DATA, row.key, row.data)
            keyboards, queries = row.data
            return [(uuid, float(at), data) for uuid, at, data in keyboards], dict(queries)
        return None

    async def get_conversations(self, name: str) -> ConversationDict:
        prefix = f"{name}:"
        async with self._db.transaction() as session:
            rows = await session.scalars(
                select(BotState).where(
                    BotState.kind == CONVERSATION,
                    BotState.key.startswith(prefix + "[", autoescape=True),
                )
            )
            found = list(rows)
        conversations: dict[ConversationKey, object] = {}
        for row in found:
            # SQLite's LIKE ignores case, and "a:[" also prefixes the rows of a handler
            # called "a:[x": keep only keys that are exactly this name and a JSON list.
            if not row.key.startswith(prefix):
                continue
            try:
                parts = json.loads(row.key[len(prefix) :])
            except ValueError:
                continue
            if not isinstance(parts, list):
                continue
            conversations[tuple(parts)] = row.data
            self._remember(CONVERSATION, row.key, row.data)
        return conversations

    # --- writing, at once ---------------------------------------------------------------------

    def _upsert(self, rows: dict[tuple[str, str], tuple[object, str]]) -> Any:
        """One INSERT … ON CONFLICT DO UPDATE for all these rows."""
        now = utcnow()
        values = [
            {"kind": kind, "key": key, "data": data, "updated_at": now}
            for (kind, key), (data, _) in rows.items()
        ]
        statement: Any = (
            postgresql.insert(BotState)
            if self._db.dialect == "postgresql"
            else sqlite.insert(BotState)
        ).values(values)
        return statement.on_conflict_do_update(
            index_elements=[BotState.kind, BotState.key],
            set_={
                "data": statement.excluded["data"],
                "updated_at": statement.excluded["updated_at"],
            },
        )

    async def _write(self, kind: str, key: str, data: object, text: str) -> None:
        """Commit ``data`` as the row ``(kind, key)`` unless the row already holds ``text``."""
        if self._written.get((kind, key)) == text:
            return
        if len(key) > _KEY_LENGTH:
            raise ValueError(f"bot_state key longer than {_KEY_LENGTH}: {key!r}")
        batch = _BATCH.get()
        if batch is not None:
            batch[kind, key] = (data, text)
            return
        await self._commit({(kind, key): (data, text)})

    async def _delete(self, kind: str, key: str, *, known_only: bool) -> None:
        """Delete the row; with ``known_only``, only if this process has seen it exist."""
        if known_only and (kind, key) not in self._written:
            return
        batch = _BATCH.get()
        if batch is not None:
            batch[kind, key] = None
            return
        await self._commit({(kind, key): None})

    async def _commit(self, changes: Changes) -> None:
        """Write these rows (None: delete) in one transaction: one DELETE for all deletions,
        one upsert for the rest."""
        gone = [key for key, change in changes.items() if change is None]
        kept = {key: change for key, change in changes.items() if change is not None}
        async with self._db.transaction() as session:
            if gone:
                await session.execute(
                    delete(BotState).where(tuple_(BotState.kind, BotState.key).in_(gone))
                )
            if kept and self._db.dialect in ("postgresql", "sqlite"):
                await session.execute(self._upsert(kept))
            else:  # any other backend: read, then update or insert, row by row
                for (kind, name), (data, _) in kept.items():
                    row = await session.get(BotState, (kind, name))
                    if row is None:
                        session.add(BotState(kind=kind, key=name, data=data))
                    else:
                        row.data = data
                        row.updated_at = utcnow()
        for row_key in gone:
            self._written.pop(row_key, None)
        for row_key, (_, text) in kept.items():
            self._written[row_key] = text

    async def _store_dict(self, kind: str, key: str, data: JsonDict) -> None:
        text = _canonical(data, f"{kind}[{key!r}]" if key else kind)
        if not data:
            await self._delete(kind, key, known_only=True)
        else:
            await self._write(kind, key, data, text)

    async def update_user_data(self, user_id: int, data: JsonDict) -> None:
        await self._store_dict(USER_DATA, str(user_id), data)

    async def update_chat_data(self, chat_id: int, data: JsonDict) -> None:
        await self._store_dict(CHAT_DATA, str(chat_id), data)

    async def update_bot_data(self, data: JsonDict) -> None:
        await self._store_dict(BOT_DATA, "", data)

    async def update_callback_data(self, data: CDCData) -> None:
        keyboards, queries = data
        value = [[[uuid, at, buttons] for uuid, at, buttons in keyboards], dict(queries)]
        text = _canonical(value, CALLBACK_DATA)
        if not keyboards and not queries:
            await self._delete(CALLBACK_DATA, "", known_only=True)
        else:
            await self._write(CALLBACK_DATA, "", value, text)

    async def update_conversation(
        self, name: str, key: ConversationKey, new_state: object | None
    ) -> None:
        row_key = conversation_key(name, key)
        if new_state is None:
            await self._delete(CONVERSATION, row_key, known_only=True)
            return
        if not isinstance(new_state, int | str):
            raise TypeError(
                f"conversation {name!r} state must be int or str, not {type(new_state).__name__}"
            )
        await self._write(CONVERSATION, row_key, new_state, _canonical(new_state, name))

    async def drop_user_data(self, user_id: int) -> None:
        await self._delete(USER_DATA, str(user_id), known_only=False)

    async def drop_chat_data(self, chat_id: int) -> None:
        await self._delete(CHAT_DATA, str(chat_id), known_only=False)

    # --- nothing to do ------------------------------------------------------------------------

    async def refresh_user_data(self, user_id: int, user_data: JsonDict) -> None:
        """No-op: no one else writes these rows while the bot runs."""

    async def refresh_chat_data(self, chat_id: int, chat_data: JsonDict) -> None:
        """No-op: no one else writes these rows while the bot runs."""

    async def refresh_bot_data(self, bot_data: JsonDict) -> None:
        """No-op: no one else writes these rows while the bot runs."""

    async def flush(self) -> None:
        """No-op: every update was committed when it was made."""


async def persist_now(update: object, context: CallbackContext[Any, Any, Any, Any]) -> None:
    """Commit what this update changed. Register last: ``group=PERSIST_GROUP`` (100).

    ``application.add_handler(TypeHandler(Update, persist_now), group=PERSIST_GROUP)``
    """
    application: Application[Any, Any, Any, Any, Any, Any] = context.application
    persistence = application.persistence
    if persistence is None:
        return
    if isinstance(update, Update):
        # PTB marks these only after the last group, which would be too late for this run.
        chat, user = update.effective_chat, update.effective_user
        application.mark_data_for_update_persistence(
            chat_ids=chat.id if chat else None, user_ids=user.id if user else None
        )
    if not isinstance(persistence, SqlPersistence):
        await application.update_persistence()
        return
    # PTB hands each piece over in its own call (gathered as tasks, which share this context's
    # batch): collect them, then commit what changed in one transaction.
    batch: Changes = {}
    token = _BATCH.set(batch)
    try:
        await application.update_persistence()
    finally:
        _BATCH.reset(token)
    if batch:
        await persistence._commit(batch)
