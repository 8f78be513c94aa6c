"""/mydata and /forget: a guardian sees, or deletes, what Kehou holds about them."""

from __future__ import annotations

import io
import json

from telegram import BotCommandScopeChat, InlineKeyboardButton, InlineKeyboardMarkup, Update
from telegram.error import TelegramError
from telegram.ext import CallbackQueryHandler, CommandHandler, filters

from bot import menus
from bot.context import BotContext
from bot.i18n import N_, Translator
from bot.services import privacy
from handlers.common import presses
from storage.models import Role


async def show_my_data(update: Update, context: BotContext) -> None:
    """Send a summary and the full record as a JSON file."""
    t = context.t
    message = update.effective_message
    assert message is not None
    if context.member is None:
        await message.reply_text(
            t.gettext(
                "Kehou holds no account for you: you have not joined a school. Apart from your "
                "language choice, nothing about you is stored."
            )
        )
        return
    async with context.db.transaction() as session:
        record = await privacy.export(session, context.member.user_id)
    lines = [t.gettext("This is everything Kehou holds about you and your children."), ""]
    lines.append(t.gettext("Name: {name}").format(name=record.display_name))
    lines.append(t.gettext("School: {school}").format(school=record.school_name))
    lines.append(
        t.gettext("Joined: {date}").format(date=t.datetime(record.created_at, format="short"))
    )
    lines.extend(_account_lines(record, t))
    for child in record.children:
        photos = t.gettext("allowed") if child.photo_consent else t.gettext("not allowed")
        lines.append("")
        lines.append(
            t.gettext("{child}, {class_name}, school number {number}").format(
                child=child.name, class_name=child.class_name, number=child.student_no
            )
        )
        lines.append(
            t.gettext("Consent (version {version}) given {time}; photos: {photos}").format(
                version=child.consent_version,
                time=t.datetime(child.consented_at, format="short"),
                photos=photos,
            )
        )
        lines.extend(_child_lines(child, t))
        lines.append(
            t.ngettext(
                "{count} course record", "{count} course records", len(child.enrolments)
            ).format(count=len(child.enrolments))
            + " · "
            + t.ngettext(
                "{count} attendance record", "{count} attendance records", len(child.attendance)
            ).format(count=len(child.attendance))
            + " · "
            + t.ngettext("{count} leave", "{count} leaves", len(child.leaves)).format(
                count=len(child.leaves)
            )
        )
        if child.rated:
            done = sum(1 for r in child.rated if r["done"])
            lines.append(
                t.ngettext(
                    "Term-end ratings: {done} of {count} course rated. The answers are kept "
                    "without names, so nobody can show them, not even to you.",
                    "Term-end ratings: {done} of {count} courses rated. The answers are kept "
                    "without names, so nobody can show them, not even to you.",
                    len(child.rated),
                ).format(done=done, count=len(child.rated))
            )
        if child.growth_notes:
            lines.append(
                t.ngettext(
                    "{count} teacher's note in the growth record",
                    "{count} teachers' notes in the growth record",
                    len(child.growth_notes),
                ).format(count=len(child.growth_notes))
            )
    lines.extend(_message_lines(record, t))
    lines.append("")
    lines.append(
        t.gettext("The attached file has every record in full. /forget deletes your data.")
    )
    await message.reply_text("\n".join(lines))
    payload = json.dumps(record.as_dict(), ensure_ascii=False, indent=2).encode()
    await message.reply_document(
        document=io.BytesIO(payload),
        filename="kehou-mydata.json",
        caption=t.gettext("Your data in Kehou"),
    )


STATUSES = {
    "enrolled": N_("enrolled"),
    "waitlisted": N_("waitlisted"),
    "withdrawn": N_("withdrawn"),
    "cancelled": N_("course cancelled"),
    "entered": N_("entered for the draw"),
}
# What a message was, and what became of it, in words (the JSON file keeps the codes).
MESSAGE_KINDS = {
    "broadcast": N_("school notice"),
    "broadcast_reping": N_("reminder to confirm a notice"),
    "broadcast_late": N_("question about a late notice"),
    "digest": N_("daily digest"),
    "draw_result": N_("lottery result"),
    "seat_offer": N_("seat offer"),
    "seat_offer_expired": N_("seat offer expired"),
    "seat_offer_extended": N_("seat offer kept longer"),
    "course_cancelled": N_("course cancelled"),
    "small_course": N_("question about a small course"),
}
MESSAGE_STATUSES = {
    "pending": N_("waiting to be sent"),
    "sending": N_("being sent"),
    "sent": N_("sent"),
    "failed": N_("could not be delivered"),
    "blocked": N_("not delivered: the bot was blocked"),
    "cancelled": N_("cancelled before sending"),
    "held": N_("held for the daily digest"),
    "digested": N_("sent in a daily digest"),
}
SHOWN_MESSAGES = 10  # the newest; the file has them all


def _account_lines(record: privacy.GuardianRecord, t: Translator) -> list[str]:
    lines = [
        t.gettext("Telegram chat: {chat_id}").format(chat_id=record.chat_id or "-"),
        t.gettext("Notices: once a day, in the evening digest")
        if record.notice_mode == "digest"
        else t.gettext("Notices: as they come"),
    ]
    if record.last_seen_at is not None:
        lines.append(
            t.gettext("Last seen: {time}").format(
                time=t.datetime(record.last_seen_at, format="short")
            )
        )
    if record.blocked_at is not None:
        lines.append(
            t.gettext("You blocked the bot: {time}").format(
                time=t.datetime(record.blocked_at, format="short")
            )
        )
    return lines


def _child_lines(child: privacy.ChildRecord, t: Translator) -> list[str]:
    lines = []
    for event in child.enrolments:
        lines.append(
            t.gettext("{time}: {course}, {status}").format(
                time=t.datetime(event["at"], format="short"),
                course=event["course"],
                status=t.gettext(STATUSES.get(event["status"], event["status"])),
            )
        )
    for leave in child.leaves:
        text = (
            t.gettext("Leave on {date}, cancelled")
            if leave["cancelled_at"] is not None
            else t.gettext("Leave on {date}")
        ).format(date=t.date(leave["date"]))
        if leave["pickup_at"] is not None:
            pickup = t.time(leave["pickup_at"])
            text += " · " + t.gettext("picked up at {time}").format(time=pickup)
        if leave["reason"]:
            text += " · " + leave["reason"]
        lines.append(text)
    return lines


def _message_lines(record: privacy.GuardianRecord, t: Translator) -> list[str]:
    if not record.messages:
        return []
    count = len(record.messages)
    lines = [
        "",
        t.ngettext(
            "{count} message from Kehou to you:", "{count} messages from Kehou to you:", count
        ).format(count=count),
    ]
    for message in record.messages[-SHOWN_MESSAGES:]:
        kind = MESSAGE_KINDS.get(message["kind"], N_("message"))
        status = MESSAGE_STATUSES.get(message["status"], message["status"])
        lines.append(
            f"{t.datetime(message['at'], format='short')} · {t.gettext(kind)} · "
            f"{t.gettext(status)}"
        )
    return lines


async def ask_forget(update: Update, context: BotContext) -> None:
    """Explain what /forget deletes and ask for confirmation."""
    t = context.t
    message = update.effective_message
    assert message is not None
    if context.member is None:
        await message.reply_text(
            t.gettext("Kehou holds no account for you, so there is nothing to delete.")
        )
        return
    keyboard = InlineKeyboardMarkup(
        [
            [InlineKeyboardButton(t.gettext("Yes, delete my data"), callback_data="forget:yes")],
            [InlineKeyboardButton(t.gettext("No, keep everything"), callback_data="forget:no")],
        ]
    )
    await message.reply_text(
        t.gettext(
            "This unlinks your account from all your children and deletes your own data "
            "(your name, language and consent records). Ratings you gave stay, without your "
            "name. Your children's school records stay with the school. You will stop "
            "receiving messages. To come back you need a new invite code.\n\nDelete now?"
        ),
        reply_markup=keyboard,
    )


async def confirm_forget(update: Update, context: BotContext) -> None:
    """Carry out /forget after the user confirmed."""
    query = update.callback_query
    assert query is not None
    t = context.t
    await query.answer()
    if query.data != "forget:yes":
        await presses.edit_or_send(query, t.gettext("Nothing was deleted."))
        return
    member = context.member  # loaded afresh for this press: the button proves nothing
    if member is None:
        await presses.edit_or_send(
            query, t.gettext("Kehou holds no account for you, so there is nothing to delete.")
        )
        return
    async with context.db.transaction() as session:
        done = await privacy.forget(session, member.telegram_id)
    context.application.drop_user_data(query.from_user.id)
    remaining = member.roles - {Role.PARENT}
    chat_id = update.effective_chat.id  # type: ignore[union-attr]
    summary = t.ngettext(
        "Schools: {schools}. {count} message not yet sent is cancelled.",
        "Schools: {schools}. {count} messages not yet sent are cancelled.",
        done.cancelled,
    ).format(schools=", ".join(done.schools), count=done.cancelled)
    if done.account_deleted:
        try:
            await context.bot.delete_my_commands(scope=BotCommandScopeChat(chat_id))
        except TelegramError:
            pass  # the default menu shows anyway once the chat's own is gone or stale
        text = t.gettext("Your data has been deleted and your account unlinked. Goodbye.")
    else:
        await menus.set_user_menu(context.bot, chat_id, frozenset(remaining), t)
        text = t.gettext(
            "You are unlinked from your children and your guardian data is deleted. "
            "Your staff account stays."
        )
    await presses.edit_or_send(query, f"{text}\n{summary}")


def handlers() -> list[CommandHandler | CallbackQueryHandler]:  # type: ignore[type-arg]
    private = filters.ChatType.PRIVATE
    return [
        CommandHandler("mydata", show_my_data, filters=private),
        CommandHandler("forget", ask_forget, filters=private),
        CallbackQueryHandler(confirm_forget, pattern=r"^forget:(yes|no)$"),
    ]
