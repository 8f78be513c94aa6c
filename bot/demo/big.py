"""A generated school of any size, for benchmarks and ``kehou demo --students N``.

    school = await build_school(db, students=10_000)   # a migrated, empty database

The school is the demo school (`bot.demo.generate`) grown to the size asked for: the same
school, term, holidays, providers and fee standards, and its course shapes (periods 1 and 2,
categories, weekdays, times, capacities), with

- grades 1-9 (or 1-6), each with classes of 40-50 children (fewer or more only where a grade's
  number of children cannot be split that way), each class with its head teacher (班主任);
- period 1 in every class's own room with its head teacher: reading for grades 1-2, homework
  help from grade 3;
- every period-2 course of the demo offered in as many sections as the demo's seats per child
  call for at this size: one grade per section once there are enough sections, each section
  with a teacher of the demo course's kind (staff, retired, volunteer, heritage or the provider's
  own), who teaches no two sections at the same time.

It is made the way a real school is made:

1. `plan_school` lays the school out and `write_school` writes it as a school file and a roster
   (docs/IMPORT.md); the importer (`bot.services.importer.import_school`) loads them;
2. `populate` binds the teachers, an admin and one or two guardians per family (some families
   have two children at the school) as users, with the rows that redeeming their invite codes
   leaves (`bot.services.invites.redeem`: user, role, guardianship with consent, the used
   invite), written in bulk and without the audit rows;
3. `populate` then signs the children up through `bot.services.enrolment.sign_up`, one
   transaction each, spread over the first days of the enrolment window: most children take
   period 1 in their class, and zero to four period-2 courses on different weekdays, popular
   categories more often; a full course puts the next child on its waitlist.

`populate` works on any imported school, the demo school included. Everything is drawn from
a seeded random generator: the same arguments give the same school and, on SQLite, the same
enrolments and waitlists (sign-ups queue for SQLite's one writer in a fixed order; on PostgreSQL
no two sign-ups for the same course run at once, so the waitlists are the same too).
"""

from __future__ import annotations

import asyncio
import csv
import datetime as dt
import hashlib
import random
import tempfile
import time
from collections import Counter, defaultdict
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from decimal import Decimal
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

from sqlalchemy import insert, select, update

from bot.demo import generate
from bot.demo.generate import ADULT_GIVEN, Klass, chinese_name, grade_name
from bot.services import catalogue, enrolment, invites
from bot.services.catalogue import CourseInfo
from bot.services.enrolment import Refusal, SignedUp
from bot.services.importer import ImportReport, import_school
from storage.db import Database
from storage.models import (
    CalendarDay,
    CalendarKind,
    Category,
    Guardianship,
    Invite,
    Role,
    School,
    SchoolClass,
    Student,
    Teacher,
    Term,
    User,
    UserRole,
    utcnow,
)

SEED = 20261205
CLASS_MIN, CLASS_MAX = 40, 50
CLASS_TARGET = 45
WEEK = generate.WEEK

# Telegram ids of the people `populate` binds; far from the demo personas' (900001…).
ADMIN_FIRST = 700_000_001
TEACHER_FIRST = 710_000_001
GUARDIAN_FIRST = 720_000_001

# Families: the share with two children at the school, and with two guardians bound.
SIBLING_SHARE = 0.08
TWO_GUARDIANS = 0.6
ENGLISH_SHARE = 0.03  # guardians who use Telegram in English
PHOTO_CONSENT = 0.85
# Sign-ups: the share of children in period 1, and how many period-2 courses a child takes.
PERIOD_1_SHARE = 0.92
PERIOD_2_WEIGHTS = {0: 0.10, 1: 0.30, 2: 0.35, 3: 0.18, 4: 0.07}
POPULARITY = {
    Category.SPORTS: 1.5,
    Category.SCIENCE: 1.4,
    Category.ARTS: 1.2,
    Category.READING: 0.8,
    Category.LABOUR: 0.7,
    Category.OFF_CAMPUS: 0.9,
    Category.WELLBEING: 0.6,
    Category.HOMEWORK: 1.0,
}
SIGN_UP_HOURS = 72  # families sign up over the first three days of the window


# --- the layout -----------------------------------------------------------------------------


def class_sizes(count: int, rng: random.Random) -> list[int]:
    """`count` children of one grade in classes of 40-50 where the count allows it; otherwise
    in classes as close to that as the count allows. Sizes differ by a few, as real ones do."""
    if count <= 0:
        return []

    def off(k: int) -> float:  # how far the mean class size lies outside 40-50
        return max(CLASS_MIN - count / k, count / k - CLASS_MAX, 0)

    k = min(range(1, count + 1), key=lambda k: (off(k), abs(count / k - CLASS_TARGET)))
    base, extra = divmod(count, k)
    sizes = [base + (1 if i < extra else 0) for i in range(k)]
    low, high = min(CLASS_MIN, *sizes), max(CLASS_MAX, *sizes)
    for _ in range(3 * k if k > 1 else 0):
        i, j = rng.sample(range(k), 2)
        if sizes[i] - 1 >= low and sizes[j] + 1 <= high:
            sizes[i] -= 1
            sizes[j] += 1
    return sizes


def split_classes(count: int) -> bool:
    """Whether `count` children can be split into classes of 40-50 at all."""
    return any(CLASS_MIN * k <= count <= CLASS_MAX * k for k in range(1, count // CLASS_MIN + 1))


def grade_counts(students: int, grades: int) -> dict[int, int]:
    """Children per grade: an even share, the lower grades taking the remainder."""
    base, extra = divmod(students, grades)
    return {g: base + (1 if g <= extra else 0) for g in range(1, grades + 1)}


def _demo_per_grade() -> dict[int, int]:
    """Children per grade in the demo school's roster: the programme scales from it."""
    with (generate.HERE / "students.csv").open(encoding="utf-8", newline="") as fp:
        rows = list(csv.reader(fp))[1:]
    return dict(Counter(int(row[2].split("-")[0]) for row in rows))


def _grade_range(text: str) -> tuple[int, int]:
    low, _, high = text.partition("-")
    return int(low), int(high or low)


@dataclass
class _Pool:
    """The teachers of one kind (a demo teacher's role), each with the slots they teach."""

    role: str
    kind: str
    provider: str | None
    checked: bool
    busy: list[set[tuple[str, str]]] = field(default_factory=list)


@dataclass(frozen=True)
class SchoolPlan:
    """A school laid out, before it is written: what the school file and the roster hold."""

    students: int
    grades: int
    per_grade: dict[int, int]
    classes: list[Klass]
    class_sizes: dict[str, int]  # by class code
    teachers: list[dict[str, Any]]
    courses: list[dict[str, Any]]
    roster: list[tuple[str, str, str]]  # 学号, 姓名, class code

    @property
    def sections(self) -> int:
        """Period-2 courses."""
        return sum(1 for c in self.courses if c["period"] == 2)


def plan_school(students: int = 10_000, *, grades: int = 9, seed: int = SEED) -> SchoolPlan:
    """Lay out a school of `students` children in grades 1 to `grades` (6 or 9)."""
    if grades not in (6, 9):
        raise ValueError("a school has grades 1-6 (primary) or 1-9 (nine-year)")
    if students < grades:
        raise ValueError(f"a school of grades 1-{grades} needs at least {grades} students")
    rng = random.Random(seed)
    per_grade = grade_counts(students, grades)
    classes: list[Klass] = []
    sizes: dict[str, int] = {}
    teachers: list[dict[str, Any]] = []
    for grade, count in per_grade.items():
        for number, size in enumerate(class_sizes(count, rng), start=1):
            head = f"T{len(classes) + 1:03d}"
            klass = Klass(
                f"{grade}-{number}", grade, number, f"{grade_name(grade)}{number}班", head
            )
            classes.append(klass)
            sizes[klass.code] = size
            teachers.append(
                {"code": head, "name": chinese_name(rng, ADULT_GIVEN), "kind": "staff"}
            )
    roster = _roster(rng, classes, sizes)
    courses = [_period_1(k, sizes[k.code]) for k in classes]
    pools: dict[str, _Pool] = {}
    courses += _period_2(per_grade, pools, teachers, rng)
    # On file like the demo's: an instructor whose provider is still under review.
    teachers.append({
        "code": "K05.1", "name": chinese_name(rng, ADULT_GIVEN), "kind": "provider",
        "provider": "MOYUN", "credentials_checked": False,
    })  # fmt: skip
    return SchoolPlan(students, grades, per_grade, classes, sizes, teachers, courses, roster)


def _roster(
    rng: random.Random, classes: list[Klass], sizes: dict[str, int]
) -> list[tuple[str, str, str]]:
    """学号 as the demo numbers them: entry year, stage (1 primary, 2 middle), class, seat."""
    width = max(2, len(str(max(k.number for k in classes))))
    rows = []
    for klass in classes:
        middle = klass.grade >= 7
        entry_year = 2026 - (klass.grade - (7 if middle else 1))
        for seat in range(1, sizes[klass.code] + 1):
            number = f"{entry_year}{2 if middle else 1}{klass.number:0{width}d}{seat:02d}"
            rows.append((number, chinese_name(rng), klass.code))
    return rows


def _period_1(klass: Klass, size: int) -> dict[str, Any]:
    reading = klass.grade <= 2
    return {
        "code": f"P1-{klass.code}",
        "name": f"{klass.name}{'阅读与习惯养成' if reading else '课业辅导'}",
        "description": "自主阅读、习惯养成，不布置书面作业。" if reading
        else "独立完成作业、答疑辅导；不集体补课、不讲授新课。",
        "category": "reading" if reading else "homework",
        "period": 1,
        "grades": klass.grade,
        "weekdays": WEEK,
        "time": generate.PRIMARY_P1 if klass.grade <= 6 else generate.MIDDLE_P1,
        "venue": f"{klass.name}教室",
        "teacher": klass.head_teacher,
        "capacity": max(CLASS_MAX, size),
        "fee": "BASIC",
    }  # fmt: skip


def _period_2(
    per_grade: dict[int, int],
    pools: dict[str, _Pool],
    teachers: list[dict[str, Any]],
    rng: random.Random,
) -> list[dict[str, Any]]:
    """The demo's period-2 courses, in as many sections as this many children call for."""
    demo = _demo_per_grade()
    grades = max(per_grade)
    courses = []
    for template in generate.enrichment_courses():
        low, high = _grade_range(str(template["grades"]))
        if low > grades:
            continue
        high = min(high, grades)
        span = range(low, high + 1)
        # Seats per child as in the demo, for this course's grades.
        scale = sum(per_grade[g] for g in span) / sum(demo[g] for g in span)
        total = max(1, round(scale))
        groups: list[tuple[int | None, int]]
        if total >= len(span) > 1:
            groups = [(g, max(1, round(scale * per_grade[g] / sum(per_grade[x] for x in span))))
                      for g in span]  # fmt: skip
        else:
            groups = [(None, total)]
        for grade, count in groups:
            for number in range(1, count + 1):
                course = dict(template)
                if grade is not None:
                    course["code"] = f"{template['code']}.{grade}-{number}"
                    course["name"] = f"{template['name']}（{grade_name(grade)}{number}组）"
                    course["grades"] = grade
                elif count > 1:
                    course["code"] = f"{template['code']}.{number}"
                    course["name"] = f"{template['name']}（{number}组）"
                if number > 1:
                    course["venue"] = f"{template['venue']}（{number}）"
                slots = {(day, course["time"]) for day in course["weekdays"]}
                course["teacher"] = _teacher(pools, teachers, template["teacher"], slots, rng)
                courses.append(course)
    return courses


def _teacher(
    pools: dict[str, _Pool],
    teachers: list[dict[str, Any]],
    role: str,
    slots: set[tuple[str, str]],
    rng: random.Random,
) -> str:
    """A teacher of the demo teacher `role`'s kind free at these slots; a new one if none is."""
    pool = pools.get(role)
    if pool is None:
        kind, provider, _, checked = generate.OUTSIDE_TEACHERS.get(role, ("staff", None, "", True))
        pool = pools[role] = _Pool(role, kind, provider, checked)
    for number, busy in enumerate(pool.busy, start=1):
        if not busy & slots:
            busy |= slots
            return f"{role}.{number}"
    pool.busy.append(set(slots))
    code = f"{role}.{len(pool.busy)}"
    teacher: dict[str, Any] = {
        "code": code,
        "name": chinese_name(rng, ADULT_GIVEN),
        "kind": pool.kind,
    }
    if pool.kind != "staff":
        teacher |= {"provider": pool.provider, "credentials_checked": pool.checked}
    teachers.append(teacher)
    return code


# --- the files --------------------------------------------------------------------------------


def render_yaml(plan: SchoolPlan, *, code: str, name: str) -> str:
    """The school file (docs/IMPORT.md) of a plan; its roster is `students.csv` beside it."""
    out = [
        f"# {name}: a generated school of {plan.students:,} students in grades 1-{plan.grades},",
        f"# {len(plan.classes)} classes and {len(plan.courses)} courses. Made by bot/demo/big.py.",
        "",
        "school:",
        f"  code: {generate.scalar(code)}",
        f"  name: {generate.scalar(name)}",
        "  timezone: Asia/Shanghai",
        "  default_locale: zh_CN",
        "",
        "term:",
        "  name: 2026-2027学年第一学期",
        "  starts_on: 2026-09-01",
        "  ends_on: 2027-01-20",
        '  enrolment_opens_at: "2026-08-24 08:00"',
        '  enrolment_closes_at: "2026-09-04 20:00"',
        "  schedule_published_on: 2026-08-21",
        "  rating_opens_on: 2027-01-11",
        "  rating_closes_on: 2027-01-19",
        "",
        "calendar:",
    ]
    for day, kind, runs, note in generate.CALENDAR:
        item = {"date": day, "kind": kind, "runs_weekday": runs, "note": note}
        out.append(f"  - {generate.flow(item)}")
    out += ["", "providers:"]
    out += [f"  - {generate.flow(p)}" for p in generate.PROVIDERS]
    out += ["", "teachers:"]
    out += [f"  - {generate.flow(t)}" for t in plan.teachers]
    out += ["", "classes:"]
    for c in plan.classes:
        item = {"code": c.code, "grade": c.grade, "name": c.name, "head_teacher": c.head_teacher}
        out.append(f"  - {generate.flow(item)}")
    out += ["", "students:", "  file: students.csv", "", "fees:"]
    out += [
        f"  - {generate.flow({**fee, 'amount': Decimal(fee['amount'])})}" for fee in generate.FEES
    ]
    out += ["", "courses:"]
    out += [f"  - {generate.flow(course)}" for course in plan.courses]
    return "\n".join(out) + "\n"


def write_school(
    plan: SchoolPlan, directory: Path, *, code: str = "heqing", name: str = "河清实验学校"
) -> Path:
    """Write the plan as `school.yaml` and `students.csv` in `directory`; the YAML's path."""
    directory.mkdir(parents=True, exist_ok=True)
    path = directory / "school.yaml"
    path.write_text(render_yaml(plan, code=code, name=name), encoding="utf-8")
    with (directory / "students.csv").open("w", encoding="utf-8", newline="") as fp:
        writer = csv.writer(fp, lineterminator="\n")
        writer.writerow(["学号", "姓名", "班级"])
        writer.writerows(plan.roster)
    return path


# --- the people and the sign-ups ---------------------------------------------------------------


@dataclass(frozen=True)
class Person:
    """A bound user: who they are on Telegram and in Kehou."""

    telegram_id: int
    user_id: int
    name: str
    locale: str | None


@dataclass(frozen=True)
class Guardian(Person):
    children: tuple[int, ...]  # student ids


@dataclass(frozen=True)
class BoundTeacher(Person):
    teacher_id: int
    code: str


@dataclass
class Population:
    """What `populate` made, and how long each step took (seconds)."""

    admin: Person
    teachers: list[BoundTeacher]
    guardians: list[Guardian]
    families: int
    sign_ups: Counter[str]  # "enrolled", "waitlisted", or "refused: <why>"
    seconds: dict[str, float]

    @property
    def sign_up_calls(self) -> int:
        return sum(self.sign_ups.values())


@dataclass(frozen=True)
class _Child:
    id: int
    name: str
    grade: int
    head_teacher_id: int | None


async def populate(
    db: Database,
    school_id: int,
    *,
    seed: int = SEED,
    concurrency: int = 4,
    progress: Callable[[str], None] | None = None,
) -> Population:
    """Bind the school's teachers, an admin and every unguarded child's guardians, then sign
    the children up (see the module). For an imported school nobody has joined yet."""
    rng = random.Random(seed)
    say = progress or (lambda _text: None)
    seconds: dict[str, float] = {}
    started = time.perf_counter()
    async with db.transaction() as session:
        found = await catalogue.of(session, school_id)
        children = [
            _Child(*row)
            for row in await session.execute(
                select(Student.id, Student.name, SchoolClass.grade, SchoolClass.head_teacher_id)
                .join(SchoolClass, SchoolClass.id == Student.class_id)
                .where(Student.school_id == school_id, Student.active)
                .order_by(Student.id)
            )
        ]
        guarded = set(
            await session.scalars(
                select(Guardianship.student_id).where(Guardianship.school_id == school_id)
            )
        )
        staff = (
            await session.execute(
                select(Teacher.id, Teacher.code, Teacher.name)
                .where(Teacher.school_id == school_id, Teacher.user_id.is_(None))
                .order_by(Teacher.id)
            )
        ).all()
        terms = (
            await session.scalars(
                select(Term).where(Term.school_id == school_id).order_by(Term.starts_on)
            )
        ).all()
    if not terms:
        raise ValueError("the school has no term")
    term = terms[-1]
    now = utcnow()
    opens = term.enrolment_opens_at or now - dt.timedelta(days=1)
    closes = term.enrolment_closes_at or opens + dt.timedelta(days=14)
    bound_at = opens - dt.timedelta(days=3)  # the letters to parents go out before

    families = _families([c for c in children if c.id not in guarded], rng)
    async with db.transaction() as session:
        admin, teachers = await _bind_staff(session, school_id, staff, bound_at, rng)
        guardians = await _bind_guardians(session, school_id, families, bound_at, rng)
    seconds["bind"] = time.perf_counter() - started
    say(
        f"bound {len(teachers)} teachers, an admin and {len(guardians)} guardians of "
        f"{len(families)} families in {seconds['bind']:.1f} s"
    )

    started = time.perf_counter()
    guardian_of: dict[int, int] = {}
    for guardian in guardians:
        for child in guardian.children:
            guardian_of.setdefault(child, guardian.user_id)
    courses = [c for c in found.of_term(term.id) if c.cancelled_at is None]
    intents = _choices(children, courses, rng)
    rng.shuffle(intents)
    span = min(closes - opens, dt.timedelta(hours=SIGN_UP_HOURS))
    times = [opens + span * (i + 1) / (len(intents) + 1) for i in range(len(intents))]
    outcomes: Counter[str] = Counter()
    for batch in _batches(list(zip(intents, times, strict=True)), concurrency):
        results = await asyncio.gather(
            *(
                enrolment.sign_up(db, child, course, user_id=guardian_of.get(child), now=at)
                for (child, course), at in batch
            )
        )
        for result in results:
            if isinstance(result, SignedUp):
                outcomes[result.status.value] += 1
            else:
                outcomes[f"refused: {Refusal(result).value}"] += 1
    seconds["sign_up"] = time.perf_counter() - started
    rate = len(intents) / seconds["sign_up"] if seconds["sign_up"] else 0.0
    say(
        f"{len(intents):,} sign-ups in {seconds['sign_up']:.1f} s ({rate:.0f}/s): "
        + ", ".join(f"{n:,} {what}" for what, n in sorted(outcomes.items()))
    )
    return Population(admin, teachers, guardians, len(families), outcomes, seconds)


def _families(children: list[_Child], rng: random.Random) -> list[list[_Child]]:
    """One child per family, but a few share a family with a child of another grade and the
    same surname."""
    by_surname: dict[str, list[_Child]] = defaultdict(list)
    for child in children:
        by_surname[child.name[:1]].append(child)
    taken: set[int] = set()
    families = []
    for child in children:
        if child.id in taken:
            continue
        taken.add(child.id)
        family = [child]
        if rng.random() < SIBLING_SHARE:
            same = by_surname[child.name[:1]]
            for other in rng.sample(same, min(len(same), 20)):
                if other.id not in taken and other.grade != child.grade:
                    taken.add(other.id)
                    family.append(other)
                    break
        families.append(family)
    return families


def _code_hash(rng: random.Random) -> str:
    """The stored hash of an invite code nobody will type again (it was redeemed)."""
    return hashlib.sha256(f"{rng.getrandbits(80):020x}".encode()).hexdigest()


async def _add_users(
    session: Any,
    school_id: int,
    people: Sequence[tuple[int, str, str | None]],
    role: Role,
    at: dt.datetime,
) -> dict[int, int]:
    """Users with one role, as redeeming an invite makes them; their ids by Telegram id."""
    if not people:
        return {}
    await session.execute(
        insert(User),
        [
            {
                "school_id": school_id,
                "telegram_id": telegram_id,
                "chat_id": telegram_id,
                "display_name": name,
                "locale": locale,
                "created_at": at,
                "last_seen_at": at,
            }
            for telegram_id, name, locale in people
        ],
    )
    ids = {telegram_id for telegram_id, _, _ in people}
    found: dict[int, int] = {}
    for telegram_id, user_id in await session.execute(
        select(User.telegram_id, User.id).where(
            User.school_id == school_id,
            User.telegram_id >= min(ids),
            User.telegram_id <= max(ids),
        )
    ):
        if telegram_id in ids:
            found[telegram_id] = user_id
    await session.execute(
        insert(UserRole),
        [
            {"school_id": school_id, "user_id": user_id, "role": role, "granted_at": at}
            for user_id in found.values()
        ],
    )
    return found


def _invite(
    school_id: int, role: Role, user_id: int, at: dt.datetime, rng: random.Random, **target: Any
) -> dict[str, Any]:
    """The used invite a person redeemed when they joined."""
    return {
        "school_id": school_id,
        "role": role,
        "code_hash": _code_hash(rng),
        "created_at": at - dt.timedelta(days=1),
        "expires_at": at + dt.timedelta(days=30),
        "used_at": at,
        "used_by_user_id": user_id,
        **target,
    }


async def _bind_staff(
    session: Any,
    school_id: int,
    staff: Sequence[Any],
    at: dt.datetime,
    rng: random.Random,
) -> tuple[Person, list[BoundTeacher]]:
    admin_name = chinese_name(rng, ADULT_GIVEN)
    (admin_id,) = (
        await _add_users(session, school_id, [(ADMIN_FIRST, admin_name, None)], Role.ADMIN, at)
    ).values()
    people = [(TEACHER_FIRST + n, name, None) for n, (_, _, name) in enumerate(staff)]
    users = await _add_users(session, school_id, people, Role.TEACHER, at)
    teachers = [
        BoundTeacher(TEACHER_FIRST + n, users[TEACHER_FIRST + n], name, None, teacher_id, code)
        for n, (teacher_id, code, name) in enumerate(staff)
    ]
    if teachers:
        await session.execute(
            update(Teacher), [{"id": t.teacher_id, "user_id": t.user_id} for t in teachers]
        )
    rows = [_invite(school_id, Role.ADMIN, admin_id, at, rng, label="after-school admin")]
    rows += [_invite(school_id, Role.TEACHER, t.user_id, at, rng, teacher_id=t.teacher_id)
             for t in teachers]  # fmt: skip
    await session.execute(insert(Invite), rows)
    return Person(ADMIN_FIRST, admin_id, admin_name, None), teachers


async def _bind_guardians(
    session: Any,
    school_id: int,
    families: list[list[_Child]],
    at: dt.datetime,
    rng: random.Random,
) -> list[Guardian]:
    planned: list[tuple[int, str, str | None, tuple[int, ...]]] = []
    for family in families:
        surname = family[0].name[:1]
        mother = chinese_name(rng, ADULT_GIVEN)
        father = surname + rng.choice(ADULT_GIVEN)
        names = (
            [mother, father] if rng.random() < TWO_GUARDIANS else [rng.choice([mother, father])]
        )
        for name in names:
            locale = "en" if rng.random() < ENGLISH_SHARE else None
            ids = tuple(c.id for c in family)
            planned.append((GUARDIAN_FIRST + len(planned), name, locale, ids))
    users = await _add_users(
        session, school_id, [(t, n, loc) for t, n, loc, _ in planned], Role.PARENT, at
    )
    guardians = [Guardian(t, users[t], n, loc, ids) for t, n, loc, ids in planned]
    links = [(g, child) for g in guardians for child in g.children]
    for start in range(0, len(links), 5_000):
        chunk = links[start : start + 5_000]
        await session.execute(
            insert(Guardianship),
            [
                {
                    "school_id": school_id,
                    "user_id": g.user_id,
                    "student_id": child,
                    "consent_version": invites.CONSENT_VERSION,
                    "consented_at": at,
                    "photo_consent": rng.random() < PHOTO_CONSENT,
                    "created_at": at,
                }
                for g, child in chunk
            ],
        )
        await session.execute(
            insert(Invite),
            [
                _invite(school_id, Role.PARENT, g.user_id, at, rng, student_id=child)
                for g, child in chunk
            ],
        )
    return guardians


def _clash(a: CourseInfo, b: CourseInfo) -> bool:
    return a.weekdays & b.weekdays != 0 and a.starts_at < b.ends_at and a.ends_at > b.starts_at


def _family(course: CourseInfo) -> str:
    """A course and its sections share the part of the code before the first dot."""
    return course.code.split(".", 1)[0]


def _choices(
    children: list[_Child], courses: list[CourseInfo], rng: random.Random
) -> list[tuple[int, int]]:
    """What each child's family wants: (student id, course id), before the sign-ups say what
    they get. A family picks a course, then the section with the most seats left as far as it
    knows (the course list shows them), on weekdays the child is still free."""
    by_grade: dict[int, list[CourseInfo]] = defaultdict(list)
    for course in courses:
        if course.provider_ok and course.fee_disclosed:
            for grade in range(course.grade_min, course.grade_max + 1):
                by_grade[grade].append(course)
    planned: Counter[int] = Counter()
    counts, weights = zip(*PERIOD_2_WEIGHTS.items(), strict=True)
    intents: list[tuple[int, int]] = []
    for child in children:
        offered = by_grade.get(child.grade, [])
        chosen: list[CourseInfo] = []
        first = [c for c in offered if c.period == 1]
        if first and rng.random() < PERIOD_1_SHARE:
            own = [c for c in first if c.teacher_id == child.head_teacher_id]
            chosen.append(own[0] if own else _roomiest(first, planned))
        second: dict[str, list[CourseInfo]] = defaultdict(list)
        for course in offered:
            if course.period == 2:
                second[_family(course)].append(course)
        wanted = rng.choices(counts, weights)[0]
        names = sorted(second)
        popularity = [POPULARITY.get(second[n][0].category, 1.0) for n in names]
        while wanted > 0 and names:
            pick = rng.choices(range(len(names)), popularity)[0]
            sections = second[names.pop(pick)]
            popularity.pop(pick)
            free = [c for c in sections if not any(_clash(c, other) for other in chosen)]
            if free:
                chosen.append(_roomiest(free, planned))
                wanted -= 1
        for course in chosen:
            planned[course.id] += 1
            intents.append((child.id, course.id))
    return intents


def _roomiest(courses: Iterable[CourseInfo], planned: Counter[int]) -> CourseInfo:
    def load(course: CourseInfo) -> float:
        return planned[course.id] / course.capacity if course.capacity else 0.0

    return min(courses, key=load)


def _batches(
    items: list[tuple[tuple[int, int], dt.datetime]], size: int
) -> Iterable[list[tuple[tuple[int, int], dt.datetime]]]:
    """Consecutive runs of at most `size` sign-ups, none two for the same course: within a
    batch the order of sign-ups cannot change who gets a seat."""
    batch: list[tuple[tuple[int, int], dt.datetime]] = []
    courses: set[int] = set()
    for item in items:
        course = item[0][1]
        if len(batch) >= size or course in courses:
            yield batch
            batch, courses = [], set()
        batch.append(item)
        courses.add(course)
    if batch:
        yield batch


# --- all of it ---------------------------------------------------------------------------------


@dataclass
class BigSchool:
    plan: SchoolPlan
    report: ImportReport
    population: Population
    seconds: dict[str, float]  # plan, import, bind, sign_up


async def build_school(
    db: Database,
    students: int = 10_000,
    *,
    grades: int = 9,
    seed: int = SEED,
    code: str = "heqing",
    name: str = "河清实验学校",
    directory: Path | None = None,
    concurrency: int = 4,
    progress: Callable[[str], None] | None = None,
) -> BigSchool:
    """Plan, write, import and populate a school of `students` children (see the module).

    `db` is migrated and holds no school of this `code`. The school file and roster are
    written to `directory`, or to a temporary one removed afterwards.
    """
    say = progress or (lambda _text: None)
    started = time.perf_counter()
    plan = plan_school(students, grades=grades, seed=seed)
    seconds = {"plan": time.perf_counter() - started}
    with tempfile.TemporaryDirectory(prefix="kehou-school-") as scratch:
        path = write_school(plan, directory or Path(scratch), code=code, name=name)
        started = time.perf_counter()
        report = await import_school(db, path, actor_label="generator")
        seconds["import"] = time.perf_counter() - started
    say(
        f"imported {students:,} students in {len(plan.classes)} classes, "
        f"{len(plan.teachers)} teachers and {len(plan.courses)} courses "
        f"in {seconds['import']:.1f} s"
    )
    population = await populate(
        db, report.school_id, seed=seed, concurrency=concurrency, progress=progress
    )
    seconds |= population.seconds
    return BigSchool(plan, report, population, seconds)


async def open_for_today(
    db: Database, school_id: int, now: dt.datetime | None = None, *, weekday_today: bool = False
) -> None:
    """Make it term time with enrolment open (as `kehou demo` does for the demo school); with
    `weekday_today`, a weekend or holiday today runs Wednesday's timetable (a swapped working
    day, 调休), so today has sessions whatever day the benchmark runs."""
    now = now or utcnow()
    async with db.transaction() as session:
        term = (
            await session.scalars(
                select(Term).where(Term.school_id == school_id).order_by(Term.starts_on.desc())
            )
        ).first()
        if term is None:
            raise ValueError("the school has no term")
        zone = await session.scalar(select(School.timezone).where(School.id == school_id))
        today = now.astimezone(ZoneInfo(zone or "Asia/Shanghai")).date()
        term.starts_on = min(term.starts_on, today - dt.timedelta(days=30))
        term.ends_on = max(term.ends_on, today + dt.timedelta(days=90))
        term.enrolment_opens_at = now - dt.timedelta(days=1)
        term.enrolment_closes_at = now + dt.timedelta(days=14)
        if not weekday_today:
            return
        day = await session.scalar(
            select(CalendarDay).where(CalendarDay.term_id == term.id, CalendarDay.date == today)
        )
        if day is None and today.isoweekday() <= 5:
            return
        if day is None:
            day = CalendarDay(school_id=school_id, term_id=term.id, date=today)
            session.add(day)
        day.kind, day.runs_weekday = CalendarKind.WORKDAY, 3
        day.note = "调休补班，按周三课表"


def summary(plan: SchoolPlan) -> str:
    """A line about a plan, for the operator."""
    sizes = list(plan.class_sizes.values())
    seats = sum(c.get("capacity") or 0 for c in plan.courses if c["period"] == 2)
    return (
        f"{plan.students:,} students in grades 1-{plan.grades}, {len(plan.classes)} classes of "
        f"{min(sizes)}-{max(sizes)} (mean {plan.students / len(sizes):.1f}), "
        f"{len(plan.teachers)} teachers, {len(plan.courses)} courses "
        f"({plan.sections} in period 2, {seats:,} seats = "
        f"{seats / plan.students:.2f} per child)"
    )


__all__ = [
    "SEED",
    "BigSchool",
    "BoundTeacher",
    "Guardian",
    "Person",
    "Population",
    "SchoolPlan",
    "build_school",
    "class_sizes",
    "open_for_today",
    "plan_school",
    "populate",
    "split_classes",
    "summary",
    "write_school",
]
