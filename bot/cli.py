"""The `kehou` command."""

from __future__ import annotations

import argparse
import asyncio
import datetime as dt
import logging
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING

from bot.config import ConfigError, Settings, configure_logging

if TYPE_CHECKING:
    from telegram.ext import Application

log = logging.getLogger("kehou")


class TokenRejected(Exception):
    """Telegram (or the configured Bot API server) does not accept the bot token."""


def main(argv: Sequence[str] | None = None) -> int:
    parser = _parser()
    args = parser.parse_args(argv)
    try:
        settings = Settings.from_env()
        configure_logging(settings)
        return int(args.func(args, settings) or 0)
    except ConfigError as error:
        print(f"kehou: configuration error: {error}", file=sys.stderr)
        return 2
    except TokenRejected as error:
        print(f"kehou: {error}", file=sys.stderr)
        return 3
    except KeyboardInterrupt:
        return 130


def _rejected_message(settings: Settings) -> str:
    where = (
        f"the Bot API server at {settings.api_base_url} (KEHOU_API_BASE_URL)"
        if settings.api_base_url
        else "Telegram"
    )
    return f"{where} rejected the bot token: check TELEGRAM_BOT_TOKEN with @BotFather" + (
        " and the server address" if settings.api_base_url else ""
    )


def check_token(settings: Settings) -> None:
    """Ask the Bot API who the bot is before anything starts: a rejected token is one line."""
    from telegram import Bot
    from telegram.error import InvalidToken

    bot = Bot(
        settings.require_token(),
        base_url=settings.bot_base_url or "https://api.telegram.org/bot",
        base_file_url=settings.bot_base_file_url or "https://api.telegram.org/file/bot",
    )

    async def ask() -> None:
        async with bot:  # initialize() calls getMe, and shuts the connection down after
            pass

    try:
        asyncio.run(ask())
    except InvalidToken:
        # PTB's message quotes the token; ours never does.
        raise TokenRejected(_rejected_message(settings)) from None


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="kehou", description="Kehou (课后): the after-school service bot for schools."
    )
    sub = parser.add_subparsers(required=True, metavar="COMMAND")

    run = sub.add_parser("run", help="run the bot (polling, or a webhook when configured)")
    run.add_argument("--no-migrate", action="store_true", help="do not upgrade the database first")
    run.set_defaults(func=_run)

    demo = sub.add_parser(
        "demo",
        help="try Kehou in a browser: the demo school, the bot and a local Telegram sandbox",
    )
    demo.add_argument("--host", default="127.0.0.1")
    demo.add_argument("--port", type=int, default=8765)
    demo.add_argument(
        "--database", type=Path, default=Path("kehou-demo.sqlite3"), help="recreated every start"
    )
    demo.add_argument(
        "--students",
        type=int,
        metavar="N",
        help="a generated school of N students (classes of 40-50, guardians, sign-ups) "
        "instead of the demo school; 10,000 take about two and a half minutes to prepare",
    )
    demo.set_defaults(func=_demo)

    deliver = sub.add_parser(
        "deliver", help="run only an outbox delivery worker (more senders on PostgreSQL)"
    )
    deliver.set_defaults(func=_deliver)

    migrate = sub.add_parser("migrate", help="upgrade the database schema")
    migrate.add_argument("--revision", default="head")
    migrate.set_defaults(func=_migrate)

    load = sub.add_parser("import", help="import or update a school from a YAML file")
    load.add_argument("file", type=Path)
    load.set_defaults(func=_import)

    invite = sub.add_parser("invite", help="issue invite codes")
    invite.add_argument("role", choices=["admin", "teachers", "parents"])
    invite.add_argument("--school", required=True, help="the school's code from the import file")
    invite.add_argument("--out", type=Path, default=Path("invites"), help="folder for files")
    invite.add_argument(
        "--class", dest="classes", action="append", help="a class code (repeatable; default all)"
    )
    invite.add_argument("--guardians", type=int, default=1, help="codes per child (default 1)")
    invite.add_argument("--label", help="who an admin code is for, kept in the audit log")
    invite.set_defaults(func=_invite)

    export = sub.add_parser(
        "export", help="export the district report: every school's courses (docs/REPORTS.md)"
    )
    export.add_argument(
        "--district", type=Path, required=True, metavar="OUT", help="an .xlsx or .csv file"
    )
    export.add_argument("--term", help="the term's name (default: each school's current term)")
    export.set_defaults(func=_export)
    return parser


def _export(args: argparse.Namespace, settings: Settings) -> int:
    """Every school's enrolment, attendance, ratings (shown only) and 1+N figures in one file."""
    from bot.i18n import I18n
    from bot.services import reports, sheets
    from storage.db import Database

    suffix = args.district.suffix.lower()
    if suffix not in (".xlsx", ".csv"):
        print("kehou: --district must name an .xlsx or .csv file", file=sys.stderr)
        return 2
    t = I18n(settings.timezone, settings.default_locale).get(settings.default_locale)

    async def go() -> tuple[list[list[sheets.Cell]], list[list[sheets.Cell]], list[str]]:
        db = Database(settings.database_url)
        try:
            today = dt.datetime.now(settings.timezone).date()
            return await reports.district(db, t, args.term, today)
        finally:
            await db.dispose()

    schools, courses, missing = asyncio.run(go())
    school_header, course_header = reports.district_headers(t)
    if suffix == ".csv":  # one table: the courses, each line naming its school
        data = sheets.write_csv(course_header, courses)
    else:
        data = sheets.write_xlsx(
            [
                sheets.Sheet(t.gettext("Schools"), school_header, schools),
                sheets.Sheet(t.gettext("Courses"), course_header, courses),
            ]
        )
    args.district.write_bytes(data)
    print(f"{len(schools)} schools, {len(courses)} courses written to {args.district}")
    if missing:
        print(f"no such term at: {', '.join(missing)}", file=sys.stderr)
    return 0


def _run(args: argparse.Namespace, settings: Settings) -> int:
    from telegram.error import InvalidToken

    from bot.app import build_application
    from storage.migrate import upgrade

    check_token(settings)
    if not args.no_migrate:
        upgrade(settings.database_url)
    application = build_application(settings)
    serve_web_pages(application, settings)
    try:
        _serve(application, settings)
    except InvalidToken:  # revoked since the check: PTB has logged it, redacted
        raise TokenRejected(_rejected_message(settings)) from None
    return 0


def serve_web_pages(application: Application, settings: Settings) -> None:  # type: ignore[type-arg]
    """Serve the public disclosure page (bot.web) next to the bot, from start-up to shutdown:
    on KEHOU_WEB_HOST:KEHOU_WEB_PORT, not at all when the port is 0."""
    if not settings.web_port:
        return
    from aiohttp import web

    from bot import web as pages
    from bot.context import KehouApplication

    first_init, first_shutdown = application.post_init, application.post_shutdown
    runners: list[web.AppRunner] = []

    async def post_init(app: Application) -> None:  # type: ignore[type-arg]
        if first_init is not None:
            await first_init(app)
        assert isinstance(app, KehouApplication)
        runner = await pages.start(settings, app.runtime.db, app.runtime.i18n)
        if runner is not None:
            runners.append(runner)

    async def post_shutdown(app: Application) -> None:  # type: ignore[type-arg]
        while runners:  # before the bot's own shutdown closes the database
            await runners.pop().cleanup()
        if first_shutdown is not None:
            await first_shutdown(app)

    application.post_init = post_init
    application.post_shutdown = post_shutdown


def _serve(application: Application, settings: Settings) -> None:  # type: ignore[type-arg]
    from telegram import Update

    if settings.webhook_url and settings.webhook_secret:
        application.run_webhook(
            listen=settings.listen_host,
            port=settings.listen_port,
            webhook_url=settings.webhook_url,
            secret_token=settings.webhook_secret.get(),
            allowed_updates=Update.ALL_TYPES,
        )
    else:
        application.run_polling(allowed_updates=Update.ALL_TYPES)


def _demo(args: argparse.Namespace, settings: Settings) -> int:
    if args.students is not None:
        from bot.demo import live

        live.run(args.database, args.host, args.port, args.students)
        return 0
    from sandbox import demo

    demo.run(args.database, args.host, args.port)
    return 0


def _deliver(args: argparse.Namespace, settings: Settings) -> int:
    from bot import delivery

    check_token(settings)
    asyncio.run(delivery.serve(settings))
    return 0


def _migrate(args: argparse.Namespace, settings: Settings) -> int:
    from storage.migrate import upgrade

    upgrade(settings.database_url, args.revision)
    print(f"database is at {args.revision}")
    return 0


def _import(args: argparse.Namespace, settings: Settings) -> int:
    from bot.services.importer import ImportValidationError, import_school
    from storage.db import Database
    from storage.migrate import upgrade

    upgrade(settings.database_url)

    async def go() -> int:
        db = Database(settings.database_url)
        try:
            report = await import_school(db, args.file)
        except ImportValidationError as error:
            print(f"kehou: {args.file} was not imported:\n{error}", file=sys.stderr)
            return 1
        finally:
            await db.dispose()
        print(report.summary())
        return 0

    return asyncio.run(go())


def _invite(args: argparse.Namespace, settings: Settings) -> int:
    from storage.migrate import upgrade

    upgrade(settings.database_url)
    return asyncio.run(_invite_async(args, settings))


async def _invite_async(args: argparse.Namespace, settings: Settings) -> int:
    from sqlalchemy import select

    from bot.i18n import I18n
    from bot.services import invites, letters, qr
    from bot.web import disclosure_url
    from storage.db import Database
    from storage.models import Role, School, Teacher

    ttl = dt.timedelta(days=settings.invite_ttl_days)
    db = Database(settings.database_url)
    try:
        async with db.transaction() as session:
            school = await session.scalar(select(School).where(School.code == args.school))
            if school is None:
                print(
                    f"kehou: no school with code {args.school!r}; import it first", file=sys.stderr
                )
                return 1
            args.out.mkdir(parents=True, exist_ok=True)
            if args.role == "admin":
                code = await invites.create_invite(
                    session,
                    school_id=school.id,
                    role=Role.ADMIN,
                    ttl=ttl,
                    label=args.label,
                    actor_label="cli",
                )
                print(f"Admin invite for {school.name}: {invites.pretty(code)}")
                print(f"Send it to the bot as: /start {code}")
                link = qr.deep_link(settings.bot_username, code)
                if link:
                    image = args.out / "admin-invite.png"
                    image.write_bytes(qr.qr_png(link))
                    print(f"or open {link} (QR code: {image})")
                return 0
            if args.role == "teachers":
                teachers = await session.scalars(
                    select(Teacher)
                    .where(Teacher.school_id == school.id, Teacher.user_id.is_(None))
                    .order_by(Teacher.code)
                )
                rows = []
                for teacher in teachers:
                    code = await invites.create_invite(
                        session,
                        school_id=school.id,
                        role=Role.TEACHER,
                        teacher_id=teacher.id,
                        ttl=ttl,
                        actor_label="cli",
                    )
                    rows.append((teacher.code, teacher.name, code))
                path = args.out / "teachers.csv"
                letters.write_teacher_csv(rows, path, bot_username=settings.bot_username)
                print(f"{len(rows)} teacher codes written to {path}")
                return 0
            invitations = await letters.issue_parent_invitations(
                session,
                school_id=school.id,
                class_codes=args.classes,
                ttl=ttl,
                bot_username=settings.bot_username,
                guardians_per_child=args.guardians,
            )
            translator = I18n(settings.timezone, settings.default_locale).get(
                school.default_locale
            )
            by_class: dict[str, list[letters.ParentInvitation]] = {}
            for invitation in invitations:
                by_class.setdefault(invitation.class_code, []).append(invitation)
            for class_code, group in by_class.items():
                letters.write_csv(group, args.out / f"parents-{class_code}.csv")
                pdf = letters.render_letters_pdf(
                    group,
                    school_name=school.name,
                    translator=translator,
                    disclosure_url=disclosure_url(settings, school.code),
                )
                (args.out / f"letters-{class_code}.pdf").write_bytes(pdf)
            count, classes = len(invitations), len(by_class)
            print(f"{count} parent codes for {classes} classes written to {args.out}")
            return 0
    except ValueError as error:
        print(f"kehou: {error}", file=sys.stderr)
        return 1
    finally:
        await db.dispose()


if __name__ == "__main__":
    sys.exit(main())
