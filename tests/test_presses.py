"""Odd presses: ids beyond the database's range, refused presses audited whoever presses, and
answers to a press whose message is gone."""

from __future__ import annotations

import re
import re._parser as sre_parse  # the pattern's own syntax tree: data built to match it
from collections.abc import Iterable, Iterator
from typing import Any

import pytest
from sqlalchemy import select
from telegram.ext import BaseHandler, CallbackQueryHandler, ConversationHandler

import handlers
from bot.context import BotContext, KehouApplication
from handlers.common.presses import MAX_ID, as_int, fields, ints, refuse
from storage.db import Database
from storage.models import AuditLog, Enrolment, Guardianship, Role
from tests.factories import SchoolData, add_member
from tests.harness import FakeUser, RecordingRequest
from tests.test_enrolment import make_course

HUGE = str(2**64)  # what forged presses were seen to carry: past every integer column
BIG = str(MAX_ID + 1)  # the first id an `integer` column cannot hold
EVERYONE, ADMIN, PARENT, TEACHER, OTHER = 900, 901, 902, 903, 904

# Data shaped like the buttons Kehou really makes, with the id out of range, so a handler that
# checks words before numbers (an action name, an option) reaches its number too.
SHAPED = [
    f"photo:{HUGE}:1",
    f"bl:cancel:{HUGE}",
    f"bl:unack:{HUGE}",
    f"ack:{HUGE}",
    f"ms:c:{HUGE}",
    f"ms:k:{HUGE}",
    f"ms:y:{HUGE}",
    f"ms:b:{HUGE}",
    f"wd:a:{HUGE}",
    f"wd:y:{HUGE}",
    f"of:{HUGE}:1",
    f"cs:c:{HUGE}:{HUGE}:0:0:0:0",
    f"cs:l:{HUGE}:0:0:0:0",
    f"lv:k:{HUGE}",
    f"lv:x:{HUGE}",
    f"lv:w:{HUGE}:1",
]


# ---------------------------------------------------------------------------------------------
# Every callback pattern the application registers


def _walk(handler: BaseHandler[Any, Any, Any]) -> Iterator[CallbackQueryHandler[Any, Any]]:
    if isinstance(handler, ConversationHandler):
        inner = [*handler.entry_points, *handler.fallbacks]
        inner += [h for state in handler.states.values() for h in state]
        for h in inner:
            yield from _walk(h)
    elif isinstance(handler, CallbackQueryHandler):
        yield handler


def callback_patterns(groups: Iterable[list[BaseHandler[Any, Any, Any]]]) -> list[str]:
    """The regex of every CallbackQueryHandler, conversations included ("" for a catch-all)."""
    found: list[str] = []
    for group in groups:
        for handler in group:
            for h in _walk(handler):
                pattern = h.pattern.pattern if isinstance(h.pattern, re.Pattern) else ""
                if pattern not in found:
                    found.append(pattern)
    return found


class _Registry:
    """Stands in for the Application at collection time: `handlers.register` only adds."""

    def __init__(self) -> None:
        self.handlers: dict[int, list[BaseHandler[Any, Any, Any]]] = {}

    def add_handler(self, handler: BaseHandler[Any, Any, Any], group: int = 0) -> None:
        self.handlers.setdefault(group, []).append(handler)

    def add_handlers(self, found: list[BaseHandler[Any, Any, Any]], group: int = 0) -> None:
        self.handlers.setdefault(group, []).extend(found)


def _registered() -> list[str]:
    registry = _Registry()
    handlers.register(registry)  # type: ignore[arg-type]
    return callback_patterns(registry.handlers.values())


PATTERNS = _registered()


def _starts(tree: Any) -> list[tuple[str, bool]]:
    """Shortest strings each branch of a parsed regex matches: (text, must end there)."""
    results: list[tuple[str, bool]] = [("", False)]
    for op, av in tree:
        name = str(op)
        if name == "LITERAL":
            results = [(s + chr(av), end) for s, end in results if not end]
        elif name == "IN":
            first = next((v for o, v in av if str(o) in ("LITERAL", "RANGE")), ord("x"))
            char = chr(first[0] if isinstance(first, tuple) else first)
            results = [(s + char, end) for s, end in results if not end]
        elif name == "BRANCH":
            results = [
                (s + t, t_end)
                for s, end in results
                if not end
                for b in av[1]
                for t, t_end in _starts(b)
            ]
        elif name == "SUBPATTERN":
            results = [
                (s + t, t_end) for s, end in results if not end for t, t_end in _starts(av[3])
            ]
        elif name == "AT":
            if str(av) == "AT_END":
                results = [(s, True) for s, _ in results]
        elif name in ("MAX_REPEAT", "MIN_REPEAT"):
            low, _, sub = av
            for _ in range(low):
                results = [
                    (s + t, t_end) for s, end in results if not end for t, t_end in _starts(sub)
                ]
        else:
            raise AssertionError(f"add {name} to the pattern walker")
    return results


def overflowing_data(pattern: str) -> list[str]:
    """Presses that match `pattern` and carry an out-of-range id in every field they can."""
    compiled = re.compile(pattern)
    data: list[str] = []
    for start, closed in _starts(sre_parse.parse(pattern)) if pattern else [("", False)]:
        if closed:
            data.append(start)
            continue
        glue = "" if start.endswith(":") or not start else ":"
        for number in (HUGE, BIG):
            data += [start + glue + ":".join([number] * n) for n in range(1, 7)]
    if pattern:  # the catch-all gets only data no feature takes
        data += SHAPED
    # Telegram delivers at most 64 bytes of callback data: longer presses cannot arrive.
    return [d for d in dict.fromkeys(data) if compiled.match(d) and len(d.encode()) <= 64]


async def test_the_walk_finds_every_pattern_the_application_registers(
    app: KehouApplication,
) -> None:
    assert callback_patterns(app.handlers.values()) == PATTERNS
    assert r"^photo:" in PATTERNS and r"^bl:" in PATTERNS and "" in PATTERNS


@pytest.mark.parametrize("pattern", PATTERNS)
async def test_an_id_past_the_integer_range_is_refused_by_every_button(
    pattern: str,
    app: KehouApplication,
    make_user: Any,
    db: Database,
    school: SchoolData,
) -> None:
    await add_member(
        db, school, EVERYONE, {Role.PARENT, Role.TEACHER, Role.ADMIN}, ("李小明",), locale="en"
    )
    raised: list[tuple[str, BaseException | None]] = []
    pressing: list[str] = [""]

    async def collect(update: object, context: BotContext) -> None:
        raised.append((pressing[0], context.error))

    app.add_error_handler(collect)  # type: ignore[arg-type]
    app.errors_expected = True  # type: ignore[attr-defined]  # checked here, press by press
    person: FakeUser = make_user(EVERYONE, language_code="en")
    data = overflowing_data(pattern)
    assert data, f"no press built for {pattern!r}"
    unanswered = []
    for datum in data:
        pressing[0] = datum
        replies = await person.press(datum)
        if not any(c.method == "answerCallbackQuery" for c in replies):
            unanswered.append(datum)
    assert raised == []
    assert unanswered == []


# ---------------------------------------------------------------------------------------------
# The parser


def test_ids_are_digits_within_the_integer_range() -> None:
    assert as_int(str(MAX_ID)) == MAX_ID
    assert [as_int(t) for t in (str(MAX_ID + 1), HUGE, "-1", "１２", "1e3", "", " 7")] == [
        None
    ] * 7
    assert ints("of:12:1", "of:", 2) == [12, 1]
    assert ints(f"of:12:{HUGE}", "of:", 2) is None
    assert fields("bl:cancel:3", "bl:", 2) == ["cancel", "3"]
    assert fields("bl:cancel:3:4", "bl:", 2) is None
    assert fields(None, "bl:", 2) is None


# ---------------------------------------------------------------------------------------------
# Refused presses leave an audit row, whoever presses


async def audit_rows(db: Database) -> list[tuple[str, int | None, str]]:
    async with db.transaction() as session:
        found = await session.execute(
            select(AuditLog.action, AuditLog.actor_user_id, AuditLog.details).order_by(AuditLog.id)
        )
        return [
            (action, actor, (details or {}).get("callback_data", ""))
            for action, actor, details in found.all()
        ]


async def course_id(db: Database, school: SchoolData) -> int:
    return await make_course(db, school, "ROBO")


@pytest.mark.parametrize(
    ("who", "data", "action"),
    [
        # forged presses from accounts without the parent role
        (TEACHER, "photo:{child}:1", "photo.refused"),
        (TEACHER, "nt:digest", "notices.refused"),
        (ADMIN, "photo:{child}:0", "photo.refused"),
        # a parent's refused photo toggle: another family's child
        (OTHER, "photo:{child}:1", "photo.refused"),
        # parents pressing admin buttons
        (PARENT, "bc:send:0a1b2c3d", "broadcast.refused"),
        (PARENT, "bc:a:0a1b2c3d:parents", "broadcast.refused"),
        (PARENT, "bl:cancel:1", "broadcast.refused"),
        (PARENT, "ms:c:{course}", "course.refused"),
        # ids past the integer range, from the member the button might have been made for
        (PARENT, f"photo:{HUGE}:1", "photo.refused"),
        (ADMIN, f"bl:cancel:{HUGE}", "broadcast.refused"),
        (PARENT, f"ack:{HUGE}", "broadcast.ack_refused"),
        # an admin's forged broadcast button, outside any draft
        (ADMIN, f"bc:v:0a1b2c3d:class:{HUGE}", "broadcast.refused"),
        # a leave button for another family's child, or past the range, outside /leave
        (OTHER, "lv:k:{child}", "button.stale"),
        (PARENT, f"lv:x:{HUGE}", "leave.refused"),
        # course buttons for a child who is not the presser's, or from a non-parent
        (TEACHER, "cs:s:{child}:{course}", "enrolment.refused"),
        (OTHER, "cs:s:{child}:{course}", "enrolment.refused"),
        (OTHER, "cs:c:{child}:{course}:0:0:0:0", "enrolment.refused"),
        (TEACHER, "cs:l:{child}:0:0:0:0", "enrolment.refused"),
        # data no feature takes
        (TEACHER, "zz:1", "button.stale"),
    ],
)
async def test_a_refused_press_is_answered_and_audited_whoever_presses(
    who: int, data: str, action: str, make_user: Any, db: Database, school: SchoolData
) -> None:
    ids = {
        ADMIN: await add_member(db, school, ADMIN, {Role.ADMIN}),
        PARENT: await add_member(db, school, PARENT, {Role.PARENT}, ("李小明",)),
        TEACHER: await add_member(db, school, TEACHER, {Role.TEACHER}),
        OTHER: await add_member(db, school, OTHER, {Role.PARENT}, ("张伟",)),
    }
    datum = data.format(child=school.student_ids["李小明"], course=await course_id(db, school))
    person: FakeUser = make_user(who, language_code="en")
    replies = await person.press(datum)
    answers = [c for c in replies if c.method == "answerCallbackQuery"]
    assert len(answers) == 1 and answers[0].params.get("show_alert") is True
    assert not [c for c in replies if c.method.startswith(("send", "edit"))]
    assert await audit_rows(db) == [(action, ids[who], datum)]
    async with db.transaction() as session:
        consents = (await session.scalars(select(Guardianship.photo_consent))).all()
    assert not any(consents)  # nothing changed


@pytest.mark.parametrize("who", [TEACHER, OTHER])
async def test_a_forged_sign_up_changes_nothing(
    who: int, make_user: Any, db: Database, school: SchoolData
) -> None:
    """Confirm pressed for someone else's child, by a teacher or another family."""
    ids = {
        TEACHER: await add_member(db, school, TEACHER, {Role.TEACHER}),
        OTHER: await add_member(db, school, OTHER, {Role.PARENT}, ("张伟",)),
    }
    datum = f"cs:y:{school.student_ids['李小明']}:{await course_id(db, school)}"
    replies = await make_user(who, language_code="en").press(datum)
    assert replies[0].method == "answerCallbackQuery"  # acknowledged at once
    assert "no longer active" in str(replies[-1].params.get("text"))
    assert await audit_rows(db) == [("enrolment.refused", ids[who], datum)]
    async with db.transaction() as session:
        assert (await session.scalars(select(Enrolment.id))).all() == []


async def test_a_press_from_an_account_no_school_knows_is_logged_for_the_operator(
    make_user: Any, db: Database, school: SchoolData, caplog: pytest.LogCaptureFixture
) -> None:
    stranger: FakeUser = make_user(EVERYONE, language_code="en")
    with caplog.at_level("WARNING", logger="bot.services.guard"):
        replies = await stranger.press(f"ms:c:{await course_id(db, school)}")
    assert [c.method for c in replies] == ["answerCallbackQuery"]
    assert await audit_rows(db) == []  # no school's log can hold it
    (line,) = [r.getMessage() for r in caplog.records if r.name == "bot.services.guard"]
    assert "course.refused" in line and str(EVERYONE) in line and "ms:c:" in line


# ---------------------------------------------------------------------------------------------
# The message pressed is gone


GONE = "Bad Request: message to edit not found"


async def test_an_answer_to_a_deleted_message_comes_as_a_new_one(
    make_user: Any, db: Database, school: SchoolData, request_recorder: RecordingRequest
) -> None:
    await add_member(db, school, PARENT, {Role.PARENT}, ("李小明",))
    parent: FakeUser = make_user(PARENT, language_code="en")
    await parent.send("/notices")
    request_recorder.fail_next("editMessageText", GONE)
    replies = await parent.click("○ One daily digest")
    assert [c.method for c in replies] == ["answerCallbackQuery", "sendMessage"]
    assert "Right now: one daily digest." in replies[1].text
    assert "● One daily digest" in [b["text"] for b in replies[1].buttons()]
    # The failed edit was tried first.
    assert [c.error for c in request_recorder.of("editMessageText")] == [GONE]


async def test_a_broadcast_preview_whose_message_is_gone_is_sent_anew(
    make_user: Any, db: Database, school: SchoolData, request_recorder: RecordingRequest
) -> None:
    await add_member(db, school, ADMIN, {Role.ADMIN})
    await add_member(db, school, PARENT, {Role.PARENT}, ("李小明",))
    admin: FakeUser = make_user(ADMIN, language_code="en")
    await admin.send("/broadcast")
    await admin.send("Closed tomorrow")
    request_recorder.fail_next("editMessageText", "Bad Request: message can't be edited")
    replies = await admin.click("All parents")
    assert [c.method for c in replies] == ["answerCallbackQuery", "sendMessage"]
    assert "To: all parents" in replies[1].text
    # The preview sent anew works: its buttons lead on (to the confirm step before sending).
    status = FakeUser.texts(await admin.click("Send now"))
    assert "all parents" in status


async def test_a_second_tap_on_the_shown_choice_is_no_error(
    make_user: Any, db: Database, school: SchoolData, request_recorder: RecordingRequest
) -> None:
    await add_member(db, school, PARENT, {Role.PARENT}, ("李小明",))
    parent: FakeUser = make_user(PARENT, language_code="en")
    await parent.send("/notices")
    request_recorder.fail_next(
        "editMessageText",
        "Bad Request: message is not modified: specified new message content and reply markup "
        "are exactly the same as a current content and reply markup of the message",
    )
    replies = await parent.click("● At once")
    assert [c.method for c in replies] == ["answerCallbackQuery"]


async def test_a_refusal_after_the_answer_replaces_a_gone_message_with_a_new_one(
    app: KehouApplication,
    make_user: Any,
    db: Database,
    school: SchoolData,
    request_recorder: RecordingRequest,
) -> None:
    await add_member(db, school, PARENT, {Role.PARENT}, ("李小明",))

    async def slow_refusal(update: Any, context: BotContext) -> None:
        await update.callback_query.answer()
        await refuse(update, context, "test.refused", answered=True)

    # Group 1 runs after the features, so this handler sees the loaded member as they do.
    app.add_handler(CallbackQueryHandler(slow_refusal, pattern=r"^t:"), group=1)
    parent: FakeUser = make_user(PARENT, language_code="en")
    request_recorder.fail_next("editMessageText", GONE)
    replies = await parent.press("t:1")
    sent = [c for c in replies if c.method == "sendMessage"]
    assert [c.text for c in sent] == ["This button is no longer active."]
    # (The catch-all of the features' group records `t:1` as a stale press too.)
    assert [a for a, _, _ in await audit_rows(db)] == ["button.stale", "test.refused"]


async def test_a_press_that_crashes_a_handler_is_still_answered(
    app: KehouApplication, make_user: Any, school: SchoolData
) -> None:
    async def broken(update: object, context: object) -> None:
        raise RuntimeError("boom")

    # First among the features, as a real one would be for its own pattern: it takes the press
    # and nothing else in its group answers it.
    app.handlers[0].insert(0, CallbackQueryHandler(broken, pattern=r"^boom$"))
    app.errors_expected = True  # type: ignore[attr-defined]
    person: FakeUser = make_user(OTHER, language_code="en")
    replies = await person.press("boom")
    assert [c.method for c in replies] == ["answerCallbackQuery", "sendMessage"]
    assert "Sorry, something went wrong" in replies[1].text
