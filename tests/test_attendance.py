"""The roll as a service: codes as data, the log, compare-and-set, alerts, corrections, streaks."""

from __future__ import annotations

import dataclasses
import datetime as dt
from zoneinfo import ZoneInfo

from sqlalchemy import select, update

from bot.services import attendance, leaves, members
from bot.services.attendance import Outcome, ShorthandError
from bot.services.members import Member
from storage.db import Database
from storage.models import (
    AttendanceCode,
    AttendanceMark,
    AuditLog,
    Enrolment,
    EnrolmentStatus,
    Leave,
    Outbox,
    Priority,
    Role,
    SchoolClass,
    Teacher,
)
from tests.factories import SchoolData, add_member
from tests.test_enrolment import make_course

CST = ZoneInfo("Asia/Shanghai")
MONDAY = dt.date(2026, 12, 7)
EVERY_WEEKDAY = 0b0011111
TEACHER, OTHER_TEACHER, ADMIN, MUM, DAD, HEAD = 500, 501, 502, 600, 601, 503


def at(day: dt.date, hour: int, minute: int = 0) -> dt.datetime:
    return dt.datetime.combine(day, dt.time(hour, minute), CST)


async def member(db: Database, telegram_id: int) -> Member:
    async with db.transaction() as session:
        found = await members.find_member(session, telegram_id)
    assert found is not None
    return found


async def setup(db: Database, school: SchoolData) -> int:
    """乐高机器人 every weekday 16:40–17:40, taught by 王老师 (account 500), with 李小明 (two
    guardians) and 张伟 (one) enrolled; 李小红 is in another course."""
    course = await make_course(
        db,
        school,
        "LEGO",
        name="乐高机器人",
        weekdays=EVERY_WEEKDAY,
        capacity=None,
        teacher_id=school.teacher_id,
    )
    teacher_user = await add_member(db, school, TEACHER, {Role.TEACHER})
    await add_member(db, school, ADMIN, {Role.ADMIN})
    await add_member(db, school, MUM, {Role.PARENT}, ("李小明",))
    await add_member(db, school, DAD, {Role.PARENT}, ("李小明", "张伟"), locale="en")
    async with db.transaction() as session:
        await session.execute(
            update(Teacher).where(Teacher.id == school.teacher_id).values(user_id=teacher_user)
        )
        for name in ("李小明", "张伟"):
            session.add(
                Enrolment(
                    school_id=school.school_id,
                    student_id=school.student_ids[name],
                    course_id=course,
                    status=EnrolmentStatus.ENROLLED,
                )
            )
    return course


async def head_teacher(db: Database, school: SchoolData) -> None:
    """赵老师 (account 503), head teacher (班主任) of 三年级1班, where 李小明 and 张伟 are."""
    head_user = await add_member(db, school, HEAD, {Role.TEACHER})
    async with db.transaction() as session:
        head = Teacher(school_id=school.school_id, code="T02", name="赵老师", kind="staff")
        head.user_id = head_user
        session.add(head)
        await session.flush()
        await session.execute(
            update(SchoolClass)
            .where(SchoolClass.id == school.class_ids["3-1"])
            .values(head_teacher_id=head.id)
        )


async def alerts(db: Database, kind: str = "absence") -> list[Outbox]:
    async with db.transaction() as session:
        rows = await session.scalars(select(Outbox).where(Outbox.kind == kind).order_by(Outbox.id))
        return list(rows.all())


async def test_codes_are_seeded_once_per_school_as_data(db: Database, school: SchoolData) -> None:
    async with db.transaction() as session:
        first = await attendance.codes(session, school.school_id)
        again = await attendance.codes(session, school.school_id)
        count = len((await session.scalars(select(AttendanceCode))).all())
    assert [c.code for c in first.all] == ["present", "absent", "late", "leave", "early"]
    assert again == first and count == 5
    assert first.named("缺") is first.get("absent") and first.named("LATE") is first.get("late")
    # One tap moves along present → absent → late → present; a leave goes to present.
    assert [first.next(c) for c in (None, "present", "absent", "late", "leave")] == [
        "present",
        "absent",
        "late",
        "present",
        "present",
    ]


async def test_a_school_may_change_its_codes(db: Database, school: SchoolData) -> None:
    async with db.transaction() as session:
        await attendance.codes(session, school.school_id)
        await session.execute(
            update(AttendanceCode)
            .where(AttendanceCode.code == "late")
            .values(words=["迟到了"], cycle=None)
        )
        changed = await attendance.codes(session, school.school_id)
    assert changed.named("迟到了") is changed.get("late") and changed.named("迟") is None
    assert changed.next("absent") == "present"  # late is out of the tap cycle now


async def test_the_roll_marks_the_log_and_alerts_an_unexplained_absence(
    db: Database, school: SchoolData
) -> None:
    course = await setup(db, school)
    teacher = await member(db, TEACHER)
    ming, wei = school.student_ids["李小明"], school.student_ids["张伟"]
    async with db.transaction() as session:
        roll = await attendance.open_roll(session, teacher, course, MONDAY, MONDAY)
        assert roll is not None and roll.editable and roll.version == 0
        assert [(x.number, x.name, x.proposed) for x in roll.lines] == [
            (1, "李小明", None),
            (2, "张伟", None),
        ]
        # Nothing is saved while a child is unmarked.
        half = await attendance.submit(
            session, teacher, course, MONDAY, {ming: "absent"}, 0, at(MONDAY, 16, 45)
        )
        assert half.outcome is Outcome.UNMARKED and half.unmarked == [2]
        done = await attendance.submit(
            session,
            teacher,
            course,
            MONDAY,
            {ming: "absent", wei: "present"},
            0,
            at(MONDAY, 16, 45),
        )
    assert done.outcome is Outcome.SAVED and done.alerts == [ming] and done.changed == 2
    sent = await alerts(db)
    # Both of 李小明's guardians, at once, urgently, with the reason button; none for 张伟.
    assert sorted(r.chat_id for r in sent) == [MUM, DAD]
    assert all(r.priority == Priority.URGENT and r.params["child"] == "李小明" for r in sent)
    assert sent[0].params["teacher"] == "王老师" and sent[0].params["course"] == "乐高机器人"
    mark_id = int(sent[0].buttons[0][0]["data"].split(":")[2])
    async with db.transaction() as session:
        log = (await session.scalars(select(AttendanceMark).order_by(AttendanceMark.id))).all()
        audited = await session.scalar(
            select(AuditLog.details).where(AuditLog.action == "attendance.submitted")
        )
    assert [(m.student_id, m.code, m.previous, m.alerted) for m in log] == [
        (ming, "absent", None, True),
        (wei, "present", None, False),
    ]
    assert log[0].id == mark_id and audited == {"changed": 2, "alerts": 1, "source": "roll"}


async def test_a_correction_follows_an_alert_and_the_log_keeps_both(
    db: Database, school: SchoolData
) -> None:
    course = await setup(db, school)
    teacher = await member(db, TEACHER)
    ming, wei = school.student_ids["李小明"], school.student_ids["张伟"]
    marks = {ming: "absent", wei: "present"}
    async with db.transaction() as session:
        await attendance.submit(session, teacher, course, MONDAY, marks, 0, at(MONDAY, 16, 45))
    async with db.transaction() as session:
        again = await attendance.submit(
            session, teacher, course, MONDAY, {ming: "late"}, 1, at(MONDAY, 16, 55)
        )
    assert again.outcome is Outcome.SAVED and again.corrections == [ming] and not again.alerts
    fixed = [r for r in await alerts(db) if r.dedupe_key and "absence-fixed" in r.dedupe_key]
    assert sorted(r.chat_id for r in fixed) == [MUM, DAD]
    assert fixed[0].params["status"] == {"$msgid": "Late"}
    assert fixed[0].params["time"] == {"$time": "16:55"}
    async with db.transaction() as session:
        roll = await attendance.open_roll(session, teacher, course, MONDAY, MONDAY)
        log = (
            await session.scalars(
                select(AttendanceMark)
                .where(AttendanceMark.student_id == ming)
                .order_by(AttendanceMark.id)
            )
        ).all()
    assert roll is not None and roll.lines[0].saved is not None
    assert roll.lines[0].saved.code == "late"  # the latest counts
    assert [(m.previous, m.code) for m in log] == [(None, "absent"), ("absent", "late")]
    # Saving the same roll again changes nothing and tells nobody.
    async with db.transaction() as session:
        same = await attendance.submit(session, teacher, course, MONDAY, {}, 2, at(MONDAY, 17))
    assert same.outcome is Outcome.SAVED and same.changed == 0
    assert len(await alerts(db)) == 4


async def test_a_leave_covers_the_absence_and_prefills_the_roll(
    db: Database, school: SchoolData
) -> None:
    course = await setup(db, school)
    teacher = await member(db, TEACHER)
    ming, wei = school.student_ids["李小明"], school.student_ids["张伟"]
    async with db.transaction() as session:
        assert not isinstance(
            await leaves.announce(session, ming, MONDAY, 2, user_id=None, now=at(MONDAY, 8)),
            leaves.LeaveRefusal,
        )
        roll = await attendance.open_roll(session, teacher, course, MONDAY, MONDAY)
        assert roll is not None and roll.lines[0].proposed == "leave"
        # The teacher marks the child absent anyway: the leave still covers it.
        done = await attendance.submit(
            session,
            teacher,
            course,
            MONDAY,
            {ming: "absent", wei: "present"},
            0,
            at(MONDAY, 16, 45),
        )
    assert done.outcome is Outcome.SAVED and done.alerts == []
    assert await alerts(db) == []


async def test_two_devices_saving_one_roll_the_second_changes_nothing(
    db: Database, school: SchoolData
) -> None:
    course = await setup(db, school)
    teacher = await member(db, TEACHER)
    ming, wei = school.student_ids["李小明"], school.student_ids["张伟"]
    async with db.transaction() as session:
        first = await attendance.submit(
            session, teacher, course, MONDAY, {ming: "present", wei: "present"}, 0, at(MONDAY, 17)
        )
    async with db.transaction() as session:
        second = await attendance.submit(
            session, teacher, course, MONDAY, {ming: "absent", wei: "absent"}, 0, at(MONDAY, 17)
        )
    assert first.outcome is Outcome.SAVED and second.outcome is Outcome.CONFLICT
    assert second.roll is not None and [x.proposed for x in second.roll.lines] == [
        "present",
        "present",
    ]
    assert await alerts(db) == []


async def test_who_may_mark_and_who_may_see(db: Database, school: SchoolData) -> None:
    course = await setup(db, school)
    await add_member(db, school, OTHER_TEACHER, {Role.TEACHER})
    await head_teacher(db, school)
    teacher, other, admin = [await member(db, u) for u in (TEACHER, OTHER_TEACHER, ADMIN)]
    head_member = await member(db, HEAD)
    parent = await member(db, MUM)
    ming, wei = school.student_ids["李小明"], school.student_ids["张伟"]
    marks = {ming: "present", wei: "present"}
    late = MONDAY + dt.timedelta(days=8)  # past the 7-day window
    async with db.transaction() as session:
        assert await attendance.open_roll(session, other, course, MONDAY, MONDAY) is None
        assert await attendance.open_roll(session, parent, course, MONDAY, MONDAY) is None
        refused = await attendance.submit(session, other, course, MONDAY, marks, 0, at(MONDAY, 17))
        assert refused.outcome is Outcome.REFUSED
        # Past the window the teacher sees the roll but may not change it; an admin may.
        old = await attendance.open_roll(session, teacher, course, MONDAY, late)
        assert old is not None and not old.editable
        assert (
            await attendance.submit(session, teacher, course, MONDAY, marks, 0, at(late, 9))
        ).outcome is Outcome.REFUSED
        assert (
            await attendance.submit(session, admin, course, MONDAY, marks, 0, at(late, 9))
        ).outcome is Outcome.SAVED
        # A head teacher sees their class's children only, and marks nothing.
        seen = await attendance.open_roll(session, head_member, course, MONDAY, MONDAY)
        assert seen is not None and not seen.editable
        assert [x.name for x in seen.lines] == ["李小明", "张伟"]  # both are in 三年级1班
        refused_ids = await session.scalars(
            select(AuditLog.actor_user_id).where(AuditLog.action == "attendance.refused")
        )
    # Each refusal is audited: the other teacher twice, the parent, the teacher past the window.
    assert sorted(refused_ids.all()) == sorted(
        [other.user_id, parent.user_id, other.user_id, teacher.user_id]
    )


async def test_absence_streaks_are_flagged_to_the_head_teacher_and_admins(
    db: Database, school: SchoolData
) -> None:
    course = await setup(db, school)
    await head_teacher(db, school)
    teacher = await member(db, TEACHER)
    ming, wei = school.student_ids["李小明"], school.student_ids["张伟"]
    days = [MONDAY + dt.timedelta(days=n) for n in range(3)]
    for n, day in enumerate(days):
        async with db.transaction() as session:
            await attendance.submit(
                session,
                teacher,
                course,
                day,
                {ming: "absent", wei: "present" if n != 1 else "absent"},
                0,
                at(day, 16, 45),
            )
        flagged = await alerts(db, "absence-streak")
        if n < 2:
            assert flagged == []
    # 李小明 missed three session days in a row; 张伟 one.
    assert sorted(r.chat_id for r in flagged) == [ADMIN, HEAD]
    assert {r.params["child"] for r in flagged} == {"李小明"} and flagged[0].params["days"] == 3


async def test_the_shorthand_reads_numbers_names_and_refuses_to_guess(
    db: Database, school: SchoolData
) -> None:
    course = await setup(db, school)
    teacher = await member(db, TEACHER)
    ming, wei = school.student_ids["李小明"], school.student_ids["张伟"]
    async with db.transaction() as session:
        roll = await attendance.open_roll(session, teacher, course, MONDAY, MONDAY)
    assert roll is not None
    read = attendance.read_shorthand("乐高 absent 2", [roll])
    assert read.error is None and read.marks == {wei: "absent"}
    assert attendance.fill_rest(roll, read.marks) == {wei: "absent", ming: "present"}
    assert attendance.read_shorthand("缺 小明 迟到 2", [roll]).marks == {
        ming: "absent",
        wei: "late",
    }
    assert attendance.read_shorthand("absent 9", [roll]).error is ShorthandError.NO_CHILD
    assert attendance.read_shorthand("书法 absent 1", [roll]).error is ShorthandError.NO_SESSION
    assert attendance.read_shorthand("乐高 1 2", [roll]).error is ShorthandError.NO_CODE
    assert attendance.read_shorthand("absent 伟 明", [roll]).marks == {
        wei: "absent",
        ming: "absent",
    }
    # Two sessions today and no course named: a child's name decides, when only one roll has
    # them; a roll number or a child in both is ambiguous.
    other = dataclasses.replace(
        roll,
        running=dataclasses.replace(
            roll.running, course=dataclasses.replace(roll.course, id=999, name="书法")
        ),
        lines=[roll.lines[1]],
    )
    picked = attendance.read_shorthand("缺 小明", [roll, other])
    assert picked.roll is roll and picked.marks == {ming: "absent"}
    for text in ("缺 伟", "缺 1"):
        twice = attendance.read_shorthand(text, [roll, other])
        assert twice.error is ShorthandError.AMBIGUOUS_SESSION
        assert twice.words == ("乐高机器人", "书法")
    # With 李小红 on the roll too, "小" names two children: an error naming both, no guess.
    async with db.transaction() as session:
        session.add(
            Enrolment(
                school_id=school.school_id,
                student_id=school.student_ids["李小红"],
                course_id=course,
                status=EnrolmentStatus.ENROLLED,
            )
        )
    async with db.transaction() as session:
        wider = await attendance.open_roll(session, teacher, course, MONDAY, MONDAY)
    assert wider is not None
    ambiguous = attendance.read_shorthand("absent 小", [wider])
    assert ambiguous.error is ShorthandError.AMBIGUOUS_CHILD and ambiguous.marks == {}
    assert ambiguous.words[1:] == ("1 李小明", "3 李小红")  # class 3-1 first, then 7-2


async def test_a_guardian_gives_the_reason_and_the_teacher_hears_it(
    db: Database, school: SchoolData
) -> None:
    course = await setup(db, school)
    teacher = await member(db, TEACHER)
    ming, wei = school.student_ids["李小明"], school.student_ids["张伟"]
    async with db.transaction() as session:
        await attendance.submit(
            session,
            teacher,
            course,
            MONDAY,
            {ming: "absent", wei: "present"},
            0,
            at(MONDAY, 16, 45),
        )
    mark_id = int((await alerts(db))[0].buttons[0][0]["data"].split(":")[2])
    mum = await member(db, MUM)
    stranger = await add_member(db, school, 700, {Role.PARENT}, ("李小红",))
    assert stranger
    async with db.transaction() as session:
        assert (
            await attendance.give_reason(
                session, await _m(session, 700), mark_id, "生病", at(MONDAY, 17)
            )
            is None
        )
        given = await attendance.give_reason(
            session, mum, mark_id, "Ill", at(MONDAY, 17), pressed="ab:s"
        )
    assert given is not None and given.child == "李小明"
    told = await alerts(db, "absence-reason")
    assert sorted(r.chat_id for r in told) == [TEACHER, DAD]
    assert told[0].params["reason"] == {"$msgid": "Ill"}
    async with db.transaction() as session:
        session_id = await session.scalar(
            select(AttendanceMark.session_id).where(AttendanceMark.id == mark_id)
        )
        assert session_id is not None
        latest = (await attendance.current(session, session_id))[ming]
    assert latest.code == "absent" and latest.note == "Ill"


async def _m(session: object, telegram_id: int) -> Member:
    found = await members.find_member(session, telegram_id)  # type: ignore[arg-type]
    assert found is not None
    return found


async def test_a_leave_or_pick_up_for_today_reaches_the_teacher_and_head_teacher(
    db: Database, school: SchoolData
) -> None:
    course = await setup(db, school)
    assert course
    await head_teacher(db, school)
    mum = await member(db, MUM)
    ming, wei = school.student_ids["李小明"], school.student_ids["张伟"]
    morning = at(MONDAY, 9)
    async with db.transaction() as session:
        later = await leaves.file(
            session,
            mum,
            ming,
            leaves.Request(MONDAY + dt.timedelta(days=1), MONDAY + dt.timedelta(days=1)),
            now=morning,
        )
        assert later is not None and later.made
    assert await alerts(db, "leave-staff") == []  # tomorrow's leave waits for tomorrow's roster
    async with db.transaction() as session:
        today = await leaves.file(
            session,
            mum,
            ming,
            leaves.Request(MONDAY, MONDAY, period=2, reason="看牙医"),
            now=morning,
        )
        assert today is not None and today.made
    told = await alerts(db, "leave-staff")
    assert sorted(r.chat_id for r in told) == [TEACHER, HEAD]
    assert told[0].params["reason"] == "看牙医" and told[0].params["klass"] == "三年级1班"
    assert "on leave" in told[0].template
    dad = await member(db, DAD)
    async with db.transaction() as session:
        pickup = await leaves.file(
            session,
            dad,
            wei,
            leaves.Request(MONDAY, MONDAY, pickup_at=dt.time(17, 10)),
            now=morning,
        )
        assert pickup is not None and pickup.made
        taken = await leaves.take_back(session, mum, today.made[0].id, now=morning)
        assert taken is not None and taken.result is True
    told = await alerts(db, "leave-staff")
    templates = [(r.chat_id, r.template.split(" ")[0], r.params["child"]) for r in told[2:]]
    assert sorted(templates) == sorted(
        [
            (TEACHER, "🚗", "张伟"),
            (HEAD, "🚗", "张伟"),
            (TEACHER, "↩️", "李小明"),
            (HEAD, "↩️", "李小明"),
        ]
    )


async def test_a_child_collected_before_the_session_is_not_expected_in_it(
    db: Database, school: SchoolData
) -> None:
    course = await setup(db, school)
    teacher = await member(db, TEACHER)
    ming, wei = school.student_ids["李小明"], school.student_ids["张伟"]
    async with db.transaction() as session:
        # 李小明 is collected at 16:00 in period 1: gone before 乐高 (period 2, 16:40) starts.
        # 张伟 is collected at 17:10, during 乐高 itself: there at the start.
        for child, period, clock in ((ming, 1, dt.time(16, 0)), (wei, 2, dt.time(17, 10))):
            session.add(
                Leave(
                    school_id=school.school_id,
                    student_id=child,
                    date=MONDAY,
                    period=period,
                    pickup_at=clock,
                )
            )
    async with db.transaction() as session:
        roll = await attendance.open_roll(session, teacher, course, MONDAY, MONDAY)
        assert roll is not None
        assert [x.proposed for x in roll.lines] == ["leave", "early"]
        done = await attendance.submit(
            session, teacher, course, MONDAY, {ming: "absent", wei: "present"}, 0, at(MONDAY, 17)
        )
    assert done.outcome is Outcome.SAVED and done.alerts == [] and await alerts(db) == []
