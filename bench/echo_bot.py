"""The bare echo bot the benchmarks measure Kehou beside: PTB's defaults, one handler.

    ECHO_TOKEN=… ECHO_API_BASE_URL=http://127.0.0.1:PORT python bench/echo_bot.py

Its process imports python-telegram-bot and nothing of Kehou.
"""

from __future__ import annotations

import os

from telegram import Update
from telegram.ext import ApplicationBuilder, ContextTypes, MessageHandler, filters


async def echo(update: Update, context: ContextTypes.DEFAULT_TYPE) -> None:
    assert update.message is not None and update.message.text is not None
    await update.message.reply_text(update.message.text)


def main() -> None:
    url = os.environ["ECHO_API_BASE_URL"]
    application = (
        ApplicationBuilder().token(os.environ["ECHO_TOKEN"]).base_url(f"{url}/bot").build()
    )
    application.add_handler(MessageHandler(filters.TEXT, echo))
    application.run_polling()


if __name__ == "__main__":
    main()
