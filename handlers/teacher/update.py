"""/update: a teacher tells the families what the class did today, in words and up to 10 photos.

Steps: today's session (buttons, when the teacher has more than one) → the text and photos (a
text message, a photo with a caption, or an album) → the preview, which says how many families
get it now and how many in the evening digest → sent, naming the course and the day, with
再发一条. When photos are attached and some children have no guardian's photo consent, the
preview names them and offers exactly 只发文字 (the text alone) and 确认照片中没有他们; the
service checks consent again when it sends (`bot.services.updates.post`). Every screen has
返回 and 取消; /cancel works too.

Albums: Telegram delivers an album as one message per photo, sharing a `media_group_id`,
within about a second and not always in order. Each photo is added to the draft in
`user_data` as it comes, and the preview is shown by a JobQueue job `ALBUM_WAIT` seconds after
the last one (each photo moves the job on); photos are kept in message order.

Callback data (never trusted; read with `fields`/`ints`; each carries the draft's id, and the
sending buttons its version, so a button of an older preview never sends a newer draft):
``up:s:<draft>:<course>`` a session · ``up:p:<draft>:<page>`` a page of sessions ·
``up:go:<draft>:<version>`` send · ``up:t:<draft>:<version>`` the text alone ·
``up:ok:<draft>:<version>`` confirmed: those children are not in the photos ·
``up:b:<draft>`` back · ``up:c:<draft>`` cancel. 再发一条 is ``go:update``; the roster
``go:roster``.
"""

from __future__ import annotations

import datetime as dt
import html
import secrets
import time
import warnings
from typing import Any

from telegram import InlineKeyboardButton, InlineKeyboardMarkup, Update
from telegram.constants import ParseMode
from telegram.ext import (
    CallbackQueryHandler,
    CommandHandler,
    ConversationHandler,
    MessageHandler,
    filters,
)
from telegram.warnings import PTBUserWarning

from bot import wording
from bot.context import BotContext
from bot.i18n import Translator
from bot.services import updates
from bot.services.members import Member
from bot.services.sessions import Access, Running
from bot.services.updates import NeedsConsent, Plan, Posted, Problem
from handlers.common.cancel import cancel as cancel_step
from handlers.common.keyboards import PAGE_MAX, grid, nav, pager
from handlers.common.presses import as_int, edit_or_send, fields, refuse, show_screen
from storage.models import Role, utcnow

CHOOSE, COMPOSE, PREVIEW = range(3)
DRAFT = "pending_update"  # /cancel drops every "pending…" key
ALBUM_WAIT = 1.0  # seconds after an album's last photo before the preview is shown
TEXT_SHOWN = 700  # characters of the text the preview repeats


def _now() -> dt.datetime:
    return utcnow()


def _today(t: Translator) -> dt.date:
    return _now().astimezone(t.timezone).date()


def _button(label: str, data: str) -> InlineKeyboardButton:
    return InlineKeyboardButton(label, callback_data=data)


def _job_name(user_id: int) -> str:
    return f"update-album:{user_id}"


def _draft(context: BotContext) -> dict[str, Any] | None:
    draft = (context.user_data or {}).get(DRAFT)
    return draft if isinstance(draft, dict) else None


def _photos(draft: dict[str, Any]) -> list[str]:
    """The draft's photos in message order (an album's arrive in any order), at most 10."""
    ordered = sorted(draft.get("photos") or [], key=lambda p: p[0])
    return [file_id for _, file_id in ordered][: updates.MAX_PHOTOS]


def _day(draft: dict[str, Any]) -> dt.date:
    return dt.date.fromisoformat(draft["date"])


def _is_staff(member: Member | None) -> bool:
    return member is not None and (member.has(Role.TEACHER) or member.has(Role.ADMIN))


# ---------------------------------------------------------------------------------------------
# The first step: which session


async def begin(update: Update, context: BotContext) -> int:
    """/update, or 再发一条 (``go:update``) under a result."""
    message = update.effective_message
    assert message is not None and context.user_data is not None
    t = context.t
    if update.callback_query is not None:
        await update.callback_query.answer()
    _stop_album(context, update.effective_user.id if update.effective_user else None)
    context.user_data.pop(DRAFT, None)
    if not _is_staff(context.member):
        await message.reply_text(
            t.gettext(
                "Daily updates are posted by the school's teachers. If you teach here, ask the "
                "school office for a staff invite code."
            )
        )
        return ConversationHandler.END
    today = _today(t)
    async with context.db.transaction() as session:
        running = await updates.todays(session, context.member, today)
    if not running:
        await message.reply_text(
            t.gettext(
                "You have no after-school session today ({day}), so there is no update to post. "
                "An update is posted on the day of the session; /roster shows your sessions. "
                "If a session is missing, please tell the school office."
            ).format(day=wording.day(t, today))
        )
        return ConversationHandler.END
    draft: dict[str, Any] = {
        "id": secrets.token_hex(4),
        "date": today.isoformat(),
        "course": None,
        "several": len(running) > 1,
        "text": None,
        "photos": [],
        "v": 0,
        "confirm": [],
    }
    context.user_data[DRAFT] = draft
    if len(running) == 1:
        draft["course"] = running[0].course.id
        await _ask_content(update, t, draft, running[0], new=True)
        return COMPOSE
    await _ask_session(update, t, draft, running, 0, new=True)
    return CHOOSE


async def _ask_session(
    update: Update,
    t: Translator,
    draft: dict[str, Any],
    running: list[Running],
    page: int,
    *,
    new: bool = False,
) -> None:
    pages = max(1, -(-len(running) // PAGE_MAX))
    page = min(max(page, 0), pages - 1)
    shown = running[page * PAGE_MAX : (page + 1) * PAGE_MAX]
    buttons = [
        _button(
            f"{r.course.name} {t.time(r.course.starts_at)}", f"up:s:{draft['id']}:{r.course.id}"
        )
        for r in shown
    ]
    rows = grid(buttons)
    rows.append(pager(page, pages, lambda n: f"up:p:{draft['id']}:{n}"))
    rows.append(nav(t, cancel=f"up:c:{draft['id']}"))
    text = t.gettext("Which session is the update for? Today, {day}:").format(
        day=wording.day(t, _day(draft))
    )
    await show_screen(update, text, rows, new=new)


async def _ask_content(
    update: Update, t: Translator, draft: dict[str, Any], running: Running, *, new: bool = False
) -> None:
    course = running.course
    lines = [
        f"<b>{html.escape(course.name)} · {wording.day(t, running.date)}</b> "
        f"{wording.span(t, course.starts_at, course.ends_at)}",
        t.gettext(
            "Send the text and up to 10 photos of what the class did today: a text message, a "
            "photo with a caption, or an album. You will see a preview before anything is sent."
        ),
    ]
    back = f"up:b:{draft['id']}" if draft.get("several") else None
    await show_screen(
        update, "\n".join(lines), [nav(t, back=back, cancel=f"up:c:{draft['id']}")], new=new
    )


# ---------------------------------------------------------------------------------------------
# The text and photos


async def receive_text(update: Update, context: BotContext) -> int:
    """A text message: the update's text (a newer one replaces it)."""
    message = update.effective_message
    assert message is not None
    draft = _draft(context)
    if draft is None or draft.get("course") is None:
        return await _no_draft(update, context)
    draft["text"] = message.text or ""
    draft["v"] = int(draft.get("v", 0)) + 1
    if _album_pending(draft):
        _wait_for_album(update, context, draft)  # the preview follows the album's last photo
    else:
        await _send_preview(context, message.chat_id, context.t, context.member, draft)
    return PREVIEW


async def receive_photo(update: Update, context: BotContext) -> int:
    """A photo, alone or one of an album: added; the preview follows once the album is in."""
    message = update.effective_message
    assert message is not None and message.photo
    draft = _draft(context)
    if draft is None or draft.get("course") is None:
        return await _no_draft(update, context)
    photos = draft.setdefault("photos", [])
    if all(p[0] != message.message_id for p in photos):
        photos.append([message.message_id, message.photo[-1].file_id])  # the largest size
    if message.caption:
        draft["text"] = message.caption
    draft["v"] = int(draft.get("v", 0)) + 1
    _wait_for_album(update, context, draft)
    return PREVIEW


async def receive_early(update: Update, context: BotContext) -> int:
    """Text or photos before a session was chosen."""
    message = update.effective_message
    assert message is not None
    await message.reply_text(context.t.gettext("Please choose the session first (buttons above)."))
    return CHOOSE


async def _no_draft(update: Update, context: BotContext) -> int:
    message = update.effective_message
    assert message is not None
    await message.reply_text(context.t.gettext("Send /update to start a daily update."))
    return ConversationHandler.END


def _album_pending(draft: dict[str, Any]) -> bool:
    """Photos came less than `ALBUM_WAIT` ago: the job will show the preview."""
    return time.time() < float(draft.get("wait_until") or 0)


def _stop_album(context: BotContext, user_id: int | None) -> None:
    queue = context.job_queue
    if user_id is None or queue is None:
        return
    for job in queue.get_jobs_by_name(_job_name(user_id)):
        job.schedule_removal()


def _wait_for_album(update: Update, context: BotContext, draft: dict[str, Any]) -> None:
    """(Re)start the short wait after which the preview is shown."""
    message = update.effective_message
    queue = context.job_queue
    user = update.effective_user
    assert message is not None and queue is not None and user is not None
    _stop_album(context, user.id)
    draft["wait_until"] = time.time() + ALBUM_WAIT
    queue.run_once(
        preview_after_album,  # type: ignore[arg-type]
        ALBUM_WAIT,
        data={"draft": draft["id"], "t": context.t, "member": context.member},
        name=_job_name(user.id),
        chat_id=message.chat_id,
        user_id=user.id,
    )


async def preview_after_album(context: BotContext) -> None:
    """The job: the album is in (no photo came for `ALBUM_WAIT` seconds); show the preview."""
    job = context.job
    assert job is not None and job.chat_id is not None
    data: dict[str, Any] = job.data  # type: ignore[assignment]
    draft = _draft(context)
    if draft is None or draft.get("id") != data["draft"]:
        return  # cancelled, or started again meanwhile
    draft["wait_until"] = 0
    await _send_preview(context, job.chat_id, data["t"], data["member"], draft)


# ---------------------------------------------------------------------------------------------
# The preview


async def _send_preview(
    context: BotContext,
    chat_id: int,
    t: Translator,
    member: Member | None,
    draft: dict[str, Any],
    *,
    note: str | None = None,
    query: Any = None,
) -> None:
    """The preview as a new message (or in place of a pressed one): one guarded read."""
    async with context.db.transaction() as session:
        plan = await updates.preview(session, member, draft["course"], _day(draft), _today(t))
    if plan is None:
        text = t.gettext(
            "You can no longer post an update for this session. Send /update to start again."
        )
        markup = None
    else:
        text, rows = _preview(t, plan, draft, note)
        markup = InlineKeyboardMarkup([r for r in rows if r])
    if query is not None:
        await edit_or_send(query, text, reply_markup=markup, parse_mode=ParseMode.HTML)
    else:
        await context.bot.send_message(
            chat_id, text, reply_markup=markup, parse_mode=ParseMode.HTML
        )


def _preview(
    t: Translator, plan: Plan, draft: dict[str, Any], note: str | None
) -> tuple[str, list[list[InlineKeyboardButton]]]:
    draft_id, version = draft["id"], draft.get("v", 0)
    text = (draft.get("text") or "").strip()
    photos = _photos(draft)
    lines = [
        t.gettext("<b>Preview: {course} · {day}</b>").format(
            course=html.escape(plan.course.name), day=wording.day(t, plan.date)
        )
    ]
    if note:
        lines += [note, ""]
    if text:
        shown = text if len(text) <= TEXT_SHOWN else text[:TEXT_SHOWN] + "…"
        lines.append(html.escape(shown))
    if photos:
        lines.append(
            "📷 " + t.ngettext("{n} photo", "{n} photos", len(photos)).format(n=len(photos))
        )
    left_out = len(draft.get("photos") or []) - len(photos)
    if left_out > 0:
        lines.append(
            t.ngettext(
                "At most 10 photos can be sent: {n} photo is left out.",
                "At most 10 photos can be sent: {n} photos are left out.",
                left_out,
            ).format(n=left_out)
        )
    lines.append("")
    lines += _reach_lines(t, plan.reach)
    cancel = nav(t, back=f"up:b:{draft_id}", cancel=f"up:c:{draft_id}")
    problem = updates.check(text, photos)
    if problem is Problem.EMPTY:
        lines += ["", t.gettext("Now send a few words about the day: the text is required.")]
        return "\n".join(lines), [cancel]
    if problem is Problem.TOO_LONG:
        lines += [
            "",
            t.gettext(
                "The text is too long: at most {max} characters. Send a shorter one."
            ).format(max=updates.MAX_TEXT),
        ]
        return "\n".join(lines), [cancel]
    if photos and plan.unconsented:
        names = wording.joined(t, (html.escape(c.name) for c in plan.unconsented))
        count = len(plan.unconsented)
        draft["confirm"] = [c.id for c in plan.unconsented]  # what the teacher is shown
        lines += [
            "",
            "⚠️ "
            + t.ngettext(
                "{n} child has no guardian's consent to photos: {names}.",
                "{n} children have no guardian's consent to photos: {names}.",
                count,
            ).format(n=count, names=names),
            t.gettext("Send the text alone, or confirm that they are not in any of the photos."),
        ]
        rows = grid(
            [
                _button(t.gettext("Text alone"), f"up:t:{draft_id}:{version}"),
                _button(t.gettext("They are not in the photos"), f"up:ok:{draft_id}:{version}"),
            ]
        )
        return "\n".join(lines), [*rows, cancel]
    lines += ["", t.gettext("Send more photos, or a new text to replace this one.")]
    return "\n".join(lines), [[_button(t.gettext("Send"), f"up:go:{draft_id}:{version}"), *cancel]]


def _reach_lines(t: Translator, reach: updates.Reach) -> list[str]:
    if reach.families == 0 and reach.groups == 0:
        return [t.gettext("No family can get it yet: no guardian of these children uses Kehou.")]
    lines = [
        t.ngettext("It goes to {n} family:", "It goes to {n} families:", reach.families).format(
            n=reach.families
        ),
        "• " + t.ngettext("{n} gets it now", "{n} get it now", reach.now).format(n=reach.now),
        "• "
        + t.ngettext(
            "{n} in the evening digest", "{n} in the evening digest", reach.evening
        ).format(n=reach.evening),
    ]
    if reach.muted:
        lines.append(
            "• "
            + t.ngettext(
                "{n} has turned updates off", "{n} have turned updates off", reach.muted
            ).format(n=reach.muted)
        )
    if reach.groups:
        lines.append(
            "• "
            + t.ngettext(
                "also posted in {n} class group", "also posted in {n} class groups", reach.groups
            ).format(n=reach.groups)
        )
    return lines


# ---------------------------------------------------------------------------------------------
# Presses


async def on_press(update: Update, context: BotContext) -> int:
    """Every press of the flow: check the draft, then route."""
    query = update.callback_query
    assert query is not None and query.data is not None
    t = context.t
    data = query.data
    draft = _draft(context)
    parts = data.split(":")
    if len(parts) < 3 or draft is None or parts[2] != draft.get("id"):
        await query.answer(t.gettext("This preview is out of date."), show_alert=True)
        return ConversationHandler.END if draft is None else _state(draft)
    if fields(data, "up:c:", 1) is not None:
        return await _cancel(update, context)
    if fields(data, "up:b:", 1) is not None:
        return await _back(update, context, draft)
    chosen = fields(data, "up:s:", 2)
    if chosen is not None:
        return await _choose(update, context, draft, as_int(chosen[1]))
    page = fields(data, "up:p:", 2)
    if page is not None:
        return await _page(update, context, draft, as_int(page[1]))
    for kind in ("go", "t", "ok"):
        sending = fields(data, f"up:{kind}:", 2)
        if sending is not None:
            return await _send(update, context, draft, kind, as_int(sending[1]))
    await refuse(update, context, updates.REFUSED)  # no screen offers such a button
    return _state(draft)


def _state(draft: dict[str, Any]) -> int:
    if draft.get("course") is None:
        return CHOOSE
    return PREVIEW if draft.get("text") or draft.get("photos") else COMPOSE


async def _running(context: BotContext, draft: dict[str, Any]) -> list[Running]:
    async with context.db.transaction() as session:
        return await updates.todays(session, context.member, _day(draft))


async def _choose(
    update: Update, context: BotContext, draft: dict[str, Any], course_id: int | None
) -> int:
    query = update.callback_query
    assert query is not None
    if course_id is None:
        await refuse(update, context, updates.REFUSED)
        return CHOOSE
    async with context.db.transaction() as session:
        plan = await updates.preview(
            session, context.member, course_id, _day(draft), _today(context.t), pressed=query.data
        )
    if plan is None:
        await refuse(update, context, updates.REFUSED, audited=True)
        return CHOOSE
    await query.answer()
    draft["course"] = course_id
    await _ask_content(update, context.t, draft, Running(plan.course, plan.date, Access.MARK))
    return COMPOSE


async def _page(
    update: Update, context: BotContext, draft: dict[str, Any], page: int | None
) -> int:
    query = update.callback_query
    assert query is not None
    if page is None:
        await refuse(update, context, updates.REFUSED)
        return CHOOSE
    await query.answer()
    await _ask_session(update, context.t, draft, await _running(context, draft), page)
    return CHOOSE


async def _back(update: Update, context: BotContext, draft: dict[str, Any]) -> int:
    """From the preview to the text and photos (cleared); from there to the sessions."""
    query = update.callback_query
    assert query is not None
    await query.answer()
    _stop_album(context, query.from_user.id)
    running = await _running(context, draft)
    if (draft.get("text") or draft.get("photos")) and draft.get("course") is not None:
        draft.update(text=None, photos=[], confirm=[], v=int(draft.get("v", 0)) + 1)
        current = next((r for r in running if r.course.id == draft["course"]), None)
        if current is not None:
            await _ask_content(update, context.t, draft, current)
            return COMPOSE
    if not running:
        return await _cancel(update, context)
    draft.update(course=None, text=None, photos=[], confirm=[])
    await _ask_session(update, context.t, draft, running, 0)
    return CHOOSE


async def _cancel(update: Update, context: BotContext) -> int:
    query = update.callback_query
    assert query is not None and context.user_data is not None
    _stop_album(context, query.from_user.id)
    context.user_data.pop(DRAFT, None)
    await query.answer()
    await edit_or_send(query, context.t.gettext("Cancelled: nothing was sent."), reply_markup=None)
    return ConversationHandler.END


async def cancel(update: Update, context: BotContext) -> int:
    """/cancel: the waiting album goes too."""
    _stop_album(context, update.effective_user.id if update.effective_user else None)
    return await cancel_step(update, context)


async def _send(
    update: Update, context: BotContext, draft: dict[str, Any], kind: str, version: int | None
) -> int:
    """发送, 只发文字 or 确认照片中没有他们: the service checks access and consent again."""
    query = update.callback_query
    assert query is not None and context.user_data is not None
    t = context.t
    if version is None:
        await refuse(update, context, updates.REFUSED)
        return PREVIEW
    if version != draft.get("v") or draft.get("course") is None:
        await query.answer(
            t.gettext("This preview is out of date: the newest one is below."), show_alert=True
        )
        return _state(draft)
    day, today = _day(draft), _today(t)
    if day != today:
        context.user_data.pop(DRAFT, None)
        await query.answer()
        await edit_or_send(
            query,
            t.gettext("This draft was for {day}. Send /update to post today's update.").format(
                day=wording.day(t, day)
            ),
        )
        return ConversationHandler.END
    photos = [] if kind == "t" else _photos(draft)
    confirmed = (draft.get("confirm") or []) if kind == "ok" else []
    outcome = await updates.post(
        context.db,
        context.member,
        draft["course"],
        day,
        today,
        draft.get("text") or "",
        photos,
        confirmed=confirmed,
        pressed=query.data,
        now=_now(),
    )
    if outcome is None:
        context.user_data.pop(DRAFT, None)
        await refuse(
            update,
            context,
            updates.REFUSED,
            audited=True,
            text=t.gettext("You can no longer post an update for this session."),
        )
        return ConversationHandler.END
    chat_id = update.effective_chat.id if update.effective_chat else query.from_user.id
    if isinstance(outcome, Problem):  # the preview offers no 发送 then; an old one might
        await query.answer()
        await _send_preview(context, chat_id, t, context.member, draft, query=query)
        return PREVIEW
    if isinstance(outcome, NeedsConsent):
        await query.answer()
        draft["v"] = int(draft.get("v", 0)) + 1
        # The preview pressed showed other children (or none): consent changed meanwhile.
        note = t.gettext("Photo consent changed just now: please check the photos again.")
        await _send_preview(context, chat_id, t, context.member, draft, note=note, query=query)
        return PREVIEW
    context.user_data.pop(DRAFT, None)
    context.runtime.wake_delivery()
    await query.answer(t.gettext("Sent."))
    text, rows = _result(t, outcome, dropped=kind == "t" and bool(_photos(draft)))
    await edit_or_send(
        query, text, reply_markup=InlineKeyboardMarkup(rows), parse_mode=ParseMode.HTML
    )
    return ConversationHandler.END


def _result(
    t: Translator, posted: Posted, *, dropped: bool
) -> tuple[str, list[list[InlineKeyboardButton]]]:
    what = {"course": html.escape(posted.course.name), "day": wording.day(t, posted.date)}
    if posted.repeated:
        lines = [
            t.gettext(
                "This update of {course}, {day}, was already sent at {time}; nothing was sent "
                "again."
            ).format(time=t.time(posted.created_at.astimezone(t.timezone).time()), **what)
        ]
    else:
        lines = [t.gettext("Sent: the daily update of {course}, {day}.").format(**what)]
        reach = posted.reach
        lines.append(
            t.ngettext("{n} family gets it now", "{n} families get it now", reach.now).format(
                n=reach.now
            )
        )
        lines.append(
            t.ngettext(
                "{n} family gets it in the evening digest",
                "{n} families get it in the evening digest",
                reach.evening,
            ).format(n=reach.evening)
        )
        if reach.groups:
            lines.append(
                t.ngettext(
                    "Posted in {n} class group", "Posted in {n} class groups", reach.groups
                ).format(n=reach.groups)
            )
        if dropped:
            lines.append(t.gettext("The photos were not sent: the text went alone."))
        if posted.unconsented:
            count = len(posted.unconsented)
            lines.append(
                t.ngettext(
                    "Recorded: you confirmed that {n} child without photo consent is not in "
                    "the photos.",
                    "Recorded: you confirmed that {n} children without photo consent are not in "
                    "the photos.",
                    count,
                ).format(n=count)
            )
    rows = grid(
        [
            _button(t.gettext("Post another"), "go:update"),
            _button(t.gettext("Today's roster"), "go:roster"),
        ]
    )
    return "\n".join(lines), rows


def handlers() -> list[Any]:
    private = filters.ChatType.PRIVATE
    text = private & filters.TEXT & ~filters.COMMAND
    photo = private & filters.PHOTO
    press: Any = CallbackQueryHandler(on_press, pattern=r"^up:")
    content = [press, MessageHandler(text, receive_text), MessageHandler(photo, receive_photo)]
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", "If 'per_message=False'", PTBUserWarning)
        conversation = ConversationHandler(
            entry_points=[
                CommandHandler("update", begin, filters=private),
                CallbackQueryHandler(begin, pattern=r"^go:update$"),
            ],
            states={
                CHOOSE: [press, MessageHandler(text | photo, receive_early)],
                COMPOSE: content,
                PREVIEW: content,
            },
            fallbacks=[
                CommandHandler("cancel", cancel),
                CommandHandler("update", begin, filters=private),
            ],
            name="update",
            persistent=True,
            allow_reentry=True,
        )
    return [conversation]
