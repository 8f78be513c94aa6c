"""The term's growth record (课后成长档案) of each child, fed back to the families at term end.

POLICY.md ("Daily running"): every child who took part has an after-school growth record —
attendance, course choices, interests, notable performance — given to the parents every term
with specific advice. A record here is built from what Kehou already holds: the courses the
child took this term (with when they joined or left), the roll (`term_attendance.tally`), the
activity categories those courses cover, and the teachers' growth notes (`notes`, `/note`).

    found = await growth.records(session, term_id)            # every child: 4 statements
    pdf = growth.render_pdf(found[0], t)                       # an A4 PDF in t's language
    sent = await growth.release(session, school_id, term_id, now)   # once per term

`release` is compare-and-set on `Term.growth_released_at`: the scheduler at the school's digest
time on the term's last day, an admin's "release now" and a second process may all call it;
one of them sends. Each guardian gets one outbox message whose PDF is made by the delivery
worker when it sends (`@outbox.maker("growth")`), in the reader's language.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import enum
import io
import re
import unicodedata
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any
from xml.sax.saxutils import escape
from zoneinfo import ZoneInfo

from reportlab.lib import colors
from reportlab.lib.enums import TA_CENTER
from reportlab.lib.pagesizes import A4
from reportlab.lib.styles import ParagraphStyle
from reportlab.lib.units import mm
from reportlab.pdfbase import pdfmetrics
from reportlab.pdfbase.cidfonts import UnicodeCIDFont
from reportlab.pdfbase.ttfonts import TTFont
from reportlab.platypus import (
    Flowable,
    HRFlowable,
    Paragraph,
    SimpleDocTemplate,
    Spacer,
    Table,
    TableStyle,
)
from sqlalchemy import and_, func, or_, select, update
from sqlalchemy.ext.asyncio import AsyncSession

from bot import wording
from bot.i18n import N_, Translator
from bot.services import deadlines, family, fonts, guard, outbox, term_attendance
from bot.services.members import Member
from bot.services.outbox import NewMessage
from bot.services.term_attendance import Tally
from storage.models import (
    Category,
    Course,
    Enrolment,
    EnrolmentEvent,
    EnrolmentStatus,
    GrowthNote,
    Outbox,
    OutboxStatus,
    Priority,
    Role,
    School,
    SchoolClass,
    Student,
    Teacher,
    Term,
)

KIND = "growth"  # the outbox kind, and the document maker's name
REFUSED = "growth.refused"  # the audit action of a refused request or press
TITLE = N_("After-school growth record")
SUMMARY = N_(
    "📘 {child}'s after-school growth record for {term} is here: the courses and attendance, "
    "the activities tried, the teachers' notes and advice for next term, in the PDF attached. "
    "Send /growth to get it again."
)
# Science is a required part of the service and sports time is arranged in it (POLICY.md,
# "1+N"): a record without them says so first.
CORE = (Category.SCIENCE, Category.SPORTS)
LOW_ATTENDANCE = 0.8  # below this, the advice mentions attendance
NAVY = colors.HexColor("#1f3a5f")
CJK_TTF = "KehouCJK"  # the embedded TrueType face (`fonts.cjk_font`)
CJK_CID = "STSong-Light"  # the fallback every PDF reader knows, nothing embedded


# --- the record -------------------------------------------------------------------------------


@dataclass(frozen=True)
class CourseLine:
    """One course the child took this term, with the child's attendance in it."""

    course_id: int
    name: str
    category: Category
    period: int
    weekdays: int  # bit 0 = Monday
    starts_at: dt.time
    ends_at: dt.time
    teacher: str | None
    joined_on: dt.date | None  # in the school's zone; None when before the term began
    left_on: dt.date | None  # the first day not attended, when withdrawn
    attendance: Tally


@dataclass(frozen=True)
class NoteLine:
    text: str
    teacher: str | None  # None: the school's office wrote it
    written_at: dt.datetime


@dataclass(frozen=True)
class Record:
    """One child's growth record of one term: everything the PDF and the summary show."""

    student_id: int
    child: str
    student_no: str
    class_name: str
    school: str
    school_id: int
    term_id: int
    term: str
    starts_on: dt.date
    ends_on: dt.date
    courses: tuple[CourseLine, ...]
    notes: tuple[NoteLine, ...]  # oldest first

    @property
    def attendance(self) -> Tally:
        total = Tally(0, 0, 0)
        for course in self.courses:
            total = total + course.attendance
        return total

    @property
    def covered(self) -> tuple[Category, ...]:
        """The activity categories of the child's courses, in the catalogue's order."""
        taken = {c.category for c in self.courses}
        return tuple(c for c in Category if c in taken)

    @property
    def untried(self) -> tuple[Category, ...]:
        """The categories not covered: science and sports first, as the policy asks for them."""
        missing = [c for c in Category if c not in self.covered]
        return tuple(sorted(missing, key=lambda c: (c not in CORE, list(Category).index(c))))


def _iso_days(mask: int) -> list[int]:
    return [d + 1 for d in range(7) if mask >> d & 1]


def percent(tally: Tally) -> str:
    return "—" if tally.rate is None else f"{round(tally.rate * 100)}%"


def attendance_text(t: Translator, tally: Tally) -> str:
    """出勤 38/40 次（95%）; "no roll taken" when no roll named the child."""
    if not tally.marked:
        return t.gettext("no roll taken yet")
    return t.ngettext(
        "attended {present}/{marked} session ({percent})",
        "attended {present}/{marked} sessions ({percent})",
        tally.marked,
    ).format(present=tally.present, marked=tally.marked, percent=percent(tally))


def advice(t: Translator, record: Record) -> list[str]:
    """Short, specific advice for next term, from the record's facts only."""
    lines = []
    if Category.SCIENCE in record.untried:
        lines.append(
            t.gettext(
                "No science course this term. Science is part of every child's after-school "
                "service: consider one next term."
            )
        )
    if Category.SPORTS in record.untried:
        lines.append(
            t.gettext("No sports course this term: consider one next term for regular exercise.")
        )
    # Interest areas only: homework help is not an interest to try, and off-campus visits are
    # the school's to organise.
    others = [
        c
        for c in record.untried
        if c not in CORE and c not in (Category.HOMEWORK, Category.OFF_CAMPUS)
    ]
    if others:
        lines.append(
            t.gettext("Areas not tried yet: {categories}.").format(
                categories=wording.joined(t, (wording.category(t, c) for c in others))
            )
        )
    rate = record.attendance.rate
    if rate is not None and rate < LOW_ATTENDANCE:
        lines.append(
            t.gettext(
                "Attendance was {percent} this term. If something keeps your child away, "
                "please talk to the teacher."
            ).format(percent=percent(record.attendance))
        )
    if not lines:
        lines.append(
            t.gettext("A well-rounded term: keep the same balance of activities next term.")
        )
    return lines


# --- building records: a fixed number of statements for any number of children ---------------


def _first_enrolled(school_id: int) -> Any:
    """When each enrolment of the school first became `enrolled` (its history)."""
    return (
        select(
            EnrolmentEvent.enrolment_id.label("enrolment_id"),
            func.min(EnrolmentEvent.created_at).label("at"),
        )
        .where(
            EnrolmentEvent.school_id == school_id,
            EnrolmentEvent.status == EnrolmentStatus.ENROLLED,
        )
        .group_by(EnrolmentEvent.enrolment_id)
        .subquery()
    )


def _taken(term: Term, first: Any) -> Any:
    """The condition of a place in one of the term's courses the child really held: enrolled,
    or withdrawn after having been enrolled (a waitlist or draw entry never held a seat)."""
    return and_(
        Course.term_id == term.id,
        Student.school_id == term.school_id,
        Student.active.is_(True),
        or_(
            Enrolment.status == EnrolmentStatus.ENROLLED,
            and_(
                Enrolment.status == EnrolmentStatus.WITHDRAWN,
                first.c.at.is_not(None),
                or_(Enrolment.withdrawn_from.is_(None), Enrolment.withdrawn_from > term.starts_on),
            ),
        ),
    )


async def records(
    session: AsyncSession, term_id: int, student_ids: Sequence[int] | None = None
) -> list[Record]:
    """The growth records of the term's children (all who took a course; or only those of
    `student_ids`), by grade, class and name. Four or five statements however many."""
    row = (
        await session.execute(
            select(Term, School.name, School.timezone)
            .join(School, School.id == Term.school_id)
            .where(Term.id == term_id)
        )
    ).first()
    if row is None:
        return []
    term, school_name, zone_name = row
    zone = ZoneInfo(zone_name)
    first = _first_enrolled(term.school_id)
    query = (
        select(
            Student.id,
            Student.name,
            Student.student_no,
            SchoolClass.name,
            Enrolment.status,
            Enrolment.withdrawn_from,
            Enrolment.created_at,
            first.c.at,
            Course.id,
            Course.name,
            Course.category,
            Course.period,
            Course.weekdays,
            Course.starts_at,
            Course.ends_at,
            Teacher.name,
        )
        .join(SchoolClass, SchoolClass.id == Student.class_id)
        .join(Enrolment, Enrolment.student_id == Student.id)
        .join(Course, Course.id == Enrolment.course_id)
        .outerjoin(Teacher, Teacher.id == Course.teacher_id)
        .outerjoin(first, first.c.enrolment_id == Enrolment.id)
        .where(_taken(term, first))
        .order_by(
            SchoolClass.grade,
            SchoolClass.code,
            Student.name,
            Student.id,
            Course.period,
            Course.starts_at,
            Course.name,
        )
    )
    notes_query = (
        select(GrowthNote.student_id, GrowthNote.text, Teacher.name, GrowthNote.created_at)
        .outerjoin(Teacher, Teacher.id == GrowthNote.teacher_id)
        .where(GrowthNote.term_id == term.id)
        .order_by(GrowthNote.created_at, GrowthNote.id)
    )
    if student_ids is not None:
        query = query.where(Student.id.in_(list(student_ids)))
        notes_query = notes_query.where(GrowthNote.student_id.in_(list(student_ids)))
    rows = (await session.execute(query)).all()
    if not rows:
        return []
    tallies = await term_attendance.tally(
        session, term.school_id, term, "student", "course", students=student_ids
    )
    written: dict[int, list[NoteLine]] = {}
    for student_id, text, teacher, created_at in (await session.execute(notes_query)).all():
        written.setdefault(student_id, []).append(NoteLine(text, teacher, created_at))

    children: dict[int, tuple[tuple[str, str, str], list[CourseLine]]] = {}
    for (
        student_id,
        name,
        number,
        class_name,
        status,
        withdrawn_from,
        created_at,
        enrolled_at,
        course_id,
        course,
        category,
        period,
        weekdays,
        starts_at,
        ends_at,
        teacher,
    ) in rows:
        joined = (enrolled_at or created_at).astimezone(zone).date()
        line = CourseLine(
            course_id=course_id,
            name=course,
            category=category,
            period=period,
            weekdays=weekdays,
            starts_at=starts_at,
            ends_at=ends_at,
            teacher=teacher,
            joined_on=joined if joined > term.starts_on else None,
            left_on=withdrawn_from if status == EnrolmentStatus.WITHDRAWN else None,
            attendance=tallies.get((student_id, course_id), Tally(0, 0, 0)),
        )
        children.setdefault(student_id, ((name, number, class_name), []))[1].append(line)
    return [
        Record(
            student_id=student_id,
            child=name,
            student_no=number,
            class_name=class_name,
            school=school_name,
            school_id=term.school_id,
            term_id=term.id,
            term=term.name,
            starts_on=term.starts_on,
            ends_on=term.ends_on,
            courses=tuple(lines),
            notes=tuple(written.get(student_id, ())),
        )
        for student_id, ((name, number, class_name), lines) in children.items()
    ]


async def record_of(session: AsyncSession, term_id: int, student_id: int) -> Record | None:
    found = await records(session, term_id, [student_id])
    return found[0] if found else None


# --- the PDF ----------------------------------------------------------------------------------


def _font() -> str:
    """The registered face every PDF is set in: the embedded TrueType CJK font, else the CID
    font (readers show it without embedding; pypdf can still extract its text)."""
    path = fonts.cjk_font()
    name = CJK_TTF if path is not None else CJK_CID
    if name not in pdfmetrics.getRegisteredFontNames():
        if path is not None:
            pdfmetrics.registerFont(TTFont(name, str(path), subfontIndex=0))
        else:
            pdfmetrics.registerFont(UnicodeCIDFont(name))
        # One face: let <b> fall back to it rather than fail.
        pdfmetrics.registerFontFamily(name, normal=name, bold=name, italic=name, boldItalic=name)
    return name


class _Styles:
    def __init__(self, t: Translator) -> None:
        font = _font()
        wrap = "CJK" if t.locale.startswith("zh") else None
        self.body = ParagraphStyle(
            "body", fontName=font, fontSize=10.5, leading=16, spaceAfter=3, wordWrap=wrap
        )
        self.cell = ParagraphStyle(
            "cell", parent=self.body, fontSize=9.5, leading=13, spaceAfter=0
        )
        self.small = ParagraphStyle(
            "small", parent=self.cell, fontSize=8.5, leading=11, textColor=colors.HexColor("#555")
        )
        self.head = ParagraphStyle(
            "head", parent=self.cell, textColor=colors.white, fontSize=9.5, leading=13
        )
        self.item = ParagraphStyle(
            "item", parent=self.body, leftIndent=6 * mm, bulletIndent=1.5 * mm
        )
        self.heading = ParagraphStyle(
            "heading",
            parent=self.body,
            fontSize=13,
            leading=19,
            spaceBefore=9,
            spaceAfter=4,
            textColor=NAVY,
        )
        self.school = ParagraphStyle(
            "school", parent=self.body, fontSize=12, leading=18, alignment=TA_CENTER
        )
        self.title = ParagraphStyle(
            "title", parent=self.body, fontSize=21, leading=29, alignment=TA_CENTER
        )
        self.footer = ParagraphStyle("footer", parent=self.small, alignment=TA_CENTER)


_CJK_WRAP: dict[str, ParagraphStyle] = {}


def _wide(text: str) -> bool:
    return any(unicodedata.east_asian_width(c) in "WF" for c in text)


def _p(text: str, style: ParagraphStyle) -> Paragraph:
    """Plain text as a paragraph. Chinese text (a name, a note) in an English PDF wraps as
    Chinese does, between any two characters: it has no spaces to break at."""
    if style.wordWrap != "CJK" and _wide(text):
        key = f"{style.name}:{style.fontSize}"
        if key not in _CJK_WRAP:
            _CJK_WRAP[key] = ParagraphStyle(f"{style.name}-cjk", parent=style, wordWrap="CJK")
        style = _CJK_WRAP[key]
    return Paragraph(escape(text).replace("\n", "<br/>"), style)


def _table(rows: list[list[Any]], widths: list[float], header: bool) -> Table:
    table = Table(rows, colWidths=widths, repeatRows=1 if header else 0)
    commands: list[tuple[Any, ...]] = [
        ("VALIGN", (0, 0), (-1, -1), "TOP"),
        ("GRID", (0, 0), (-1, -1), 0.4, colors.HexColor("#b8c4d4")),
        ("LEFTPADDING", (0, 0), (-1, -1), 5),
        ("RIGHTPADDING", (0, 0), (-1, -1), 5),
        ("TOPPADDING", (0, 0), (-1, -1), 4),
        ("BOTTOMPADDING", (0, 0), (-1, -1), 4),
    ]
    if header:
        commands.append(("BACKGROUND", (0, 0), (-1, 0), NAVY))
        commands.append(
            ("ROWBACKGROUNDS", (0, 1), (-1, -1), [colors.white, colors.HexColor("#f3f6fa")])
        )
    else:
        commands.append(("BACKGROUND", (0, 0), (0, -1), colors.HexColor("#f3f6fa")))
    table.setStyle(TableStyle(commands))
    return table


def _story(record: Record, t: Translator, width: float) -> list[Flowable]:
    s = _Styles(t)
    term_span = t.gettext("{term} ({first} – {last})").format(
        term=record.term, first=t.date(record.starts_on), last=t.date(record.ends_on)
    )
    story: list[Flowable] = [
        _p(record.school, s.school),
        _p(t.gettext(TITLE), s.title),
        HRFlowable(width="100%", thickness=1.2, color=NAVY, spaceAfter=8),
        _table(
            [
                [_p(t.gettext("Child"), s.cell), _p(record.child, s.cell)],
                [_p(t.gettext("Class"), s.cell), _p(record.class_name, s.cell)],
                [_p(t.gettext("Student number"), s.cell), _p(record.student_no, s.cell)],
                [_p(t.gettext("Term"), s.cell), _p(term_span, s.cell)],
            ],
            [0.25 * width, 0.75 * width],
            header=False,
        ),
        _p(t.gettext("Courses and attendance"), s.heading),
    ]
    rows: list[list[Any]] = [
        [
            _p(t.gettext(h), s.head)
            for h in (
                N_("Course"),
                N_("Activity area"),
                N_("When"),
                N_("Teacher"),
                N_("Attendance"),
            )
        ]
    ]
    for course in record.courses:
        name = [_p(course.name, s.cell)]
        if course.joined_on is not None:
            name.append(
                _p(t.gettext("joined {day}").format(day=wording.day(t, course.joined_on)), s.small)
            )
        if course.left_on is not None:
            name.append(
                _p(
                    t.gettext("left from {day}").format(day=wording.day(t, course.left_on)),
                    s.small,
                )
            )
        period = wording.period(t, course.period)
        days = wording.weekday_run(t, _iso_days(course.weekdays))
        when = f"{period}\n{days} {wording.span(t, course.starts_at, course.ends_at)}"
        rows.append(
            [
                name,
                _p(wording.category(t, course.category), s.cell),
                _p(when, s.cell),
                _p(course.teacher or "—", s.cell),
                _p(attendance_text(t, course.attendance), s.cell),
            ]
        )
    story.append(_table(rows, [w * width for w in (0.27, 0.15, 0.25, 0.12, 0.21)], header=True))
    total = record.attendance
    overall = t.gettext("Overall: {attendance}.").format(attendance=attendance_text(t, total))
    if total.leave:
        overall += " " + t.ngettext(
            "{n} absence was on leave the family asked for.",
            "{n} absences were on leave the family asked for.",
            total.leave,
        ).format(n=total.leave)
    story += [Spacer(0, 4), _p(overall, s.body)]

    story.append(_p(t.gettext("Interests"), s.heading))
    covered = wording.joined(t, (wording.category(t, c) for c in record.covered))
    story.append(
        _p(
            t.ngettext(
                "Activities this term ({n} of 8 areas): {categories}",
                "Activities this term ({n} of 8 areas): {categories}",
                len(record.covered),
            ).format(n=len(record.covered), categories=covered),
            s.body,
        )
    )
    story.append(_p(t.gettext("Advice for next term"), s.heading))
    for line in advice(t, record):
        story.append(Paragraph(escape(line), s.item, bulletText="•"))

    story.append(_p(t.gettext("Teachers' notes"), s.heading))
    if not record.notes:
        story.append(_p(t.gettext("No notes from teachers this term."), s.body))
    for note in record.notes:
        by = note.teacher or t.gettext("the school")
        story.append(
            _p(
                t.gettext("{day} · {teacher}").format(
                    day=wording.day(t, note.written_at.astimezone(t.timezone).date()), teacher=by
                ),
                s.small,
            )
        )
        story.append(_p(note.text, s.body))
    story += [
        Spacer(0, 10),
        HRFlowable(width="100%", thickness=0.5, color=colors.HexColor("#b8c4d4"), spaceAfter=4),
        _p(
            t.gettext(
                "Kept by {school} with Kehou. Attendance counts the sessions whose roll was "
                "taken; a leave counts as absent."
            ).format(school=record.school),
            s.footer,
        ),
    ]
    return story


def render_pdf(record: Record, t: Translator) -> bytes:
    """The record as an A4 PDF in `t`'s language, with the CJK font embedded."""
    buffer = io.BytesIO()
    document = SimpleDocTemplate(
        buffer,
        pagesize=A4,
        leftMargin=18 * mm,
        rightMargin=18 * mm,
        topMargin=16 * mm,
        bottomMargin=16 * mm,
        title=f"{record.child} · {t.gettext(TITLE)} · {record.term}",
        author=record.school,
        creator="Kehou",
    )
    document.build(_story(record, t, document.width))
    return buffer.getvalue()


def filename(record: Record, t: Translator) -> str:
    """张琪-2026秋季学期-成长档案.pdf / Zhang Qi - growth record - 2026 autumn.pdf"""
    name = t.gettext("{child} - growth record - {term}.pdf").format(
        child=record.child, term=record.term
    )
    return re.sub(r'[\\/:*?"<>|\x00-\x1f]', "_", name)


async def document(record: Record, t: Translator) -> tuple[str, bytes]:
    """The file name and the PDF, rendered off the event loop."""
    data = await asyncio.to_thread(render_pdf, record, t)
    return filename(record, t), data


@outbox.maker(KIND)
async def make(session: AsyncSession, args: dict[str, Any], t: Translator) -> tuple[str, bytes]:
    """The delivery worker's maker: the record as it stands when the message is sent."""
    try:
        student_id, term_id = int(args["student_id"]), int(args["term_id"])
    except (KeyError, TypeError, ValueError) as exc:
        raise LookupError(f"growth record arguments {args!r}") from exc
    found = await record_of(session, term_id, student_id)
    if found is None:
        raise LookupError(f"no growth record of child {student_id} in term {term_id}")
    return await document(found, t)


# --- release ----------------------------------------------------------------------------------


def _id(value: Any) -> int:
    return int(getattr(value, "id", value))


async def release(
    session: AsyncSession, school: School | int, term: Term | int, now: dt.datetime
) -> int:
    """Send the term's growth records: once, whoever calls it and however often.

    Marks the term released (compare-and-set from NULL: a second call, or a second process,
    changes nothing and returns 0), releases the term's notes to the families, and enqueues
    one message per guardian (with a chat) of every child who took a course this term, its
    PDF made at sending time. Returns the number of messages enqueued. `school` and `term`
    are rows or ids.
    """
    return await _release(session, _id(school), _id(term), now) or 0


async def _release(
    session: AsyncSession, school_id: int, term_id: int, now: dt.datetime
) -> int | None:
    """`release`; None when the term was released already (this call lost)."""
    won = await session.execute(
        update(Term)
        .where(Term.id == term_id, Term.school_id == school_id, Term.growth_released_at.is_(None))
        .values(growth_released_at=now)
    )
    if won.rowcount != 1:  # type: ignore[attr-defined]
        return None
    await session.execute(
        update(GrowthNote)
        .where(GrowthNote.term_id == term_id, GrowthNote.released_at.is_(None))
        .values(released_at=now)
    )
    term_row = (
        await session.scalars(
            select(Term).where(Term.id == term_id).execution_options(populate_existing=True)
        )
    ).one()
    takers = await _takers(session, term_row)
    guardians = await family.guardian_chats(session, takers)
    # Released by an admin late in the evening, the records wait for the morning.
    school_row = await session.get(School, school_id)
    assert school_row is not None
    not_before = deadlines.out_of_quiet_hours(school_row, now)
    messages = [
        NewMessage(
            chat_id=chat_id,
            user_id=user_id,
            kind=KIND,
            priority=Priority.BULK,
            template=SUMMARY,
            params={"child": takers[student_id], "term": term_row.name},
            attachment={
                "type": "made",
                "maker": KIND,
                "args": {"student_id": student_id, "term_id": term_id},
            },
            dedupe_key=f"{KIND}:{term_id}:{student_id}:{user_id}",
            not_before=not_before,
            digest=False,  # a document cannot wait in the evening digest's text
        )
        for student_id in takers
        for user_id, chat_id in guardians.get(student_id, ())
    ]
    ids = await outbox.enqueue_many(session, school_id, messages, now=now)
    return len(ids)


async def _takers(session: AsyncSession, term: Term) -> dict[int, str]:
    """The children who took a course this term: id → name. One statement."""
    first = _first_enrolled(term.school_id)
    rows = await session.execute(
        select(Student.id, Student.name)
        .join(Enrolment, Enrolment.student_id == Student.id)
        .join(Course, Course.id == Enrolment.course_id)
        .outerjoin(first, first.c.enrolment_id == Enrolment.id)
        .where(_taken(term, first))
        .distinct()
        .order_by(Student.id)
    )
    return {student_id: name for student_id, name in rows.all()}


# --- what an admin and a parent ask ----------------------------------------------------------


class Refusal(enum.StrEnum):
    NOT_ADMIN = "not_admin"
    NOT_GUARDIAN = "not_guardian"
    NO_TERM = "no_term"


@dataclass(frozen=True)
class Refused:
    reason: Refusal


@dataclass(frozen=True)
class TermRef:
    id: int
    name: str
    starts_on: dt.date
    ends_on: dt.date
    released_at: dt.datetime | None


@dataclass(frozen=True)
class Status:
    """The admin's view of the term's records: released when, to whom, how the sending went."""

    term: TermRef
    children: int  # who took a course this term: one record each
    guardians: int  # messages a release sends (guardians with a chat, per child)
    digest_time: dt.time  # the school's: the release goes out at this time on the last day
    sent: int
    waiting: int
    failed: int  # failed or blocked


@dataclass(frozen=True)
class NotYet:
    """The child's record of `term` is not out yet; `earlier` is the last released one."""

    child: str
    term: TermRef
    digest_time: dt.time
    earlier: TermRef | None


@dataclass(frozen=True)
class NoRecord:
    """The child took no course in a released term: there is no record to show."""

    child: str
    term: TermRef


async def _terms(session: AsyncSession, school_id: int, today: dt.date) -> list[TermRef]:
    """The school's terms begun by today, newest first (else its first term)."""
    rows = (
        await session.execute(
            select(Term.id, Term.name, Term.starts_on, Term.ends_on, Term.growth_released_at)
            .where(Term.school_id == school_id)
            .order_by(Term.starts_on.desc())
        )
    ).all()
    terms = [TermRef(*row) for row in rows]
    begun = [t for t in terms if t.starts_on <= today]
    return begun or terms[-1:]


async def status(
    session: AsyncSession, member: Member | None, today: dt.date, *, pressed: str | None = None
) -> Status | Refused:
    """The release status of the latest term begun, for an admin."""
    if not guard.holds(session, member, Role.ADMIN, action=REFUSED, pressed=pressed):
        return Refused(Refusal.NOT_ADMIN)
    assert member is not None
    terms = await _terms(session, member.school_id, today)
    if not terms:
        return Refused(Refusal.NO_TERM)
    term = terms[0]
    term_row = await session.get(Term, term.id)
    assert term_row is not None
    takers = await _takers(session, term_row)
    guardians = await family.guardian_chats(session, takers)
    digest_time = await session.scalar(
        select(School.digest_time).where(School.id == member.school_id)
    )
    counts: dict[OutboxStatus, int] = {}
    if term.released_at is not None:
        rows = await session.execute(
            select(Outbox.status, func.count())
            .where(
                Outbox.school_id == member.school_id,
                Outbox.kind == KIND,
                Outbox.dedupe_key.like(f"{member.school_id}:{KIND}:{term.id}:%"),
            )
            .group_by(Outbox.status)
        )
        counts = {s: n for s, n in rows.all()}
    return Status(
        term=term,
        children=len(takers),
        guardians=sum(len(g) for g in guardians.values()),
        digest_time=digest_time or dt.time(18, 30),
        sent=counts.get(OutboxStatus.SENT, 0),
        waiting=sum(
            counts.get(s, 0)
            for s in (OutboxStatus.PENDING, OutboxStatus.SENDING, OutboxStatus.HELD)
        ),
        failed=counts.get(OutboxStatus.FAILED, 0) + counts.get(OutboxStatus.BLOCKED, 0),
    )


async def release_now(
    session: AsyncSession, member: Member | None, term_id: int, now: dt.datetime, *, pressed: str
) -> int | TermRef | Refused:
    """An admin's "release now": the number of messages enqueued, or, when the term was
    released already (by the schedule or another admin), the term as it stands."""
    if not guard.holds(session, member, Role.ADMIN, action=REFUSED, pressed=pressed):
        return Refused(Refusal.NOT_ADMIN)
    assert member is not None
    exists = await session.scalar(
        select(Term.id).where(Term.id == term_id, Term.school_id == member.school_id)
    )
    if exists is None:
        guard.refuse(session, member, REFUSED, pressed)
        return Refused(Refusal.NOT_ADMIN)
    sent = await _release(session, member.school_id, term_id, now)
    if sent is None:
        row = (
            await session.execute(
                select(
                    Term.id, Term.name, Term.starts_on, Term.ends_on, Term.growth_released_at
                ).where(Term.id == term_id)
            )
        ).one()
        return TermRef(*row)
    return sent


async def preview(
    session: AsyncSession, member: Member | None, student_no: str, today: dt.date
) -> Record | NoRecord | Refused | None:
    """An admin's preview of one child's record of the latest term begun (released or not);
    None: no child has that student number."""
    if not guard.holds(session, member, Role.ADMIN, action=REFUSED):
        return Refused(Refusal.NOT_ADMIN)
    assert member is not None
    terms = await _terms(session, member.school_id, today)
    if not terms:
        return Refused(Refusal.NO_TERM)
    child = (
        await session.execute(
            select(Student.id, Student.name).where(
                Student.school_id == member.school_id,
                func.lower(Student.student_no) == student_no.strip().lower(),
            )
        )
    ).first()
    if child is None:
        return None
    found = await record_of(session, terms[0].id, child.id)
    return found if found is not None else NoRecord(child.name, terms[0])


async def children(session: AsyncSession, member: Member | None) -> list[guard.Child]:
    """The member's children, for the choice under /growth."""
    return await guard.children(session, member)


async def for_parent(
    session: AsyncSession,
    member: Member | None,
    student_id: int,
    today: dt.date,
    *,
    term_id: int | None = None,
    pressed: str | None = None,
) -> Record | NotYet | NoRecord | Refused:
    """A guardian's child's record: of `term_id` (a released term), else of the latest term
    begun. Before its release: when it will come, and the last released record's term."""
    child = await guard.child(session, member, student_id, action=REFUSED, pressed=pressed)
    if child is None:
        return Refused(Refusal.NOT_GUARDIAN)
    terms = await _terms(session, child.school_id, today)
    if term_id is not None:
        terms = [t for t in terms if t.id == term_id and t.released_at is not None]
        if not terms:
            guard.refuse(session, member, REFUSED, pressed)
            return Refused(Refusal.NOT_GUARDIAN)
    if not terms:
        return Refused(Refusal.NO_TERM)
    term = terms[0]
    if term.released_at is None:
        digest_time = await session.scalar(
            select(School.digest_time).where(School.id == child.school_id)
        )
        earlier = next((t for t in terms[1:] if t.released_at is not None), None)
        return NotYet(child.name, term, digest_time or dt.time(18, 30), earlier)
    found = await record_of(session, term.id, child.id)
    return found if found is not None else NoRecord(child.name, term)


def summary_lines(t: Translator, record: Record) -> list[str]:
    """The record in a few plain lines, for a chat message (the handler escapes them)."""
    lines = []
    for course in record.courses:
        lines.append(
            t.gettext("{course} ({category}): {attendance}").format(
                course=course.name,
                category=wording.category(t, course.category),
                attendance=attendance_text(t, course.attendance),
            )
        )
    return lines


def teachers_of(notes: Iterable[NoteLine]) -> list[str]:
    return list(dict.fromkeys(n.teacher for n in notes if n.teacher))
