"""Small pieces of text several handlers show."""

from __future__ import annotations

from bot.i18n import N_, Translator
from storage.models import Role

ROLE_NAMES = {
    Role.PARENT: N_("parent"),
    Role.TEACHER: N_("teacher"),
    Role.ADMIN: N_("admin"),
}


def role_names(t: Translator, roles: frozenset[Role]) -> str:
    separator = "、" if t.locale.startswith("zh") else ", "
    return separator.join(t.gettext(ROLE_NAMES[r]) for r in Role if r in roles)
