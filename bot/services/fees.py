"""What leaving a course means for its fee, under the disclosed fee standard (收费公示).

One place for the rule, so billing and refunds (later) build on the same answer that the
withdrawal confirmation shows parents today.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass


class AfterWithdrawal(enum.StrEnum):
    FREE = "free"  # nothing to pay, nothing to refund
    SESSIONS_AFTER_NOT_CHARGED = "sessions_after"  # per-session fee
    MONTHS_AFTER_NOT_CHARGED = "months_after"  # per-month fee: the current month stays due
    UNUSED_PART_REFUNDED = "unused_part"  # per-term fee: refunded in proportion


@dataclass(frozen=True)
class WithdrawalFee:
    amount_fen: int  # the disclosed amount per unit
    unit: str | None  # "term", "month" or "session"
    rule: AfterWithdrawal


def withdrawal_fee(amount_fen: int | None, unit: str | None) -> WithdrawalFee:
    if not amount_fen:
        return WithdrawalFee(0, unit, AfterWithdrawal.FREE)
    rule = {
        "session": AfterWithdrawal.SESSIONS_AFTER_NOT_CHARGED,
        "month": AfterWithdrawal.MONTHS_AFTER_NOT_CHARGED,
    }.get(unit or "term", AfterWithdrawal.UNUSED_PART_REFUNDED)
    return WithdrawalFee(amount_fen, unit, rule)
