"""Onboarding: /start, invite codes, the privacy notice and the guardian's consent."""

from __future__ import annotations

import warnings

from telegram import InlineKeyboardButton, InlineKeyboardMarkup, Update
from telegram.ext import (
    CallbackQueryHandler,
    CommandHandler,
    ConversationHandler,
    MessageHandler,
    filters,
)
from telegram.warnings import PTBUserWarning

from bot import menus
from bot.context import BotContext
from bot.features import LETTER
from bot.i18n import N_, Translator
from bot.services import invites
from bot.services.invites import InvitePreview, Redeemed, Refusal
from handlers.common import intents
from handlers.common.cancel import cancel
from handlers.common.help import show_help
from handlers.common.loader import LOCALE_KEY
from handlers.common.presses import edit_markup, edit_or_send
from handlers.common.text import features, how_to_link, role_names
from storage.models import Role

AWAIT_CODE, CONSENT, PHOTOS = range(3)
PENDING = "pending_invite"  # the invite id being redeemed; never the code itself

REFUSALS = {
    Refusal.THROTTLED: N_(
        "Too many wrong codes. Please wait 15 minutes and try again, or ask the school "
        "for a new code."
    ),
    Refusal.UNKNOWN: N_(
        "That is not a valid invite code. Please check it against the “{letter}” and send it "
        "again."
    ),
    Refusal.EXPIRED: N_("This code has expired. Please ask the school for a new one."),
    Refusal.USED: N_(
        "This code has already been used. Each guardian needs their own code: please ask "
        "the school for one."
    ),
    Refusal.ALREADY_LINKED: N_(
        "Your account is already linked to this child. Send /help to see what you can do."
    ),
}


async def start(update: Update, context: BotContext) -> int:
    """/start, /start <code> from a letter's QR code, /start <command> from a group's pointer."""
    payload = context.args[0] if context.args else None
    if payload == "help":
        await show_help(update, context)
        return ConversationHandler.END
    if payload in menus.PRIVATE_ONLY and context.member is not None:
        # The deep link of a group pointer (handlers/common/groups.py) names what was asked.
        await intents.open_flow(update, context, payload)
        return ConversationHandler.END
    if payload is not None and payload not in menus.PRIVATE_ONLY:
        return await _try_code(update, context, payload)
    t = context.t
    member = context.member
    if member is not None:
        await update.effective_message.reply_text(  # type: ignore[union-attr]
            t.gettext(
                "Welcome back to Kehou. You are linked to {school} as {roles}.\n"
                "Send /help to see what you can do, or send another invite code to link "
                "another child."
            ).format(school=member.school_name, roles=role_names(t, member.roles)),
            reply_markup=intents.next_steps(t, member.roles),
        )
        # A code is welcome at any time (the code-shaped entry point below); waiting for one
        # here would swallow whatever the member types next.
        return ConversationHandler.END
    await update.effective_message.reply_text(  # type: ignore[union-attr]
        t.gettext(
            "Welcome to Kehou (课后), your school's after-school service assistant. "
            "As a parent, you can:"
        )
        + "\n"
        + features(t)
        + "\n\n"
        + how_to_link(t)
        + "\n\n"
        + t.gettext("Teachers and admins: send the code the school office gave you.")
    )
    return AWAIT_CODE


async def receive_code(update: Update, context: BotContext) -> int:
    """A typed invite code."""
    return await _try_code(update, context, update.effective_message.text or "")  # type: ignore[union-attr]


async def _try_code(update: Update, context: BotContext, text: str) -> int:
    t = context.t
    user = update.effective_user
    chat = update.effective_chat
    message = update.effective_message
    assert user is not None and chat is not None and message is not None
    async with context.db.transaction() as session:
        result = await invites.use_code(
            session,
            text,
            telegram_id=user.id,
            chat_id=chat.id,
            display_name=user.full_name,
            locale=context.user_data.get(LOCALE_KEY),  # type: ignore[union-attr]
        )
    if isinstance(result, Refusal):
        await message.reply_text(_refusal(t, result))
        return _after_refusal(context, result)
    if isinstance(result, invites.Joined):
        await menus.set_user_menu(context.bot, chat.id, result.redeemed.roles, context.t)
        await message.reply_text(_welcome(t, result.preview, result.redeemed))
        return ConversationHandler.END
    context.user_data[PENDING] = result.invite_id  # type: ignore[index]
    await message.reply_text(_privacy_notice(t, result), reply_markup=_consent_keyboard(t))
    return CONSENT


def _refusal(t: Translator, refusal: Refusal) -> str:
    return t.gettext(REFUSALS[refusal]).format(letter=t.gettext(LETTER))


def _after_refusal(context: BotContext, refusal: Refusal) -> int:
    """A stranger may try again; a member has other things to do, so stop waiting."""
    if refusal is Refusal.THROTTLED or context.member is not None:
        return ConversationHandler.END
    return AWAIT_CODE


def _privacy_notice(t: Translator, preview: InvitePreview) -> str:
    return t.gettext(
        "This code links your Telegram account to {child} ({class_name}) at {school}.\n\n"
        "Before we link it, please read how Kehou handles your child's information:\n"
        "• We keep only what the after-school service needs: your child's name, class and "
        "school number, the courses chosen, leave and early pick-ups, and the messages the "
        "school sends you.\n"
        "• Only you, your child's other guardians, the teachers of your child's sessions "
        "and the school's after-school admins can see it.\n"
        "• You can see everything we hold with /mydata and delete your account with /forget "
        "at any time.\n"
        "• Taking part in the after-school service is voluntary.\n\n"
        "Do you agree?"
    ).format(child=preview.student_name, class_name=preview.class_name, school=preview.school_name)


def _consent_keyboard(t: Translator) -> InlineKeyboardMarkup:
    return InlineKeyboardMarkup(
        [
            [
                InlineKeyboardButton(t.gettext("I agree"), callback_data="consent:yes"),
                InlineKeyboardButton(t.gettext("I do not agree"), callback_data="consent:no"),
            ]
        ]
    )


async def answer_consent(update: Update, context: BotContext) -> int:
    """The guardian accepts or declines the privacy notice.

    The notice stays in the chat as it was read, only its buttons go: what the guardian agreed
    to remains theirs to scroll back to. The answer and the next question come as new messages.
    """
    query = update.callback_query
    assert query is not None
    await query.answer()
    t = context.t
    chat = update.effective_chat
    assert chat is not None
    await edit_markup(query, None)
    if context.user_data.get(PENDING) is None:  # type: ignore[union-attr]
        await context.bot.send_message(
            chat.id, t.gettext("This step has expired. Send /start to begin again.")
        )
        return ConversationHandler.END
    if query.data != "consent:yes":
        context.user_data.pop(PENDING, None)  # type: ignore[union-attr]
        await context.bot.send_message(
            chat.id,
            t.gettext(
                "You did not agree to the privacy notice above. Nothing was linked and nothing "
                "was stored. If you change your mind, send /start and your code again."
            ),
        )
        return ConversationHandler.END
    keyboard = InlineKeyboardMarkup(
        [
            [InlineKeyboardButton(t.gettext("Yes, photos are fine"), callback_data="photos:yes")],
            [InlineKeyboardButton(t.gettext("No photos of my child"), callback_data="photos:no")],
        ]
    )
    await context.bot.send_message(
        chat.id,
        t.gettext(
            "You agreed to the privacy notice above. One more question: may teachers share "
            "photos in which your child appears with parents? You can change this later with "
            "/photos."
        ),
        reply_markup=keyboard,
    )
    return PHOTOS


async def answer_photos(update: Update, context: BotContext) -> int:
    """The guardian's photo choice; this links the account to the child."""
    query = update.callback_query
    assert query is not None
    await query.answer()
    t = context.t
    invite_id = context.user_data.pop(PENDING, None)  # type: ignore[union-attr]
    if invite_id is None:
        await edit_or_send(query, t.gettext("This step has expired. Send /start to begin again."))
        return ConversationHandler.END
    redeemed = await _redeem(update, context, invite_id, photo_consent=query.data == "photos:yes")
    if isinstance(redeemed, Refusal):
        await edit_or_send(query, _refusal(t, redeemed))
        return ConversationHandler.END
    if query.data == "photos:yes":
        photos = t.gettext("Photos of {child}: allowed.")
    else:
        photos = t.gettext("Photos of {child}: not allowed. Teachers will leave them out.")
    text = "\n".join(
        [
            t.gettext("Done! Your account is now linked to {child}.").format(
                child=redeemed.student_name
            ),
            photos.format(child=redeemed.student_name),
            "",
            t.gettext(
                "Next: choose {child}'s after-school courses, or see their week. To report a "
                "leave or an early pick-up, tap /leave; /help lists everything."
            ).format(child=redeemed.student_name),
        ]
    )
    await edit_or_send(query, text, reply_markup=intents.next_steps(t, redeemed.roles))
    return ConversationHandler.END


async def _redeem(
    update: Update, context: BotContext, invite_id: int, *, photo_consent: bool | None
) -> Redeemed | Refusal:
    user = update.effective_user
    chat = update.effective_chat
    assert user is not None and chat is not None
    async with context.db.transaction() as session:
        result = await invites.redeem(
            session,
            invite_id=invite_id,
            telegram_id=user.id,
            chat_id=chat.id,
            display_name=user.full_name,
            locale=context.user_data.get(LOCALE_KEY),  # type: ignore[union-attr]
            photo_consent=photo_consent,
        )
    if not isinstance(result, Refusal):
        await menus.set_user_menu(context.bot, chat.id, result.roles, context.t)
    return result


def _welcome(t: Translator, preview: InvitePreview, redeemed: Redeemed) -> str:
    if redeemed.role is Role.ADMIN:
        text = t.gettext("Done! You are now an after-school admin of {school}.")
    else:
        text = t.gettext("Done! You are now a teacher at {school}.")
    return (
        text.format(school=preview.school_name)
        + "\n"
        + t.gettext("Send /help to see what you can do.")
    )


def conversation() -> ConversationHandler:  # type: ignore[type-arg]
    """The onboarding conversation, persisted so a restart does not lose a half-done link."""
    private = filters.ChatType.PRIVATE
    code_text = private & filters.TEXT & ~filters.COMMAND
    with warnings.catch_warnings():
        # PTB warns that per_message=False does not track buttons per message. That is the
        # point: consent is asked once per user and chat, and a stale button is re-checked.
        warnings.filterwarnings("ignore", "If 'per_message=False'", PTBUserWarning)
        return _conversation(private, code_text)


def _conversation(
    private: filters.BaseFilter, code_text: filters.BaseFilter
) -> ConversationHandler:  # type: ignore[type-arg]
    return ConversationHandler(
        entry_points=[
            CommandHandler("start", start, filters=private),
            # A code typed without /start first is still welcome.
            MessageHandler(
                code_text & filters.Regex(r"^\s*[0-9A-Za-z]{4}([\s-]?[0-9A-Za-z]{4}){3}\s*$"),
                receive_code,
            ),
        ],
        states={
            AWAIT_CODE: [MessageHandler(code_text, receive_code)],
            CONSENT: [CallbackQueryHandler(answer_consent, pattern=r"^consent:(yes|no)$")],
            PHOTOS: [CallbackQueryHandler(answer_photos, pattern=r"^photos:(yes|no)$")],
        },
        fallbacks=[CommandHandler("cancel", cancel)],
        name="onboarding",
        persistent=True,
        allow_reentry=True,
    )
