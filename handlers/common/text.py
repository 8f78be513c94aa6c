"""Small pieces of text several handlers show."""

from __future__ import annotations

from bot.features import FEATURES, LETTER
from bot.i18n import N_, Translator
from storage.models import Role

ROLE_NAMES = {
    Role.PARENT: N_("parent"),
    Role.TEACHER: N_("teacher"),
    Role.ADMIN: N_("admin"),
}

# Where a parent finds their code: said the same way by /start, /help and every refusal to a
# stranger, so the letter in their hand matches what the bot describes.
HOW_TO_LINK = N_(
    "To link your account, send /start and then the invite code from the “{letter}” the "
    "school gave you. The code is in the framed box on the letter: 16 letters and digits, "
    "like ABCD-EFGH-JKMN-PQRS. Scanning the QR code next to it does the same."
)


def role_names(t: Translator, roles: frozenset[Role]) -> str:
    separator = "、" if t.locale.startswith("zh") else ", "
    return separator.join(t.gettext(ROLE_NAMES[r]) for r in Role if r in roles)


def how_to_link(t: Translator) -> str:
    return t.gettext(HOW_TO_LINK).format(letter=t.gettext(LETTER))


def features(t: Translator) -> str:
    """Today's features for parents, one bullet a line (bot.features)."""
    return "\n".join("• " + t.gettext(feature) for feature in FEATURES)
