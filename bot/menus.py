"""The command menu each user sees, by role and language."""

from __future__ import annotations

import logging
from dataclasses import dataclass

from telegram import Bot, BotCommand, BotCommandScopeAllPrivateChats, BotCommandScopeChat
from telegram.error import TelegramError

from bot.i18n import N_, I18n, Translator
from storage.models import Role


@dataclass(frozen=True)
class Command:
    name: str
    description: str  # an untranslated msgid
    roles: frozenset[Role] | None = None  # None: everyone, registered or not

    def visible_to(self, roles: frozenset[Role]) -> bool:
        return self.roles is None or bool(self.roles & roles)


PARENT = frozenset({Role.PARENT})
ADMIN = frozenset({Role.ADMIN})
TEACHER = frozenset({Role.TEACHER})

# Order is the order of the menu. Later features add their commands here.
COMMANDS = (
    Command("start", N_("Start, or enter an invite code")),
    Command("help", N_("What I can do for you")),
    Command("language", N_("Change language")),
    Command("courses", N_("Browse the after-school programme"), PARENT),
    Command("signup", N_("Sign a child up for a course"), PARENT),
    Command("leave", N_("Take a child out of a session, or collect them early"), PARENT),
    Command("withdraw", N_("Take a child out of a course for good"), PARENT),
    Command("schedule", N_("My child's week, history and calendar"), PARENT),
    Command("fees", N_("My child's bill: what is paid and what is still to pay"), PARENT),
    Command("rate", N_("Rate this term's courses, with my child"), PARENT),
    Command("growth", N_("My child's term growth record, as a PDF"), PARENT),
    Command("photos", N_("Whether photos of my child may be shared"), PARENT),
    Command("pickup", N_("Who may collect my child, and going home alone"), PARENT),
    Command("mydata", N_("See everything Kehou holds about you"), PARENT),
    Command("notices", N_("Notices, daily updates and dismissal messages"), PARENT),
    Command("forget", N_("Unlink your account and delete your data"), PARENT),
    Command("attendance", N_("Take the roll of today's sessions"), TEACHER | ADMIN),
    Command("roster", N_("Today's sessions: who is away, who leaves early"), TEACHER),
    Command("dismiss", N_("Dismissal: mark how each child left"), TEACHER),
    Command("update", N_("Post today's update, with photos, to the families"), TEACHER | ADMIN),
    Command("note", N_("Growth notes about a child, for the term's record"), TEACHER),
    Command("hours", N_("Sessions taught this month"), TEACHER | ADMIN),
    Command("ratings", N_("Term-end ratings: results of the courses"), TEACHER | ADMIN),
    Command("growth", N_("Growth records: see them, and release them to the families"), ADMIN),
    Command("fees", N_("Fees: disclose, issue bills, record payments, reports"), ADMIN),
    Command("providers", N_("Outside providers: the term's evaluation, review and export"), ADMIN),
    Command(
        "reports",
        N_("Reports: enrolment, attendance, ratings, 1+N check, files and charts"),
        ADMIN,
    ),
    Command("broadcast", N_("Send a notice to parents, teachers or class groups"), ADMIN),
    Command("broadcasts", N_("Recent notices: delivery, confirmations, cancel"), ADMIN),
    Command("digest", N_("The evening digest: sent and failed; send today's early"), ADMIN),
    Command("cancel", N_("Cancel the current step")),
)

# Commands that deal with one person's data or a private flow: never answered in a group.
PRIVATE_ONLY = tuple(c.name for c in COMMANDS)

log = logging.getLogger(__name__)


def commands_for(roles: frozenset[Role]) -> list[Command]:
    return [c for c in COMMANDS if c.visible_to(roles)]


def bot_commands(roles: frozenset[Role], t: Translator) -> list[BotCommand]:
    return [BotCommand(c.name, t.gettext(c.description)) for c in commands_for(roles)]


async def set_default_menus(bot: Bot, i18n: I18n) -> None:
    """The menu of people with no role yet, in each language Telegram may ask for."""
    scope = BotCommandScopeAllPrivateChats()
    await bot.set_my_commands(bot_commands(frozenset(), i18n.get(None)), scope=scope)
    for locale, translator in ((loc, i18n.get(loc)) for loc in i18n.catalogs):
        language = locale.split("_")[0]
        await bot.set_my_commands(
            bot_commands(frozenset(), translator), scope=scope, language_code=language
        )


async def set_user_menu(bot: Bot, chat_id: int, roles: frozenset[Role], t: Translator) -> None:
    """This chat's own menu, after a role or the language changed."""
    try:
        await bot.set_my_commands(bot_commands(roles, t), scope=BotCommandScopeChat(chat_id))
    except TelegramError:
        # A menu is a convenience: failing to set one must not undo what the user just did.
        log.warning("could not set the command menu for chat %s", chat_id, exc_info=True)
