"""The database schema: one class per table, constraints where they protect data.

Every table that holds a school's data carries ``school_id``. Three tables belong to the bot
deployment rather than to one school and are documented as such in ``docs/DATA.md``:
``bot_state`` (PTB conversation persistence), ``invite_attempts`` (throttling of code
guesses by a Telegram account that has no school yet) and ``delivery_workers`` (the send
budget is the bot's, whatever the school).
"""

from __future__ import annotations

import datetime as dt
import enum
from typing import Any

from sqlalchemy import (
    JSON,
    BigInteger,
    Boolean,
    CheckConstraint,
    Date,
    DateTime,
    Enum,
    ForeignKey,
    Index,
    Integer,
    MetaData,
    SmallInteger,
    String,
    Text,
    Time,
    TypeDecorator,
    UniqueConstraint,
)
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column, relationship

NAMING = {
    "ix": "ix_%(column_0_label)s",
    "uq": "uq_%(table_name)s_%(column_0_name)s",
    "ck": "ck_%(table_name)s_%(constraint_name)s",
    "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
    "pk": "pk_%(table_name)s",
}


def utcnow() -> dt.datetime:
    return dt.datetime.now(dt.UTC)


class UTCDateTime(TypeDecorator[dt.datetime]):
    """Aware UTC datetimes on every backend (SQLite keeps no zone, so store naive UTC)."""

    impl = DateTime
    cache_ok = True

    def process_bind_param(self, value: dt.datetime | None, dialect: Any) -> dt.datetime | None:
        if value is None:
            return None
        if value.tzinfo is None:
            raise ValueError("naive datetime given to a UTCDateTime column")
        return value.astimezone(dt.UTC).replace(tzinfo=None)

    def process_result_value(self, value: dt.datetime | None, dialect: Any) -> dt.datetime | None:
        if value is None:
            return None
        return value.replace(tzinfo=dt.UTC)


class Base(DeclarativeBase):
    metadata = MetaData(naming_convention=NAMING)
    type_annotation_map = {dt.datetime: UTCDateTime()}


def enum_type(enum_cls: type[enum.Enum], name: str) -> Enum:
    """A VARCHAR with a CHECK constraint on both SQLite and PostgreSQL."""
    return Enum(
        enum_cls,
        name=name,
        native_enum=False,
        create_constraint=True,
        length=max(len(m.value) for m in enum_cls),  # type: ignore[attr-defined]
        values_callable=lambda e: [m.value for m in e],
        validate_strings=True,
    )


# --- enumerations -----------------------------------------------------------------------------


class Role(enum.StrEnum):
    PARENT = "parent"
    TEACHER = "teacher"
    ADMIN = "admin"


class CalendarKind(enum.StrEnum):
    HOLIDAY = "holiday"  # a weekday with no school, so no service
    WORKDAY = "workday"  # 调休/补班: a weekend day that runs one weekday's timetable
    NO_SERVICE = "no_service"  # school runs, after-school service does not (exams, events)


class Category(enum.StrEnum):
    """The eight activity categories of the Jiangxi catalogue (POLICY.md)."""

    HOMEWORK = "homework"  # 辅导答疑
    SCIENCE = "science"  # 科技活动
    ARTS = "arts"  # 美育
    SPORTS = "sports"  # 体育锻炼
    LABOUR = "labour"  # 劳动实践
    READING = "reading"  # 阅读朗诵
    WELLBEING = "wellbeing"  # 心理健康和安全教育
    OFF_CAMPUS = "off_campus"  # 校外活动


class Level(enum.StrEnum):
    ENTRY = "entry"
    ADVANCED = "advanced"


class TeacherKind(enum.StrEnum):
    STAFF = "staff"  # school staff
    RETIRED = "retired"  # 退休教师
    VOLUNTEER = "volunteer"  # 大学生志愿者
    HERITAGE = "heritage"  # 非遗传承人
    PROVIDER = "provider"  # a whitelisted provider's staff


class ProviderKind(enum.StrEnum):
    SCHOOL = "school"
    OUTSIDE = "outside"


class WhitelistStatus(enum.StrEnum):
    WHITELISTED = "whitelisted"
    PENDING = "pending"
    REMOVED = "removed"
    BLACKLISTED = "blacklisted"


class SessionStatus(enum.StrEnum):
    SCHEDULED = "scheduled"
    CANCELLED = "cancelled"


class EnrolmentStatus(enum.StrEnum):
    ENROLLED = "enrolled"
    WAITLISTED = "waitlisted"
    WITHDRAWN = "withdrawn"
    CANCELLED = "cancelled"  # the course itself was cancelled (too few children)
    ENTERED = "entered"  # in a lottery course's draw, which has not run yet


class Allocation(enum.StrEnum):
    """How a course's seats are given out."""

    FIRST_COME = "first_come"  # in the order of sign-up
    LOTTERY = "lottery"  # 摇号: a seeded, published draw when enrolment closes


class EnrolmentActor(enum.StrEnum):
    """Who changed an enrolment, for the history parents and admins see."""

    PARENT = "parent"
    ADMIN = "admin"
    DRAW = "draw"
    OFFER = "offer"  # a waitlist seat offer accepted, declined or expired
    SYSTEM = "system"


class DismissalWay(enum.StrEnum):
    """How a child left at the end of a session (弹性离校): never a reason for a fee."""

    GUARDIAN = "guardian"  # handed to a guardian
    AUTHORISED = "authorised"  # handed to an adult the guardians put on file
    ALONE = "alone"  # went home alone, with a guardian's standing permission
    EXTENDED = "extended"  # moved on to extended care (延时托管)


class UpdateMode(enum.StrEnum):
    """How a guardian gets the teachers' daily updates (absence alerts always come at once)."""

    INSTANT = "instant"
    DIGEST = "digest"  # in the evening digest
    MUTED = "muted"


class FeeUnit(enum.StrEnum):
    TERM = "term"
    MONTH = "month"
    SESSION = "session"  # one session of one course
    DAY = "day"  # one day with service


class FeeCovers(enum.StrEnum):
    """What a fee standard pays for (收费公示 names it)."""

    PERIOD_1 = "period1"  # the first period (basic care and homework help), once per child
    PERIOD_2 = "period2"  # the second period, once per child whatever the courses
    COURSE = "course"  # the courses that name it (also a provider's fee collected for it, 代收)
    FREE = "free"  # declared free (弹性离校, 午休, …): can never carry a charge


class EntryKind(enum.StrEnum):
    """A movement on a bill's ledger. The balance (what the family owes) is their sum."""

    CHARGE = "charge"  # + a bill line
    PAYMENT = "payment"  # − money received
    EXEMPTION = "exemption"  # − a hardship exemption or reduction set by an admin
    ADJUSTMENT = "adjustment"  # − what the refund rule gives back (withdrawal, cancellation, …)
    REFUND = "refund"  # + money paid back to the family
    CREDIT_OUT = "credit_out"  # + a credit moved to the next bill
    CREDIT_IN = "credit_in"  # − a credit brought from the previous bill


class Again(enum.StrEnum):
    """A family's answer to "would you sign up for this course again?"."""

    YES = "yes"
    UNSURE = "unsure"
    NO = "no"


class Face(enum.StrEnum):
    """The child's own view of a course (the student half of 双评价), one of three faces."""

    HAPPY = "happy"  # 😊
    SO_SO = "so_so"  # 😐
    UNHAPPY = "unhappy"  # 🙁


class CommentStatus(enum.StrEnum):
    """A ballot's comment is shown to nobody until an admin has released it."""

    PENDING = "pending"
    RELEASED = "released"
    HIDDEN = "hidden"


class BroadcastStatus(enum.StrEnum):
    DRAFT = "draft"
    SCHEDULED = "scheduled"
    SENDING = "sending"
    DONE = "done"
    CANCELLED = "cancelled"


class OutboxStatus(enum.StrEnum):
    PENDING = "pending"  # due at `not_before`
    SENDING = "sending"  # claimed by a delivery worker until `locked_until`
    SENT = "sent"
    FAILED = "failed"  # gave up after retries, or Telegram refused it for good
    BLOCKED = "blocked"  # the recipient blocked the bot
    CANCELLED = "cancelled"
    HELD = "held"  # waits for the recipient's daily digest (their choice, or the daily cap)
    DIGESTED = "digested"  # folded into a digest message (`digest_id`)


class Priority(enum.IntEnum):
    URGENT = 0
    INTERACTIVE = 1
    NORMAL = 2
    BULK = 3


class NoticeMode(enum.StrEnum):
    INSTANT = "instant"
    DIGEST = "digest"


# --- the school and its calendar --------------------------------------------------------------


class School(Base):
    __tablename__ = "schools"

    id: Mapped[int] = mapped_column(primary_key=True)
    code: Mapped[str] = mapped_column(String(40), unique=True)
    name: Mapped[str] = mapped_column(String(200))
    timezone: Mapped[str] = mapped_column(String(64), default="Asia/Shanghai")
    default_locale: Mapped[str] = mapped_column(String(16), default="zh_CN")
    # Non-urgent messages per family per day before the rest wait for the digest (None: no cap).
    daily_notice_cap: Mapped[int | None] = mapped_column(SmallInteger)
    # The evening digest (the day's attendance, pick-ups and updates, and held notices).
    digest_time: Mapped[dt.time] = mapped_column(Time, default=dt.time(18, 30))  # local time
    # The daily patrol record (每日巡查记录) goes to the admins at this local time.
    patrol_time: Mapped[dt.time] = mapped_column(
        Time, default=dt.time(19, 30), server_default="19:30:00"
    )
    # A teacher may correct a roll this many days back; older rolls only an admin.
    correction_days: Mapped[int] = mapped_column(SmallInteger, default=7, server_default="7")
    # Unexplained absences on this many session days in a row are flagged to the school.
    absence_streak: Mapped[int] = mapped_column(SmallInteger, default=3, server_default="3")
    # The teacher is reminded when no roll is in this long after the session started.
    roll_reminder_minutes: Mapped[int] = mapped_column(
        SmallInteger, default=15, server_default="15"
    )
    # Leaves and early pick-ups are accepted until this long before the session starts.
    leave_cutoff_minutes: Mapped[int] = mapped_column(SmallInteger, default=60)
    # A freed seat offered to the next waitlisted child is held this long for an answer.
    offer_hours: Mapped[int] = mapped_column(SmallInteger, default=24)
    # The personal content of messages sent is cleared after this many days; counts stay.
    outbox_retention_days: Mapped[int] = mapped_column(
        SmallInteger, default=180, server_default="180"
    )
    # No deadline given to a family falls in these local hours: it moves to quiet_until.
    quiet_from: Mapped[dt.time] = mapped_column(Time, default=dt.time(21, 0))
    quiet_until: Mapped[dt.time] = mapped_column(Time, default=dt.time(7, 0))
    # A scheduled broadcast missed by more than this (Kehou was down) waits for an admin.
    late_broadcast_hours: Mapped[int] = mapped_column(SmallInteger, default=2)
    # Moved on by every change to the school's courses, terms, teachers, providers or fees
    # (storage.versions), so processes know when their cached programme is stale.
    catalogue_version: Mapped[int] = mapped_column(Integer, default=0, server_default="0")
    # The school's disclosed fee rules, for standards that state none (`fee_rules`), and when
    # fee reminders go (`fee_rules.Reminders`); None: the defaults.
    fee_rule: Mapped[dict[str, Any] | None] = mapped_column(JSON)
    fee_reminders: Mapped[dict[str, Any] | None] = mapped_column(JSON)
    fee_reminder_time: Mapped[dt.time] = mapped_column(
        Time, default=dt.time(10, 0), server_default="10:00:00"
    )
    # Term-end ratings are shown for a course only with this many complete ballots and this
    # share (%) of its families; never lower than 5 and 20 % (`ratings.RESULTS_MIN_*`).
    rating_min_ballots: Mapped[int] = mapped_column(SmallInteger, default=5, server_default="5")
    rating_min_share: Mapped[int] = mapped_column(SmallInteger, default=20, server_default="20")
    # A provider is flagged for the whitelist review below any of these: its courses' mean
    # score (tenths: 35 = 3.5), its attendance rate (%), above its withdrawal rate (%).
    provider_min_score: Mapped[int] = mapped_column(SmallInteger, default=35, server_default="35")
    provider_min_attendance: Mapped[int] = mapped_column(
        SmallInteger, default=85, server_default="85"
    )
    provider_max_withdrawal: Mapped[int] = mapped_column(
        SmallInteger, default=20, server_default="20"
    )
    # The "1+N" check asks for science on every teaching day (True), or once in each teaching
    # week (False: science read as an item of the programme, not of each day) (`reports`).
    science_every_day: Mapped[bool] = mapped_column(Boolean, default=True, server_default="1")
    created_at: Mapped[dt.datetime] = mapped_column(default=utcnow)

    @property
    def school_id(self) -> int:
        return self.id


class Term(Base):
    __tablename__ = "terms"
    __table_args__ = (
        UniqueConstraint("school_id", "name"),
        CheckConstraint("ends_on > starts_on", name="dates"),
    )

    id: Mapped[int] = mapped_column(primary_key=True)
    school_id: Mapped[int] = mapped_column(ForeignKey("schools.id", ondelete="CASCADE"))
    name: Mapped[str] = mapped_column(String(100))
    starts_on: Mapped[dt.date] = mapped_column(Date)
    ends_on: Mapped[dt.date] = mapped_column(Date)
    enrolment_opens_at: Mapped[dt.datetime | None]
    enrolment_closes_at: Mapped[dt.datetime | None]
    rating_opens_on: Mapped[dt.date | None] = mapped_column(Date)
    rating_closes_on: Mapped[dt.date | None] = mapped_column(Date)
    # The rating window as it ran (`ratings.open_window`/`close_window`). While it is open,
    # `rating_key` turns a child and course into its ballot's token; closing destroys the key
    # and re-keys every ballot, so no ballot can be traced back to a family (docs/RATINGS.md).
    rating_opened_at: Mapped[dt.datetime | None]
    rating_closed_at: Mapped[dt.datetime | None]
    rating_key: Mapped[str | None] = mapped_column(String(64))
    # When the term's growth records (课后成长档案) were released to the families.
    growth_released_at: Mapped[dt.datetime | None]
    schedule_published_on: Mapped[dt.date | None] = mapped_column(Date)

    days: Mapped[list[CalendarDay]] = relationship(
        back_populates="term", cascade="all, delete-orphan", order_by="CalendarDay.date"
    )


class CalendarDay(Base):
    """An exception to the weekly timetable: a holiday, a swapped working day, a no-service day."""

    __tablename__ = "calendar_days"
    __table_args__ = (
        UniqueConstraint("term_id", "date"),
        CheckConstraint(
            "(kind = 'workday') = (runs_weekday IS NOT NULL)", name="workday_runs_weekday"
        ),
        CheckConstraint("runs_weekday BETWEEN 1 AND 7", name="weekday_range"),
    )

    id: Mapped[int] = mapped_column(primary_key=True)
    school_id: Mapped[int] = mapped_column(ForeignKey("schools.id", ondelete="CASCADE"))
    term_id: Mapped[int] = mapped_column(ForeignKey("terms.id", ondelete="CASCADE"))
    date: Mapped[dt.date] = mapped_column(Date)
    kind: Mapped[CalendarKind] = mapped_column(enum_type(CalendarKind, "calendar_kind"))
    runs_weekday: Mapped[int | None] = mapped_column(SmallInteger)  # ISO: 1 = Monday
    note: Mapped[str | None] = mapped_column(String(200))

    term: Mapped[Term] = relationship(back_populates="days")


class SchoolClass(Base):
    __tablename__ = "classes"
    __table_args__ = (
        UniqueConstraint("school_id", "code"),
        CheckConstraint("grade BETWEEN 1 AND 9", name="grade_range"),
    )

    id: Mapped[int] = mapped_column(primary_key=True)
    school_id: Mapped[int] = mapped_column(ForeignKey("schools.id", ondelete="CASCADE"))
    code: Mapped[str] = mapped_column(String(20))  # e.g. "3-2"
    grade: Mapped[int] = mapped_column(SmallInteger)
    name: Mapped[str] = mapped_column(String(100))  # e.g. "三年级2班"
    head_teacher_id: Mapped[int | None] = mapped_column(
        ForeignKey("teachers.id", ondelete="SET NULL")
    )
    group_chat_id: Mapped[int | None] = mapped_column(BigInteger)  # the class parents' group
    # The day's updates of this class's sessions are also posted in its group (never anything
    # about one child).
    group_updates: Mapped[bool] = mapped_column(Boolean, default=False, server_default="0")


class Student(Base):
    """A pupil. Only what the service needs: name, class, school number (PIPL art. 28, 31)."""

    __tablename__ = "students"
    __table_args__ = (UniqueConstraint("school_id", "student_no"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    school_id: Mapped[int] = mapped_column(ForeignKey("schools.id", ondelete="CASCADE"))
    class_id: Mapped[int] = mapped_column(ForeignKey("classes.id", ondelete="RESTRICT"))
    student_no: Mapped[str] = mapped_column(String(40))
    name: Mapped[str] = mapped_column(String(100))
    active: Mapped[bool] = mapped_column(Boolean, default=True)
    # A guardian's standing permission to go home alone at dismissal (recorded in the chat).
    alone_permitted_by_user_id: Mapped[int | None] = mapped_column(
        ForeignKey("users.id", ondelete="SET NULL")
    )
    alone_permitted_at: Mapped[dt.datetime | None]

    school_class: Mapped[SchoolClass] = relationship()


# --- people -----------------------------------------------------------------------------------


class User(Base):
    """A Telegram account known to one school. Roles live in ``user_roles``."""

    __tablename__ = "users"
    __table_args__ = (UniqueConstraint("school_id", "telegram_id"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    school_id: Mapped[int] = mapped_column(ForeignKey("schools.id", ondelete="CASCADE"))
    telegram_id: Mapped[int] = mapped_column(BigInteger, index=True)
    chat_id: Mapped[int | None] = mapped_column(BigInteger)
    display_name: Mapped[str] = mapped_column(String(200), default="")
    locale: Mapped[str | None] = mapped_column(String(16))
    notice_mode: Mapped[NoticeMode] = mapped_column(
        enum_type(NoticeMode, "notice_mode"), default=NoticeMode.INSTANT
    )
    update_mode: Mapped[UpdateMode] = mapped_column(
        enum_type(UpdateMode, "update_mode"), default=UpdateMode.DIGEST, server_default="digest"
    )
    # Told at once how the child left ("张琪 17:52 由家长接走").
    dismissal_notice: Mapped[bool] = mapped_column(Boolean, default=False, server_default="0")
    blocked_at: Mapped[dt.datetime | None]
    created_at: Mapped[dt.datetime] = mapped_column(default=utcnow)
    last_seen_at: Mapped[dt.datetime] = mapped_column(default=utcnow)

    roles: Mapped[list[UserRole]] = relationship(
        back_populates="user", cascade="all, delete-orphan", lazy="selectin"
    )

    @property
    def role_set(self) -> frozenset[Role]:
        return frozenset(r.role for r in self.roles)


class UserRole(Base):
    __tablename__ = "user_roles"
    __table_args__ = (UniqueConstraint("user_id", "role"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    school_id: Mapped[int] = mapped_column(ForeignKey("schools.id", ondelete="CASCADE"))
    user_id: Mapped[int] = mapped_column(ForeignKey("users.id", ondelete="CASCADE"))
    role: Mapped[Role] = mapped_column(enum_type(Role, "role"))
    granted_at: Mapped[dt.datetime] = mapped_column(default=utcnow)

    user: Mapped[User] = relationship(back_populates="roles")


class Guardianship(Base):
    """A guardian's link to a child, with the consent recorded when the link was made."""

    __tablename__ = "guardianships"
    __table_args__ = (UniqueConstraint("user_id", "student_id"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    school_id: Mapped[int] = mapped_column(ForeignKey("schools.id", ondelete="CASCADE"))
    user_id: Mapped[int] = mapped_column(ForeignKey("users.id", ondelete="CASCADE"))
    student_id: Mapped[int] = mapped_column(ForeignKey("students.id", ondelete="CASCADE"))
    consent_version: Mapped[str] = mapped_column(String(20))
    consented_at: Mapped[dt.datetime]
    photo_consent: Mapped[bool] = mapped_column(Boolean, default=False)
    created_at: Mapped[dt.datetime] = mapped_column(default=utcnow)

    student: Mapped[Student] = relationship()


class Provider(Base):
    __tablename__ = "providers"
    __table_args__ = (UniqueConstraint("school_id", "code"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    school_id: Mapped[int] = mapped_column(ForeignKey("schools.id", ondelete="CASCADE"))
    code: Mapped[str] = mapped_column(String(40))
    name: Mapped[str] = mapped_column(String(200))
    kind: Mapped[ProviderKind] = mapped_column(enum_type(ProviderKind, "provider_kind"))
    whitelist_status: Mapped[WhitelistStatus] = mapped_column(
        enum_type(WhitelistStatus, "whitelist_status"), default=WhitelistStatus.WHITELISTED
    )
    contract_starts_on: Mapped[dt.date | None] = mapped_column(Date)
    contract_ends_on: Mapped[dt.date | None] = mapped_column(Date)
    contact: Mapped[str | None] = mapped_column(String(200))


class Teacher(Base):
    """Anyone who runs sessions: staff or an approved outside instructor."""

    __tablename__ = "teachers"
    __table_args__ = (UniqueConstraint("school_id", "code"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    school_id: Mapped[int] = mapped_column(ForeignKey("schools.id", ondelete="CASCADE"))
    code: Mapped[str] = mapped_column(String(40))
    name: Mapped[str] = mapped_column(String(100))
    kind: Mapped[TeacherKind] = mapped_column(enum_type(TeacherKind, "teacher_kind"))
    provider_id: Mapped[int | None] = mapped_column(
        ForeignKey("providers.id", ondelete="SET NULL")
    )
    credentials_checked: Mapped[bool] = mapped_column(Boolean, default=False)
    # Indexed: "which sessions are mine?" (/roster) looks teachers up by their account.
    user_id: Mapped[int | None] = mapped_column(
        ForeignKey("users.id", ondelete="SET NULL"), index=True
    )


# --- the programme ----------------------------------------------------------------------------


class FeeStandard(Base):
    """A fee item as disclosed (收费公示). Nothing undisclosed may be billed.

    Once disclosed (`disclosed_at`) a standard is never edited: a change is a new version of
    the same code, and the old one is marked superseded. `rule` holds the disclosed rules for
    late joins and refunds (`bot.services.fee_rules`).
    """

    __tablename__ = "fee_standards"
    __table_args__ = (
        UniqueConstraint("term_id", "code", "version"),
        CheckConstraint("amount_fen >= 0", name="amount_non_negative"),
        CheckConstraint("covers <> 'free' OR amount_fen = 0", name="free_is_free"),
    )

    id: Mapped[int] = mapped_column(primary_key=True)
    school_id: Mapped[int] = mapped_column(ForeignKey("schools.id", ondelete="CASCADE"))
    term_id: Mapped[int] = mapped_column(ForeignKey("terms.id", ondelete="CASCADE"))
    code: Mapped[str] = mapped_column(String(40))
    name: Mapped[str] = mapped_column(String(200))
    amount_fen: Mapped[int] = mapped_column(Integer)  # 1 yuan = 100 fen
    unit: Mapped[FeeUnit] = mapped_column(enum_type(FeeUnit, "fee_unit"))
    provider_id: Mapped[int | None] = mapped_column(
        ForeignKey("providers.id", ondelete="SET NULL")
    )  # set when the school collects on a provider's behalf (代收费)
    approval_ref: Mapped[str | None] = mapped_column(String(100))  # 批准文号
    disclosed_on: Mapped[dt.date | None] = mapped_column(Date)
    description: Mapped[str | None] = mapped_column(Text)
    covers: Mapped[FeeCovers] = mapped_column(
        enum_type(FeeCovers, "fee_covers"), default=FeeCovers.COURSE, server_default="course"
    )
    version: Mapped[int] = mapped_column(SmallInteger, default=1, server_default="1")
    effective_from: Mapped[dt.date | None] = mapped_column(Date)  # None: the term's start
    effective_to: Mapped[dt.date | None] = mapped_column(Date)  # None: the term's end
    # When it was made public (the start of `disclosed_on` in the school's zone when imported).
    disclosed_at: Mapped[dt.datetime | None]
    disclosed_by_user_id: Mapped[int | None] = mapped_column(
        ForeignKey("users.id", ondelete="SET NULL")
    )
    superseded_at: Mapped[dt.datetime | None]
    rule: Mapped[dict[str, Any] | None] = mapped_column(JSON)


class Course(Base):
    __tablename__ = "courses"
    __table_args__ = (
        UniqueConstraint("term_id", "code"),
        CheckConstraint("period IN (1, 2)", name="period"),
        CheckConstraint(
            "grade_min BETWEEN 1 AND 9 AND grade_max BETWEEN grade_min AND 9", name="grades"
        ),
        CheckConstraint("weekdays BETWEEN 1 AND 127", name="weekdays"),
        CheckConstraint("ends_at > starts_at", name="times"),
        CheckConstraint("capacity IS NULL OR capacity > 0", name="capacity"),
    )

    id: Mapped[int] = mapped_column(primary_key=True)
    school_id: Mapped[int] = mapped_column(ForeignKey("schools.id", ondelete="CASCADE"))
    term_id: Mapped[int] = mapped_column(ForeignKey("terms.id", ondelete="CASCADE"))
    code: Mapped[str] = mapped_column(String(40))
    name: Mapped[str] = mapped_column(String(200))
    description: Mapped[str | None] = mapped_column(Text)
    category: Mapped[Category] = mapped_column(enum_type(Category, "category"))
    period: Mapped[int] = mapped_column(SmallInteger)
    level: Mapped[Level | None] = mapped_column(enum_type(Level, "level"))
    grade_min: Mapped[int] = mapped_column(SmallInteger)
    grade_max: Mapped[int] = mapped_column(SmallInteger)
    weekdays: Mapped[int] = mapped_column(SmallInteger)  # bit 0 = Monday … bit 6 = Sunday
    starts_at: Mapped[dt.time] = mapped_column(Time)
    ends_at: Mapped[dt.time] = mapped_column(Time)
    venue: Mapped[str] = mapped_column(String(200))
    teacher_id: Mapped[int | None] = mapped_column(ForeignKey("teachers.id", ondelete="SET NULL"))
    provider_id: Mapped[int | None] = mapped_column(
        ForeignKey("providers.id", ondelete="SET NULL")
    )
    capacity: Mapped[int | None] = mapped_column(Integer)  # 班额; None = no limit
    fee_standard_id: Mapped[int | None] = mapped_column(
        ForeignKey("fee_standards.id", ondelete="SET NULL")
    )
    allocation: Mapped[Allocation] = mapped_column(
        enum_type(Allocation, "allocation"), default=Allocation.FIRST_COME
    )
    min_size: Mapped[int | None] = mapped_column(SmallInteger)  # cancelled below this at close
    cancelled_at: Mapped[dt.datetime | None]

    teacher: Mapped[Teacher | None] = relationship()
    provider: Mapped[Provider | None] = relationship()
    fee_standard: Mapped[FeeStandard | None] = relationship()


class Session(Base):
    """One dated occurrence of a course, written when it is first needed (its roll, an update).

    Which sessions a day has comes from the courses and the calendar (`leaves.sessions_on`);
    this row holds what happened: who taught it and when the roll was submitted.
    """

    __tablename__ = "sessions"
    __table_args__ = (UniqueConstraint("course_id", "date"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    school_id: Mapped[int] = mapped_column(ForeignKey("schools.id", ondelete="CASCADE"))
    course_id: Mapped[int] = mapped_column(ForeignKey("courses.id", ondelete="CASCADE"))
    date: Mapped[dt.date] = mapped_column(Date, index=True)
    starts_at: Mapped[dt.time] = mapped_column(Time)
    ends_at: Mapped[dt.time] = mapped_column(Time)
    venue: Mapped[str] = mapped_column(String(200))
    status: Mapped[SessionStatus] = mapped_column(
        enum_type(SessionStatus, "session_status"), default=SessionStatus.SCHEDULED
    )
    teacher_id: Mapped[int | None] = mapped_column(ForeignKey("teachers.id", ondelete="SET NULL"))
    # The roll: first submitted when and by whom; `roll_version` moves on with every save, so
    # two devices saving one roll cannot overwrite each other unseen (compare-and-set).
    roll_submitted_at: Mapped[dt.datetime | None]
    roll_submitted_by_user_id: Mapped[int | None] = mapped_column(
        ForeignKey("users.id", ondelete="SET NULL")
    )
    roll_version: Mapped[int] = mapped_column(Integer, default=0, server_default="0")
    roll_reminded_at: Mapped[dt.datetime | None]


class Enrolment(Base):
    __tablename__ = "enrolments"
    __table_args__ = (
        UniqueConstraint("student_id", "course_id"),
        CheckConstraint(
            "(status = 'waitlisted') = (waitlist_position IS NOT NULL)", name="waitlist_position"
        ),
        Index("ix_enrolments_course_status", "course_id", "status"),
    )

    id: Mapped[int] = mapped_column(primary_key=True)
    school_id: Mapped[int] = mapped_column(ForeignKey("schools.id", ondelete="CASCADE"))
    student_id: Mapped[int] = mapped_column(ForeignKey("students.id", ondelete="CASCADE"))
    course_id: Mapped[int] = mapped_column(ForeignKey("courses.id", ondelete="CASCADE"))
    status: Mapped[EnrolmentStatus] = mapped_column(enum_type(EnrolmentStatus, "enrolment_status"))
    waitlist_position: Mapped[int | None] = mapped_column(Integer)
    created_by_user_id: Mapped[int | None] = mapped_column(
        ForeignKey("users.id", ondelete="SET NULL")
    )
    created_at: Mapped[dt.datetime] = mapped_column(default=utcnow)
    updated_at: Mapped[dt.datetime] = mapped_column(default=utcnow, onupdate=utcnow)
    # A freed seat offered to this waitlisted child, open until the deadline.
    offer_expires_at: Mapped[dt.datetime | None]
    withdrawn_from: Mapped[dt.date | None] = mapped_column(Date)  # the first day not attended
    draw_rank: Mapped[int | None] = mapped_column(SmallInteger)  # 1-3: the family's preference
    draw_key: Mapped[str | None] = mapped_column(String(64))  # the draw's hash: lower goes first


class LotteryDraw(Base):
    """The draw of a term's lottery courses: its seed is published to every family."""

    __tablename__ = "lottery_draws"
    __table_args__ = (UniqueConstraint("term_id"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    school_id: Mapped[int] = mapped_column(ForeignKey("schools.id", ondelete="CASCADE"))
    term_id: Mapped[int] = mapped_column(ForeignKey("terms.id", ondelete="CASCADE"))
    seed: Mapped[str] = mapped_column(String(64))
    drawn_at: Mapped[dt.datetime] = mapped_column(default=utcnow)


class EnrolmentEvent(Base):
    """One change of an enrolment: the child's enrolment history."""

    __tablename__ = "enrolment_events"

    id: Mapped[int] = mapped_column(primary_key=True)
    school_id: Mapped[int] = mapped_column(ForeignKey("schools.id", ondelete="CASCADE"))
    enrolment_id: Mapped[int] = mapped_column(
        ForeignKey("enrolments.id", ondelete="CASCADE"), index=True
    )
    status: Mapped[EnrolmentStatus] = mapped_column(enum_type(EnrolmentStatus, "enrolment_status"))
    waitlist_position: Mapped[int | None] = mapped_column(Integer)
    actor: Mapped[EnrolmentActor] = mapped_column(enum_type(EnrolmentActor, "enrolment_actor"))
    actor_user_id: Mapped[int | None] = mapped_column(ForeignKey("users.id", ondelete="SET NULL"))
    note: Mapped[str | None] = mapped_column(String(200))  # e.g. "offer declined"
    created_at: Mapped[dt.datetime] = mapped_column(default=utcnow)


class Leave(Base):
    """A one-off absence a guardian announced, or an early pick-up.

    For one period (1 or 2) or the whole day (`period` NULL) of one date; with `pickup_at`, the
    child attends but is collected early at that time. Cancelled leaves are kept, marked.
    """

    __tablename__ = "leaves"
    __table_args__ = (
        UniqueConstraint("student_id", "date", "session_id"),
        CheckConstraint("period IS NULL OR period IN (1, 2)", name="period"),
        Index("ix_leaves_student_date", "student_id", "date"),
    )

    id: Mapped[int] = mapped_column(primary_key=True)
    school_id: Mapped[int] = mapped_column(ForeignKey("schools.id", ondelete="CASCADE"))
    student_id: Mapped[int] = mapped_column(ForeignKey("students.id", ondelete="CASCADE"))
    date: Mapped[dt.date] = mapped_column(Date)
    session_id: Mapped[int | None] = mapped_column(ForeignKey("sessions.id", ondelete="CASCADE"))
    reason: Mapped[str | None] = mapped_column(String(200))
    created_by_user_id: Mapped[int | None] = mapped_column(
        ForeignKey("users.id", ondelete="SET NULL")
    )
    created_at: Mapped[dt.datetime] = mapped_column(default=utcnow)
    period: Mapped[int | None] = mapped_column(SmallInteger)
    pickup_at: Mapped[dt.time | None] = mapped_column(Time)
    cancelled_at: Mapped[dt.datetime | None]


class AttendanceCode(Base):
    """One attendance status a school uses: data, not code (seeded by `attendance.DEFAULT_CODES`).

    `present` counts toward the attendance rate; `alerts`: marking it with no leave on file is
    an unexplained absence, which the guardians hear about at once; `cycle`: its place in the
    order one tap on the roll moves through (None: set only from a guardian's request or by
    name); `words`: what a teacher may type for it in the shorthand.
    """

    __tablename__ = "attendance_codes"
    __table_args__ = (UniqueConstraint("school_id", "code"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    school_id: Mapped[int] = mapped_column(ForeignKey("schools.id", ondelete="CASCADE"))
    code: Mapped[str] = mapped_column(String(20))
    emoji: Mapped[str] = mapped_column(String(8))
    label: Mapped[str] = mapped_column(String(60))  # an English msgid
    words: Mapped[list[str]] = mapped_column(JSON)
    present: Mapped[bool] = mapped_column(Boolean)
    alerts: Mapped[bool] = mapped_column(Boolean, default=False)
    cycle: Mapped[int | None] = mapped_column(SmallInteger)
    position: Mapped[int] = mapped_column(SmallInteger)


class AttendanceMark(Base):
    """One entry of the append-only attendance log: the latest per session and child counts.

    Every mark and correction is a new row (who, when, the status before and after); a
    guardian's reason for an absence is a row too (same code, `note` set, `source` guardian).
    """

    __tablename__ = "attendance_marks"
    __table_args__ = (Index("ix_attendance_marks_session_student", "session_id", "student_id"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    school_id: Mapped[int] = mapped_column(ForeignKey("schools.id", ondelete="CASCADE"))
    session_id: Mapped[int] = mapped_column(ForeignKey("sessions.id", ondelete="CASCADE"))
    student_id: Mapped[int] = mapped_column(
        ForeignKey("students.id", ondelete="CASCADE"), index=True
    )
    code: Mapped[str] = mapped_column(String(20))
    previous: Mapped[str | None] = mapped_column(String(20))
    source: Mapped[str] = mapped_column(String(20))  # roll, shorthand, guardian
    note: Mapped[str | None] = mapped_column(String(200))
    # The guardians were alerted to this absence (so a later "present" sends a correction).
    alerted: Mapped[bool] = mapped_column(Boolean, default=False)
    actor_user_id: Mapped[int | None] = mapped_column(ForeignKey("users.id", ondelete="SET NULL"))
    created_at: Mapped[dt.datetime] = mapped_column(default=utcnow)


class Dismissal(Base):
    """How a child left a session (弹性离校); append-only, the latest per child counts."""

    __tablename__ = "dismissals"
    __table_args__ = (Index("ix_dismissals_session_student", "session_id", "student_id"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    school_id: Mapped[int] = mapped_column(ForeignKey("schools.id", ondelete="CASCADE"))
    session_id: Mapped[int] = mapped_column(ForeignKey("sessions.id", ondelete="CASCADE"))
    student_id: Mapped[int] = mapped_column(ForeignKey("students.id", ondelete="CASCADE"))
    way: Mapped[DismissalWay] = mapped_column(enum_type(DismissalWay, "dismissal_way"))
    pickup_person_id: Mapped[int | None] = mapped_column(
        ForeignKey("pickup_people.id", ondelete="SET NULL")
    )
    left_at: Mapped[dt.datetime]
    actor_user_id: Mapped[int | None] = mapped_column(ForeignKey("users.id", ondelete="SET NULL"))
    created_at: Mapped[dt.datetime] = mapped_column(default=utcnow)


class PickupPerson(Base):
    """An adult a guardian authorised to collect the child (kept until a guardian removes it)."""

    __tablename__ = "pickup_people"

    id: Mapped[int] = mapped_column(primary_key=True)
    school_id: Mapped[int] = mapped_column(ForeignKey("schools.id", ondelete="CASCADE"))
    student_id: Mapped[int] = mapped_column(
        ForeignKey("students.id", ondelete="CASCADE"), index=True
    )
    name: Mapped[str] = mapped_column(String(100))
    relation: Mapped[str | None] = mapped_column(String(40))  # 爷爷, 姑姑, …
    added_by_user_id: Mapped[int | None] = mapped_column(
        ForeignKey("users.id", ondelete="SET NULL")
    )
    created_at: Mapped[dt.datetime] = mapped_column(default=utcnow)
    removed_at: Mapped[dt.datetime | None]


class DailyUpdate(Base):
    """What a class did today, by its teacher: text and up to 10 photos (Telegram file ids).

    `unconsented` lists the children without a guardian's photo consent whom the teacher
    confirmed are not in the photos (also in the audit log).
    """

    __tablename__ = "daily_updates"

    id: Mapped[int] = mapped_column(primary_key=True)
    school_id: Mapped[int] = mapped_column(ForeignKey("schools.id", ondelete="CASCADE"))
    session_id: Mapped[int] = mapped_column(
        ForeignKey("sessions.id", ondelete="CASCADE"), index=True
    )
    teacher_id: Mapped[int | None] = mapped_column(ForeignKey("teachers.id", ondelete="SET NULL"))
    author_user_id: Mapped[int | None] = mapped_column(ForeignKey("users.id", ondelete="SET NULL"))
    text: Mapped[str] = mapped_column(Text)
    photos: Mapped[list[str]] = mapped_column(JSON, default=list, server_default="[]")
    unconsented: Mapped[list[int] | None] = mapped_column(JSON)
    created_at: Mapped[dt.datetime] = mapped_column(default=utcnow)


class GrowthNote(Base):
    """A teacher's note for a child's term growth record (课后成长档案).

    Guardians see notes only with the record (`released_at`), at term end.
    """

    __tablename__ = "growth_notes"

    id: Mapped[int] = mapped_column(primary_key=True)
    school_id: Mapped[int] = mapped_column(ForeignKey("schools.id", ondelete="CASCADE"))
    term_id: Mapped[int] = mapped_column(ForeignKey("terms.id", ondelete="CASCADE"))
    student_id: Mapped[int] = mapped_column(
        ForeignKey("students.id", ondelete="CASCADE"), index=True
    )
    teacher_id: Mapped[int | None] = mapped_column(ForeignKey("teachers.id", ondelete="SET NULL"))
    author_user_id: Mapped[int | None] = mapped_column(ForeignKey("users.id", ondelete="SET NULL"))
    text: Mapped[str] = mapped_column(Text)
    created_at: Mapped[dt.datetime] = mapped_column(default=utcnow)
    released_at: Mapped[dt.datetime | None]


# --- money ------------------------------------------------------------------------------------


class Bill(Base):
    """A child's term bill: whichever guardian pays closes it for all of them.

    Its money is the ledger (`BillEntry`): the balance is always the sum of the entries.
    `version` moves on with every entry, so two admins recording at once cannot both write
    against the same balance unseen (compare-and-set).
    """

    __tablename__ = "bills"
    __table_args__ = (UniqueConstraint("term_id", "student_id"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    school_id: Mapped[int] = mapped_column(ForeignKey("schools.id", ondelete="CASCADE"))
    term_id: Mapped[int] = mapped_column(ForeignKey("terms.id", ondelete="CASCADE"))
    student_id: Mapped[int] = mapped_column(ForeignKey("students.id", ondelete="CASCADE"))
    issued_at: Mapped[dt.datetime] = mapped_column(default=utcnow)
    issued_by_user_id: Mapped[int | None] = mapped_column(
        ForeignKey("users.id", ondelete="SET NULL")
    )
    due_on: Mapped[dt.date | None] = mapped_column(Date)
    version: Mapped[int] = mapped_column(Integer, default=0, server_default="0")
    reminders_sent: Mapped[int] = mapped_column(SmallInteger, default=0, server_default="0")

    lines: Mapped[list[BillLine]] = relationship(
        back_populates="bill", cascade="all, delete-orphan", order_by="BillLine.id"
    )


class BillLine(Base):
    """One charge: a disclosed standard, at its disclosed amount, for one child's enrolment."""

    __tablename__ = "bill_lines"
    __table_args__ = (
        CheckConstraint("amount_fen >= 0", name="amount_non_negative"),
        CheckConstraint("quantity > 0", name="quantity_positive"),
        UniqueConstraint("bill_id", "fee_standard_id", "course_id"),
    )

    id: Mapped[int] = mapped_column(primary_key=True)
    school_id: Mapped[int] = mapped_column(ForeignKey("schools.id", ondelete="CASCADE"))
    bill_id: Mapped[int] = mapped_column(ForeignKey("bills.id", ondelete="CASCADE"))
    # Every line must point at a disclosed fee standard: undisclosed fees cannot be billed.
    fee_standard_id: Mapped[int] = mapped_column(
        ForeignKey("fee_standards.id", ondelete="RESTRICT")
    )
    # The course billed (None for a once-per-child standard: period 1 or 2 as a whole).
    course_id: Mapped[int | None] = mapped_column(ForeignKey("courses.id", ondelete="SET NULL"))
    enrolment_id: Mapped[int | None] = mapped_column(
        ForeignKey("enrolments.id", ondelete="SET NULL")
    )
    unit_fen: Mapped[int] = mapped_column(Integer, default=0, server_default="0")
    quantity: Mapped[int] = mapped_column(Integer, default=1)
    amount_fen: Mapped[int] = mapped_column(Integer)
    from_date: Mapped[dt.date | None] = mapped_column(Date)  # billed from (a late join)
    note: Mapped[str | None] = mapped_column(String(200))
    created_at: Mapped[dt.datetime] = mapped_column(default=utcnow)

    bill: Mapped[Bill] = relationship(back_populates="lines")
    standard: Mapped[FeeStandard] = relationship()


class BillEntry(Base):
    """One movement of money on a bill (see `EntryKind`); never changed once written."""

    __tablename__ = "bill_entries"
    __table_args__ = (
        CheckConstraint("amount_fen <> 0", name="amount_not_zero"),
        UniqueConstraint("bill_id", "kind", "reference"),
        Index("ix_bill_entries_bill", "bill_id"),
    )

    id: Mapped[int] = mapped_column(primary_key=True)
    school_id: Mapped[int] = mapped_column(ForeignKey("schools.id", ondelete="CASCADE"))
    bill_id: Mapped[int] = mapped_column(ForeignKey("bills.id", ondelete="CASCADE"))
    kind: Mapped[EntryKind] = mapped_column(enum_type(EntryKind, "entry_kind"))
    amount_fen: Mapped[int] = mapped_column(Integer)  # signed: + owed, − settled
    line_id: Mapped[int | None] = mapped_column(ForeignKey("bill_lines.id", ondelete="SET NULL"))
    # A payment's transaction number, or what an adjustment is for: once per bill and kind.
    reference: Mapped[str | None] = mapped_column(String(100))
    note: Mapped[str | None] = mapped_column(String(200))
    actor_user_id: Mapped[int | None] = mapped_column(ForeignKey("users.id", ondelete="SET NULL"))
    created_at: Mapped[dt.datetime] = mapped_column(default=utcnow)


# --- feedback and messages --------------------------------------------------------------------


class Ballot(Base):
    """One family's term-end answers about one course (双评价): no user, no child, no time.

    The key is a token, not a counter, so the order ballots were cast is not in it. While the
    window is open the token is an HMAC of the child and course under the term's
    `rating_key`, so the family can find and change its ballot; closing the window re-keys
    every ballot at random and destroys the key. Who has rated is in `RatingTurnout`, which
    says nothing of the answers. See docs/RATINGS.md.
    """

    __tablename__ = "ballots"
    __table_args__ = (
        CheckConstraint("content BETWEEN 1 AND 5", name="content"),
        CheckConstraint("teaching BETWEEN 1 AND 5", name="teaching"),
        CheckConstraint("safety BETWEEN 1 AND 5", name="safety"),
        Index("ix_ballots_course", "term_id", "course_id"),
    )

    token: Mapped[str] = mapped_column(String(64), primary_key=True)
    school_id: Mapped[int] = mapped_column(ForeignKey("schools.id", ondelete="CASCADE"))
    term_id: Mapped[int] = mapped_column(ForeignKey("terms.id", ondelete="CASCADE"))
    course_id: Mapped[int] = mapped_column(ForeignKey("courses.id", ondelete="CASCADE"))
    content: Mapped[int | None] = mapped_column(SmallInteger)
    teaching: Mapped[int | None] = mapped_column(SmallInteger)
    safety: Mapped[int | None] = mapped_column(SmallInteger)
    again: Mapped[Again | None] = mapped_column(enum_type(Again, "again"))
    face: Mapped[Face | None] = mapped_column(enum_type(Face, "face"))
    comment: Mapped[str | None] = mapped_column(Text)
    comment_status: Mapped[CommentStatus | None] = mapped_column(
        enum_type(CommentStatus, "comment_status")
    )


class RatingTurnout(Base):
    """That a child's family was asked to rate a course, and whether it has: for reminders and
    turnout. Never what it answered; no time either, which could be matched to a ballot."""

    __tablename__ = "rating_turnout"

    term_id: Mapped[int] = mapped_column(
        ForeignKey("terms.id", ondelete="CASCADE"), primary_key=True
    )
    course_id: Mapped[int] = mapped_column(
        ForeignKey("courses.id", ondelete="CASCADE"), primary_key=True
    )
    student_id: Mapped[int] = mapped_column(
        ForeignKey("students.id", ondelete="CASCADE"), primary_key=True, index=True
    )
    school_id: Mapped[int] = mapped_column(ForeignKey("schools.id", ondelete="CASCADE"))
    done: Mapped[bool] = mapped_column(Boolean, default=False)


class ProviderReview(Base):
    """The school admins' own evaluation of an outside provider for a term (the third voice of
    the whitelist review, beside families and children)."""

    __tablename__ = "provider_reviews"
    __table_args__ = (
        UniqueConstraint("term_id", "provider_id"),
        CheckConstraint("score BETWEEN 1 AND 5", name="score"),
    )

    id: Mapped[int] = mapped_column(primary_key=True)
    school_id: Mapped[int] = mapped_column(ForeignKey("schools.id", ondelete="CASCADE"))
    term_id: Mapped[int] = mapped_column(ForeignKey("terms.id", ondelete="CASCADE"))
    provider_id: Mapped[int] = mapped_column(ForeignKey("providers.id", ondelete="CASCADE"))
    score: Mapped[int] = mapped_column(SmallInteger)
    note: Mapped[str | None] = mapped_column(Text)
    reviewed_by_user_id: Mapped[int | None] = mapped_column(
        ForeignKey("users.id", ondelete="SET NULL")
    )
    reviewed_at: Mapped[dt.datetime] = mapped_column(default=utcnow)


class Broadcast(Base):
    __tablename__ = "broadcasts"

    id: Mapped[int] = mapped_column(primary_key=True)
    school_id: Mapped[int] = mapped_column(ForeignKey("schools.id", ondelete="CASCADE"))
    created_by_user_id: Mapped[int | None] = mapped_column(
        ForeignKey("users.id", ondelete="SET NULL")
    )
    text: Mapped[str] = mapped_column(Text)
    audience: Mapped[dict[str, Any]] = mapped_column(JSON)
    attachment: Mapped[dict[str, Any] | None] = mapped_column(JSON)
    status: Mapped[BroadcastStatus] = mapped_column(
        enum_type(BroadcastStatus, "broadcast_status"), default=BroadcastStatus.DRAFT
    )
    scheduled_for: Mapped[dt.datetime | None]
    ack_requested: Mapped[bool] = mapped_column(Boolean, default=False)
    reping_after_hours: Mapped[int | None] = mapped_column(SmallInteger)
    created_at: Mapped[dt.datetime] = mapped_column(default=utcnow)
    priority: Mapped[int] = mapped_column(SmallInteger, default=Priority.NORMAL)
    recipients: Mapped[int] = mapped_column(Integer, default=0)
    started_at: Mapped[dt.datetime | None]
    finished_at: Mapped[dt.datetime | None]
    reping_at: Mapped[dt.datetime | None]  # when the one re-ping went out
    cancelled_at: Mapped[dt.datetime | None]
    # Due too long ago when Kehou came back: it waits for an admin's "send now" or "cancel".
    held_at: Mapped[dt.datetime | None]
    # The sender's status message, edited in place as delivery runs.
    status_chat_id: Mapped[int | None] = mapped_column(BigInteger)
    status_message_id: Mapped[int | None] = mapped_column(BigInteger)


class Outbox(Base):
    """A message the bot sends on its own initiative, written in the causing transaction."""

    __tablename__ = "outbox"
    __table_args__ = (
        Index("ix_outbox_due", "status", "priority", "not_before"),
        CheckConstraint("priority BETWEEN 0 AND 3", name="priority_range"),
    )

    id: Mapped[int] = mapped_column(primary_key=True)
    school_id: Mapped[int] = mapped_column(ForeignKey("schools.id", ondelete="CASCADE"))
    user_id: Mapped[int | None] = mapped_column(ForeignKey("users.id", ondelete="SET NULL"))
    chat_id: Mapped[int] = mapped_column(BigInteger)
    kind: Mapped[str] = mapped_column(String(40))
    priority: Mapped[int] = mapped_column(SmallInteger, default=Priority.NORMAL)
    template: Mapped[str | None] = mapped_column(Text)  # an English msgid, of any length
    params: Mapped[dict[str, Any] | None] = mapped_column(JSON)
    text: Mapped[str | None] = mapped_column(Text)
    buttons: Mapped[list[Any] | None] = mapped_column(JSON)
    attachment: Mapped[dict[str, Any] | None] = mapped_column(JSON)
    dedupe_key: Mapped[str | None] = mapped_column(String(200), unique=True)
    not_before: Mapped[dt.datetime] = mapped_column(default=utcnow)
    status: Mapped[OutboxStatus] = mapped_column(
        enum_type(OutboxStatus, "outbox_status"), default=OutboxStatus.PENDING
    )
    attempts: Mapped[int] = mapped_column(SmallInteger, default=0)
    last_error: Mapped[str | None] = mapped_column(Text)
    message_id: Mapped[int | None] = mapped_column(BigInteger)
    broadcast_id: Mapped[int | None] = mapped_column(
        ForeignKey("broadcasts.id", ondelete="SET NULL"), index=True
    )
    acknowledged_at: Mapped[dt.datetime | None]
    created_at: Mapped[dt.datetime] = mapped_column(default=utcnow)
    sent_at: Mapped[dt.datetime | None]
    # Delivery: the worker that claimed the row and until when (a crashed worker's rows are
    # taken over after that); the digest message a held row was folded into.
    claimed_by: Mapped[str | None] = mapped_column(String(64))
    locked_until: Mapped[dt.datetime | None]
    digest_id: Mapped[int | None] = mapped_column(
        ForeignKey("outbox.id", ondelete="SET NULL"), index=True
    )


class DeliveryWorker(Base):
    """A running delivery worker (deployment-wide): workers share the bot's send budget.

    Each worker refreshes its heartbeat; the live ones divide Telegram's per-bot rate among
    themselves, so several processes together stay within the one bot's limits.
    """

    __tablename__ = "delivery_workers"

    id: Mapped[str] = mapped_column(String(64), primary_key=True)
    started_at: Mapped[dt.datetime] = mapped_column(default=utcnow)
    heartbeat_at: Mapped[dt.datetime] = mapped_column(default=utcnow, index=True)


class JobRun(Base):
    """One run of a periodic job, claimed once per (job, school, due time): the scheduler ledger.

    ``school_id`` is 0 for a run that belongs to the whole deployment (offer expiry, the draw).
    ``job = 'alive'`` rows are the running processes' heartbeats (``due_at``: when the process
    started, ``finished_at``: its last tick); start-up reads them to know how long Kehou was
    down. See ``docs/SCHEDULER.md``.
    """

    __tablename__ = "job_runs"
    __table_args__ = (UniqueConstraint("job", "school_id", "due_at"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    job: Mapped[str] = mapped_column(String(60))
    school_id: Mapped[int] = mapped_column(Integer, default=0)
    due_at: Mapped[dt.datetime]
    claimed_by: Mapped[str] = mapped_column(String(64))
    started_at: Mapped[dt.datetime]
    finished_at: Mapped[dt.datetime | None] = mapped_column(index=True)
    error: Mapped[str | None] = mapped_column(Text)
    outcome: Mapped[str | None] = mapped_column(String(200))


# --- access -----------------------------------------------------------------------------------


class Invite(Base):
    """A one-time code that makes a Telegram account a parent, teacher or admin."""

    __tablename__ = "invites"
    __table_args__ = (
        CheckConstraint("(role = 'parent') = (student_id IS NOT NULL)", name="parent_has_student"),
    )

    id: Mapped[int] = mapped_column(primary_key=True)
    school_id: Mapped[int] = mapped_column(ForeignKey("schools.id", ondelete="CASCADE"))
    role: Mapped[Role] = mapped_column(enum_type(Role, "role"))
    code_hash: Mapped[str] = mapped_column(String(64), unique=True)
    student_id: Mapped[int | None] = mapped_column(ForeignKey("students.id", ondelete="CASCADE"))
    teacher_id: Mapped[int | None] = mapped_column(ForeignKey("teachers.id", ondelete="CASCADE"))
    label: Mapped[str | None] = mapped_column(String(200))
    created_by_user_id: Mapped[int | None] = mapped_column(
        ForeignKey("users.id", ondelete="SET NULL")
    )
    created_at: Mapped[dt.datetime] = mapped_column(default=utcnow)
    expires_at: Mapped[dt.datetime]
    used_at: Mapped[dt.datetime | None]
    used_by_user_id: Mapped[int | None] = mapped_column(
        ForeignKey("users.id", ondelete="SET NULL")
    )
    revoked_at: Mapped[dt.datetime | None]


class InviteAttempt(Base):
    """A wrong code typed by a Telegram account (deployment-wide: the account has no school)."""

    __tablename__ = "invite_attempts"

    id: Mapped[int] = mapped_column(primary_key=True)
    telegram_id: Mapped[int] = mapped_column(BigInteger, index=True)
    attempted_at: Mapped[dt.datetime] = mapped_column(default=utcnow)


class AuditLog(Base):
    __tablename__ = "audit_log"

    id: Mapped[int] = mapped_column(primary_key=True)
    school_id: Mapped[int] = mapped_column(ForeignKey("schools.id", ondelete="CASCADE"))
    actor_user_id: Mapped[int | None] = mapped_column(ForeignKey("users.id", ondelete="SET NULL"))
    actor_label: Mapped[str | None] = mapped_column(String(100))  # e.g. "cli" for kehou invite
    action: Mapped[str] = mapped_column(String(60))
    target_type: Mapped[str | None] = mapped_column(String(40))
    target_id: Mapped[int | None] = mapped_column(Integer)
    details: Mapped[dict[str, Any] | None] = mapped_column(JSON)
    created_at: Mapped[dt.datetime] = mapped_column(default=utcnow, index=True)


class BotState(Base):
    """PTB persistence: user_data, chat_data, bot_data, callback_data and conversations."""

    __tablename__ = "bot_state"

    kind: Mapped[str] = mapped_column(String(20), primary_key=True)
    key: Mapped[str] = mapped_column(String(200), primary_key=True)
    data: Mapped[Any] = mapped_column(JSON)
    updated_at: Mapped[dt.datetime] = mapped_column(default=utcnow, onupdate=utcnow)
