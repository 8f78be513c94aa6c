"""Dismissal (弹性离校): the teacher marks how each child left, guardians keep who may collect
the child and whether the child may go home alone, opted-in guardians are told at once, and
nothing here ever costs a family money."""

from __future__ import annotations

import ast
import datetime as dt
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import pytest
from sqlalchemy import func, select, update

from bot.i18n import I18n
from bot.services import dismissal, enrolment, leaves, members, outbox
from bot.services.dismissal import Change, Outcome
from bot.services.members import Member
from storage.db import Database
from storage.models import (
    AttendanceMark,
    AuditLog,
    Bill,
    BillLine,
    Dismissal,
    DismissalWay,
    Outbox,
    Role,
    Student,
    Teacher,
    User,
)
from tests.factories import SchoolData, add_member, term_around_today
from tests.harness import FakeUser
from tests.test_enrolment import make_course, pupils

CST = ZoneInfo("Asia/Shanghai")
TEACHER, OTHER_TEACHER, MOM, DAD, EN_PARENT, STRANGER = 960, 961, 811, 812, 813, 814
I18N = I18n(CST)
ROOT = Path(__file__).resolve().parent.parent
EN_TIME = I18N.get("en").time(dt.time(17, 52))  # "5:52 PM": the reader's own format


def school_today() -> dt.date:
    return dt.datetime.now(CST).date()


def at(hour: int, minute: int = 0) -> dt.datetime:
    return dt.datetime.combine(school_today(), dt.time(hour, minute), CST).astimezone(dt.UTC)


@dataclass
class World:
    course: int
    xiaoming: int  # 1 on the roll (class 3-1), MOM and DAD; MOM wants to be told
    zhangwei: int  # 2 on the roll (class 3-1), EN_PARENT (English, wants to be told)
    xiaohong: int  # 3 on the roll (class 7-2)


async def world(db: Database, school: SchoolData) -> World:
    """剪纸（非遗）, period 2, 16:50–17:50 every day, taught by 王老师 (TEACHER), with three
    children; another teacher with no part in it."""
    await term_around_today(db)
    teacher = await add_member(db, school, TEACHER, {Role.TEACHER})
    await add_member(db, school, OTHER_TEACHER, {Role.TEACHER})
    async with db.transaction() as session:
        await session.execute(
            update(Teacher).where(Teacher.id == school.teacher_id).values(user_id=teacher)
        )
    mom = await add_member(db, school, MOM, {Role.PARENT}, ("李小明",))
    await add_member(db, school, DAD, {Role.PARENT}, ("李小明",))
    english = await add_member(db, school, EN_PARENT, {Role.PARENT}, ("张伟",), locale="en")
    await add_member(db, school, STRANGER, {Role.PARENT}, ("李小红",))
    async with db.transaction() as session:
        await session.execute(
            update(User).where(User.id.in_([mom, english])).values(dismissal_notice=True)
        )
    course = await make_course(
        db,
        school,
        "JZ",
        name="剪纸（非遗）",
        teacher_id=school.teacher_id,
        weekdays=0b1111111,
        starts_at=dt.time(16, 50),
        ends_at=dt.time(17, 50),
        grade_max=9,
        capacity=None,
    )
    ids = school.student_ids
    for name in ("李小明", "张伟", "李小红"):
        assert not isinstance(
            await enrolment.sign_up(db, ids[name], course, user_id=None), enrolment.Refusal
        )
    return World(course, ids["李小明"], ids["张伟"], ids["李小红"])


async def member(db: Database, telegram_id: int) -> Member:
    async with db.transaction() as session:
        found = await members.find_member(session, telegram_id)
    assert found is not None
    return found


async def sheet(db: Database, who: Member, home: World) -> dismissal.Sheet:
    async with db.transaction() as session:
        found = await dismissal.sheet(session, who, home.course, school_today(), school_today())
    assert found is not None
    return found


async def mark(
    db: Database,
    who: Member,
    found: dismissal.Sheet,
    student_id: int,
    way: DismissalWay,
    *,
    expected: int | None = None,
    person_id: int | None = None,
    now: dt.datetime | None = None,
) -> dismissal.Marked | None:
    assert found.session_id is not None
    pupil = found.pupil(student_id)
    assert pupil is not None
    async with db.transaction() as session:
        return await dismissal.mark(
            session,
            who,
            found.session_id,
            student_id,
            way,
            expected=pupil.latest if expected is None else expected,
            person_id=person_id,
            now=now or at(17, 52),
            today=school_today(),
        )


async def count(db: Database, model: Any) -> int:
    async with db.transaction() as session:
        return int(await session.scalar(select(func.count()).select_from(model)) or 0)


async def notices(db: Database, chat_id: int, kind: str = "dismissal") -> list[str]:
    """What a guardian reads, from the outbox, in their own language."""
    async with db.transaction() as session:
        rows = (
            await session.execute(
                select(Outbox, User.locale)
                .join(User, User.id == Outbox.user_id)
                .where(Outbox.kind == kind, Outbox.chat_id == chat_id)
                .order_by(Outbox.id)
            )
        ).all()
    found = []
    for row, locale in rows:
        t = I18N.get(locale or "zh_CN")
        found.append(t.gettext(row.template or "").format(**outbox.format_params(row.params, t)))
    return found


async def grandpa(db: Database, home: World, student_id: int, parent: int) -> dismissal.Adult:
    async with db.transaction() as session:
        done = await dismissal.add_adult(
            session, await member(db, parent), student_id, "张建国", "爷爷", now=at(9)
        )
    assert done is not None and done.result is Change.DONE and done.adult is not None
    return done.adult


async def permit(db: Database, student_id: int, parent: int, allowed: bool = True) -> None:
    async with db.transaction() as session:
        done = await dismissal.permit_alone(
            session, await member(db, parent), student_id, allowed, now=at(9)
        )
    assert done is not None and done.result is Change.DONE


# ---------------------------------------------------------------------------------------------
# Services


async def test_every_way_is_recorded_the_latest_counts_and_nothing_costs_money(
    db: Database, school: SchoolData
) -> None:
    home = await world(db, school)
    teacher = await member(db, TEACHER)
    adult = await grandpa(db, home, home.zhangwei, EN_PARENT)
    await permit(db, home.xiaohong, STRANGER)
    found = await sheet(db, teacher, home)
    assert [(p.number, p.name) for p in found.pupils] == [
        (1, "李小明"),
        (2, "张伟"),
        (3, "李小红"),
    ]
    assert found.pupil(home.zhangwei).adults == (adult,)  # type: ignore[union-attr]
    assert found.pupil(home.xiaohong).alone  # type: ignore[union-attr]

    guardian = await mark(db, teacher, found, home.xiaoming, DismissalWay.GUARDIAN)
    authorised = await mark(
        db, teacher, found, home.zhangwei, DismissalWay.AUTHORISED, person_id=adult.id
    )
    alone = await mark(db, teacher, found, home.xiaohong, DismissalWay.ALONE)
    assert [m.outcome for m in (guardian, authorised, alone) if m] == [Outcome.DONE] * 3
    # A correction is a new row against the row the teacher saw; the latest counts.
    assert guardian is not None
    seen = guardian.sheet.pupil(home.xiaoming)
    assert seen is not None and seen.left is not None and seen.left.way is DismissalWay.GUARDIAN
    corrected = await mark(
        db, teacher, guardian.sheet, home.xiaoming, DismissalWay.EXTENDED, now=at(17, 55)
    )
    assert corrected is not None and corrected.outcome is Outcome.DONE
    after = await sheet(db, teacher, home)
    left = {p.name: (p.left.way, p.left.adult) for p in after.pupils if p.left}
    assert left == {
        "李小明": (DismissalWay.EXTENDED, None),
        "张伟": (DismissalWay.AUTHORISED, adult),
        "李小红": (DismissalWay.ALONE, None),
    }
    assert after.remaining == []
    assert await count(db, Dismissal) == 4  # nothing was overwritten
    # Flexible dismissal is free by policy: no bill, no bill line, whatever way a child left.
    assert await count(db, Bill) == 0 and await count(db, BillLine) == 0


def test_no_code_path_of_dismissal_touches_fees() -> None:
    for path in (
        "bot/services/dismissal.py",
        "handlers/teacher/dismissal.py",
        "handlers/parent/pickup.py",
    ):
        tree = ast.parse((ROOT / path).read_text(encoding="utf-8"))
        imported = set()
        for node in ast.walk(tree):
            if isinstance(node, ast.ImportFrom):
                imported |= {f"{node.module}.{a.name}" for a in node.names}
            elif isinstance(node, ast.Import):
                imported |= {a.name for a in node.names}
        fees = {
            name
            for name in imported
            if "fee" in name.lower() or name.rsplit(".", 1)[-1] in {"Bill", "BillLine"}
        }
        assert fees == set(), path
        assert imported, path  # the walk found the module's imports at all


async def test_home_alone_is_refused_without_a_guardians_permission(
    db: Database, school: SchoolData
) -> None:
    home = await world(db, school)
    teacher = await member(db, TEACHER)
    found = await sheet(db, teacher, home)
    refused = await mark(db, teacher, found, home.xiaoming, DismissalWay.ALONE)
    assert refused is not None and refused.outcome is Outcome.NOT_PERMITTED
    assert await count(db, Dismissal) == 0
    assert await notices(db, MOM) == []
    # Once a guardian gave it, the same mark is recorded; withdrawn, it is refused again.
    await permit(db, home.xiaoming, DAD)
    allowed = await mark(
        db, teacher, await sheet(db, teacher, home), home.xiaoming, DismissalWay.ALONE
    )
    assert allowed is not None and allowed.outcome is Outcome.DONE
    await permit(db, home.xiaoming, MOM, allowed=False)
    again = await mark(
        db, teacher, await sheet(db, teacher, home), home.xiaoming, DismissalWay.ALONE
    )
    assert again is not None and again.outcome is Outcome.NOT_PERMITTED


async def test_the_loser_of_a_race_changes_nothing_and_learns_what_was_recorded(
    db: Database, school: SchoolData
) -> None:
    home = await world(db, school)
    teacher = await member(db, TEACHER)
    found = await sheet(db, teacher, home)  # both devices show the list with nothing marked
    first = await mark(db, teacher, found, home.xiaoming, DismissalWay.GUARDIAN)
    second = await mark(db, teacher, found, home.xiaoming, DismissalWay.EXTENDED)
    assert first is not None and first.outcome is Outcome.DONE
    assert second is not None and second.outcome is Outcome.RACED
    told = second.pupils[0].left
    assert told is not None and told.way is DismissalWay.GUARDIAN
    assert await count(db, Dismissal) == 1
    assert await notices(db, MOM) == ["李小明 17:52 由家长接走"]
    # "All the rest" guards the list it showed the same way.
    stale = found.version, len(found.remaining)
    assert found.session_id is not None
    async with db.transaction() as session:
        rest = await dismissal.mark_rest(
            session,
            teacher,
            found.session_id,
            version=stale[0],
            count=stale[1],
            now=at(17, 53),
            today=school_today(),
        )
    assert rest is not None and rest.outcome is Outcome.RACED
    assert await count(db, Dismissal) == 1


async def test_only_guardians_who_asked_are_told_each_in_their_language(
    db: Database, school: SchoolData
) -> None:
    home = await world(db, school)
    teacher = await member(db, TEACHER)
    adult = await grandpa(db, home, home.zhangwei, EN_PARENT)
    found = await sheet(db, teacher, home)
    await mark(db, teacher, found, home.xiaoming, DismissalWay.GUARDIAN)
    await mark(db, teacher, found, home.zhangwei, DismissalWay.AUTHORISED, person_id=adult.id)
    assert await notices(db, MOM) == ["李小明 17:52 由家长接走"]
    assert await notices(db, DAD) == []  # did not ask to be told
    assert await notices(db, EN_PARENT) == [
        f"张伟 {EN_TIME} picked up by Grandpa (father's side) (张建国)"
    ]
    async with db.transaction() as session:
        priorities = set(
            (
                await session.scalars(select(Outbox.priority).where(Outbox.kind == "dismissal"))
            ).all()
        )
    assert priorities == {1}  # INTERACTIVE: at once, never held for a digest
    # Extended care and home alone read as the brief has them.
    latest = await sheet(db, teacher, home)
    await mark(db, teacher, latest, home.xiaoming, DismissalWay.EXTENDED, now=at(17, 58))
    assert (await notices(db, MOM))[-1] == "李小明 17:58 转入延时托管"


async def test_the_list_shows_early_pick_ups_and_leaves_and_all_the_rest_skips_them(
    db: Database, school: SchoolData
) -> None:
    home = await world(db, school)
    teacher = await member(db, TEACHER)
    async with db.transaction() as session:
        picked = await leaves.announce(
            session,
            home.zhangwei,
            school_today(),
            2,
            user_id=None,
            pickup_at=dt.time(17, 10),
            now=at(0, 1),
        )
        away = await leaves.announce(
            session, home.xiaohong, school_today(), None, user_id=None, now=at(0, 1)
        )
    assert not isinstance(picked, leaves.LeaveRefusal) and not isinstance(
        away, leaves.LeaveRefusal
    )
    found = await sheet(db, teacher, home)
    zhangwei, xiaohong = found.pupil(home.zhangwei), found.pupil(home.xiaohong)
    assert zhangwei is not None and zhangwei.pickup_at == dt.time(17, 10) and zhangwei.in_class
    assert xiaohong is not None and xiaohong.on_leave and not xiaohong.in_class
    assert [p.name for p in found.remaining] == ["李小明", "张伟"]
    assert found.session_id is not None
    async with db.transaction() as session:
        rest = await dismissal.mark_rest(
            session,
            teacher,
            found.session_id,
            version=found.version,
            count=len(found.remaining),
            now=at(17, 52),
            today=school_today(),
        )
    assert rest is not None and rest.outcome is Outcome.DONE
    assert sorted(p.name for p in rest.pupils) == ["张伟", "李小明"]
    after = await sheet(db, teacher, home)
    assert after.pupil(home.xiaohong).left is None  # type: ignore[union-attr]
    assert await count(db, Dismissal) == 2


async def test_a_teacher_of_another_course_and_a_parent_are_refused_and_audited(
    db: Database, school: SchoolData
) -> None:
    home = await world(db, school)
    found = await sheet(db, await member(db, TEACHER), home)
    for outsider in (OTHER_TEACHER, MOM):
        who = await member(db, outsider)
        assert await mark(db, who, found, home.xiaoming, DismissalWay.GUARDIAN) is None
        async with db.transaction() as session:
            assert (
                await dismissal.sheet(session, who, home.course, school_today(), school_today())
                is None
            )
    assert await count(db, Dismissal) == 0
    async with db.transaction() as session:
        refused = (
            await session.scalars(
                select(AuditLog.actor_user_id).where(AuditLog.action == dismissal.REFUSED)
            )
        ).all()
    assert len(refused) == 4


async def test_guardians_keep_the_adults_and_one_removal_wins(
    db: Database, school: SchoolData
) -> None:
    home = await world(db, school)
    adult = await grandpa(db, home, home.xiaoming, MOM)
    async with db.transaction() as session:
        both = [
            await dismissal.settings(session, await member(db, who), home.xiaoming)
            for who in (MOM, DAD)
        ]
    assert [s.adults for s in both if s] == [(adult,), (adult,)]  # one list for both guardians
    assert await notices(db, DAD, "pickup") == [
        "👪 李小明的另一位家长添加了授权接送人：爷爷（张建国）可以接李小明。"
    ]
    async with db.transaction() as session:
        assert (
            await dismissal.remove_adult(session, await member(db, STRANGER), adult.id, now=at(10))
            is None
        )
    results = []
    for who in (DAD, MOM):
        async with db.transaction() as session:
            done = await dismissal.remove_adult(
                session, await member(db, who), adult.id, now=at(10)
            )
        assert done is not None
        results.append(done.result)
    assert results == [Change.DONE, Change.ALREADY]
    teacher = await member(db, TEACHER)
    found = await sheet(db, teacher, home)
    assert found.pupil(home.xiaoming).adults == ()  # type: ignore[union-attr]
    refused = await mark(
        db, teacher, found, home.xiaoming, DismissalWay.AUTHORISED, person_id=adult.id
    )
    assert refused is not None and refused.outcome is Outcome.NO_ADULT


# ---------------------------------------------------------------------------------------------
# Handlers, through process_update


@pytest.fixture
def clock(monkeypatch: pytest.MonkeyPatch) -> None:
    """The teacher marks at 17:52, school time, today; a guardian sets things at 09:00."""
    monkeypatch.setattr("handlers.teacher.dismissal.utcnow", lambda: at(17, 52))
    monkeypatch.setattr("handlers.parent.pickup.utcnow", lambda: at(9))


async def test_a_guardian_adds_an_adult_and_allows_home_alone_after_a_confirm(
    make_user: Any, db: Database, school: SchoolData, clock: None
) -> None:
    home = await world(db, school)
    mom: FakeUser = make_user(MOM)
    first = FakeUser.texts(await mom.send("/pickup"))
    assert "李小明 · 接送设置" in first and "暂无，仅限家长本人。" in first
    asked = FakeUser.texts(await mom.click("添加接送人"))
    assert "还有谁可以接李小明" in asked
    relation = await mom.send("张建国")
    assert {"爷爷", "奶奶", "外公", "外婆", "其他…", "‹ 返回", "取消"} <= {
        b["text"] for c in relation for b in c.buttons()
    }
    added = FakeUser.texts(await mom.click("爷爷"))
    assert "已添加：爷爷（张建国）可以接李小明。" in added and "• 爷爷（张建国）" in added
    # A typed relation works as well.
    await mom.click("添加接送人")
    await mom.send("张丽")
    await mom.click("其他…")
    typed = FakeUser.texts(await mom.send("姑姑"))
    assert "已添加：姑姑（张丽）可以接李小明。" in typed

    confirm = FakeUser.texts(await mom.click("允许自行回家"))
    assert "李小明放学时可以自行回家，老师将不再等待家长接送。" in confirm
    async with db.transaction() as session:
        before = await session.scalar(
            select(Student.alone_permitted_at).where(Student.id == home.xiaoming)
        )
    assert before is None  # nothing recorded before the confirm
    done = FakeUser.texts(await mom.click("确认开启"))
    assert "已保存：李小明放学后可以自行回家。" in done
    mom_id = (await member(db, MOM)).user_id
    async with db.transaction() as session:
        by, when = (
            await session.execute(
                select(Student.alone_permitted_by_user_id, Student.alone_permitted_at).where(
                    Student.id == home.xiaoming
                )
            )
        ).one()
        audited = await session.scalar(
            select(func.count())
            .select_from(AuditLog)
            .where(AuditLog.action == "pickup.alone_permitted", AuditLog.actor_user_id == mom_id)
        )
    assert by == mom_id and when == at(9) and audited == 1
    assert await notices(db, DAD, "pickup") == [
        "👪 李小明的另一位家长添加了授权接送人：爷爷（张建国）可以接李小明。",
        "👪 李小明的另一位家长添加了授权接送人：姑姑（张丽）可以接李小明。",
        "👪 李小明的另一位家长已同意李小明放学后自行回家，老师将不再等待家长接送。",
    ]
    # The other guardian sees the same list.
    dad_sees = FakeUser.texts(await make_user(DAD).send("/pickup"))
    assert "• 爷爷（张建国）" in dad_sees and "• 姑姑（张丽）" in dad_sees
    assert "李小明放学后可以自行回家" in dad_sees
    # Someone else's parent pressing the same buttons changes nothing and is audited.
    stranger: FakeUser = make_user(STRANGER)
    replies = await stranger.press(f"pk:a:{home.xiaoming}:0")
    assert any(c.method == "answerCallbackQuery" for c in replies)
    async with db.transaction() as session:
        still = await session.scalar(
            select(Student.alone_permitted_at).where(Student.id == home.xiaoming)
        )
        refused = await session.scalar(
            select(func.count())
            .select_from(AuditLog)
            .where(AuditLog.action == dismissal.PICKUP_REFUSED)
        )
    assert still is not None and refused == 1


async def test_the_teacher_dismisses_from_the_list_and_the_opted_in_parent_is_told(
    make_user: Any, db: Database, school: SchoolData, clock: None
) -> None:
    home = await world(db, school)
    await grandpa(db, home, home.zhangwei, EN_PARENT)
    async with db.transaction() as session:
        await leaves.announce(
            session, home.xiaohong, school_today(), None, user_id=None, now=at(0, 1)
        )
    teacher: FakeUser = make_user(TEACHER)
    shown = await teacher.send("/dismiss")
    text = FakeUser.texts(shown)
    assert "剪纸（非遗）" in text and "在班 2 人" in text
    assert "1. 李小明" in text and "3. 李小红 📝 请假" in text
    assert "2. 张伟 👤 爷爷（张建国）" in text
    buttons = {b["text"] for c in shown for b in c.buttons()}
    assert {"1 李小明", "2 张伟", "其余全部由家长接走"} <= buttons and "3 李小红" not in buttons

    card = FakeUser.texts(await teacher.click("1 李小明"))
    assert "李小明怎样离校？" in card and "家长尚未同意李小明自行回家" in card
    assert "自行回家" not in {
        b["text"] for c in teacher.request.sent_to(TEACHER)[-1:] for b in c.buttons()
    }
    result = FakeUser.texts(await teacher.click("家长接走"))
    assert "✅ 1. 李小明 17:52 由家长接走" in result
    assert await notices(db, MOM) == ["李小明 17:52 由家长接走"]
    assert await notices(db, DAD) == []

    confirm = FakeUser.texts(await teacher.click("其余全部由家长接走"))
    assert "将在班的 1 个孩子全部登记为由家长接走？" in confirm and "2. 张伟" in confirm
    rest = FakeUser.texts(await teacher.click("确认"))
    assert "✅ 17:52 由家长接走：2. 张伟" in rest
    assert await notices(db, EN_PARENT) == [f"张伟 {EN_TIME} picked up by a guardian"]
    assert await count(db, Dismissal) == 2 and await count(db, Bill) == 0


async def test_the_shorthand_marks_by_number_and_says_why_home_alone_is_refused(
    make_user: Any, db: Database, school: SchoolData, clock: None
) -> None:
    home = await world(db, school)
    await permit(db, home.zhangwei, EN_PARENT)
    teacher: FakeUser = make_user(TEACHER)
    answer = FakeUser.texts(await teacher.send("/dismiss 1 2 自行"))
    assert "✗ 1. 李小明不能自行回家：家长尚未同意。请家长在 /pickup 中开启。" in answer
    assert "✅ 2. 张伟 17:52 自行回家" in answer
    assert "没有序号为 9 的孩子" in FakeUser.texts(await teacher.send("/dismiss 9 家长"))
    # The course may be written first; numbers may be separated by 、.
    both = FakeUser.texts(await teacher.send("/dismiss 剪纸 1、3 延时"))
    assert "✅ 1. 李小明 17:52 转入延时托管" in both and "✅ 3. 李小红 17:52 转入延时托管" in both
    async with db.transaction() as session:
        ways = (await session.scalars(select(Dismissal.way).order_by(Dismissal.id))).all()
    assert ways == [DismissalWay.ALONE, DismissalWay.EXTENDED, DismissalWay.EXTENDED]


async def test_a_class_of_fifty_fits_a_phone_eight_children_a_page(
    make_user: Any, db: Database, school: SchoolData, clock: None
) -> None:
    home = await world(db, school)
    for kid in await pupils(db, school, 45):
        assert not isinstance(
            await enrolment.sign_up(db, kid, home.course, user_id=None), enrolment.Refusal
        )
    teacher: FakeUser = make_user(TEACHER)
    shown = [c for c in await teacher.send("/dismiss") if c.buttons()][-1]
    assert len(shown.text) < 4096 and "48. " in shown.text
    rows = json_rows(shown)
    children = [b for row in rows for b in row if b[0].isdigit() and " " in b]
    assert len(children) == 8 and max(len(row) for row in rows) <= 3
    assert ["1/6", "›"] in rows
    second = [c for c in await teacher.click("›") if c.buttons()][-1]
    labels = [b for row in json_rows(second) for b in row]
    assert labels[0].startswith("9 ") and "‹" in labels and "2/6" in labels


def json_rows(call: Any) -> list[list[str]]:
    markup = call.params["reply_markup"]
    markup = json.loads(markup) if isinstance(markup, str) else markup
    return [[b["text"] for b in row] for row in markup["inline_keyboard"]]


async def test_the_roll_decides_who_is_in_the_room(db: Database, school: SchoolData) -> None:
    """Absent on the roll: not waiting to be collected; on leave but marked present: here."""
    home = await world(db, school)
    teacher = await member(db, TEACHER)
    async with db.transaction() as session:
        await leaves.announce(
            session, home.xiaohong, school_today(), None, user_id=None, now=at(0, 1)
        )
    found = await sheet(db, teacher, home)
    assert found.session_id is not None
    async with db.transaction() as session:
        session.add_all(
            [
                AttendanceMark(
                    school_id=school.school_id,
                    session_id=found.session_id,
                    student_id=student,
                    code=code,
                    source="roll",
                )
                for student, code in ((home.xiaoming, "absent"), (home.xiaohong, "present"))
            ]
        )
    after = await sheet(db, teacher, home)
    assert [p.name for p in after.remaining] == ["张伟", "李小红"]
