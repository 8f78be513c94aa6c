"""The web chat page's own words, translated like the rest of Kehou.

The page (``sandbox/web/``) hard-codes no language: its strings are marked here with ``N_`` so
``pybabel extract`` puts them in the catalogs, and the server embeds both languages into the page
as JSON (see ``sandbox.server``). Placeholders such as ``{name}`` are filled in by the page.
"""

from __future__ import annotations

from bot.i18n import N_, SUPPORTED_LOCALES, I18n, Translator

PAGE_STRINGS: dict[str, str] = {
    # the page and the persona list
    "title": N_("Kehou sandbox"),
    "tagline": N_("Try Kehou without Telegram"),
    "local_note": N_("A local sandbox: nothing here is sent to Telegram."),
    "personas": N_("Personas"),
    "section_private": N_("Private chats"),
    "section_group": N_("Group chats"),
    "language": N_("Language"),
    "loading": N_("Loading…"),
    "no_personas": N_("No personas yet. Start the demo with kehou demo to load the demo school."),
    "personas_error": N_("Could not load the personas. Is the sandbox running?"),
    "retry": N_("Try again"),
    "unread": N_("{count} unread"),
    "back": N_("Back to the personas"),
    # the chat
    "choose_persona": N_("Choose a persona to see their chat with the bot."),
    "messages": N_("Messages"),
    "history_error": N_("Could not load this chat. Please try again."),
    "empty_chat": N_("No messages yet. Send /start to begin."),
    "send_start": N_("Send /start"),
    "private_chat_with": N_("Private chat with {bot}"),
    "group_chat": N_("Group chat"),
    "bot": N_("bot"),
    "typing": N_("typing…"),
    "sending_photo": N_("sending a photo…"),
    "sending_file": N_("sending a file…"),
    "today": N_("Today"),
    "yesterday": N_("Yesterday"),
    "edited": N_("edited"),
    "new_messages": N_("New messages"),
    "reconnecting": N_("Connection to the sandbox lost. Reconnecting…"),
    # message contents
    "photo": N_("Photo"),
    "open_photo": N_("Open the photo"),
    "open_original": N_("Open the original"),
    "album": N_("Album"),
    "album_photo": N_("Photo {number} of {count}"),
    "file": N_("File"),
    "download": N_("Download"),
    "unsupported_message": N_("This kind of message is not shown in the sandbox."),
    "unsupported_button": N_("This kind of button does not work in the sandbox."),
    "service_migrated": N_("The group was upgraded to a supergroup."),
    "service_created": N_("The group was created."),
    "service_joined": N_("{name} joined the group."),
    "service_left": N_("{name} left the group."),
    "service_pinned": N_("{name} pinned a message."),
    "close": N_("Close"),
    "ok": N_("OK"),
    # the composer
    "composer_label": N_("Message to the bot"),
    "composer_placeholder": N_("Write a message…"),
    "composer_hint": N_("Enter sends, Shift+Enter starts a new line."),
    "send": N_("Send"),
    "commands": N_("Commands"),
    "show_keyboard": N_("Show the bot's keyboard"),
    "hide_keyboard": N_("Hide the bot's keyboard"),
    "send_failed": N_("Could not send the message. Please try again."),
    "press_failed": N_("Could not press the button. Please try again."),
    "attach_photos": N_("Attach photos"),
    "photos_chosen": N_("Photos to send: {count} of at most {max}"),
    "remove_photo": N_("Remove this photo"),
    "remove_all": N_("Remove all"),
    "caption_placeholder": N_("Add a caption…"),
    "too_many_photos": N_("At most {max} photos can be sent at once."),
    "not_a_photo": N_("{name} is not a picture (PNG, JPEG, GIF or WebP)."),
    "photo_too_large": N_("{name} is larger than 10 MB, Telegram's limit for a photo."),
    "send_photos_failed": N_("Could not send the photos. Please try again."),
}


def page_strings(t: Translator) -> dict[str, str]:
    """Every page string in one language: key → translated text."""
    return {key: t.gettext(source) for key, source in PAGE_STRINGS.items()}


def all_page_strings(i18n: I18n) -> dict[str, dict[str, str]]:
    """``{"zh_CN": {...}, "en": {...}}``: what `sandbox.server.create_app` hands to the page."""
    return {locale: page_strings(i18n.get(locale)) for locale in SUPPORTED_LOCALES}
