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
from bot.demo import big, day
from bot.i18n import N_, I18n
from bot.services import broadcasts, catalogue, enrolment, invites
from bot.services.broadcasts import Audience, AudienceKind
from bot.services.enrolment import SignedUp
from bot.services.importer import import_school
from bot.services.invites import InvitePreview, Redeemed
from bot.web import add_routes, disclosure_url
from sandbox.page_i18n import all_page_strings
from sandbox.server import Sandbox, create_app
from storage.db import Database
from storage.migrate import upgrade_async
from storage.models import (
    CalendarKind,
    Course,
    EnrolmentActor,
    Guardianship,
    Role,
    School,
    SchoolClass,
    Student,
    Teacher,
    User,
)

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
    scene: Scene | None = None  # what `set_the_scene` arranged (`kehou demo` only)
    school_code: str | None = None  # its public page: /schools/<code> on the sandbox


async def prepare(
    database_url: str, sandbox_url: str, now: dt.datetime | None = None
) -> DemoWorld:
    """Load the demo school into an empty database, enrol the personas and set the scene for
    `now` (the clock, by default): see `set_the_scene`."""
    now = now or dt.datetime.now(dt.UTC)
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
            school_code = await session.scalar(
                select(School.code).where(School.id == report.school_id)
            )
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
        scene = await set_the_scene(db, report.school_id, now)
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
        # The sandbox serves the disclosure page too (`running`), so the bot's links work.
        public_url=sandbox_url,
        web_port=0,
    )
    return DemoWorld(sandbox, settings, code, child, scene, school_code)


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


# The scene `kehou demo` sets for the hour it starts (docs/SANDBOX.md, "What the demo shows").
SOON = dt.timedelta(minutes=15)  # the teacher's session starts 15-20 minutes from now
LENGTH = dt.timedelta(hours=1)
LATEST_START = dt.time(23, 25)  # a later start (after 23:10) is under way already instead
DAY_END = dt.time(23, 59)
UNDER_WAY = dt.timedelta(minutes=30)  # how long it has run, late in the evening
FULL_COURSE = "ART-CLAY"  # 陶艺, grades 3-6: the personas' children see it full
WAITING = 2  # children on its waitlist
NOTICE_AT = dt.time(8, 0)  # the scheduled notice goes out tomorrow morning, local time
NOTICE_TEXT = (
    "【通知】今天下午课后服务照常进行。天气转凉，请给孩子带好外套和水杯。"
    "需要请假或提前接的，请在机器人中发送 /leave。"
)


@dataclass(frozen=True)
class Scene:
    """What `set_the_scene` arranged, for tests and the start-up message."""

    today: dt.date  # the school's date
    teacher_course_id: int
    starts_at: dt.time
    ends_at: dt.time
    full_course_id: int
    broadcast_id: int
    scheduled_for: dt.datetime


def session_window(local_now: dt.datetime) -> tuple[dt.time, dt.time]:
    """When the demo teacher's session runs today (school time): it starts 15-20 minutes
    after `local_now` and lasts an hour, ending by 23:59; after 23:10 there is no room left
    before midnight, so today's session is under way already, and ends at 23:59."""
    start = local_now.replace(second=0, microsecond=0)
    if start < local_now:
        start += dt.timedelta(minutes=1)
    start += SOON
    start += dt.timedelta(minutes=-start.minute % 5)
    if start.date() == local_now.date() and start.time() <= LATEST_START:
        end = start + LENGTH
        if end.date() != start.date():
            return start.time(), DAY_END
        return start.time(), min(end.time(), DAY_END)
    begun = local_now.replace(
        minute=local_now.minute - local_now.minute % 5, second=0, microsecond=0
    )
    return (begun - UNDER_WAY).time(), DAY_END


async def set_the_scene(db: Database, school_id: int, now: dt.datetime) -> Scene:
    """Make every role have something to do at `now`, whatever the weekday and hour.

    It is term time with enrolment open, and today has after-school sessions (a weekend or
    holiday runs Wednesday's timetable, as a swapped working day does); the teacher's own
    course starts in 15-20 minutes with their class enrolled in it; one course is full with a
    waitlist; and a notice to the class waits to go out tomorrow morning.
    """
    await big.open_for_today(db, school_id, now, weekday_today=True)
    teacher = next(p for p in PERSONAS if p.teacher_code)
    admin = next(p for p in PERSONAS if p.role is Role.ADMIN)
    personas_children = {p.student_no for p in PERSONAS if p.student_no} | {NEW_PARENT_CHILD}
    async with db.transaction() as session:
        zone = ZoneInfo(
            await session.scalar(select(School.timezone).where(School.id == school_id))
            or "Asia/Shanghai"
        )
        local_now = now.astimezone(zone)
        today = local_now.date()
        found = await catalogue.of(session, school_id)
        term = found.current_term(today)
        assert term is not None
        special = term.day(today)
        swapped = special is not None and special.kind is CalendarKind.WORKDAY
        weekday = (special.runs_weekday if swapped and special else None) or today.isoweekday()
        teacher_id, klass_id = (
            await session.execute(
                select(Teacher.id, SchoolClass.id)
                .join(SchoolClass, SchoolClass.head_teacher_id == Teacher.id)
                .where(Teacher.school_id == school_id, Teacher.code == teacher.teacher_code)
            )
        ).one()
        course = (
            await session.scalars(
                select(Course)
                .where(
                    Course.teacher_id == teacher_id,
                    Course.term_id == term.id,
                    Course.cancelled_at.is_(None),
                )
                .order_by(Course.period, Course.starts_at, Course.id)
            )
        ).first()
        assert course is not None, "the demo teacher teaches no course"
        course.starts_at, course.ends_at = session_window(local_now)
        course.weekdays |= 1 << (weekday - 1)
        class_children = list(
            await session.scalars(
                select(Student.id)
                .where(
                    Student.class_id == klass_id,
                    Student.active,
                    Student.student_no.not_in(personas_children),
                )
                .order_by(Student.student_no)
            )
        )
        full = (
            await session.scalars(
                select(Course).where(Course.term_id == term.id, Course.code == FULL_COURSE)
            )
        ).one()
        assert full.capacity is not None
        others = list(
            await session.scalars(
                select(Student.id)
                .join(SchoolClass, SchoolClass.id == Student.class_id)
                .where(
                    Student.school_id == school_id,
                    Student.active,
                    SchoolClass.id != klass_id,
                    SchoolClass.grade.between(full.grade_min, full.grade_max),
                )
                .order_by(SchoolClass.grade.desc(), SchoolClass.code, Student.student_no)
                .limit(full.capacity + WAITING)
            )
        )
        teacher_course = (course.id, course.starts_at, course.ends_at)
        teacher_period = course.period
        full_id = full.id
        admin_user = await session.scalar(select(User.id).where(User.telegram_id == admin.user_id))
        assert admin_user is not None
        school = await session.get(School, school_id)
        assert school is not None
        school.catalogue_version = (school.catalogue_version or 0) + 1
    for child in class_children:
        await _sign_up(db, child, teacher_course[0], now)
    # The afternoon so far: 张琪 in the session, a leave and a pick-up filed, a grandmother
    # on file (bot/demo/day.py).
    zhang = next(p for p in PERSONAS if p.key == "parent-zhang")
    assert zhang.student_no is not None
    async with db.transaction() as session:
        await day.arrange(
            session,
            school_id,
            teacher_course[0],
            teacher_period,
            zhang.student_no,
            class_children,
            teacher_course[2],
            today,
            now,
        )
    for child in others:
        await _sign_up(db, child, full_id, now)
    notice_at = dt.datetime.combine(today + dt.timedelta(days=1), NOTICE_AT, zone)
    async with db.transaction() as session:
        broadcast = await broadcasts.create(
            session,
            school_id,
            sender_user_id=admin_user,
            text=NOTICE_TEXT,
            audience=Audience(AudienceKind.CLASS, klass_id),
            ack=True,
            scheduled_for=notice_at.astimezone(dt.UTC),
            now=now,
        )
        broadcast_id = broadcast.id
    return Scene(
        today,
        teacher_course[0],
        teacher_course[1],
        teacher_course[2],
        full_id,
        broadcast_id,
        notice_at.astimezone(dt.UTC),
    )


async def _sign_up(db: Database, student_id: int, course_id: int, now: dt.datetime) -> None:
    result = await enrolment.sign_up(
        db, student_id, course_id, user_id=None, actor=EnrolmentActor.ADMIN, now=now
    )
    if not isinstance(result, SignedUp):
        raise RuntimeError(f"kehou demo: signing up child {student_id} was refused: {result}")


async def follow_new_parent(world: DemoWorld, *, idle: float = 5.0) -> None:
    """Keep the new parent's entry on the page in step with their links: once they redeem
    their code, it says whose parent they are (and goes back if they unlink).

    The database is read when something happens in their chat (or every `idle` seconds).
    """
    sandbox = world.sandbox
    persona = next((p for p in sandbox.personas if p["key"] == "new-parent"), None)
    if persona is None:
        return
    unlinked = persona["description"]
    i18n = I18n(world.settings.timezone)
    translators = [i18n.get(locale) for locale in i18n.catalogs]
    parent = next(p.description for p in PERSONAS if p.role is Role.PARENT)
    db = Database(world.settings.database_url)
    loop = asyncio.get_running_loop()
    seen, shown, check_at, eager_until = sandbox.seq, None, 0.0, 0.0
    try:
        while True:
            latest = sandbox.events.after(seen, {NEW_PARENT_ID})
            if latest:
                # Something happened in their chat: look now, and for a moment after (the
                # bot may answer before its transaction is committed).
                seen = latest[-1]["seq"]
                check_at, eager_until = 0.0, loop.time() + 3
            if loop.time() >= check_at:
                eager = loop.time() < eager_until
                check_at = loop.time() + (0.5 if eager else idle)
                try:
                    linked = await _linked(db)
                except Exception:  # a demo keeps going; the next look tries again
                    log.warning("could not read the new parent's links", exc_info=True)
                    linked = shown
                if linked != shown:
                    shown = linked
                    description = (
                        {
                            t.locale: t.gettext(parent).format(
                                child=linked[0], class_name=linked[1]
                            )
                            for t in translators
                        }
                        if linked is not None
                        else unlinked
                    )
                    sandbox.update_persona("new-parent", description=description)
            await sandbox.events.signal.wait(max(check_at - loop.time(), 0.05))
    finally:
        await db.dispose()


async def _linked(db: Database) -> tuple[str, str] | None:
    """The new parent's child and the child's class, once they are linked."""
    async with db.transaction() as session:
        row = (
            await session.execute(
                select(Student.name, SchoolClass.name)
                .join(SchoolClass, SchoolClass.id == Student.class_id)
                .join(Guardianship, Guardianship.student_id == Student.id)
                .join(User, User.id == Guardianship.user_id)
                .where(User.telegram_id == NEW_PARENT_ID)
                .order_by(Student.name)
            )
        ).first()
    return (row[0], row[1]) if row is not None else None


@contextlib.asynccontextmanager
async def running(world: DemoWorld, host: str, port: int):  # type: ignore[no-untyped-def]
    """The sandbox serving on host:port and the bot polling it, until the block ends."""
    i18n = I18n(world.settings.timezone)
    app = create_app(world.sandbox, page_strings=all_page_strings(i18n))
    # The schools' public schedule and fee pages (bot.web), from the demo's database.
    pages_db = Database(world.settings.database_url)
    add_routes(app, pages_db, i18n)
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    site = web.TCPSite(runner, host, port)
    await site.start()
    application: KehouApplication | None = None
    follower = asyncio.create_task(follow_new_parent(world))
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
        follower.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await follower
        await runner.cleanup()
        await pages_db.dispose()


def _pages_note(world: DemoWorld) -> str:
    """Where the demo school's public schedule and fees page is."""
    url = disclosure_url(world.settings, world.school_code) if world.school_code else None
    return f"The school's public schedule and fees (收费公示): {url}\n" if url else ""


def _scene_note(scene: Scene | None) -> str:
    """What the demo arranged for today, for the person who started it."""
    if scene is None:
        return ""
    due = scene.scheduled_for.astimezone(ZoneInfo("Asia/Shanghai"))
    return (
        f"Today ({scene.today:%a %d %b}, school time) the teacher's session runs "
        f"{scene.starts_at:%H:%M}-{scene.ends_at:%H:%M}; one course is full with a waitlist; "
        f"a notice to the class is scheduled for {due:%a %H:%M}.\n"
    )


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
            f"{_scene_note(world.scene)}"
            f"{_pages_note(world)}"
            "Press Ctrl-C to stop.\n",
            flush=True,
        )
        await stop.wait()
    print("Kehou demo stopped.", flush=True)
