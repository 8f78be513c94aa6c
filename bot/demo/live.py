"""`kehou demo --students N`: the demo on a generated school of N students (`bot.demo.big`).

As `kehou demo` (sandbox/demo.py), but the school is generated, imported and populated with its
teachers, guardians and sign-ups first, and the people on the page are members of it: the
admin, the head teacher of class 3-2 (or of the first class), two guardians of one of its
children, a guardian who uses English, a new parent with an invite code to redeem by hand, and
the class parents' group.
"""

from __future__ import annotations

import asyncio
import contextlib
import datetime as dt
import signal
import socket
import time
from dataclasses import dataclass
from pathlib import Path
from zoneinfo import ZoneInfo

from sqlalchemy import select, update

from bot.config import Secret, Settings
from bot.demo import big
from bot.i18n import I18n
from bot.services import invites
from sandbox import demo
from sandbox.server import Sandbox
from storage.db import Database
from storage.migrate import upgrade_async
from storage.models import Role, SchoolClass, Student, User

MIN_STUDENTS = 100


def run(database: Path, host: str, port: int, students: int) -> None:
    """A fresh database with a generated school of `students`, served until Ctrl-C."""
    if students < MIN_STUDENTS:
        raise SystemExit(f"kehou demo: --students must be at least {MIN_STUDENTS}")
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
    asyncio.run(_serve(database, host, port, students))


@dataclass(frozen=True)
class _Cast:
    """The people on the page: persona key -> the member and the facts its description names."""

    people: dict[str, tuple[big.Person, dict[str, str]]]
    class_name: str
    new_child: str
    code: str  # the new parent's invite code


async def prepare(database_url: str, sandbox_url: str, students: int) -> demo.DemoWorld:
    """Generate and populate the school, open it for today, and set up the page's people."""
    await upgrade_async(database_url)
    db = Database(database_url)
    started = time.perf_counter()
    try:
        school = await big.build_school(
            db, students, progress=lambda text: print(text, flush=True)
        )
        await big.open_for_today(db, school.report.school_id, weekday_today=True)
        cast = await _cast(db, school)
    finally:
        await db.dispose()
    print(f"the school is ready after {time.perf_counter() - started:.0f} s", flush=True)

    sandbox = Sandbox(demo.DEMO_TOKEN, bot_username=demo.BOT_USERNAME)
    i18n = I18n(ZoneInfo("Asia/Shanghai"))
    translators = [i18n.get(locale) for locale in i18n.catalogs]

    def say(msgid: str, **values: str) -> dict[str, str]:
        return {t.locale: t.gettext(msgid).format(**values) for t in translators}

    descriptions = {p.key: p.description for p in demo.PERSONAS}
    for key, (person, facts) in cast.people.items():
        english = person.locale == "en"
        sandbox.add_user(
            person.telegram_id, person.name, language_code="en" if english else "zh-hans"
        )
        sandbox.add_persona(
            key,
            kind="private",
            chat_id=person.telegram_id,
            user_id=person.telegram_id,
            label=person.name,
            description=say(descriptions[key], **facts),
            language="en" if english else "zh_CN",
        )
    new_label = f"{cast.new_child}家长"  # a name, the same in every language
    sandbox.add_user(demo.NEW_PARENT_ID, new_label, language_code="zh-hans")
    sandbox.add_persona(
        "new-parent",
        kind="private",
        chat_id=demo.NEW_PARENT_ID,
        user_id=demo.NEW_PARENT_ID,
        label=new_label,
        description=say(demo.NEW_PARENT, child=cast.new_child, code=invites.pretty(cast.code)),
    )
    members = [p.telegram_id for key, (p, _) in cast.people.items() if key != "admin"]
    title = f"{cast.class_name}家长群"
    sandbox.add_group(demo.GROUP_CHAT_ID, title, members)
    mum = cast.people["parent-zhang"][0]
    sandbox.add_persona(
        "class-group",
        kind="group",
        chat_id=demo.GROUP_CHAT_ID,
        user_id=mum.telegram_id,
        label=title,
        description=say(demo.GROUP, class_name=cast.class_name, name=mum.name),
    )
    settings = Settings(
        token=Secret(demo.DEMO_TOKEN),
        database_url=database_url,
        api_base_url=sandbox_url,
        bot_username=demo.BOT_USERNAME,
    )
    return demo.DemoWorld(sandbox, settings, cast.code, cast.new_child)


async def _cast(db: Database, school: big.BigSchool) -> _Cast:
    """Pick the page's people from the school, in the class of 3-2 if there is one."""
    population = school.population
    school_id = school.report.school_id
    codes = [k.code for k in school.plan.classes]
    by_child: dict[int, list[big.Guardian]] = {}
    for guardian in population.guardians:
        for child in guardian.children:
            by_child.setdefault(child, []).append(guardian)
    async with db.transaction() as session:
        first = sorted(codes, key=lambda c: (c != demo.GROUP_CLASS, c[:2] != "3-", codes.index(c)))
        for code in first:
            klass = await session.scalar(
                select(SchoolClass).where(
                    SchoolClass.school_id == school_id, SchoolClass.code == code
                )
            )
            assert klass is not None
            children = (
                await session.execute(
                    select(Student.id, Student.name)
                    .where(Student.class_id == klass.id)
                    .order_by(Student.student_no)
                )
            ).all()
            # Two guardians of an only child (at this school), and two other children.
            pair = next(
                (
                    (child_id, name)
                    for child_id, name in children
                    if len(by_child.get(child_id, [])) == 2
                    and all(len(g.children) == 1 for g in by_child[child_id])
                ),
                None,
            )
            # An only child's guardian for the English persona, and a child for the new parent.
            others = [
                (i, n)
                for i, n in children
                if (pair is None or i != pair[0]) and len(by_child[i][0].children) == 1
            ]
            if pair is not None and len(others) >= 2:
                break
        else:
            raise SystemExit("kehou demo: no class has a child with two guardians; add students")
        head = next(t for t in population.teachers if t.teacher_id == klass.head_teacher_id)
        mum, dad = by_child[pair[0]]
        english_child, english = others[0][1], by_child[others[0][0]][0]
        if english.locale != "en":
            await session.execute(
                update(User).where(User.id == english.user_id).values(locale="en")
            )
            english = big.Guardian(
                english.telegram_id, english.user_id, english.name, "en", english.children
            )
        new_id, new_child = others[1]
        code = await invites.create_invite(
            session,
            school_id=school_id,
            role=Role.PARENT,
            student_id=new_id,
            ttl=dt.timedelta(days=30),
            actor_label="demo",
        )
        klass.group_chat_id = demo.GROUP_CHAT_ID
        class_name = klass.name
    family = {"child": pair[1], "class_name": class_name}
    return _Cast(
        people={
            "admin": (population.admin, {}),
            "teacher": (head, {"class_name": class_name}),
            "parent-zhang": (mum, family),
            "parent-zhang-dad": (dad, family),
            "parent-en": (english, {"child": english_child, "class_name": class_name}),
        },
        class_name=class_name,
        new_child=new_child,
        code=code,
    )


async def _serve(database: Path, host: str, port: int, students: int) -> None:
    url = f"http://{host}:{port}"
    world = await prepare(f"sqlite+aiosqlite:///{database}", url, students)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGINT, signal.SIGTERM):
        with contextlib.suppress(NotImplementedError):  # signal handlers are POSIX-only
            loop.add_signal_handler(signum, stop.set)
    async with demo.running(world, host, port):
        print(
            f"\nKehou demo ({students:,} students) is running. Open this in your browser:\n\n"
            f"    {url}/\n\n"
            "Pick a person on the left: parents, a teacher, the admin or a class group.\n"
            f"Try the new parent with invite code {invites.pretty(world.new_parent_code)}.\n"
            "Press Ctrl-C to stop.\n",
            flush=True,
        )
        await stop.wait()
    print("Kehou demo stopped.", flush=True)
