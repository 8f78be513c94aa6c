"""Every handler of Kehou, registered in one place, in order."""

from __future__ import annotations

from telegram import Update
from telegram.ext import (
    Application,
    CallbackQueryHandler,
    CommandHandler,
    MessageHandler,
    TypeHandler,
    filters,
)

from storage.persistence import persist_now

# Handler groups run in ascending order; within a group the first matching handler wins.
#  -1  the loader: every update gets its user, roles and translator before any feature runs;
#      a parent command from someone linked to no child is answered there and goes no further.
#   0  features. Group redirects come first, so a personal command typed in a class group is
#      never answered in front of the group; the onboarding conversation comes before the
#      plain commands, so /start and a typed code reach it.
#      Last in group 0 come the fallbacks (stale buttons, /cancel with nothing to cancel):
#      only one handler per group runs, so they answer exactly the updates no feature took.
# 100  write-through of conversation state and user data, after every feature has run.
#  -2  before anything else: presses that start slow work (a sign-up in a rush) are
#      acknowledged at once, so the button stops spinning while the work queues.
EARLY, LOADER, FEATURES, PERSIST = -2, -1, 0, 100


def register(application: Application) -> None:  # type: ignore[type-arg]
    # Imported here, not at the top: a module outside `handlers` may use a shared piece such as
    # `handlers.common.keyboards`, and importing this package must not pull in every feature
    # (which import those modules back).
    from handlers.admin import broadcast, late
    from handlers.admin import courses as admin_courses
    from handlers.admin import digest as admin_digest
    from handlers.admin import fees as admin_fees
    from handlers.admin import groups as admin_groups
    from handlers.admin import providers as admin_providers
    from handlers.admin import ratings as admin_ratings
    from handlers.admin import reports as admin_reports
    from handlers.common import cancel, groups, help, intents, language, loader, privacy, start
    from handlers.parent import absence, courses, leave, notices, photos, pickup, rate, schedule
    from handlers.parent import growth as growth_record
    from handlers.teacher import attendance, dismissal, hours, note, roster
    from handlers.teacher import update as daily_update

    application.add_handler(
        CallbackQueryHandler(courses.acknowledge_sign_up, pattern=r"^cs:y:"), group=EARLY
    )
    application.add_handler(TypeHandler(Update, loader.load_member), group=LOADER)

    application.add_handlers(groups.handlers(), group=FEATURES)
    application.add_handler(start.conversation(), group=FEATURES)
    application.add_handler(
        CommandHandler("help", help.show_help, filters=filters.ChatType.PRIVATE), group=FEATURES
    )
    application.add_handlers(language.handlers(), group=FEATURES)
    application.add_handlers(privacy.handlers(), group=FEATURES)
    application.add_handlers(photos.handlers(), group=FEATURES)
    application.add_handlers(notices.handlers(), group=FEATURES)
    application.add_handlers(courses.handlers(), group=FEATURES)
    application.add_handlers(schedule.handlers(), group=FEATURES)
    application.add_handlers(admin_fees.handlers(), group=FEATURES)
    application.add_handlers(admin_providers.handlers(), group=FEATURES)
    application.add_handlers(admin_reports.handlers(), group=FEATURES)
    application.add_handlers(rate.handlers(), group=FEATURES)
    application.add_handlers(admin_ratings.handlers(), group=FEATURES)
    application.add_handlers(leave.handlers(), group=FEATURES)
    application.add_handlers(absence.handlers(), group=FEATURES)
    application.add_handlers(pickup.handlers(), group=FEATURES)
    application.add_handlers(roster.handlers(), group=FEATURES)
    application.add_handlers(attendance.handlers(), group=FEATURES)
    application.add_handlers(dismissal.handlers(), group=FEATURES)
    application.add_handlers(daily_update.handlers(), group=FEATURES)
    application.add_handlers(note.handlers(), group=FEATURES)
    application.add_handlers(growth_record.handlers(), group=FEATURES)
    application.add_handlers(hours.handlers(), group=FEATURES)
    application.add_handlers(admin_groups.handlers(), group=FEATURES)
    application.add_handlers(admin_digest.handlers(), group=FEATURES)
    application.add_handlers(broadcast.handlers(), group=FEATURES)
    application.add_handlers(admin_courses.handlers(), group=FEATURES)
    application.add_handlers(late.handlers(), group=FEATURES)
    # Next-step buttons (go:<command>), after the features: a flow that lists its own go:
    # press among its entry points takes it first.
    application.add_handlers(intents.handlers(), group=FEATURES)

    application.add_handler(
        CommandHandler("cancel", cancel.nothing_to_cancel, filters=filters.ChatType.PRIVATE),
        group=FEATURES,
    )
    application.add_handler(CallbackQueryHandler(cancel.stale_button), group=FEATURES)
    application.add_handler(
        MessageHandler(
            filters.ChatType.PRIVATE & (filters.TEXT | filters.COMMAND), help.not_understood
        ),
        group=FEATURES,
    )

    application.add_handler(TypeHandler(Update, persist_now), group=PERSIST)
