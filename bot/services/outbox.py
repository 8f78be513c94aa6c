"""The outbox: every message Kehou sends on its own initiative, written in the causing transaction.

A service that decides to tell someone something calls `enqueue` (or `enqueue_many`) inside its
own transaction: the message exists exactly when the change that caused it does. The delivery
worker (`bot.delivery`) claims due rows, renders them in the recipient's language, sends them
under Telegram's limits and records the outcome here.

Nothing in this module imports `telegram`: rows hold a template (an English msgid, translated at
send time) with its parameters, or ready HTML text, plus buttons and an optional attachment.

The notice budget is applied at enqueue time: a non-urgent message to a parent who chose the
daily digest, or beyond the school's daily cap for that parent, is HELD for the digest instead
of sent at once. Urgent messages, and messages that wait for an answer (`digest=False`: a
notice with a confirm button and its reminder), always go straight through.
"""

from __future__ import annotations

import datetime as dt
import html
import re
from collections.abc import Awaitable, Callable, Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any, cast
from zoneinfo import ZoneInfo

from sqlalchemy import (
    BigInteger,
    Integer,
    Table,
    and_,
    bindparam,
    delete,
    func,
    insert,
    null,
    or_,
    select,
    update,
)
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.ext.asyncio import AsyncSession

from bot import wording
from bot.i18n import Translator
from storage.models import DeliveryWorker as WorkerRow
from storage.models import (
    NoticeMode,
    Outbox,
    OutboxStatus,
    Priority,
    School,
    SchoolClass,
    User,
    UTCDateTime,
    utcnow,
)

MAX_TEXT = 4096  # Telegram's limit for a message, in UTF-16 code units after parsing
MAX_CAPTION = 1024
MAX_ATTEMPTS = 6  # sends of one row before it is given up as failed
FINAL = (
    OutboxStatus.SENT,
    OutboxStatus.FAILED,
    OutboxStatus.BLOCKED,
    OutboxStatus.CANCELLED,
    OutboxStatus.DIGESTED,
)
# Kinds never held for the digest: the digest itself, and answers the person is waiting for.
NEVER_HELD = frozenset({"digest"})
# A delivery worker whose heartbeat is older than this is dead: its claimed rows are taken
# over at once rather than when their lease runs out (see `claim`).
WORKER_ALIVE = dt.timedelta(seconds=10)


class MessageTooLong(ValueError):
    """A text that cannot be split into messages without breaking its formatting."""


@dataclass
class NewMessage:
    """One message to enqueue. Give `template` (+ `params`) or ready HTML `text`.

    `buttons` are rows of ``{"label": msgid, "data": callback data}`` or ``{"label": …,
    "url": …}``; labels are translated unless ``"raw": True``. `attachment` is
    ``{"type": "photo" | "document", "file_id": …}``. `dedupe_key` makes enqueueing
    idempotent within the school. `not_before` delays delivery.
    """

    chat_id: int
    kind: str
    user_id: int | None = None
    priority: Priority = Priority.NORMAL
    template: str | None = None
    params: dict[str, Any] | None = None
    text: str | None = None
    buttons: list[list[dict[str, Any]]] | None = None
    attachment: dict[str, Any] | None = None
    dedupe_key: str | None = None
    not_before: dt.datetime | None = None
    broadcast_id: int | None = None
    # False: never held for the digest, whatever the recipient chose (a notice that asks the
    # reader to confirm it, or its reminder: an answer is awaited, not an evening read).
    digest: bool = True
    extra: dict[str, Any] = field(default_factory=dict)


async def enqueue(session: AsyncSession, school_id: int, message: NewMessage) -> int | None:
    """Add one message; returns its id, or None when its dedupe key was already used."""
    ids = await enqueue_many(session, school_id, [message])
    return ids[0] if ids else None


async def enqueue_many(
    session: AsyncSession,
    school_id: int,
    messages: Sequence[NewMessage],
    *,
    now: dt.datetime | None = None,
) -> list[int]:
    """Add many messages in one statement; returns the ids of those not deduplicated away."""
    if not messages:
        return []
    now = now or utcnow()
    for message in messages:
        if message.template is None and message.text is None:
            raise ValueError("a message needs a template or a text")
        attachment = checked_attachment(message.attachment)  # ValueError now, not at delivery
        if message.text is not None:
            # MessageTooLong now, not at delivery: a text too long for a caption follows its
            # attachment as messages, split as any text.
            split_html(message.text)
        album = attachment is not None and attachment["type"] == "album"
        if album and message.buttons and message.template is None and not message.text:
            raise ValueError("an album's buttons need a text to ride on")
    held = await _held_recipients(session, school_id, messages, now)
    rows = [
        {
            "school_id": school_id,
            "user_id": m.user_id,
            "chat_id": m.chat_id,
            "kind": m.kind,
            "priority": int(m.priority),
            "template": m.template,
            "params": m.params,
            "text": m.text,
            "buttons": m.buttons,
            "attachment": m.attachment,
            "dedupe_key": f"{school_id}:{m.dedupe_key}" if m.dedupe_key else None,
            "not_before": m.not_before or now,
            "status": OutboxStatus.HELD if index in held else OutboxStatus.PENDING,
            "attempts": 0,
            "broadcast_id": m.broadcast_id,
            "created_at": now,
        }
        for index, m in enumerate(messages)
    ]
    statement = _insert_ignoring_duplicates(session).returning(Outbox.id)
    result = await session.execute(statement, rows)
    return [row[0] for row in result]


def _insert_ignoring_duplicates(session: AsyncSession) -> Any:
    dialect = session.get_bind().dialect.name
    if dialect == "postgresql":
        return postgresql.insert(Outbox).on_conflict_do_nothing(index_elements=["dedupe_key"])
    if dialect == "sqlite":
        return sqlite.insert(Outbox).on_conflict_do_nothing(index_elements=["dedupe_key"])
    return insert(Outbox)


async def _held_recipients(
    session: AsyncSession, school_id: int, messages: Sequence[NewMessage], now: dt.datetime
) -> set[int]:
    """Indexes of the messages that wait for the recipient's digest (the notice budget)."""
    candidates = [
        (i, m)
        for i, m in enumerate(messages)
        if m.user_id is not None
        and m.priority >= Priority.NORMAL
        and m.kind not in NEVER_HELD
        and m.digest
    ]
    if not candidates:
        return set()
    user_ids = {m.user_id for _, m in candidates}
    school = await session.get(School, school_id)
    assert school is not None
    digest_users = set(
        (
            await session.scalars(
                select(User.id).where(User.id.in_(user_ids), User.notice_mode == NoticeMode.DIGEST)
            )
        ).all()
    )
    held = {i for i, m in candidates if m.user_id in digest_users}
    cap = school.daily_notice_cap
    if cap is None:
        return held
    day_start = local_day_start(now, ZoneInfo(school.timezone))
    counted = await session.execute(
        select(Outbox.user_id, func.count())
        .where(
            Outbox.user_id.in_(user_ids),
            Outbox.priority >= int(Priority.NORMAL),
            Outbox.kind.not_in(NEVER_HELD),
            Outbox.created_at >= day_start,
            Outbox.status.not_in((OutboxStatus.HELD, OutboxStatus.DIGESTED)),
        )
        .group_by(Outbox.user_id)
    )
    today: dict[int | None, int] = {user_id: count for user_id, count in counted.all()}
    for i, m in candidates:
        if i in held:
            continue
        if today.get(m.user_id, 0) >= cap:
            held.add(i)
        else:
            today[m.user_id] = today.get(m.user_id, 0) + 1
    return held


def local_day_start(now: dt.datetime, zone: ZoneInfo) -> dt.datetime:
    local = now.astimezone(zone)
    return dt.datetime.combine(local.date(), dt.time(), zone).astimezone(dt.UTC)


# ---------------------------------------------------------------------------------------------
# Claiming and outcomes (used by the delivery worker)


@dataclass(frozen=True)
class Claimed:
    """A claimed row with what the worker needs to send it."""

    id: int
    school_id: int
    chat_id: int
    user_id: int | None
    kind: str
    priority: int
    template: str | None
    params: dict[str, Any] | None
    text: str | None
    buttons: list[list[dict[str, Any]]] | None
    attachment: dict[str, Any] | None
    attempts: int
    broadcast_id: int | None
    locale: str | None
    timezone: str | None = None  # the school's: `$datetime` values are shown in it

    @classmethod
    def of(cls, row: Outbox, locale: str | None, timezone: str | None = None) -> Claimed:
        return cls(
            id=row.id,
            school_id=row.school_id,
            chat_id=row.chat_id,
            user_id=row.user_id,
            kind=row.kind,
            priority=row.priority,
            template=row.template,
            params=row.params,
            text=row.text,
            buttons=row.buttons,
            attachment=row.attachment,
            attempts=row.attempts,
            broadcast_id=row.broadcast_id,
            locale=locale,
            timezone=timezone,
        )


async def claim(
    session: AsyncSession,
    worker_id: str,
    *,
    limit: int,
    lease: dt.timedelta,
    now: dt.datetime | None = None,
    alive: dt.timedelta = WORKER_ALIVE,
) -> list[Claimed]:
    """Claim up to `limit` due rows, most urgent first, for `lease`.

    Due: pending rows whose time has come, and rows another worker claimed and did not finish
    when that worker is dead — no heartbeat within `alive` (see `heartbeat`) — or its lease ran
    out. The heartbeat gives a crashed worker's rows back within seconds; the lease stays as
    the backstop. On PostgreSQL, rows other workers are claiming at the same moment are
    skipped (``FOR UPDATE SKIP LOCKED``), so no row is claimed twice.
    """
    now = now or utcnow()
    live_workers = select(WorkerRow.id).where(WorkerRow.heartbeat_at >= now - alive)
    due = (
        select(Outbox.id)
        .where(
            or_(
                and_(Outbox.status == OutboxStatus.PENDING, Outbox.not_before <= now),
                and_(
                    Outbox.status == OutboxStatus.SENDING,
                    or_(
                        Outbox.locked_until < now,
                        and_(
                            Outbox.claimed_by != worker_id,
                            Outbox.claimed_by.not_in(live_workers),
                        ),
                    ),
                ),
            )
        )
        .order_by(Outbox.priority, Outbox.not_before, Outbox.id)
        .limit(limit)
        .with_for_update(skip_locked=True)
    )
    # One statement: the choice and the claim cannot be split by another worker's claim, on
    # SQLite (one writer at a time) as on PostgreSQL (the rows chosen are locked, others skip).
    claimed_ids = await session.scalars(
        update(Outbox)
        .where(Outbox.id.in_(due))
        .values(
            status=OutboxStatus.SENDING,
            claimed_by=worker_id,
            locked_until=now + lease,
            attempts=Outbox.attempts + 1,
        )
        .returning(Outbox.id)
        .execution_options(synchronize_session=False)
    )
    ids = list(claimed_ids.all())
    if not ids:
        return []
    rows = await session.execute(
        select(Outbox, User.locale, User.blocked_at, School.default_locale, School.timezone)
        .join(School, School.id == Outbox.school_id)
        .outerjoin(User, User.id == Outbox.user_id)
        .where(Outbox.id.in_(ids))
        .order_by(Outbox.priority, Outbox.not_before, Outbox.id)
    )
    claimed = []
    blocked = []
    for row, locale, blocked_at, default_locale, timezone in rows.all():
        if blocked_at is not None:
            blocked.append(row.id)
            continue
        claimed.append(Claimed.of(row, locale or default_locale, timezone))
    if blocked:  # the recipient blocked the bot since the row was written: do not try
        await session.execute(
            update(Outbox)
            .where(Outbox.id.in_(blocked))
            .values(status=OutboxStatus.BLOCKED, locked_until=None, last_error="blocked")
        )
    return claimed


@dataclass
class Outcome:
    """What happened to one claimed row, recorded in a batch by `record`."""

    id: int
    status: OutboxStatus
    message_id: int | None = None
    error: str | None = None
    retry_at: dt.datetime | None = None  # with PENDING: try again then
    chat_id: int | None = None  # the chat it was finally sent to, if it changed
    count_attempt: bool = True  # False: the attempt was not the message's fault (429, queue)


async def record(
    session: AsyncSession, worker_id: str, outcomes: Iterable[Outcome], now: dt.datetime
) -> None:
    """Write outcomes in one batch, only for rows this worker still holds (a worker that lost
    its lease to another loses the write, never the other's)."""
    table = cast(Table, Outbox.__table__)
    columns = table.c
    params = [
        {
            "row_id": o.id,
            "worker": worker_id,
            "new_status": o.status.value,
            "error": o.error,
            "new_message_id": o.message_id if o.status is OutboxStatus.SENT else None,
            "new_sent_at": now if o.status is OutboxStatus.SENT else None,
            "retry_at": o.retry_at,
            "new_chat_id": o.chat_id,
            "uncounted": 0 if o.count_attempt else 1,
        }
        for o in outcomes
    ]
    if not params:
        return
    statement = (
        table.update()
        .where(
            columns.id == bindparam("row_id"),
            columns.claimed_by == bindparam("worker"),
            columns.status == OutboxStatus.SENDING.value,
        )
        .values(
            status=bindparam("new_status"),
            last_error=bindparam("error"),
            locked_until=None,
            claimed_by=None,
            message_id=func.coalesce(
                bindparam("new_message_id", type_=BigInteger), columns.message_id
            ),
            sent_at=func.coalesce(bindparam("new_sent_at", type_=UTCDateTime()), columns.sent_at),
            not_before=func.coalesce(
                bindparam("retry_at", type_=UTCDateTime()), columns.not_before
            ),
            chat_id=func.coalesce(bindparam("new_chat_id", type_=BigInteger), columns.chat_id),
            attempts=columns.attempts - bindparam("uncounted", type_=Integer),
        )
    )
    await session.execute(statement, params)


async def release(session: AsyncSession, worker_id: str, ids: Sequence[int]) -> None:
    """Give unsent claimed rows back (a worker stopping); their attempt does not count."""
    if ids:
        await session.execute(
            update(Outbox)
            .where(
                Outbox.id.in_(ids),
                Outbox.claimed_by == worker_id,
                Outbox.status == OutboxStatus.SENDING,
            )
            .values(
                status=OutboxStatus.PENDING,
                claimed_by=None,
                locked_until=None,
                attempts=Outbox.attempts - 1,
            )
        )


async def heartbeat(
    session: AsyncSession,
    worker_id: str,
    now: dt.datetime,
    *,
    alive: dt.timedelta = WORKER_ALIVE,
) -> int:
    """Note that the worker is alive; returns how many workers are (they share the rate).

    Rows of workers silent for three times `alive` are deleted, so the table holds only
    recent workers.
    """
    row = await session.get(WorkerRow, worker_id)
    if row is None:
        session.add(WorkerRow(id=worker_id, started_at=now, heartbeat_at=now))
    else:
        row.heartbeat_at = now
    await session.flush()
    await session.execute(delete(WorkerRow).where(WorkerRow.heartbeat_at < now - 3 * alive))
    live = await session.scalar(
        select(func.count()).select_from(WorkerRow).where(WorkerRow.heartbeat_at >= now - alive)
    )
    return int(live or 0)


async def claimers(session: AsyncSession) -> set[str]:
    """Every worker id that has a heartbeat row or holds a claimed row."""
    known = set((await session.scalars(select(WorkerRow.id))).all())
    holding = await session.scalars(
        select(Outbox.claimed_by)
        .where(Outbox.status == OutboxStatus.SENDING, Outbox.claimed_by.is_not(None))
        .distinct()
    )
    return known | {c for c in holding.all() if c is not None}


async def forget_workers(session: AsyncSession, worker_ids: Iterable[str]) -> None:
    """These workers are known to be dead (a restarted process's predecessors): their claimed
    rows are due for the next claim at once, without waiting for their heartbeat to age."""
    ids = list(worker_ids)
    if ids:
        await session.execute(delete(WorkerRow).where(WorkerRow.id.in_(ids)))


async def mark_blocked(session: AsyncSession, chat_id: int, now: dt.datetime) -> None:
    """The person behind a private chat blocked the bot: note it and stop writing to them."""
    await session.execute(
        update(User)
        .where(User.chat_id == chat_id, User.blocked_at.is_(None))
        .values(blocked_at=now)
    )
    await session.execute(
        update(Outbox)
        .where(
            Outbox.chat_id == chat_id,
            Outbox.status.in_((OutboxStatus.PENDING, OutboxStatus.HELD)),
        )
        .values(status=OutboxStatus.BLOCKED, last_error="blocked")
    )


async def unblock(session: AsyncSession, telegram_id: int) -> None:
    """The person wrote to the bot again: they can be reached."""
    await session.execute(
        update(User)
        .where(User.telegram_id == telegram_id, User.blocked_at.is_not(None))
        .values(blocked_at=None)
    )


async def migrate_chat(session: AsyncSession, old_id: int, new_id: int) -> None:
    """A group became a supergroup with a new id: follow it everywhere it is stored."""
    await session.execute(
        update(SchoolClass).where(SchoolClass.group_chat_id == old_id).values(group_chat_id=new_id)
    )
    await session.execute(
        update(Outbox)
        .where(
            Outbox.chat_id == old_id,
            Outbox.status.in_((OutboxStatus.PENDING, OutboxStatus.HELD)),
        )
        .values(chat_id=new_id)
    )


# ---------------------------------------------------------------------------------------------
# Rendering


@dataclass(frozen=True)
class Rendered:
    """What the worker sends, in order: the attachment (if any) with `parts[0]` as its caption
    ("": none), then the other parts as messages. The buttons go on the last part; an album
    cannot carry buttons, so an album with buttons always has a text part after it."""

    parts: list[str]  # HTML texts; the buttons go on the last one
    buttons: list[list[dict[str, str]]] | None
    # {"type": "photo" | "document", "file_id": …} or {"type": "album", "photos": [2–10 ids]}
    attachment: dict[str, Any] | None

    @property
    def album(self) -> list[str] | None:
        """The file ids of an album attachment, else None."""
        if self.attachment is not None and self.attachment["type"] == "album":
            return list(self.attachment["photos"])
        return None


MAX_ALBUM = 10  # photos in one album (Telegram's sendMediaGroup)


def checked_attachment(attachment: dict[str, Any] | None) -> dict[str, Any] | None:
    """The attachment as it is sent: an album of one photo is that photo. ValueError when an
    album has no photo or more than Telegram takes in one."""
    if attachment is None or attachment.get("type") != "album":
        return attachment
    photos = attachment.get("photos")
    if not isinstance(photos, list) or not all(isinstance(p, str) and p for p in photos):
        raise ValueError("an album's photos are a list of file ids")
    if not 1 <= len(photos) <= MAX_ALBUM:
        raise ValueError(f"an album has 1 to {MAX_ALBUM} photos, not {len(photos)}")
    if len(photos) == 1:
        return {"type": "photo", "file_id": photos[0]}
    return {"type": "album", "photos": list(photos)}


# A document made at sending time: (session, the attachment's args, the reader's translator)
# → (file name, bytes). LookupError: what it is made from is gone, so the row fails.
Maker = Callable[[AsyncSession, dict[str, Any], Translator], Awaitable[tuple[str, bytes]]]
MAKERS: dict[str, Maker] = {}


def maker(name: str) -> Callable[[Maker], Maker]:
    """Register a document maker under `name`, for ``{"type": "made", "maker": name}``."""

    def register(function: Maker) -> Maker:
        MAKERS[name] = function
        return function

    return register


def render(row: Claimed, t: Translator) -> Rendered:
    """The row in the recipient's language, split where Telegram's limit requires."""
    if row.template is not None:
        text = t.gettext(row.template).format(**format_params(row.params or {}, t))
    else:
        text = row.text or ""
    buttons = None
    if row.buttons:
        buttons = [
            [
                {
                    k: (v if k != "label" or b.get("raw") else t.gettext(v))
                    for k, v in b.items()
                    if k != "raw"
                }
                for b in line
            ]
            for line in row.buttons
        ]
    attachment = checked_attachment(row.attachment)
    if attachment is not None:
        album = attachment["type"] == "album"
        if album and buttons and not text.strip():
            raise ValueError("an album's buttons need a text to ride on")
        fits = utf16_len(visible_text(text)) <= MAX_CAPTION
        if fits and not (album and buttons):
            return Rendered([text], buttons, attachment)
        # A text too long for a caption, or an album with buttons (an album carries none):
        # the attachment first, without a caption, then the text as messages.
        return Rendered(["", *split_html(text)], buttons, attachment)
    return Rendered(split_html(text), buttons, None)


def format_params(params: dict[str, Any], t: Translator) -> dict[str, str]:
    """Template parameters: plain values as they are, typed ones formatted for the locale.

    ``{"$date": "2026-12-01"}``, ``{"$day": "2026-12-01"}`` (weekday and date, as in lists),
    ``{"$datetime": ISO}``, ``{"$time": "16:50"}``, ``{"$weekdays": mask}`` (周一至周五),
    ``{"$money": fen}`` and ``{"$msgid": text}`` are formatted (or translated) with the
    recipient's translator.
    """
    formatted = {}
    for key, value in params.items():
        if isinstance(value, dict) and len(value) == 1:
            ((kind, raw),) = value.items()
            if kind == "$date":
                value = t.date(dt.date.fromisoformat(raw))
            elif kind == "$datetime":
                value = t.datetime(dt.datetime.fromisoformat(raw), "short")
            elif kind == "$day":
                value = wording.day(t, dt.date.fromisoformat(raw))
            elif kind == "$time":
                value = t.time(dt.time.fromisoformat(raw))
            elif kind == "$weekdays":  # a course's bit mask, bit 0 = Monday
                value = wording.weekday_run(t, (d + 1 for d in range(7) if int(raw) >> d & 1))
            elif kind == "$money":
                value = t.money(int(raw))
            elif kind == "$msgid":
                value = t.gettext(raw)
        formatted[key] = html.escape(str(value), quote=False) if key != "html" else str(value)
    return formatted


_TOKEN = re.compile(r"<(/?)([a-zA-Z-]+)[^>]*>|&(#\d+|#x[0-9a-fA-F]+|[a-zA-Z]+);|.", re.S)


def utf16_len(text: str) -> int:
    return len(text.encode("utf-16-le")) // 2


def visible_text(text: str) -> str:
    """The text as Telegram shows it: tags dropped, entities decoded."""
    return html.unescape(re.sub(r"<[^>]+>", "", text))


def split_html(text: str, limit: int = MAX_TEXT) -> list[str]:
    """Split Telegram HTML into parts of at most `limit` visible UTF-16 units.

    Cuts only between tags (never inside a bold run or a link), preferring a blank line, then a
    line break, then a space. Raises `MessageTooLong` when a single formatted run is longer
    than the limit: a broken message is never sent.
    """
    if utf16_len(visible_text(text)) <= limit:
        return [text]
    parts: list[str] = []
    start = 0
    count = 0
    depth = 0
    best: dict[str, int] = {}  # kind of cut → text position just after it
    position = 0
    while position < len(text):
        match = _TOKEN.match(text, position)
        assert match is not None
        token = match.group(0)
        end = match.end()
        if match.group(2):  # a tag
            if match.group(1):
                depth -= 1
            elif not token.endswith("/>"):
                depth += 1
            position = end
            if depth == 0:
                best["any"] = end
            continue
        width = 1 if match.group(3) else utf16_len(token)
        if count + width > limit:
            cut = best.get("para") or best.get("line") or best.get("space") or best.get("any")
            if cut is None or cut <= start:
                raise MessageTooLong(f"a formatted run is longer than {limit} characters")
            parts.append(text[start:cut].rstrip())
            start = cut
            while start < len(text) and text[start] in " \n":
                start += 1
            count = utf16_len(visible_text(text[start:position]))
            best = {}
            continue
        count += width
        position = end
        if depth == 0:
            if token == "\n" and text[max(position - 2, 0) : position] == "\n\n":
                best["para"] = position
            elif token == "\n":
                best["line"] = position
            elif token == " ":
                best["space"] = position
            best["any"] = position
    tail = text[start:].strip()
    if tail:
        parts.append(tail)
    return parts


# Rows no worker will send any more: their content is only history.
DONE = (
    OutboxStatus.SENT,
    OutboxStatus.DIGESTED,
    OutboxStatus.FAILED,
    OutboxStatus.BLOCKED,
    OutboxStatus.CANCELLED,
)


async def clear_old_content(
    session: AsyncSession, now: dt.datetime, school_id: int | None = None
) -> int:
    """Clear what finished messages said and to whom, after the school's retention period.

    The rows stay, with kind, status and times, so counts and delivery statistics hold.
    Returns the rows cleared.
    """
    query = select(School.id, School.outbox_retention_days)
    if school_id is not None:
        query = query.where(School.id == school_id)
    cleared = 0
    for school, days in (await session.execute(query)).all():
        result = await session.execute(
            update(Outbox)
            .where(
                Outbox.school_id == school,
                Outbox.status.in_(DONE),
                Outbox.created_at < now - dt.timedelta(days=days),
                Outbox.chat_id != 0,  # not cleared yet
            )
            # SQL NULL, not JSON null: nothing of the content is left.
            .values(chat_id=0, params=null(), text=None, buttons=null(), attachment=null())
            .execution_options(synchronize_session=False)
        )
        cleared += result.rowcount  # type: ignore[attr-defined]
    return cleared
