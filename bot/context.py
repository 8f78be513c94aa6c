"""The typed context every callback gets: database, settings, the user and their language."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from telegram.ext import Application, CallbackContext, ExtBot

from bot.config import Settings
from bot.delivery import answering
from bot.i18n import I18n, Translator
from bot.services.members import Member
from storage.db import Database
from storage.models import Role

if TYPE_CHECKING:
    from bot.delivery import DeliveryWorker, SendBudget


@dataclass
class Runtime:
    """What one running Kehou shares across updates and jobs."""

    settings: Settings
    db: Database
    i18n: I18n
    budget: SendBudget
    worker: DeliveryWorker | None = None  # started after the bot is initialised
    seen: set[int] = field(default_factory=set)  # users to mark as seen (bot.jobs.record_seen)

    def wake_delivery(self) -> None:
        """Outbox rows were just committed: have the worker look now."""
        if self.worker is not None:
            self.worker.wake()


class KehouApplication(Application):  # type: ignore[type-arg]
    """PTB's Application carrying Kehou's runtime, so the context can reach it typed."""

    def __init__(self, *, runtime: Runtime, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.runtime = runtime

    async def process_update(self, update: object) -> None:
        # What the handlers send into the update's own chat are replies: per-chat limits only.
        with answering(update):
            await super().process_update(update)


class BotContext(CallbackContext[ExtBot[None], dict[Any, Any], dict[Any, Any], dict[Any, Any]]):
    """Filled once per update by the loader in handler group -1, read by every feature."""

    def __init__(
        self,
        application: Application,  # type: ignore[type-arg]
        chat_id: int | None = None,
        user_id: int | None = None,
    ) -> None:
        super().__init__(application, chat_id=chat_id, user_id=user_id)
        self.member: Member | None = None
        self._translator: Translator | None = None

    @property
    def runtime(self) -> Runtime:
        return self.application.runtime  # type: ignore[attr-defined,no-any-return]

    @property
    def db(self) -> Database:
        return self.runtime.db

    @property
    def settings(self) -> Settings:
        return self.runtime.settings

    @property
    def t(self) -> Translator:
        """The translator for this update's user (the default locale until one is chosen)."""
        return self._translator or self.runtime.i18n.get(None)

    @t.setter
    def t(self, translator: Translator) -> None:
        self._translator = translator

    @property
    def roles(self) -> frozenset[Role]:
        return self.member.roles if self.member else frozenset()
