"""End to end, fees over the wire: the real bot polls the sandbox over HTTP. The demo admin
issues the term's bills; 王芳 (MOM) hears of her child's bill and reads it with /fees; a reminder
goes out; the admin uploads the payment system's export and she gets the receipt; she takes the
child out of a course, the withdrawal screen states what the disclosed rule gives back, and
the refund the admin records reaches her."""

from __future__ import annotations

import datetime as dt
from decimal import Decimal
from zoneinfo import ZoneInfo

from sqlalchemy import select

from bot.i18n import I18n
from bot.services import billing, catalogue, enrolment, fee_notices, sheets
from bot.services.enrolment import SignedUp
from sandbox import demo
from storage.db import Database
from storage.models import Bill, EnrolmentStatus, Guardianship, Student, User
from tests.e2e import Person

ADMIN, TEACHER, MOM, DAD, ANNA = (p.user_id for p in demo.PERSONAS)


def money(fen: int) -> str:
    return I18n(ZoneInfo("Asia/Shanghai")).get("zh_CN").money(fen)


async def test_bill_notice_reminder_payment_file_receipt_withdrawal_refund(
    demo_world: demo.DemoWorld, database_url: str
) -> None:
    admin, mom = Person(demo_world.sandbox, ADMIN), Person(demo_world.sandbox, MOM)
    db = Database(database_url)
    try:
        async with db.transaction() as session:
            child_id, number, child, school_id, mom_id = (
                await session.execute(
                    select(
                        Student.id, Student.student_no, Student.name, Student.school_id, User.id
                    )
                    .join(Guardianship, Guardianship.student_id == Student.id)
                    .join(User, User.id == Guardianship.user_id)
                    .where(User.telegram_id == MOM)
                    .order_by(Student.id)
                )
            ).first()  # type: ignore[misc]
            found = await catalogue.of(session, school_id)
        # She signs the child up for a charged course (the sign-up screens have their own tests).
        charged = [c for c in found.courses.values() if c.fee_fen and c.fee_disclosed]
        for course in sorted(charged, key=lambda c: c.code):
            signed = await enrolment.sign_up(db, child_id, course.id, user_id=mom_id)
            if isinstance(signed, SignedUp) and signed.status is EnrolmentStatus.ENROLLED:
                break
        else:
            raise AssertionError("no charged course would take the child")

        await admin.send("/fees", expecting="收费 ·")
        await admin.press("开出账单…", expecting="现在开出本学期账单")
        issued = await admin.press("开出账单", expecting="新开账单")
        assert "¥" in issued["text"], issued["text"]
        async with db.transaction() as session:
            bill_id = await session.scalar(select(Bill.id).where(Bill.student_id == child_id))
            assert bill_id is not None
            view = await billing.view(session, bill_id)
            assert view is not None and view.balance_fen > 0
        await mom.answer(0, f"{child}{view.term}的课后服务账单已开出")
        mine = await mom.send("/fees", expecting="尚需缴纳")
        assert child in mine["text"] and mine["text"].count("公示于") >= 1

        # The ladder's step three days before the due date, as the daily job sends it.
        assert view.due_on is not None
        async with db.transaction() as session:
            await fee_notices.send_reminders(
                session, school_id, view.due_on - dt.timedelta(days=3)
            )
        await mom.answer(0, "提醒：")

        # The payment system's export, as a file in the chat with the caption /fees.
        export = sheets.write_csv(
            ["交易单号", "学号", "实收金额"],
            [["WX0001", number, Decimal(view.balance_fen) / 100]],
        )
        after = demo_world.sandbox.seq
        await demo_world.sandbox.user_sends_document(ADMIN, ADMIN, export, "收款明细.csv", "/fees")
        report = await admin.answer(after, "缴费已导入")
        assert "全额 1 笔" in report["text"]
        receipt = await mom.answer(0, f"已收到{child}")
        assert "尚需缴纳：¥0.00" in receipt["text"]
        async with db.transaction() as session:
            assert await billing.balance(session, bill_id) == 0

        # She takes the child out of the course: the screen states what comes back, and the
        # withdrawal writes exactly that.
        await mom.send("/withdraw", expecting="要退出哪门课程")
        screen = await mom.press(f"{child} · {course.name}", expecting="按公示的退费规则")
        back_text = screen["text"]
        await mom.press("确认退出", expecting=f"{child}已退出")
        async with db.transaction() as session:
            after_leaving = await billing.view(session, bill_id)
        assert after_leaving is not None
        assert after_leaving.adjusted_fen > 0 and after_leaving.balance_fen < 0
        assert money(after_leaving.adjusted_fen) in back_text
        await admin.send(
            f"/fees refund {number} {after_leaving.adjusted_fen / 100:.2f}", expecting="已记录"
        )
        refunded = await mom.answer(0, f"{child}（{view.term}）的退费")
        assert money(after_leaving.adjusted_fen) in refunded["text"]
    finally:
        await db.dispose()
