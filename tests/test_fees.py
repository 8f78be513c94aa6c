"""Fees without Telegram: disclosure enforced on every bill line, term bills computed from
enrolments and the calendar, refunds by the disclosed rule, the ledger, notices and reminders.

The test term runs from Tuesday 1 September 2026 to Wednesday 20 January 2027; a Monday course
has 20 sessions (7 September … 18 January).
"""

from __future__ import annotations

import datetime as dt
from decimal import Decimal
from typing import Any
from zoneinfo import ZoneInfo

import pytest
from sqlalchemy import func, select, update

from bot.services import billing, enrolment, fee_notices, fee_rules, fees
from bot.services.fee_rules import Join, Leaving, Refund, Rule, Window
from bot.services.fees import LineDraft, LineRefusal
from storage.db import Database
from storage.models import (
    Bill,
    BillEntry,
    BillLine,
    Course,
    Enrolment,
    EnrolmentStatus,
    EntryKind,
    FeeCovers,
    FeeStandard,
    FeeUnit,
    Outbox,
    Role,
    utcnow,
)
from tests.factories import SchoolData, add_member
from tests.test_enrolment import MONDAY, make_course

UTC = dt.UTC
BEFORE_TERM = dt.datetime(2026, 8, 25, 2, 0, tzinfo=UTC)  # sign-ups, a week before the start
DISCLOSED = dt.datetime(2026, 8, 20, 0, 0, tzinfo=UTC)
MONDAYS = [dt.date(2026, 9, 7) + dt.timedelta(weeks=n) for n in range(20)]
DUE = dt.date(2026, 9, 30)


def days(start: dt.date, end: dt.date, weekdays: set[int]) -> list[dt.date]:
    found, day = [], start
    while day <= end:
        if day.isoweekday() in weekdays:
            found.append(day)
        day += dt.timedelta(days=1)
    return found


# -------------------------------------------------------------------------------------------
# The arithmetic, exact to the fen


def test_a_late_join_pays_by_the_disclosed_join_rule() -> None:
    weekdays = days(dt.date(2026, 9, 1), dt.date(2027, 1, 20), {1, 2, 3, 4, 5})  # 102 days
    assert len(weekdays) == 102
    joined = dt.date(2026, 10, 19)  # 68 service days left
    left = sum(1 for d in weekdays if d >= joined)
    assert left == 68
    assert fee_rules.charge(FeeUnit.TERM, 28000, weekdays, joined, Join.FULL).amount_fen == 28000
    # 28000 × 68 / 102 = 18666.67 → 18667 fen (half up, once).
    assert fee_rules.charge(FeeUnit.TERM, 28000, weekdays, joined, Join.BY_DAY).amount_fen == 18667
    # Monthly, joined 19 October: October's second half is whole (16–31 all ahead) but its
    # first half is not; by day, October's 10 remaining of 22 days.
    monthly = fee_rules.charge(FeeUnit.MONTH, 13000, weekdays, joined, Join.BY_HALF_MONTH)
    assert monthly.quantity == 4 and monthly.amount_fen == 13000 * 3  # Oct: 0 halves whole
    by_day = fee_rules.charge(FeeUnit.MONTH, 13000, weekdays, joined, Join.BY_DAY)
    october = [d for d in weekdays if d.month == 10]
    assert by_day.amount_fen == 13000 * 3 + round(13000 * 10 / len(october))
    # Per session: only the sessions from the join.
    sessions = fee_rules.charge(FeeUnit.SESSION, 300, MONDAYS, dt.date(2026, 11, 1), Join.FULL)
    assert sessions == fee_rules.Charge(12, 3600)


def test_refunds_follow_each_modelled_rule() -> None:
    start = MONDAYS[0]
    leaving = Leaving(dt.date(2026, 11, 16))  # 10 sessions done, 10 left
    by_day = Rule(refund=Refund.BY_DAY)
    assert (
        fee_rules.refund_for_leaving(by_day, FeeUnit.TERM, 60000, MONDAYS, start, 60000, leaving)
        == 30000
    )
    # Two leave days before leaving count as unused only when the rule says so.
    leave = [MONDAYS[2], MONDAYS[3]]
    counted = Rule(refund=Refund.BY_DAY, count_leave=True)
    assert (
        fee_rules.refund_for_leaving(
            counted, FeeUnit.TERM, 60000, MONDAYS, start, 60000, leaving, leave
        )
        == 36000
    )
    assert (
        fee_rules.refund_for_leaving(
            by_day, FeeUnit.TERM, 60000, MONDAYS, start, 60000, leaving, leave
        )
        == 30000
    )
    # By whole half-months: from 16 November, Nov 2nd half, Dec ×2, Jan ×2 are whole = 5 of 10.
    halves = Rule(refund=Refund.BY_HALF_MONTH)
    assert (
        fee_rules.refund_for_leaving(halves, FeeUnit.TERM, 60000, MONDAYS, start, 60000, leaving)
        == 30000
    )
    # Leaving on 17 November: Nov's second half is no longer whole.
    later = Leaving(dt.date(2026, 11, 17))
    assert (
        fee_rules.refund_for_leaving(halves, FeeUnit.TERM, 60000, MONDAYS, start, 60000, later)
        == 24000
    )
    windows = Rule(
        refund=Refund.WINDOWS,
        windows=(Window(dt.date(2026, 9, 15), 100), Window(dt.date(2026, 10, 31), 50)),
        after=0,
    )
    for on, back in ((dt.date(2026, 9, 15), 60000), (dt.date(2026, 10, 2), 30000), (later.on, 0)):
        assert (
            fee_rules.refund_for_leaving(
                windows, FeeUnit.TERM, 60000, MONDAYS, start, 60000, Leaving(on)
            )
            == back
        )
    nothing = Rule(refund=Refund.NONE)
    assert (
        fee_rules.refund_for_leaving(nothing, FeeUnit.TERM, 60000, MONDAYS, start, 60000, leaving)
        == 0
    )
    cancelled = Leaving(dt.date(2026, 12, 1), cancelled=True)
    assert (
        fee_rules.refund_for_leaving(
            nothing, FeeUnit.TERM, 60000, MONDAYS, start, 60000, cancelled
        )
        == 60000
    )
    # Per session: each session left at the session price.
    assert (
        fee_rules.refund_for_leaving(by_day, FeeUnit.SESSION, 300, MONDAYS, start, 6000, leaving)
        == 3000
    )
    # Settled at term end by the days actually served: 16 served of 20, one on leave.
    settle = Rule(refund=Refund.AT_TERM_END)
    served = MONDAYS[:16]
    assert (
        fee_rules.settle_at_term_end(
            settle, FeeUnit.TERM, 60000, MONDAYS, start, 60000, 0, served, [MONDAYS[16]]
        )
        == 9000  # 3 unserved days not on leave × 3000
    )
    assert (
        fee_rules.settle_at_term_end(by_day, FeeUnit.TERM, 60000, MONDAYS, start, 60000, 0, served)
        == 0
    )


def test_a_rule_is_checked_before_it_is_stored() -> None:
    assert fee_rules.parse(None) == fee_rules.DEFAULT
    rule = fee_rules.parse(
        {"refund": "windows", "windows": [{"until": "2026-09-30", "percent": 80}]}
    )
    assert rule.windows == (Window(dt.date(2026, 9, 30), 80),)
    assert fee_rules.parse(rule.as_json()) == rule
    for bad in (
        {"refund": "sometimes"},
        {"refund": "windows"},
        {"after": 120},
        {"count_leave": "yes"},
        {"colour": "red"},
        {
            "refund": "windows",
            "windows": [
                {"until": "2026-10-30", "percent": 50},
                {"until": "2026-09-30", "percent": 80},
            ],
        },
    ):
        with pytest.raises(ValueError):
            fee_rules.parse(bad)


def test_the_reminder_ladder() -> None:
    ladder = fee_notices.Ladder()
    steps = {
        (DUE + dt.timedelta(days=n)).isoformat(): ladder.step(DUE, DUE + dt.timedelta(days=n))
        for n in range(-5, 30)
    }
    sent = {day: step for day, step in steps.items() if step}
    assert sent == {
        "2026-09-27": "b3",
        "2026-09-30": "d",
        "2026-10-07": "a1",
        "2026-10-14": "a2",
        "2026-10-21": "a3",
    }
    quiet = fee_notices.Ladder.parse({"before": [7, 1], "on_due": False, "at_most": 0})
    assert [
        ladder_day
        for ladder_day in range(-10, 20)
        if quiet.step(DUE, DUE + dt.timedelta(days=ladder_day))
    ] == [-7, -1]
    with pytest.raises(ValueError):
        fee_notices.Ladder.parse({"every": 0})


# -------------------------------------------------------------------------------------------
# Services on the database


async def standard(
    db: Database,
    school: SchoolData,
    code: str,
    amount_fen: int,
    unit: FeeUnit,
    covers: FeeCovers = FeeCovers.COURSE,
    disclosed_at: dt.datetime | None = DISCLOSED,
    rule: dict[str, Any] | None = None,
) -> int:
    async with db.transaction() as session:
        row = FeeStandard(
            school_id=school.school_id,
            term_id=school.term_id,
            code=code,
            name=f"收费{code}",
            amount_fen=amount_fen,
            unit=unit,
            covers=covers,
            disclosed_at=disclosed_at,
            disclosed_on=disclosed_at.date() if disclosed_at else None,
            rule=rule,
        )
        session.add(row)
        await session.flush()
        return row.id


async def enrol(
    db: Database, school: SchoolData, child: str, course_id: int, at: dt.datetime = BEFORE_TERM
) -> int:
    async with db.transaction() as session:
        row = Enrolment(
            school_id=school.school_id,
            student_id=school.student_ids[child],
            course_id=course_id,
            status=EnrolmentStatus.ENROLLED,
            created_at=at,
        )
        session.add(row)
        await session.flush()
        return row.id


async def issue(db: Database, school: SchoolData) -> billing.IssueReport:
    async with db.transaction() as session:
        return await billing.issue(
            session, school.school_id, school.term_id, due_on=DUE, user_id=None
        )


async def bill_of(db: Database, school: SchoolData, child: str) -> billing.BillView:
    async with db.transaction() as session:
        bill_id = await session.scalar(
            select(Bill.id).where(Bill.student_id == school.student_ids[child])
        )
        assert bill_id is not None
        found = await billing.view(session, bill_id)
    assert found is not None
    return found


async def test_bills_charge_what_was_disclosed_for_the_days_of_service(
    db: Database, school: SchoolData
) -> None:
    mom = await add_member(db, school, 81, {Role.PARENT}, children=("李小明",))
    per_session = await standard(db, school, "ROBOT", 1500, FeeUnit.SESSION)
    care = await standard(db, school, "CARE", 28000, FeeUnit.TERM, FeeCovers.PERIOD_1)
    robot = await make_course(db, school, "ROBOT", weekdays=MONDAY, fee_standard_id=per_session)
    # Two period-1 courses under one per-term care fee: charged once, not twice.
    care_mon = await make_course(db, school, "C1", period=1, weekdays=MONDAY, fee_standard_id=care)
    care_tue = await make_course(db, school, "C2", period=1, weekdays=2, fee_standard_id=care)
    for course in (robot, care_mon, care_tue):
        await enrol(db, school, "李小明", course)
    # 张伟 joins the robot course on Monday 2 November, before its session: 12 sessions left.
    await enrol(db, school, "张伟", robot, dt.datetime(2026, 11, 2, 1, tzinfo=UTC))

    report = await issue(db, school)
    assert report.refused == [] and report.bills_new == 2 and report.lines == 3
    xiaoming = await bill_of(db, school, "李小明")
    lines = {line.name: line for line in xiaoming.lines}
    assert (lines["收费ROBOT"].quantity, lines["收费ROBOT"].amount_fen) == (20, 30000)
    assert (lines["收费CARE"].quantity, lines["收费CARE"].amount_fen) == (1, 28000)
    assert xiaoming.balance_fen == xiaoming.charged_fen == 58000
    zhangwei = await bill_of(db, school, "张伟")
    assert [(line.quantity, line.amount_fen) for line in zhangwei.lines] == [(12, 18000)]

    # Issuing again bills nothing twice; a new enrolment is added to the child's bill.
    assert (await issue(db, school)).lines == 0
    drama = await standard(db, school, "DRAMA", 500, FeeUnit.SESSION)
    drama_course = await make_course(db, school, "DRAMA", weekdays=MONDAY, fee_standard_id=drama)
    await enrol(db, school, "李小明", drama_course, dt.datetime(2026, 12, 1, 1, tzinfo=UTC))
    again = await issue(db, school)
    assert (again.lines, again.bills_new, again.bills_added_to) == (1, 0, 1)
    assert (await bill_of(db, school, "李小明")).charged_fen == 58000 + 7 * 500

    # The guardian heard of the new bill once, with its amount.
    async with db.transaction() as session:
        notices = list(
            await session.scalars(
                select(Outbox).where(Outbox.kind == "fee_bill", Outbox.user_id == mom)
            )
        )
    assert len(notices) == 1 and notices[0].params is not None
    assert notices[0].params["amount"] == {"$money": 58000}


async def test_nothing_undisclosed_changed_free_or_bundled_is_ever_billed(
    db: Database, school: SchoolData
) -> None:
    ok = await standard(db, school, "OK", 2000, FeeUnit.SESSION)
    secret = await standard(db, school, "SECRET", 2000, FeeUnit.SESSION, disclosed_at=None)
    late = await standard(db, school, "LATE", 5000, FeeUnit.TERM, disclosed_at=None)
    free = await standard(db, school, "NAP", 0, FeeUnit.TERM, FeeCovers.FREE)
    after = await standard(
        db, school, "AFTER", 2000, FeeUnit.SESSION, disclosed_at=BEFORE_TERM + dt.timedelta(days=1)
    )
    course = await make_course(db, school, "OK", weekdays=MONDAY, fee_standard_id=ok)
    other = await make_course(db, school, "OTHER", weekdays=2, fee_standard_id=None)
    enrolment_id = await enrol(db, school, "李小明", course)
    async with db.transaction() as session:
        found = await enrolment_catalogue(session, school)
        row = await session.get(Enrolment, enrolment_id)
        assert row is not None
        billed = [(row, found.course(course))]
        standards = {s.id: s for s in await session.scalars(select(FeeStandard))}

    def draft(standard_id: int, **changes: Any) -> LineDraft:
        values: dict[str, Any] = {
            "standard_id": standard_id,
            "course_id": course,
            "enrolment_id": enrolment_id,
            "unit_fen": 2000,
            "quantity": 20,
            "amount_fen": 40000,
        } | changes
        return LineDraft(**values)

    assert fees.check_line(draft(ok), standards[ok], billed) is None
    assert fees.check_line(draft(secret), standards[secret], billed) is LineRefusal.NOT_DISCLOSED
    assert (
        fees.check_line(
            draft(late, unit_fen=5000, quantity=1, amount_fen=5000), standards[late], billed
        )
        is LineRefusal.NOT_DISCLOSED
    )
    assert (
        fees.check_line(draft(free, unit_fen=0), standards[free], billed) is LineRefusal.FREE_ITEM
    )
    assert (
        fees.check_line(draft(after), standards[after], billed) is LineRefusal.NOT_DISCLOSED_BEFORE
    )
    # A changed amount: per unit, in total, or above what the rule computes.
    assert (
        fees.check_line(draft(ok, unit_fen=2500, amount_fen=50000), standards[ok], billed)
        is LineRefusal.WRONG_AMOUNT
    )
    assert (
        fees.check_line(draft(ok, amount_fen=40100), standards[ok], billed)
        is LineRefusal.WRONG_AMOUNT
    )
    assert (
        fees.check_line(
            draft(ok, amount_fen=38000),
            standards[ok],
            billed,
            expected=fee_rules.Charge(20, 40000),
        )
        is LineRefusal.WRONG_AMOUNT
    )
    assert (
        fees.check_line(draft(ok, unit="term"), standards[ok], billed) is LineRefusal.WRONG_AMOUNT
    )
    # Bundled: the fee billed on a course that does not carry it.
    assert (
        fees.check_line(draft(ok, course_id=other), standards[ok], billed)
        is LineRefusal.NOT_THIS_COURSE
    )
    # Bundled: a fee the enrolled course is not billed under (none, or another one).
    for carried in (None, secret):
        async with db.transaction() as session:
            await session.execute(
                update(Course).where(Course.id == course).values(fee_standard_id=carried)
            )
        async with db.transaction() as session:
            found = await enrolment_catalogue(session, school)
        assert (
            fees.check_line(draft(ok), standards[ok], [(row, found.course(course))])
            is LineRefusal.NOT_THIS_COURSE
        )
    async with db.transaction() as session:
        await session.execute(
            update(Course).where(Course.id == course).values(fee_standard_id=after)
        )
    # A child signed up before the fee was disclosed is reported, and nothing is billed.
    report = await issue(db, school)
    assert [r.reason for r in report.refused] == [LineRefusal.NOT_DISCLOSED_BEFORE]
    async with db.transaction() as session:
        assert await session.scalar(select(func.count()).select_from(BillLine)) == 0
    # The schema refuses a charge on a free item outright.
    with pytest.raises(Exception, match=r"free_is_free|CHECK|check"):
        async with db.transaction() as session:
            await session.execute(
                update(FeeStandard).where(FeeStandard.id == free).values(amount_fen=100)
            )


async def enrolment_catalogue(session: Any, school: SchoolData) -> Any:
    from bot.services import catalogue

    return await catalogue.of(session, school.school_id)


async def test_payments_keep_exact_amounts_and_the_balance_is_the_sum_of_the_ledger(
    db: Database, school: SchoolData
) -> None:
    dad = await add_member(db, school, 82, {Role.PARENT}, children=("李小明",))
    admin = await add_member(db, school, 90, {Role.ADMIN})
    fee = await standard(db, school, "ART", 1550, FeeUnit.SESSION)
    course = await make_course(db, school, "ART", weekdays=MONDAY, fee_standard_id=fee)
    await enrol(db, school, "李小明", course)
    await issue(db, school)
    bill = await bill_of(db, school, "李小明")
    assert bill.balance_fen == 31000
    async with db.transaction() as session:
        first = await billing.record_payment(
            session,
            bill.bill_id,
            10001,
            user_id=admin,
            reference="WX1",
            expected_version=bill.version,
        )
        assert first.result is billing.Recorded.DONE and first.balance_fen == 20999
        # The same transaction imported twice records nothing.
        again = await billing.record_payment(
            session, bill.bill_id, 10001, user_id=admin, reference="WX1"
        )
        assert again.result is billing.Recorded.DUPLICATE
        # A screen shown before the payment is stale now: nothing written.
        stale = await billing.exempt(
            session,
            bill.bill_id,
            999,
            user_id=admin,
            reason="困难家庭",
            expected_version=bill.version,
        )
        assert stale.result is billing.Recorded.STALE
        too_much = await billing.record_payment(session, bill.bill_id, 21000, user_id=admin)
        assert too_much.result is billing.Recorded.TOO_MUCH
        assert (
            await billing.record_payment(session, bill.bill_id, 0, user_id=admin)
        ).result is billing.Recorded.BAD_AMOUNT
        reduced = await billing.exempt(
            session, bill.bill_id, 999, user_id=admin, reason="困难家庭"
        )
        assert reduced.balance_fen == 20000
        paid = await billing.record_payment(
            session, bill.bill_id, 20000, user_id=admin, reference="WX2"
        )
        assert paid.balance_fen == 0
    final = await bill_of(db, school, "李小明")
    assert (final.paid_fen, final.exempted_fen, final.balance_fen) == (30001, 999, 0)
    async with db.transaction() as session:
        total = await session.scalar(
            select(func.sum(BillEntry.amount_fen)).where(BillEntry.bill_id == bill.bill_id)
        )
        receipts = list(
            await session.scalars(
                select(Outbox).where(Outbox.kind == "fee_receipt", Outbox.user_id == dad)
            )
        )
    assert total == 0
    assert len(receipts) == 2 and receipts[-1].params is not None
    assert receipts[-1].params["left"] == {"$money": 0}


async def test_withdrawal_writes_the_refund_the_screen_showed(
    db: Database, school: SchoolData
) -> None:
    admin = await add_member(db, school, 90, {Role.ADMIN})
    fee = await standard(db, school, "SCI", 60000, FeeUnit.TERM, rule={"refund": "by_day"})
    course = await make_course(db, school, "SCI", weekdays=MONDAY, fee_standard_id=fee)
    place = await enrol(db, school, "李小明", course)
    await issue(db, school)
    bill = await bill_of(db, school, "李小明")
    async with db.transaction() as session:
        await billing.record_payment(session, bill.bill_id, 60000, user_id=admin, reference="P1")
    leaving = dt.date(2026, 11, 16)  # 10 of 20 Mondays left
    async with db.transaction() as session:
        preview = await billing.preview_for(session, place, leaving)
    assert preview.billed and preview.paid and preview.back_fen == 30000
    async with db.transaction() as session:
        done = await enrolment.withdraw(session, place, from_date=leaving, user_id=None)
        assert done is not None
    after = await bill_of(db, school, "李小明")
    assert (after.adjusted_fen, after.balance_fen) == (30000, -30000)  # the school owes 300
    assert after.lines[0].back_fen == 30000
    async with db.transaction() as session:
        refunded = await billing.record_refund(session, after.bill_id, 30000, user_id=admin)
        assert refunded.result is billing.Recorded.DONE and refunded.balance_fen == 0
        # Nothing more is owed back.
        more = await billing.record_refund(session, after.bill_id, 1, user_id=admin)
        assert more.result is billing.Recorded.TOO_MUCH


async def test_a_cancelled_course_is_refunded_in_full(db: Database, school: SchoolData) -> None:
    fee = await standard(db, school, "SWIM", 45000, FeeUnit.TERM, rule={"refund": "none"})
    course = await make_course(
        db, school, "SWIM", weekdays=MONDAY, fee_standard_id=fee, min_size=5
    )
    await enrol(db, school, "李小明", course)
    await issue(db, school)
    async with db.transaction() as session:
        row = await session.scalar(select(Enrolment).where(Enrolment.course_id == course))
        assert row is not None
        assert (
            await billing.on_leaving(session, row, dt.date(2026, 10, 1), cancelled=True) == 45000
        )
        # Twice is once: the adjustment is already there.
        assert await billing.on_leaving(session, row, dt.date(2026, 10, 1), cancelled=True) == 0
    assert (await bill_of(db, school, "李小明")).balance_fen == 0


async def test_reminders_go_only_for_what_is_unpaid_and_once_per_step(
    db: Database, school: SchoolData
) -> None:
    mom = await add_member(db, school, 81, {Role.PARENT}, children=("李小明",))
    other = await add_member(db, school, 83, {Role.PARENT}, children=("张伟",))
    admin = await add_member(db, school, 90, {Role.ADMIN})
    fee = await standard(db, school, "ROBOT", 1500, FeeUnit.SESSION)
    course = await make_course(db, school, "ROBOT", weekdays=MONDAY, fee_standard_id=fee)
    await enrol(db, school, "李小明", course)
    await enrol(db, school, "张伟", course)
    await issue(db, school)
    paid = await bill_of(db, school, "张伟")
    async with db.transaction() as session:
        await billing.record_payment(session, paid.bill_id, paid.balance_fen, user_id=admin)
    for day in (
        DUE - dt.timedelta(days=3),
        DUE - dt.timedelta(days=3),
        DUE,
        DUE + dt.timedelta(days=1),
    ):
        async with db.transaction() as session:
            await fee_notices.send_reminders(session, school.school_id, day)
    async with db.transaction() as session:
        reminders = list(
            await session.scalars(
                select(Outbox).where(Outbox.kind == "fee_reminder").order_by(Outbox.id)
            )
        )
        counted = await session.scalar(
            select(Bill.reminders_sent).where(Bill.student_id == school.student_ids["李小明"])
        )
    assert [r.user_id for r in reminders] == [mom, mom]  # 3 days before, and on the day
    assert other not in {r.user_id for r in reminders}
    assert counted == 2


async def test_publishing_is_compare_and_set_and_audited(db: Database, school: SchoolData) -> None:
    admin = await add_member(db, school, 90, {Role.ADMIN})
    pending = await standard(db, school, "NEW", 3000, FeeUnit.MONTH, disclosed_at=None)
    now = utcnow()
    async with db.transaction() as session:
        first = await fees.publish(
            session, school.school_id, [pending], user_id=admin, today=now.date(), now=now
        )
        second = await fees.publish(
            session, school.school_id, [pending, 99999], user_id=admin, today=now.date(), now=now
        )
        row = await session.get(FeeStandard, pending)
    assert first == {pending: fees.Published.DONE}
    assert second == {pending: fees.Published.ALREADY, 99999: fees.Published.NOT_FOUND}
    assert (
        row is not None
        and row.disclosed_at is not None
        and row.rule == fee_rules.DEFAULT.as_json()
    )


async def test_the_kinds_of_entries_sign_the_balance(db: Database, school: SchoolData) -> None:
    # A credit carried to the next bill leaves the old one settled and lowers the new one.
    admin = await add_member(db, school, 90, {Role.ADMIN})
    fee = await standard(db, school, "ART", 1000, FeeUnit.SESSION)
    course = await make_course(db, school, "ART", weekdays=MONDAY, fee_standard_id=fee)
    place = await enrol(db, school, "李小明", course)
    await issue(db, school)
    bill = await bill_of(db, school, "李小明")
    async with db.transaction() as session:
        await billing.record_payment(session, bill.bill_id, 20000, user_id=admin)
        await enrolment.withdraw(session, place, from_date=dt.date(2026, 12, 28), user_id=None)
        from storage.models import Term

        spring = Term(
            school_id=school.school_id,
            name="2027春季学期",
            starts_on=dt.date(2027, 2, 20),
            ends_on=dt.date(2027, 7, 1),
        )
        session.add(spring)
        await session.flush()
        nxt = Bill(school_id=school.school_id, term_id=spring.id, student_id=bill.student_id)
        session.add(nxt)
        await session.flush()
        moved = await billing.carry_credit(session, bill.bill_id, nxt.id, user_id=admin)
    assert moved.result is billing.Recorded.DONE and moved.amount_fen == 4000  # 4 Mondays left
    assert moved.balance_fen == -4000
    async with db.transaction() as session:
        old = await billing.view(session, bill.bill_id)
        assert old is not None and old.balance_fen == 0 and old.credit_fen == -4000
        kinds = list(
            await session.scalars(select(BillEntry.kind).where(BillEntry.bill_id == bill.bill_id))
        )
    assert sorted(kinds) == sorted(
        [EntryKind.CHARGE, EntryKind.PAYMENT, EntryKind.ADJUSTMENT, EntryKind.CREDIT_OUT]
    )


async def test_fees_shows_each_childs_bill_and_the_family_total(
    db: Database, school: SchoolData, make_user: Any
) -> None:
    """/fees through the application: both children's lines, paid and still to pay, in the
    guardian's language; someone who is not a guardian sees no bill."""
    await add_member(
        db, school, 7001, {Role.PARENT}, children=("李小明", "李小红"), locale="zh_CN"
    )
    await add_member(db, school, 7002, {Role.PARENT}, children=("李小明",), locale="en")
    admin = await add_member(db, school, 7009, {Role.ADMIN})
    fee = await standard(db, school, "ROBOT", 1500, FeeUnit.SESSION)
    course = await make_course(
        db, school, "ROBOT", weekdays=MONDAY, fee_standard_id=fee, grade_max=9
    )
    await enrol(db, school, "李小明", course)
    await enrol(db, school, "李小红", course)
    await issue(db, school)
    paid = await bill_of(db, school, "李小红")
    async with db.transaction() as session:
        await billing.record_payment(session, paid.bill_id, 10000, user_id=admin, reference="A")

    mom = make_user(7001)
    text = mom.texts(await mom.send("/fees"))
    assert "李小明" in text and "李小红" in text and "收费ROBOT" in text
    assert "¥15.00" in text and "× 20 = ¥300.00" in text
    assert "已缴：¥100.00" in text
    assert "全家合计：尚需缴纳 ¥500.00" in text
    dad = make_user(7002, language_code="en")
    english = dad.texts(await dad.send("/fees"))
    assert "Still to pay: ¥300.00, by" in english and "李小红" not in english
    stranger = make_user(7003)
    assert "¥" not in stranger.texts(await stranger.send("/fees"))


async def test_a_payment_file_is_matched_by_student_number_and_amount(
    db: Database, school: SchoolData
) -> None:
    from bot.services import payments, sheets

    admin = await add_member(db, school, 90, {Role.ADMIN})
    fee = await standard(db, school, "ROBOT", 1500, FeeUnit.SESSION)
    course = await make_course(
        db, school, "ROBOT", weekdays=MONDAY, fee_standard_id=fee, grade_max=9
    )
    for child in ("李小明", "李小红", "张伟"):
        await enrol(db, school, child, course)
    await issue(db, school)  # 300 元 each
    export = sheets.write_csv(
        ["交易单号", "学号", "学生姓名", "实收金额（元）"],
        [
            ["T1", "S001", "李小明", "300.00"],
            ["T2", "S002", "李小红", "120.50"],
            ["T3", "S003", "张伟", "301.00"],
            ["T4", "S999", "无名", "300.00"],
            [None, None, "合计", None],
        ],
    )
    table = sheets.read_table(export, "微信收款.csv")
    rows = payments.parse(table)
    async with db.transaction() as session:
        report = await payments.record(
            session, school.school_id, school.term_id, rows, user_id=admin
        )
    assert [line.match for line in report.lines] == [
        payments.Match.PAID,
        payments.Match.PARTIAL,
        payments.Match.TOO_MUCH,
        payments.Match.NO_STUDENT,
    ]
    assert report.recorded_fen == 42050
    assert [(line.row, line.student_no) for line in report.unmatched] == [(4, "S003"), (5, "S999")]
    assert (await bill_of(db, school, "李小红")).balance_fen == 30000 - 12050
    # The same file again records nothing twice.
    async with db.transaction() as session:
        again = await payments.record(
            session, school.school_id, school.term_id, rows, user_id=admin
        )
    assert again.count(payments.Match.DUPLICATE) == 2 and again.recorded_fen == 0
    # One unreadable amount and nothing is read at all.
    broken = sheets.write_csv(["学号", "金额"], [["S001", "300"], ["S002", "三百"]])
    with pytest.raises(sheets.SheetError) as caught:
        payments.parse(sheets.read_table(broken, "x.csv"))
    assert caught.value.params["row"] == 3


async def test_reports_add_up_and_are_safe_to_open(db: Database, school: SchoolData) -> None:
    import io

    import openpyxl

    from bot.i18n import I18n
    from bot.services import fee_reports, sheets

    admin = await add_member(db, school, 90, {Role.ADMIN})
    await add_member(db, school, 91, {Role.PARENT}, children=("李小明", "李小红"))
    fee = await standard(db, school, "ROBOT", 1500, FeeUnit.SESSION)
    course = await make_course(
        db, school, "ROBOT", weekdays=MONDAY, fee_standard_id=fee, grade_max=9
    )
    for child in ("李小明", "李小红", "张伟"):
        await enrol(db, school, child, course)
    await issue(db, school)
    async with db.transaction() as session:
        # A reason typed to look like a formula must stay text.
        zw = await bill_of_in(session, school, "张伟")
        await billing.exempt(session, zw, 10000, user_id=admin, reason='=HYPERLINK("x")')
        await billing.record_payment(session, zw, 20000, user_id=admin)
        t = I18n(ZoneInfo("Asia/Shanghai")).get("zh_CN")
        built = await fee_reports.build(session, t, school.school_id, school.term_id)
    by_class, families, _refunds, exemptions = built
    total = {row[0]: row for row in by_class.rows}
    assert set(total) == {"三年级1班", "七年级2班"}
    three = total["三年级1班"]  # 李小明 and 张伟: 600 charged, 100 reduced, 200 paid
    assert three[2:] == [
        2,
        Decimal("600.00"),
        Decimal("100.00"),
        Decimal("0.00"),
        Decimal("200.00"),
        Decimal("0.00"),
        Decimal("300.00"),
    ]
    # 李小明 and 李小红 share a guardian: one family owing 600; 张伟 owes nothing.
    assert [row[3] for row in families.rows] == [Decimal("600.00")]
    assert "李小明" in str(families.rows[0][0]) and "李小红" in str(families.rows[0][0])
    assert exemptions.rows[0][3] == Decimal("100.00")
    book = openpyxl.load_workbook(io.BytesIO(sheets.write_xlsx(built)))
    cells = [c for ws in book.worksheets for row in ws.iter_rows() for c in row]
    assert all(c.data_type != "f" for c in cells)
    assert any(c.value == '\'=HYPERLINK("x")' for c in cells)
    assert "'=HYPERLINK" in sheets.write_csv(exemptions.header, exemptions.rows).decode(
        "utf-8-sig"
    )


async def bill_of_in(session: Any, school: SchoolData, child: str) -> int:
    found = await session.scalar(
        select(Bill.id).where(Bill.student_id == school.student_ids[child])
    )
    assert found is not None
    return int(found)


async def test_reminders_run_once_a_day_through_the_job_ledger(
    app: Any, db: Database, school: SchoolData
) -> None:
    """Two processes ticking at the reminder time send the day's step once; a tick the next
    morning before the reminder time sends nothing, and the reading names the child and amount."""
    from bot import jobs
    from bot.i18n import I18n
    from bot.services import outbox

    mom = await add_member(db, school, 81, {Role.PARENT}, children=("李小明",))
    fee = await standard(db, school, "ROBOT", 1500, FeeUnit.SESSION)
    course = await make_course(db, school, "ROBOT", weekdays=MONDAY, fee_standard_id=fee)
    await enrol(db, school, "李小明", course)
    await issue(db, school)
    cst = ZoneInfo("Asia/Shanghai")

    def at(day: dt.date, hour: int, minute: int = 0) -> dt.datetime:
        return dt.datetime.combine(day, dt.time(hour, minute), cst).astimezone(UTC)

    three_before = DUE - dt.timedelta(days=3)
    one, two = jobs.Scheduler(app.runtime), jobs.Scheduler(app.runtime)
    await one.tick(at(three_before, 9, 59))  # yesterday's run, over: nothing is sent
    async with db.transaction() as session:
        assert not await session.scalar(select(Outbox.id).where(Outbox.kind == "fee_reminder"))
    await one.tick(at(three_before, 10, 0))
    await two.tick(at(three_before, 10, 1))
    await jobs.Scheduler(app.runtime).tick(at(three_before + dt.timedelta(days=1), 9, 0))
    async with db.transaction() as session:
        sent = list(await session.scalars(select(Outbox).where(Outbox.kind == "fee_reminder")))
    assert [row.user_id for row in sent] == [mom]
    zh = I18n(cst).get("zh_CN")
    text = zh.gettext(sent[0].template or "").format(
        **outbox.format_params(sent[0].params or {}, zh)
    )
    assert "李小明" in text and "¥300.00" in text and "9月30日" in text


async def test_an_admin_discloses_issues_and_records_in_the_chat(
    db: Database, school: SchoolData, make_user: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    """/fees through the application: disclose a pending standard, issue the bills (families
    told), record a payment with a confirm step that a stale screen cannot repeat; a parent's
    forged press changes nothing."""
    monkeypatch.setattr(
        "handlers.admin.fees.utcnow", lambda: dt.datetime(2026, 9, 2, 2, 0, tzinfo=UTC)
    )
    mom = await add_member(db, school, 8001, {Role.PARENT}, children=("李小明",))
    await add_member(db, school, 8009, {Role.ADMIN}, locale="zh_CN")
    fee = await standard(db, school, "ROBOT", 1500, FeeUnit.SESSION, disclosed_at=None)
    course = await make_course(db, school, "ROBOT", weekdays=MONDAY, fee_standard_id=fee)
    # Signed up after the disclosure below (the clock above is the school's "now").
    await enrol(db, school, "李小明", course, dt.datetime(2026, 9, 3, 1, tzinfo=UTC))

    admin = make_user(8009)
    overview = admin.texts(await admin.send("/fees"))
    assert "1 项收费标准尚未公示" in overview
    await admin.click("公示…")
    assert "已公示 1 项收费标准" in admin.texts(await admin.click("公示"))
    async with db.transaction() as session:
        row = await session.get(FeeStandard, fee)
        assert row is not None and row.disclosed_at is not None
        await session.execute(
            update(FeeStandard)
            .where(FeeStandard.id == fee)
            .values(disclosed_at=dt.datetime(2026, 9, 2, 2, 0, tzinfo=UTC))
        )
    await admin.send("/fees")
    await admin.click("开出账单…")
    issued = admin.texts(await admin.click("开出账单"))
    assert "新开账单 1 份" in issued and "¥300.00" in issued
    async with db.transaction() as session:
        told = await session.scalar(
            select(func.count()).where(Outbox.kind == "fee_bill", Outbox.user_id == mom)
        )
    assert told == 1

    confirm = await admin.send("/fees pay S001 120")
    assert "李小明" in admin.texts(confirm) and "¥120.00" in admin.texts(confirm)
    (press,) = [
        b["callback_data"] for c in confirm for b in c.buttons() if b["text"] == "记录缴费"
    ]
    assert "¥180.00" in admin.texts(await admin.press(press))
    # The same screen pressed again: the bill moved on, nothing is recorded twice.
    assert "账单已变化" in admin.texts(await admin.press(press))
    assert (await bill_of(db, school, "李小明")).paid_fen == 12000

    parent = make_user(8001)
    await parent.press(press)
    assert (await bill_of(db, school, "李小明")).paid_fen == 12000
    assert "¥" in parent.texts(await parent.send("/fees"))  # the guardian's own bill
    assert "尚未公示" not in parent.texts(await parent.send("/fees"))


async def test_leaving_one_course_of_a_period_fee_gives_back_only_its_own_days(
    db: Database, school: SchoolData
) -> None:
    """A per-term period fee paid once for a Monday and a Tuesday course: leaving the Monday
    course gives back its Mondays to come (the Tuesdays are still served); leaving the Tuesday
    course later gives back the rest of the days to come."""
    care = await standard(db, school, "CARE", 40000, FeeUnit.TERM, FeeCovers.PERIOD_1)
    monday = await make_course(db, school, "C1", period=1, weekdays=MONDAY, fee_standard_id=care)
    tuesday = await make_course(db, school, "C2", period=1, weekdays=2, fee_standard_id=care)
    first = await enrol(db, school, "李小明", monday)
    second = await enrol(db, school, "李小明", tuesday)
    await issue(db, school)
    tuesdays = days(dt.date(2026, 9, 1), dt.date(2027, 1, 20), {2})
    served = sorted(set(MONDAYS) | set(tuesdays))
    assert len(served) == 41  # 1 September is a Tuesday
    on = dt.date(2026, 11, 16)  # 10 Mondays and 10 Tuesdays to come
    async with db.transaction() as session:
        preview = await billing.preview_for(session, first, on)
        assert await enrolment.withdraw(session, first, from_date=on, user_id=None)
    assert preview.back_fen == 9756  # 400 元 × 10 / 41 days = 97.5609… → ¥97.56
    assert (await bill_of(db, school, "李小明")).adjusted_fen == 9756
    async with db.transaction() as session:
        assert await enrolment.withdraw(session, second, from_date=on, user_id=None)
    assert (await bill_of(db, school, "李小明")).adjusted_fen == 19512  # 20 of 41 days

    # On different days: the Mondays from 5 October (16) and then the Tuesdays from 17
    # November (10) come back, 26 days in all, whatever the order of the leavings.
    early = await enrol(db, school, "张伟", monday)
    late = await enrol(db, school, "张伟", tuesday)
    await issue(db, school)
    async with db.transaction() as session:
        assert await enrolment.withdraw(
            session, early, from_date=dt.date(2026, 10, 5), user_id=None
        )
    assert (await bill_of(db, school, "张伟")).adjusted_fen == 15610  # 400 元 × 16 / 41
    async with db.transaction() as session:
        assert await enrolment.withdraw(
            session, late, from_date=dt.date(2026, 11, 17), user_id=None
        )
    assert (await bill_of(db, school, "张伟")).adjusted_fen == 25366  # 400 元 × 26 / 41


async def test_a_school_that_keeps_credits_carries_them_to_the_next_bill(
    db: Database, school: SchoolData
) -> None:
    from storage.models import School, Term

    admin = await add_member(db, school, 90, {Role.ADMIN})
    async with db.transaction() as session:
        await session.execute(
            update(School).values(fee_rule={"refund": "by_day", "settle": "credit"})
        )
    fee = await standard(db, school, "ART", 1000, FeeUnit.SESSION)
    course = await make_course(db, school, "ART", weekdays=MONDAY, fee_standard_id=fee)
    place = await enrol(db, school, "李小明", course)
    await issue(db, school)
    autumn = await bill_of(db, school, "李小明")
    async with db.transaction() as session:
        await billing.record_payment(session, autumn.bill_id, 20000, user_id=admin)
        await enrolment.withdraw(session, place, from_date=dt.date(2026, 12, 28), user_id=None)
        preview_rule = fee_rules.parse({"settle": "credit"})
        spring = Term(
            school_id=school.school_id,
            name="2027春季学期",
            starts_on=dt.date(2027, 2, 22),
            ends_on=dt.date(2027, 6, 30),
        )
        session.add(spring)
        await session.flush()
        spring_fee = FeeStandard(
            school_id=school.school_id,
            term_id=spring.id,
            code="ART",
            name="美术",
            amount_fen=1000,
            unit=FeeUnit.SESSION,
            disclosed_at=DISCLOSED,
        )
        session.add(spring_fee)
        await session.flush()
        spring_id, spring_fee_id = spring.id, spring_fee.id
    assert preview_rule.settle is fee_rules.Settle.CREDIT
    spring_course = await make_course(
        db, school, "ART2", weekdays=MONDAY, term_id=spring_id, fee_standard_id=spring_fee_id
    )
    await enrol(db, school, "李小明", spring_course, dt.datetime(2027, 1, 10, tzinfo=UTC))
    async with db.transaction() as session:
        report = await billing.issue(
            session, school.school_id, spring_id, due_on=dt.date(2027, 3, 10), user_id=admin
        )
        (new_bill,) = report.new_bill_ids
        old = await billing.view(session, autumn.bill_id)
        new = await billing.view(session, new_bill)
    assert old is not None and new is not None
    assert old.balance_fen == 0 and old.credit_fen == -4000  # 4 Mondays left in the autumn
    assert new.credit_fen == 4000 and new.balance_fen == new.charged_fen - 4000


async def test_two_admins_issuing_at_once_bill_each_child_once(
    db: Database, school: SchoolData
) -> None:
    import asyncio

    fee = await standard(db, school, "ROBOT", 1500, FeeUnit.SESSION)
    course = await make_course(
        db, school, "ROBOT", weekdays=MONDAY, fee_standard_id=fee, grade_max=9
    )
    for child in ("李小明", "李小红", "张伟"):
        await enrol(db, school, child, course)
    first, second = await asyncio.gather(issue(db, school), issue(db, school))
    assert sorted([first.bills_new, second.bills_new]) == [0, 3]
    async with db.transaction() as session:
        assert await session.scalar(select(func.count()).select_from(BillLine)) == 3
