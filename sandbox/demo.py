"""`kehou demo`: the demo school, its people and the bot, running against the local sandbox.

Everything runs in one process: the sandbox (a Bot API-compatible server with a web chat
page) and the real Kehou bot polling it, over a fresh demo database. No Telegram account, no
token and no network are needed.
"""

from __future__ import annotations

import asyncio
import contextlib
import datetime as dt
import logging
import signal
import socket
from dataclasses import dataclass
from pathlib import Path
from zoneinfo import ZoneInfo

from aiohttp import web
from sqlalchemy import select, update
from sqlalchemy.ext.asyncio import AsyncSession
from telegram import Update

from bot.app import build_application
from bot.config import Secret, Settings
from bot.context import KehouApplication
from bot.i18n import N_, I18n
from bot.services import invites
from bot.services.importer import import_school
from bot.services.invites import InvitePreview, Redeemed
from sandbox.page_i18n import all_page_strings
from sandbox.server import Sandbox, create_app
from storage.db import Database
from storage.migrate import upgrade_async
from storage.models import Role, SchoolClass, Student, Teacher, Term

log = logging.getLogger(__name__)

DEMO_SCHOOL = Path(__file__).resolve().parent.parent / "bot" / "demo" / "school.yaml"
DEMO_TOKEN = "123456789:KEHOU-DEMO-SANDBOX-TOKEN"
BOT_USERNAME = "kehou_demo_bot"
GROUP_CLASS = "3-2"
GROUP_CHAT_ID = -1000000032
GROUP_TITLE = "三年级2班家长群"  # a chat's title is whatever its members named it
NEW_PARENT_ID = 900100
NEW_PARENT_NAME = "尹铭家长"
NEW_PARENT_CHILD = "202410203"


@dataclass(frozen=True)
class Persona:
    key: str
    user_id: int
    name: str  # a person's name reads the same in every language
    description: str  # an untranslated msgid, formatted with `child` and `class_name`
    language_code: str  # what the Telegram client reports
    role: Role
    student_no: str | None = None
    teacher_code: str | None = None


# The people of the demo. Students and teachers are looked up in the demo school by their
# numbers and codes, so the personas follow the imported data.
PERSONAS = (
    Persona("admin", 900001, "刘主任", N_("After-school admin"), "zh-hans", Role.ADMIN),
    Persona(
        "teacher",
        900002,
        "吴丽萍",
        N_("Teacher, head of {class_name}"),
        "zh-hans",
        Role.TEACHER,
        teacher_code="T08",
    ),
    Persona(
        "parent-zhang",
        900003,
        "张琪妈妈",
        N_("Parent of {child}, {class_name}"),
        "zh-hans",
        Role.PARENT,
        student_no="202410201",
    ),
    Persona(
        "parent-zhang-dad",
        900004,
        "张琪爸爸",
        N_("Second guardian of {child}, {class_name}"),
        "zh-hans",
        Role.PARENT,
        student_no="202410201",
    ),
    Persona(
        "parent-en",
        900005,
        "Anna",
        N_("Parent of {child}, {class_name} (uses English)"),
        "en",
        Role.PARENT,
        student_no="202410202",
    ),
)
NEW_PARENT = N_("New parent of {child}, not linked yet · invite code {code}")
GROUP = N_("Class parents' group of {class_name} (you speak as {name})")


@dataclass
class DemoWorld:
    """What the demo set up: the sandbox, the bot's settings and a code to try by hand."""

    sandbox: Sandbox
    settings: Settings
    new_parent_code: str
    new_parent_child: str


async def prepare(database_url: str, sandbox_url: str) -> DemoWorld:
    """Load the demo school into an empty database and enrol the personas."""
    await upgrade_async(database_url)
    db = Database(database_url)
    try:
        report = await import_school(db, DEMO_SCHOOL, actor_label="demo")
        async with db.transaction() as session:
            facts = {p.key: await _enrol(session, report.school_id, p) for p in PERSONAS}
            await session.execute(
                update(SchoolClass)
                .where(SchoolClass.school_id == report.school_id, SchoolClass.code == GROUP_CLASS)
                .values(group_chat_id=GROUP_CHAT_ID)
            )
            # Whenever the demo runs, it is term time and enrolment is open, so sign-up,
            # leaves and the timetable can be tried.
            now = dt.datetime.now(dt.UTC)
            term = (
                await session.scalars(select(Term).where(Term.school_id == report.school_id))
            ).one()
            term.starts_on = min(term.starts_on, now.date() - dt.timedelta(days=30))
            term.ends_on = max(term.ends_on, now.date() + dt.timedelta(days=90))
            term.enrolment_opens_at = now - dt.timedelta(days=1)
            term.enrolment_closes_at = now + dt.timedelta(days=14)
            child_id, child, class_name = await _student(
                session, report.school_id, NEW_PARENT_CHILD
            )
            code = await invites.create_invite(
                session,
                school_id=report.school_id,
                role=Role.PARENT,
                student_id=child_id,
                ttl=dt.timedelta(days=30),
                actor_label="demo",
            )
    finally:
        await db.dispose()

    sandbox = Sandbox(DEMO_TOKEN, bot_username=BOT_USERNAME)
    i18n = I18n(ZoneInfo("Asia/Shanghai"))
    translators = [i18n.get(locale) for locale in i18n.catalogs]

    def say(msgid: str, **values: str) -> dict[str, str]:
        return {t.locale: t.gettext(msgid).format(**values) for t in translators}

    for persona in PERSONAS:
        sandbox.add_user(persona.user_id, persona.name, language_code=persona.language_code)
        sandbox.add_persona(
            persona.key,
            kind="private",
            chat_id=persona.user_id,
            user_id=persona.user_id,
            label=persona.name,
            description=say(persona.description, **facts[persona.key]),
            language="en" if persona.language_code == "en" else "zh_CN",
        )
    sandbox.add_user(NEW_PARENT_ID, NEW_PARENT_NAME, language_code="zh-hans")
    sandbox.add_persona(
        "new-parent",
        kind="private",
        chat_id=NEW_PARENT_ID,
        user_id=NEW_PARENT_ID,
        label=NEW_PARENT_NAME,
        description=say(NEW_PARENT, child=child, code=invites.pretty(code)),
    )
    members = [p.user_id for p in PERSONAS if p.student_no or p.teacher_code]
    sandbox.add_group(GROUP_CHAT_ID, GROUP_TITLE, members)
    sandbox.add_persona(
        "class-group",
        kind="group",
        chat_id=GROUP_CHAT_ID,
        user_id=PERSONAS[2].user_id,
        label=GROUP_TITLE,
        description=say(GROUP, class_name=class_name, name=PERSONAS[2].name),
    )
    settings = Settings(
        token=Secret(DEMO_TOKEN),
        database_url=database_url,
        api_base_url=sandbox_url,
        bot_username=BOT_USERNAME,
    )
    return DemoWorld(sandbox, settings, code, child)


async def _student(session: AsyncSession, school_id: int, number: str) -> tuple[int, str, str]:
    row = (
        await session.execute(
            select(Student.id, Student.name, SchoolClass.name)
            .join(SchoolClass, SchoolClass.id == Student.class_id)
            .where(Student.school_id == school_id, Student.student_no == number)
        )
    ).one()
    return row[0], row[1], row[2]


async def _enrol(session: AsyncSession, school_id: int, persona: Persona) -> dict[str, str]:
    """Issue the persona's invite and redeem it, as the person would have with a letter.

    Returns the facts its description mentions (child, class name).
    """
    facts = {"child": "", "class_name": ""}
    student_id = teacher_id = None
    if persona.student_no:
        student_id, facts["child"], facts["class_name"] = await _student(
            session, school_id, persona.student_no
        )
    if persona.teacher_code:
        teacher_id = await session.scalar(
            select(Teacher.id).where(
                Teacher.school_id == school_id, Teacher.code == persona.teacher_code
            )
        )
        facts["class_name"] = (
            await session.scalar(
                select(SchoolClass.name).where(SchoolClass.head_teacher_id == teacher_id)
            )
            or ""
        )
    code = await invites.create_invite(
        session,
        school_id=school_id,
        role=persona.role,
        student_id=student_id,
        teacher_id=teacher_id,
        ttl=dt.timedelta(days=1),
        actor_label="demo",
    )
    preview = await invites.inspect(session, persona.user_id, code)
    assert isinstance(preview, InvitePreview), preview
    redeemed = await invites.redeem(
        session,
        invite_id=preview.invite_id,
        telegram_id=persona.user_id,
        chat_id=persona.user_id,
        display_name=persona.name,
        locale="en" if persona.language_code == "en" else None,
        photo_consent=True if persona.role is Role.PARENT else None,
    )
    assert isinstance(redeemed, Redeemed), redeemed
    return facts


@contextlib.asynccontextmanager
async def running(world: DemoWorld, host: str, port: int):  # type: ignore[no-untyped-def]
    """The sandbox serving on host:port and the bot polling it, until the block ends."""
    strings = all_page_strings(I18n(world.settings.timezone))
    runner = web.AppRunner(create_app(world.sandbox, page_strings=strings), access_log=None)
    await runner.setup()
    site = web.TCPSite(runner, host, port)
    await site.start()
    application: KehouApplication | None = None
    try:
        application = build_application(world.settings)
        await application.initialize()
        if application.post_init:
            await application.post_init(application)
        assert application.updater is not None
        await application.updater.start_polling(
            poll_interval=0, timeout=10, allowed_updates=Update.ALL_TYPES
        )
        await application.start()
        yield application
    finally:
        if application is not None:
            if application.updater is not None and application.updater.running:
                await application.updater.stop()
            if application.running:
                await application.stop()
            await application.shutdown()
            if application.post_shutdown:
                await application.post_shutdown(application)
        await runner.cleanup()


def run(database: Path, host: str, port: int) -> None:
    """`kehou demo`: a fresh demo database, served until Ctrl-C."""
    try:
        with socket.create_server((host, port)):
            pass
    except OSError as exc:
        raise SystemExit(
            f"kehou demo: cannot listen on {host}:{port} ({exc.strerror}); "
            "is another demo running? Choose another port with --port."
        ) from None
    for suffix in ("", "-wal", "-shm"):
        Path(f"{database}{suffix}").unlink(missing_ok=True)
    asyncio.run(_serve(database, host, port))


async def _serve(database: Path, host: str, port: int) -> None:
    url = f"http://{host}:{port}"
    world = await prepare(f"sqlite+aiosqlite:///{database}", url)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGINT, signal.SIGTERM):
        with contextlib.suppress(NotImplementedError):  # signal handlers are POSIX-only
            loop.add_signal_handler(signum, stop.set)
    async with running(world, host, port):
        print(
            "\nKehou demo is running. Open this in your browser:\n\n"
            f"    {url}/\n\n"
            "Pick a person on the left: parents, a teacher, the admin or a class group.\n"
            f"Try the new parent with invite code {invites.pretty(world.new_parent_code)}.\n"
            "Press Ctrl-C to stop.\n",
            flush=True,
        )
        await stop.wait()
    print("Kehou demo stopped.", flush=True)
