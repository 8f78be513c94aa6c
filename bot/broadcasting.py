"""Broadcast progress, scheduled starts, re-pings and daily digests: the jobs around the outbox.

`tick` runs every few seconds: it marks finished broadcasts done and edits each sender's status
message in place with the live figures. Scheduled starts, the one re-ping of unacknowledged
notices and the daily digest (`build_digests`) are runs of the scheduler ledger
(`bot.jobs`, docs/SCHEDULER.md), so each happens exactly once.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import html
import logging
from typing import Any

from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncSession
from telegram import InlineKeyboardButton, InlineKeyboardMarkup
from telegram.constants import ParseMode
from telegram.error import BadRequest, TelegramError

from bot import wording
from bot.context import BotContext, Runtime
from bot.i18n import N_, Translator
from bot.services import broadcasts, evening
from bot.services.broadcasts import Audience, AudienceKind, AudienceName, Summary
from handlers.common.keyboards import grid
from storage.models import (
    Broadcast,
    BroadcastStatus,
    School,
    User,
    utcnow,
)

log = logging.getLogger(__name__)

TICK_SECONDS = 2.0
# A finished notice's figures still change (confirmations, digests): follow them this long.
FOLLOW_UP = dt.timedelta(days=3)

AUDIENCE_LABELS = {
    AudienceKind.PARENTS: N_("all parents"),
    AudienceKind.GRADE: N_("parents of grade {value}"),
    AudienceKind.CLASS: N_("parents of {value}"),
    AudienceKind.COURSE: N_("parents of children in {value}"),
    AudienceKind.PERIOD: N_("parents of children in {value}"),  # 第二时段: bot.wording
    AudienceKind.UNPAID: N_("parents with unpaid bills"),
    AudienceKind.TEACHERS: N_("all teachers"),
    AudienceKind.GROUPS: N_("the class parents' groups"),
}
STATUS_NAMES = {
    BroadcastStatus.SCHEDULED: N_("scheduled"),
    BroadcastStatus.SENDING: N_("sending"),
    BroadcastStatus.DONE: N_("done"),
    BroadcastStatus.CANCELLED: N_("cancelled"),
    BroadcastStatus.DRAFT: N_("draft"),
}


def audience_label(t: Translator, audience: AudienceName) -> str:
    """The audience in words ("parents of 三年级1班"), plain text (not yet HTML-escaped)."""
    if audience.kind is AudienceKind.CLASS and audience.several:
        return t.ngettext(
            "parents of {n} class", "parents of {n} classes", audience.several
        ).format(n=audience.several)
    if audience.kind is AudienceKind.GROUPS and audience.several:
        return t.ngettext(
            "the parents' groups of {n} class",
            "the parents' groups of {n} classes",
            audience.several,
        ).format(n=audience.several)
    if audience.kind is AudienceKind.GROUPS and audience.name is not None:
        return t.gettext("the parents' group of {value}").format(value=audience.name)
    if audience.kind is AudienceKind.PERIOD and str(audience.name) in ("1", "2"):
        return t.gettext(AUDIENCE_LABELS[audience.kind]).format(
            value=wording.period(t, int(str(audience.name)))
        )
    return t.gettext(AUDIENCE_LABELS[audience.kind]).format(value=audience.name)


def status_markup(t: Translator, broadcast: Summary) -> InlineKeyboardMarkup | None:
    """The buttons under a broadcast's status: cancel it while it can be, and, for a notice
    with a confirm button, who has not confirmed and a reminder to them."""
    buttons = []
    if broadcast.cancellable:
        buttons.append(
            InlineKeyboardButton(t.gettext("Cancel it"), callback_data=f"bl:cancel:{broadcast.id}")
        )
    if broadcast.ack_requested and broadcast.progress.families:
        buttons.append(
            InlineKeyboardButton(
                t.gettext("Not confirmed"), callback_data=f"bl:unack:{broadcast.id}"
            )
        )
        if broadcast.unconfirmed:
            buttons.append(
                InlineKeyboardButton(
                    t.gettext("Remind now"), callback_data=f"bl:remind:{broadcast.id}"
                )
            )
    return InlineKeyboardMarkup(grid(buttons)) if buttons else None


def status_text(t: Translator, broadcast: Summary) -> str:
    """The sender's status message: what, to whom, and how delivery is going."""
    figures = broadcast.progress
    lines = [
        t.gettext("📣 Broadcast #{id} to {audience}: {status}").format(
            id=broadcast.id,
            audience=html.escape(audience_label(t, broadcast.audience)),
            status=t.gettext(STATUS_NAMES[broadcast.status]),
        )
    ]
    if broadcast.status is BroadcastStatus.SCHEDULED and broadcast.scheduled_for:
        lines.append(
            t.gettext("Goes out at {when}.").format(
                when=t.datetime(broadcast.scheduled_for, "short")
            )
        )
    else:
        lines.append(
            t.gettext(
                "Recipients {total} · queued {queued} · sent {sent} · failed {failed} · "
                "blocked the bot {blocked}"
            ).format(
                total=figures.total,
                queued=figures.queued,
                sent=figures.sent,
                failed=figures.failed,
                blocked=figures.blocked,
            )
        )
        if broadcast.ack_requested and broadcast.audience.kind is not AudienceKind.GROUPS:
            lines.append(
                t.ngettext(
                    "Confirmed by {confirmed} of {n} family.",
                    "Confirmed by {confirmed} of {n} families.",
                    figures.families,
                ).format(confirmed=figures.confirmed, n=figures.families)
            )
        if figures.held:
            lines.append(
                t.gettext("Waiting for the parents' daily digest: {n}.").format(n=figures.held)
            )
        if figures.cancelled:
            lines.append(t.gettext("Not sent (cancelled): {n}.").format(n=figures.cancelled))
    return "\n".join(lines)


async def tick(context: BotContext) -> None:
    """The repeating progress job (see the module docstring)."""
    runtime = context.runtime
    now = utcnow()
    edits: list[tuple[int, int, int, str, InlineKeyboardMarkup | None]] = []
    async with runtime.db.transaction() as session:
        followed = await _followed(session, now)
        figures = await broadcasts.progress_of(session, [b.id for b, _ in followed])
        figures = await _with_families(context, session, followed, figures)
        # Only those with a status message are shown: only their audiences are named.
        shown = [(b, locale) for b, locale in followed if b.status_message_id is not None]
        names = await broadcasts.audience_names(
            session, [Audience.from_json(b.audience) for b, _ in shown]
        )
        for broadcast, _ in followed:
            await broadcasts.finish(session, broadcast, figures[broadcast.id], now)
        for (broadcast, locale), name in zip(shown, names, strict=True):
            if broadcast.status_chat_id is None or broadcast.status_message_id is None:
                continue
            summary = Summary.of(broadcast, name, figures[broadcast.id])
            t = runtime.i18n.get(locale)
            edits.append(
                (
                    broadcast.id,
                    broadcast.status_chat_id,
                    broadcast.status_message_id,
                    status_text(t, summary),
                    status_markup(t, summary),
                )
            )
    runtime.wake_delivery()
    on_screen: dict[int, str] = context.bot_data.setdefault("broadcast_status", {})
    for broadcast_id, chat_id, message_id, text, markup in edits:
        if on_screen.get(broadcast_id) == text:
            continue
        try:
            await context.bot.edit_message_text(
                text,
                chat_id=chat_id,
                message_id=message_id,
                parse_mode=ParseMode.HTML,
                reply_markup=markup,
            )
        except BadRequest as exc:
            if "not modified" not in exc.message.lower():
                log.warning("broadcast %s: status message not updated: %s", broadcast_id, exc)
        except TelegramError as exc:
            log.warning("broadcast %s: status message not updated: %s", broadcast_id, exc)
            continue
        on_screen[broadcast_id] = text


async def _with_families(
    context: BotContext,
    session: AsyncSession,
    followed: list[tuple[Broadcast, str | None]],
    figures: dict[int, broadcasts.Progress],
) -> dict[int, broadcasts.Progress]:
    """The figures with each confirm-button broadcast's families. Counting families reads a
    row per recipient, so it is counted again only when the plain figures moved since the
    last tick (a delivery, a digest or a confirmation); else the last count is kept."""
    known: dict[int, tuple[Any, tuple[int, int]]] = context.bot_data.setdefault(
        "broadcast_families", {}
    )
    confirming = [b.id for b, _ in followed if b.ack_requested]
    moved = [
        i for i in confirming if i not in known or known[i][0] != dataclasses.astuple(figures[i])
    ]
    for broadcast_id, counted in (await broadcasts.family_figures(session, moved)).items():
        known[broadcast_id] = (dataclasses.astuple(figures[broadcast_id]), counted)
    for broadcast_id in list(known):
        if broadcast_id not in figures:
            del known[broadcast_id]  # no longer followed
    return {
        i: dataclasses.replace(f, families=known[i][1][0], confirmed=known[i][1][1])
        if i in known
        else f
        for i, f in figures.items()
    }


async def _followed(session: AsyncSession, now: dt.datetime) -> list[tuple[Broadcast, str | None]]:
    """Broadcasts whose figures can still change (running, or recently done), each with the
    language of its sender's status message (theirs, else the school's): one statement."""
    rows = await session.execute(
        select(Broadcast, func.coalesce(User.locale, School.default_locale))
        .join(School, School.id == Broadcast.school_id)
        .outerjoin(User, User.id == Broadcast.created_by_user_id)
        .where(
            (Broadcast.status == BroadcastStatus.SENDING)
            | (
                (Broadcast.status == BroadcastStatus.DONE)
                & (Broadcast.finished_at >= now - FOLLOW_UP)
            )
        )
    )
    return [(broadcast, locale) for broadcast, locale in rows.all()]


# ---------------------------------------------------------------------------------------------
# Digests


async def build_digests(runtime: Runtime, school_id: int, now: dt.datetime) -> int:
    """Fold every held message into one digest per recipient; returns the digests queued."""
    async with runtime.db.transaction() as session:
        return await evening.fold_held(session, runtime.i18n, school_id, now)
