"""The application factory: `kehou run`, `kehou demo` and the tests all build the bot here.

This module is the composition root, the one place in `bot/` that knows about `handlers/`.
"""

from __future__ import annotations

import logging

from telegram.ext import Application, ApplicationBuilder, ContextTypes, PersistenceInput
from telegram.request import BaseRequest

from bot import jobs, menus
from bot.config import Settings
from bot.context import BotContext, KehouApplication, Runtime
from bot.delivery import DeliveryWorker, ReplyRateLimiter, SendBudget
from bot.i18n import I18n
from bot.processor import PerUserUpdateProcessor
from bot.transport import AiohttpRequest
from storage.db import Database
from storage.persistence import SqlPersistence

log = logging.getLogger(__name__)


def build_application(
    settings: Settings,
    *,
    request: BaseRequest | None = None,
    db: Database | None = None,
) -> KehouApplication:
    """Build the bot. Nothing touches the network until the application is initialised."""
    import handlers  # the composition root is the one place bot/ may reach up to handlers/
    from handlers.common.errors import report_error

    db = db or Database(settings.database_url)
    runtime = Runtime(
        settings=settings,
        db=db,
        i18n=I18n(settings.timezone, settings.default_locale),
        budget=SendBudget(settings.send_rate, limited=settings.limits),
    )
    builder = (
        ApplicationBuilder()
        .application_class(KehouApplication, {"runtime": runtime})
        .token(settings.require_token())
        .context_types(ContextTypes(context=BotContext))
        # Kehou keeps nothing in bot_data and uses plain callback data; persist neither.
        .persistence(
            SqlPersistence(db, store_data=PersistenceInput(bot_data=False, callback_data=False))
        )
        .concurrent_updates(PerUserUpdateProcessor())
        # Direct replies and the outbox draw from one budget of Telegram's limits.
        .rate_limiter(ReplyRateLimiter(runtime.budget))
        .post_init(_post_init)
        .post_shutdown(_post_shutdown)
    )
    if settings.bot_base_url and settings.bot_base_file_url:
        builder = builder.base_url(settings.bot_base_url).base_file_url(settings.bot_base_file_url)
    if request is not None:
        builder = builder.request(request).get_updates_request(request)
    else:
        # aiohttp: several times the requests per second of PTB's default httpx transport.
        builder = builder.request(AiohttpRequest(connection_pool_size=256)).get_updates_request(
            AiohttpRequest(connection_pool_size=1)
        )
    application: KehouApplication = builder.build()  # type: ignore[assignment]
    handlers.register(application)
    application.add_error_handler(report_error)  # type: ignore[arg-type]
    return application


async def _post_init(application: Application) -> None:  # type: ignore[type-arg]
    """Runs once the bot is initialised, before it takes updates."""
    assert isinstance(application, KehouApplication)
    runtime = application.runtime
    assert application.job_queue is not None
    jobs.configure_scheduler(application.job_queue)
    await jobs.install_jobs(application, runtime)
    await menus.set_default_menus(application.bot, runtime.i18n)
    if runtime.settings.delivery:
        runtime.worker = DeliveryWorker(runtime.db, application.bot, runtime.i18n, runtime.budget)
        await runtime.worker.start()
    log.info("Kehou is up as @%s", application.bot.username)


async def _post_shutdown(application: Application) -> None:  # type: ignore[type-arg]
    assert isinstance(application, KehouApplication)
    await jobs.flush_seen(application.runtime)
    if application.runtime.worker is not None:
        await application.runtime.worker.stop()
        application.runtime.worker = None
    await application.runtime.db.dispose()
