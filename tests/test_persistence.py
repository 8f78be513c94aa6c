"""SqlPersistence: round trips, write-through across a crash, deletes, no needless writes."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import pytest
from sqlalchemy import event, select
from telegram import Update
from telegram.ext import (
    Application,
    ApplicationBuilder,
    CommandHandler,
    ContextTypes,
    ConversationHandler,
    MessageHandler,
    TypeHandler,
    filters,
)

from storage.db import Database
from storage.models import Base, BotState
from storage.persistence import PERSIST_GROUP, SqlPersistence, conversation_key, persist_now
from tests.harness import FakeUser, RecordingRequest

BOT_USER = {"id": 1, "is_bot": True, "first_name": "Kehou", "username": "kehou_bot"}
USER_ID = 4242


@pytest.fixture
async def db(empty_database_url: str) -> AsyncIterator[Database]:
    """An empty SQLite file (or PostgreSQL database, where installed) with the tables made."""
    database = Database(empty_database_url)
    async with database.engine.begin() as conn:
        await conn.run_sync(Base.metadata.create_all)
    yield database
    await database.dispose()


async def rows(db: Database) -> dict[tuple[str, str], Any]:
    async with db.transaction() as session:
        found = await session.scalars(select(BotState))
        return {(row.kind, row.key): row.data for row in found}


def count_writes(db: Database) -> list[str]:
    """Every INSERT, UPDATE and DELETE the engine sends from now on."""
    writes: list[str] = []

    def record(conn: Any, cursor: Any, statement: str, *args: Any) -> None:
        if statement.lstrip().split(None, 1)[0].upper() in {"INSERT", "UPDATE", "DELETE"}:
            writes.append(statement)

    event.listen(db.engine.sync_engine, "before_cursor_execute", record)
    return writes


# --- the persistence on its own ---------------------------------------------------------------


async def test_every_kind_round_trips_through_a_fresh_instance(db: Database) -> None:
    first = SqlPersistence(db)
    await first.update_user_data(7, {"locale": "en", "n": [1, 2.5, None, True]})
    await first.update_chat_data(-1001, {"topic": "三年级2班"})
    await first.update_bot_data({"version": 3})
    await first.update_callback_data(([("uuid1", 12.5, {"btn": ["a", 1]})], {"q1": "uuid1"}))
    await first.update_conversation("demo", (7, 7), 1)
    await first.update_conversation("demo", (8, 8), "asking")
    await first.update_conversation("Demo", (7, 7), 2)  # another handler, differing in case
    await first.update_conversation("demo:[x", (9,), 3)  # a name that extends "demo:["

    second = SqlPersistence(db)
    assert await second.get_user_data() == {7: {"locale": "en", "n": [1, 2.5, None, True]}}
    assert await second.get_chat_data() == {-1001: {"topic": "三年级2班"}}
    assert await second.get_bot_data() == {"version": 3}
    assert await second.get_callback_data() == (
        [("uuid1", 12.5, {"btn": ["a", 1]})],
        {"q1": "uuid1"},
    )
    assert await second.get_conversations("demo") == {(7, 7): 1, (8, 8): "asking"}
    assert await second.get_conversations("Demo") == {(7, 7): 2}
    assert await second.get_conversations("demo:[x") == {(9,): 3}
    assert await second.get_conversations("other") == {}

    assert (await rows(db))["conversation", "demo:[7, 7]"] == 1
    assert conversation_key("demo", (7, 7)) == "demo:[7, 7]"


async def test_an_empty_database_gives_empty_state(db: Database) -> None:
    persistence = SqlPersistence(db)
    assert await persistence.get_user_data() == {}
    assert await persistence.get_chat_data() == {}
    assert await persistence.get_bot_data() == {}
    assert await persistence.get_callback_data() is None
    assert await persistence.get_conversations("demo") == {}
    await persistence.flush()
    await persistence.refresh_user_data(1, {})
    await persistence.refresh_chat_data(1, {})
    await persistence.refresh_bot_data({})


async def test_updates_replace_earlier_values(db: Database) -> None:
    persistence = SqlPersistence(db)
    await persistence.update_user_data(7, {"a": 1})
    await persistence.update_user_data(7, {"b": 2})
    await persistence.update_conversation("demo", (7, 7), 1)
    await persistence.update_conversation("demo", (7, 7), 2)
    assert await rows(db) == {("user_data", "7"): {"b": 2}, ("conversation", "demo:[7, 7]"): 2}


async def test_drops_and_ended_conversations_remove_rows(db: Database) -> None:
    persistence = SqlPersistence(db)
    await persistence.update_user_data(7, {"a": 1})
    await persistence.update_chat_data(7, {"a": 1})
    await persistence.update_conversation("demo", (7, 7), 1)
    assert len(await rows(db)) == 3

    await persistence.drop_user_data(7)
    assert ("user_data", "7") not in await rows(db)
    await persistence.drop_chat_data(7)
    assert ("chat_data", "7") not in await rows(db)
    await persistence.update_conversation("demo", (7, 7), None)
    assert await rows(db) == {}

    # A fresh instance (which has not written the row itself) deletes too.
    await SqlPersistence(db).update_user_data(8, {"a": 1})
    await SqlPersistence(db).update_conversation("demo", (8, 8), 1)
    again = SqlPersistence(db)
    await again.get_conversations("demo")
    await again.drop_user_data(8)
    await again.update_conversation("demo", (8, 8), None)
    assert await rows(db) == {}

    # Dropped data written again is stored again.
    await persistence.update_user_data(7, {"a": 1})
    assert await rows(db) == {("user_data", "7"): {"a": 1}}


async def test_empty_data_is_no_row(db: Database) -> None:
    persistence = SqlPersistence(db)
    await persistence.update_user_data(7, {})
    await persistence.update_bot_data({})
    await persistence.update_callback_data(([], {}))
    assert await rows(db) == {}
    await persistence.update_user_data(7, {"a": 1})
    await persistence.update_user_data(7, {})
    assert await rows(db) == {}


async def test_unchanged_data_is_not_written_again(db: Database) -> None:
    persistence = SqlPersistence(db)
    writes = count_writes(db)
    await persistence.update_user_data(7, {"a": 1, "b": 2})
    await persistence.update_bot_data({"x": 1})
    await persistence.update_conversation("demo", (7, 7), 1)
    assert len(writes) == 3

    await persistence.update_user_data(7, {"b": 2, "a": 1})  # same dict, other order
    await persistence.update_bot_data({"x": 1})
    await persistence.update_conversation("demo", (7, 7), 1)
    await persistence.update_conversation("demo", (9, 9), None)  # never stored
    assert len(writes) == 3

    # What a restart loads counts as written.
    restarted = SqlPersistence(db)
    await restarted.get_user_data()
    await restarted.get_bot_data()
    await restarted.get_conversations("demo")
    await restarted.update_user_data(7, {"a": 1, "b": 2})
    await restarted.update_bot_data({"x": 1})
    await restarted.update_conversation("demo", (7, 7), 1)
    assert len(writes) == 3

    await restarted.update_user_data(7, {"a": 1, "b": 3})
    assert len(writes) == 4


@pytest.mark.parametrize(
    "data",
    [{1: "int key"}, {"t": (1, 2)}, {"s": {1}}, {"f": float("nan")}, {"o": object()}],
)
async def test_data_that_json_would_change_is_refused(db: Database, data: dict[Any, Any]) -> None:
    persistence = SqlPersistence(db)
    with pytest.raises(TypeError):
        await persistence.update_user_data(7, data)
    assert await rows(db) == {}


async def test_conversation_states_must_be_int_or_str(db: Database) -> None:
    with pytest.raises(TypeError):
        await SqlPersistence(db).update_conversation("demo", (7, 7), (1, 2))


async def test_overlong_keys_are_refused(db: Database) -> None:
    with pytest.raises(ValueError, match="longer than"):
        await SqlPersistence(db).update_conversation("x" * 200, (7, 7), 1)


# --- a real Application, crashed mid-conversation ---------------------------------------------


ASK, DONE = 1, 2


async def begin(update: Update, context: ContextTypes.DEFAULT_TYPE) -> int:
    assert update.message is not None and context.user_data is not None
    context.user_data["step"] = "asked"
    await update.message.reply_text("What is your child's name?")
    return ASK


async def answer(update: Update, context: ContextTypes.DEFAULT_TYPE) -> int:
    assert update.message is not None and context.user_data is not None
    await update.message.reply_text(
        f"Thanks, noted {update.message.text} (step: {context.user_data.get('step')})"
    )
    return DONE


async def already_done(update: Update, context: ContextTypes.DEFAULT_TYPE) -> int:
    assert update.message is not None
    await update.message.reply_text("Already done.")
    return DONE


def build(db: Database, request: RecordingRequest, *, write_through: bool = True) -> Application:  # type: ignore[type-arg]
    persistence = SqlPersistence(db)
    application = (
        ApplicationBuilder()
        .token("123:ABC")
        .persistence(persistence)
        .request(request)
        .get_updates_request(request)
        .build()
    )
    text = filters.TEXT & ~filters.COMMAND
    application.add_handler(
        ConversationHandler(
            entry_points=[CommandHandler("begin", begin)],
            states={
                ASK: [MessageHandler(text, answer)],
                DONE: [MessageHandler(text, already_done)],
            },
            fallbacks=[],
            name="demo",
            persistent=True,
        )
    )
    if write_through:
        application.add_handler(TypeHandler(Update, persist_now), group=PERSIST_GROUP)
    return application


async def test_a_crash_mid_conversation_loses_nothing(
    db: Database, empty_database_url: str
) -> None:
    request = RecordingRequest()
    first = build(db, request)
    await first.initialize()
    replies = await FakeUser(first, request, USER_ID).send("/begin")
    assert FakeUser.texts(replies) == "What is your child's name?"

    # Crash: no stop(), no shutdown(), no flush(); the application is simply gone.
    del first

    # A new process: its own engine on the same database.
    reborn_db = Database(empty_database_url)
    try:
        request = RecordingRequest()
        second = build(reborn_db, request)
        await second.initialize()
        replies = await FakeUser(second, request, USER_ID).send("Mei")
        assert FakeUser.texts(replies) == "Thanks, noted Mei (step: asked)"
        stored = await rows(reborn_db)
        assert stored["conversation", conversation_key("demo", (USER_ID, USER_ID))] == DONE
        assert stored["user_data", str(USER_ID)] == {"step": "asked"}
        await second.shutdown()
    finally:
        await reborn_db.dispose()


async def test_without_persist_now_ptb_writes_only_at_the_interval(db: Database) -> None:
    """Why persist_now exists: PTB's process_update does not call the persistence."""
    request = RecordingRequest()
    application = build(db, request, write_through=False)
    await application.initialize()
    await FakeUser(application, request, USER_ID).send("/begin")
    assert await rows(db) == {}
    await application.update_persistence()  # what the interval task (or shutdown) would do
    assert (await rows(db))["conversation", conversation_key("demo", (USER_ID, USER_ID))] == ASK
    await application.shutdown()


async def test_drop_user_data_reaches_the_database_with_the_update(db: Database) -> None:
    request = RecordingRequest()
    application = build(db, request)
    user = FakeUser(application, request, USER_ID)

    async def forget(update: Update, context: ContextTypes.DEFAULT_TYPE) -> None:
        assert update.effective_user is not None
        context.application.drop_user_data(update.effective_user.id)

    application.add_handler(CommandHandler("forget", forget), group=1)
    await application.initialize()
    await user.send("/begin")
    assert ("user_data", str(USER_ID)) in await rows(db)
    await user.send("/forget")
    assert ("user_data", str(USER_ID)) not in await rows(db)
    await application.shutdown()
