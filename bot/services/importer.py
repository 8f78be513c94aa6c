"""The school import (``kehou import FILE``): a YAML file and its roster, all or nothing.

Two steps, so validation can be tested without a database:

- ``load_and_validate(path)`` reads the YAML file and any roster it points at, checks every
  value, reference and policy rule, and returns a ``ParsedSchool`` or raises
  ``ImportValidationError`` listing *every* problem with its file, line and field.
- ``import_school(db, path)`` writes a ``ParsedSchool`` in one transaction, matching existing rows
  on their natural keys so that importing the same file twice changes nothing.

The file format is documented for school IT staff in ``docs/IMPORT.md``.
"""

from __future__ import annotations

import asyncio
import calendar
import csv
import datetime as dt
import io
import re
import zipfile
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field, fields
from decimal import Decimal, InvalidOperation
from enum import Enum, StrEnum
from pathlib import Path
from typing import Any, TypeVar
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

import openpyxl
import yaml
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from bot.i18n import SUPPORTED_LOCALES
from bot.services import audit, fee_rules
from bot.services import fees as fee_service
from storage.db import Database
from storage.models import (
    Allocation,
    Base,
    CalendarDay,
    CalendarKind,
    Category,
    Course,
    FeeCovers,
    FeeStandard,
    FeeUnit,
    Level,
    Provider,
    ProviderKind,
    School,
    SchoolClass,
    Student,
    Teacher,
    TeacherKind,
    Term,
    WhitelistStatus,
    utcnow,
)

T = TypeVar("T")
E = TypeVar("E", bound=Enum)

# An amount above this is a typo (or fen typed as yuan), not a fee standard.
MAX_FEE_YUAN = Decimal(100_000)
ROSTER_SUFFIXES = {".csv", ".tsv", ".txt", ".xlsx", ".xlsm"}
WEEKDAY_NAMES_EN = ("Monday", "Tuesday", "Wednesday", "Thursday", "Friday", "Saturday", "Sunday")


# --- problems ---------------------------------------------------------------------------------


@dataclass(frozen=True)
class ImportProblem:
    """One thing wrong with the input, precise enough to find and fix it.

    ``location`` is a YAML path such as ``courses[3]`` (list indexes start at 0) and is empty for
    roster rows, whose ``line`` is the CSV line or spreadsheet row number.
    """

    file: str
    location: str
    field: str
    message: str
    line: int | None = None

    def __str__(self) -> str:
        where = self.file if self.line is None else f"{self.file}:{self.line}"
        target = ".".join(part for part in (self.location, self.field) if part)
        return f"{where} {target}: {self.message}" if target else f"{where}: {self.message}"


class ImportValidationError(Exception):
    """The input is wrong; nothing was imported. ``errors`` holds every problem found."""

    def __init__(self, errors: list[ImportProblem]) -> None:
        self.errors = list(errors)
        super().__init__(str(self))

    def __str__(self) -> str:
        return "\n".join(str(problem) for problem in self.errors)


# --- parsed values ----------------------------------------------------------------------------


@dataclass(frozen=True)
class SchoolInfo:
    code: str
    name: str
    timezone: str
    default_locale: str
    daily_notice_cap: int | None = None
    digest_time: dt.time = dt.time(18, 30)
    leave_cutoff_minutes: int = 60
    offer_hours: int = 24
    quiet_from: dt.time = dt.time(21, 0)
    quiet_until: dt.time = dt.time(7, 0)
    late_broadcast_hours: int = 2
    patrol_time: dt.time = dt.time(19, 30)
    correction_days: int = 7
    absence_streak: int = 3
    roll_reminder_minutes: int = 15
    fee_rule: dict[str, Any] | None = None
    fee_reminders: dict[str, Any] | None = None
    fee_reminder_time: dt.time = dt.time(10, 0)
    # Term-end ratings and the whitelist review of outside providers (docs/PROVIDERS.md).
    rating_min_ballots: int = 5
    rating_min_share: int = 20
    provider_min_score: int = 35  # tenths: 3.5
    provider_min_attendance: int = 85
    provider_max_withdrawal: int = 20
    # The "1+N" check: science every teaching day, or once a week (docs/REPORTS.md).
    science_every_day: bool = True


class ScienceCheck(StrEnum):
    """How the school file says the "1+N" check reads "science is a mandatory item"."""

    DAILY = "daily"
    WEEKLY = "weekly"


@dataclass(frozen=True)
class TermInfo:
    name: str
    starts_on: dt.date
    ends_on: dt.date
    enrolment_opens_at: dt.datetime | None  # aware, UTC
    enrolment_closes_at: dt.datetime | None
    rating_opens_on: dt.date | None
    rating_closes_on: dt.date | None
    schedule_published_on: dt.date | None


@dataclass(frozen=True)
class DayInfo:
    date: dt.date
    kind: CalendarKind
    runs_weekday: int | None  # ISO, 1 = Monday; only for workdays
    note: str | None


@dataclass(frozen=True)
class ProviderInfo:
    code: str
    name: str
    kind: ProviderKind
    whitelist_status: WhitelistStatus
    contract_starts_on: dt.date | None
    contract_ends_on: dt.date | None
    contact: str | None


@dataclass(frozen=True)
class TeacherInfo:
    code: str
    name: str
    kind: TeacherKind
    provider: str | None  # provider code
    credentials_checked: bool


@dataclass(frozen=True)
class ClassInfo:
    code: str
    grade: int
    name: str
    head_teacher: str | None  # teacher code


@dataclass(frozen=True)
class StudentInfo:
    student_no: str
    name: str
    class_code: str


@dataclass(frozen=True)
class FeeInfo:
    code: str
    name: str
    amount_fen: int
    unit: FeeUnit
    provider: str | None
    approval_ref: str | None
    disclosed_on: dt.date | None
    description: str | None
    covers: FeeCovers = FeeCovers.COURSE
    effective_from: dt.date | None = None
    effective_to: dt.date | None = None
    rule: dict[str, Any] | None = None


@dataclass(frozen=True)
class CourseInfo:
    code: str
    name: str
    description: str | None
    category: Category
    period: int
    level: Level | None
    grade_min: int
    grade_max: int
    weekdays: int  # bit 0 = Monday … bit 6 = Sunday
    starts_at: dt.time
    ends_at: dt.time
    venue: str
    teacher: str
    provider: str | None
    capacity: int | None
    fee: str | None
    min_size: int | None = None
    allocation: Allocation = Allocation.FIRST_COME


@dataclass
class ParsedSchool:
    """A validated import. A section that is ``None`` was absent and is left untouched."""

    source: Path
    school: SchoolInfo
    term: TermInfo
    calendar: list[DayInfo] | None
    providers: list[ProviderInfo]
    teachers: list[TeacherInfo]
    classes: list[ClassInfo]
    fees: list[FeeInfo]
    courses: list[CourseInfo]
    students: list[StudentInfo] | None
    warnings: list[ImportProblem] = field(default_factory=list)


@dataclass
class KindCounts:
    created: int = 0
    updated: int = 0
    unchanged: int = 0


KINDS = (
    "school",
    "term",
    "calendar_days",
    "providers",
    "teachers",
    "classes",
    "fees",
    "courses",
    "students",
)


@dataclass
class ImportReport:
    school_id: int
    school_code: str
    term_id: int
    counts: dict[str, KindCounts] = field(default_factory=lambda: {k: KindCounts() for k in KINDS})
    students_deactivated: int = 0
    calendar_days_removed: int = 0
    warnings: list[ImportProblem] = field(default_factory=list)

    def created(self, kind: str) -> int:
        return self.counts[kind].created

    def updated(self, kind: str) -> int:
        return self.counts[kind].updated

    def summary(self) -> str:
        """Lines for the operator who ran the import."""
        lines = [f"school {self.school_code} (id {self.school_id}), term id {self.term_id}"]
        for kind, c in self.counts.items():
            lines.append(f"  {kind}: {c.created} created, {c.updated} updated, {c.unchanged} same")
        if self.students_deactivated:
            lines.append(
                f"  students no longer on the roster, set inactive: {self.students_deactivated}"
            )
        if self.calendar_days_removed:
            lines.append(f"  calendar days removed: {self.calendar_days_removed}")
        lines.extend(f"warning: {w}" for w in self.warnings)
        return "\n".join(lines)


# --- reading YAML with line numbers -----------------------------------------------------------


class _Loader(yaml.SafeLoader):
    """SafeLoader without implicit timestamps: we parse dates ourselves from the source text,
    so that a bad date (2026-02-30) becomes a located problem instead of a crash."""


_Loader.yaml_implicit_resolvers = {
    first: [(tag, rx) for tag, rx in resolvers if tag != "tag:yaml.org,2002:timestamp"]
    for first, resolvers in yaml.SafeLoader.yaml_implicit_resolvers.items()
}


@dataclass
class _SourceMap:
    """Line and source text of every YAML node, by path (``courses[3].weekdays``).

    The source text matters: YAML 1.1 reads ``15:30`` as the number 930 and ``0701`` as octal,
    so times, codes and amounts are taken from what the admin actually typed.
    """

    lines: dict[str, int] = field(default_factory=dict)
    raw: dict[str, str] = field(default_factory=dict)

    def line(self, path: str) -> int | None:
        while path:
            if path in self.lines:
                return self.lines[path]
            path = _parent_path(path)
        return None


def _parent_path(path: str) -> str:
    cut = max(path.rfind("."), path.rfind("["))
    return path[:cut] if cut > 0 else ""


def _join(path: str, key: str) -> str:
    return f"{path}.{key}" if path else key


# --- the collector of problems ----------------------------------------------------------------


class _Problems:
    def __init__(self, yaml_name: str) -> None:
        self.yaml_name = yaml_name
        self.source = _SourceMap()
        self.errors: list[ImportProblem] = []
        self.warnings: list[ImportProblem] = []

    def yaml(self, location: str, fld: str, message: str, *, warning: bool = False) -> None:
        line = self.source.line(_join(location, fld))
        problem = ImportProblem(self.yaml_name, location, fld, message, line)
        (self.warnings if warning else self.errors).append(problem)

    def file(
        self, name: str, line: int | None, fld: str, message: str, location: str = ""
    ) -> None:
        self.errors.append(ImportProblem(name, location, fld, message, line))

    def sorted_errors(self) -> list[ImportProblem]:
        # YAML first, then rosters; each in line order, so the list reads top to bottom.
        return sorted(self.errors, key=lambda p: (p.file != self.yaml_name, p.file, p.line or 0))


def _load_yaml(path: Path, problems: _Problems) -> Any:
    try:
        text = path.read_text(encoding="utf-8-sig")
    except UnicodeDecodeError:
        problems.yaml("", "", "not UTF-8 text; save the file as UTF-8")
        return None
    except OSError as exc:
        problems.yaml("", "", f"cannot read the file: {exc.strerror or exc}")
        return None
    loader = _Loader(text)
    try:
        node = loader.get_single_node()
        if node is None:
            problems.yaml("", "", "the file is empty")
            return None
        _index_node(node, "", problems, depth=0)
        return loader.construct_document(node)
    except yaml.MarkedYAMLError as exc:
        mark = exc.problem_mark or exc.context_mark
        line = mark.line + 1 if mark is not None else None
        problems.errors.append(
            ImportProblem(problems.yaml_name, "", "", f"invalid YAML: {exc.problem}", line)
        )
    except (yaml.YAMLError, ValueError, TypeError) as exc:
        problems.yaml("", "", f"invalid YAML: {exc}")
    finally:
        loader.dispose()
    return None


def _index_node(node: yaml.Node, path: str, problems: _Problems, depth: int) -> None:
    if depth > 20:  # aliases can make a cycle; no school file nests this deep
        return
    if path:
        problems.source.lines.setdefault(path, node.start_mark.line + 1)
    if isinstance(node, yaml.ScalarNode):
        problems.source.raw.setdefault(path, node.value)
    elif isinstance(node, yaml.SequenceNode):
        for i, child in enumerate(node.value):
            _index_node(child, f"{path}[{i}]", problems, depth + 1)
    elif isinstance(node, yaml.MappingNode):
        seen: set[str] = set()
        for key_node, value_node in node.value:
            key = str(key_node.value) if isinstance(key_node, yaml.ScalarNode) else "?"
            child = _join(path, key)
            if key in seen and key != "<<":
                problems.source.lines[child] = key_node.start_mark.line + 1
                problems.yaml(path, key, "this key appears twice in the same mapping")
            seen.add(key)
            _index_node(value_node, child, problems, depth + 1)


# --- converters: (value, source text) -> parsed value, or ValueError with the reason ----------


Converter = Callable[[Any, str | None], T]


def _text(max_len: int) -> Converter[str]:
    def convert(value: Any, raw: str | None) -> str:
        if isinstance(value, dict | list):
            raise ValueError("expected text, not a list or mapping")
        text = (raw if raw is not None else str(value)).strip()
        if not text:
            raise ValueError("must not be empty")
        if len(text) > max_len:
            raise ValueError(f"too long ({len(text)} characters, at most {max_len})")
        return text

    return convert


_CODE_RE = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.\-]*")


def _code(max_len: int) -> Converter[str]:
    as_text = _text(max_len)

    def convert(value: Any, raw: str | None) -> str:
        text = as_text(value, raw)
        if not _CODE_RE.fullmatch(text):
            raise ValueError(f"{text!r} is not a code: use letters, digits, '-', '_' or '.'")
        return text

    return convert


def _integer(low: int, high: int | None = None) -> Converter[int]:
    def convert(value: Any, raw: str | None) -> int:
        text = (raw if raw is not None else str(value)).strip()
        if isinstance(value, bool) or not re.fullmatch(r"[+-]?\d+", text):
            raise ValueError(f"expected a whole number, got {text!r}")
        number = int(text)
        if number < low or (high is not None and number > high):
            bounds = f"between {low} and {high}" if high is not None else f"at least {low}"
            raise ValueError(f"must be {bounds}, got {number}")
        return number

    return convert


def _with_reason(convert: Converter[int], why: str) -> Converter[int]:
    """`convert`, naming why the bounds are what they are when a value is refused."""

    def checked(value: Any, raw: str | None) -> int:
        try:
            return convert(value, raw)
        except ValueError as exc:
            raise ValueError(f"{exc} ({why})") from None

    return checked


def _tenths(low: int, high: int) -> Converter[int]:
    """A score with at most one decimal place (3.5) as tenths (35), between low and high
    tenths."""

    def convert(value: Any, raw: str | None) -> int:
        text = (raw if raw is not None else str(value)).strip()
        if isinstance(value, bool) or not re.fullmatch(r"\d+(?:\.\d)?", text):
            raise ValueError(
                f"expected a score like 3.5 (at most one decimal place), got {text!r}"
            )
        tenths = int(Decimal(text) * 10)
        if not low <= tenths <= high:
            raise ValueError(f"must be between {low / 10:g} and {high / 10:g}, got {text}")
        return tenths

    return convert


def _choice(enum_cls: type[E]) -> Converter[E]:
    allowed = ", ".join(str(m.value) for m in enum_cls)

    def convert(value: Any, raw: str | None) -> E:
        text = (raw if raw is not None else str(value)).strip().lower()
        for member in enum_cls:
            if member.value == text:
                return member
        raise ValueError(f"unknown value {text!r}; expected one of: {allowed}")

    return convert


def _fee_rule(value: Any, raw: str | None) -> dict[str, Any]:
    """A disclosed rule for late joins and refunds (bot/services/fee_rules.py, docs/FEES.md)."""
    if not isinstance(value, dict):
        raise ValueError("expected a mapping such as {join: by_day, refund: by_day}")
    given = fee_rules.parse(value).as_json()
    return {k: given[k] for k in value if k in given}  # the fields given, in JSON form


def _fee_reminders(value: Any, raw: str | None) -> dict[str, Any]:
    """When fee reminders go (bot/services/fee_notices.py): checked there, stored as given."""
    from bot.services import fee_notices

    if not isinstance(value, dict):
        raise ValueError("expected a mapping such as {before: [3], on_due: true, every: 7}")
    return fee_notices.Ladder.parse(value).as_json()


def _boolean(value: Any, raw: str | None) -> bool:
    if isinstance(value, bool):
        return value
    raise ValueError(f"expected true or false, got {raw or value!r}")


_DATE_RE = re.compile(r"(\d{4})[-/](\d{1,2})[-/](\d{1,2})")


def _date(value: Any, raw: str | None) -> dt.date:
    text = (raw if raw is not None else str(value)).strip()
    match = _DATE_RE.fullmatch(text)
    if not match:
        raise ValueError(f"expected a date like 2026-09-01, got {text!r}")
    try:
        return dt.date(*(int(g) for g in match.groups()))
    except ValueError as exc:
        raise ValueError(f"{text!r} is not a real date ({exc})") from None


_DATETIME_RE = re.compile(
    r"(\d{4})[-/](\d{1,2})[-/](\d{1,2})[ T](\d{1,2}):(\d{2})(?::(\d{2}))?\s*(Z|[+-]\d{2}:?\d{2})?"
)


def _datetime(zone: dt.tzinfo) -> Converter[dt.datetime]:
    """Naive values are wall-clock time at the school; stored as aware UTC."""

    def convert(value: Any, raw: str | None) -> dt.datetime:
        text = (raw if raw is not None else str(value)).strip()
        match = _DATETIME_RE.fullmatch(text)
        if not match:
            if _DATE_RE.fullmatch(text):
                raise ValueError(f"give a time as well, e.g. '{text} 08:00'")
            raise ValueError(f"expected a date and time like 2026-08-24 08:00, got {text!r}")
        y, mo, d, h, mi, s, offset = match.groups()
        try:
            naive = dt.datetime(int(y), int(mo), int(d), int(h), int(mi), int(s or 0))
        except ValueError as exc:
            raise ValueError(f"{text!r} is not a real date and time ({exc})") from None
        if offset is None:
            aware = naive.replace(tzinfo=zone)
        else:
            aware = dt.datetime.fromisoformat(f"{naive.isoformat()}{_iso_offset(offset)}")
        return aware.astimezone(dt.UTC)

    return convert


def _iso_offset(offset: str) -> str:
    if offset == "Z":
        return "+00:00"
    return offset if ":" in offset else f"{offset[:3]}:{offset[3:]}"


_CLOCK_RE = re.compile(r"(\d{1,2})[:：](\d{2})")


def _clock(text: str) -> dt.time:
    match = _CLOCK_RE.fullmatch(text.strip())
    if not match:
        raise ValueError(f"expected a time like 15:40, got {text.strip()!r}")
    hour, minute = int(match.group(1)), int(match.group(2))
    if hour > 23 or minute > 59:
        raise ValueError(f"{text.strip()!r} is not a time of day")
    return dt.time(hour, minute)


def _clock_value(value: Any, raw: str | None) -> dt.time:
    return _clock(raw if raw is not None else str(value))


_RANGE_SPLIT = re.compile(r"\s*(?:-|–|—|~|～|至|到)\s*")


def _time_range(value: Any, raw: str | None) -> tuple[dt.time, dt.time]:
    text = (raw if raw is not None else str(value)).strip()
    parts = _RANGE_SPLIT.split(text)
    if len(parts) != 2:
        raise ValueError(f"expected a time range like 15:40-16:40, got {text!r}")
    return _clock(parts[0]), _clock(parts[1])


def _yuan_to_fen(value: Any, raw: str | None) -> int:
    text = (raw if raw is not None else str(value)).strip()
    text = text.removeprefix("¥").removeprefix("￥").removesuffix("元").strip()
    try:
        yuan = Decimal(text)
    except InvalidOperation:
        raise ValueError(f"expected an amount in yuan like 150 or 12.50, got {text!r}") from None
    if not yuan.is_finite():
        raise ValueError(f"expected an amount in yuan, got {text!r}")
    if yuan < 0:
        raise ValueError(f"must not be negative, got {text}")
    if yuan > MAX_FEE_YUAN:
        raise ValueError(f"{text} yuan is implausibly large (at most {MAX_FEE_YUAN})")
    fen = yuan * 100
    if fen != fen.to_integral_value():
        raise ValueError(f"{text} has more than 2 decimal places; amounts are yuan.fen")
    return int(fen)


_WEEKDAYS: dict[str, int] = {}
for _number, _names in enumerate(
    (
        ("mon", "monday", "周一", "星期一", "一"),
        ("tue", "tues", "tuesday", "周二", "星期二", "二"),
        ("wed", "wednesday", "周三", "星期三", "三"),
        ("thu", "thur", "thurs", "thursday", "周四", "星期四", "四"),
        ("fri", "friday", "周五", "星期五", "五"),
        ("sat", "saturday", "周六", "星期六", "六"),
        ("sun", "sunday", "周日", "周天", "星期日", "星期天", "日", "天"),
    ),
    start=1,
):
    for _name in _names:
        _WEEKDAYS[_name] = _number


def _one_weekday(item: Any) -> int:
    if isinstance(item, int) and not isinstance(item, bool):
        if 1 <= item <= 7:
            return item
        raise ValueError(f"weekday numbers run from 1 (Monday) to 7 (Sunday), got {item}")
    text = str(item).strip().lower()
    if text.isdigit():
        return _one_weekday(int(text))
    if text in _WEEKDAYS:
        return _WEEKDAYS[text]
    raise ValueError(f"unknown weekday {text!r}")


def _weekday_items(item: Any) -> list[int]:
    """One list item: a day, or a range like 'mon-fri'."""
    if isinstance(item, str):
        parts = _RANGE_SPLIT.split(item.strip())
        if len(parts) == 2:
            first, last = _one_weekday(parts[0]), _one_weekday(parts[1])
            if last < first:
                raise ValueError(f"weekday range {item!r} runs backwards")
            return list(range(first, last + 1))
    return [_one_weekday(item)]


def _weekday_mask(value: Any, raw: str | None) -> int:
    items = re.split(r"[,，、\s]+", value.strip()) if isinstance(value, str) else value
    if not isinstance(items, list) or not items:
        raise ValueError("expected a list of weekdays like [mon, wed] or [1, 3]")
    mask = 0
    for item in items:
        for day in _weekday_items(item):
            mask |= 1 << (day - 1)
    return mask


def _weekday_number(value: Any, raw: str | None) -> int:
    return _one_weekday(value)


def _grades(value: Any, raw: str | None) -> tuple[int, int]:
    if isinstance(value, list):
        if len(value) != 2:
            raise ValueError("expected [lowest, highest] like [1, 3]")
        parts = [str(v) for v in value]
    else:
        parts = _RANGE_SPLIT.split((raw if raw is not None else str(value)).strip())
        if len(parts) == 1:
            parts = parts * 2
    if len(parts) != 2 or not all(p.strip().isdigit() for p in parts):
        raise ValueError(f"expected grades like 1-3 or [1, 3], got {raw or value!r}")
    low, high = (int(p) for p in parts)
    if not (1 <= low <= 9 and 1 <= high <= 9):
        raise ValueError(f"grades run from 1 to 9, got {low}-{high}")
    if high < low:
        raise ValueError(f"lowest grade {low} is above highest grade {high}")
    return low, high


def _timezone(value: Any, raw: str | None) -> str:
    name = _text(64)(value, raw)
    try:
        ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError):
        raise ValueError(f"unknown time zone {name!r}; e.g. Asia/Shanghai") from None
    return name


def _locale(value: Any, raw: str | None) -> str:
    name = _text(16)(value, raw)
    if name not in SUPPORTED_LOCALES:
        raise ValueError(f"unsupported locale {name!r}; one of: {', '.join(SUPPORTED_LOCALES)}")
    return name


# --- reading one YAML mapping -----------------------------------------------------------------


class _Record:
    """One YAML mapping read field by field; every problem names its path and line."""

    def __init__(self, problems: _Problems, path: str, value: Any, allowed: Iterable[str]) -> None:
        self.problems = problems
        self.path = path
        self.ok = True
        self.data: dict[str, Any] = {}
        allowed = tuple(allowed)
        if not isinstance(value, dict):
            self.fail("", f"expected a mapping with fields: {', '.join(allowed)}")
            return
        self.data = {str(k): v for k, v in value.items()}
        for key in self.data:
            if key not in allowed and key != "<<":
                self.fail(key, f"unknown field; expected one of: {', '.join(allowed)}")

    def fail(self, fld: str, message: str) -> None:
        self.ok = False
        self.problems.yaml(self.path, fld, message)

    def has(self, key: str) -> bool:
        return self.data.get(key) not in (None, "")

    def get(self, key: str, convert: Converter[T], *, required: bool = True) -> T | None:
        value = self.data.get(key)
        if value is None or value == "":
            if required:
                self.fail(key, "required")
            return None
        raw = self.problems.source.raw.get(_join(self.path, key))
        try:
            return convert(value, raw)
        except ValueError as exc:
            self.fail(key, str(exc))
            return None


class _Codes:
    """Codes seen in one section: all of them (so a broken entry is not also 'unknown' where it
    is referenced) and the valid entries, for the cross-checks."""

    def __init__(self, kind: str) -> None:
        self.kind = kind
        self.seen: dict[str, str] = {}  # code -> path where first defined
        self.valid: dict[str, Any] = {}

    def claim(self, record: _Record, fld: str, code: str | None) -> None:
        if code is None:
            return
        if code in self.seen:
            line = record.problems.source.line(self.seen[code])
            where = f"line {line}" if line else self.seen[code]
            record.fail(fld, f"duplicate {self.kind} {code!r} (first at {where})")
        else:
            self.seen[code] = record.path

    def check(self, record: _Record, fld: str, code: str | None) -> None:
        if code is not None and code not in self.seen:
            record.fail(fld, f"unknown {self.kind} {code!r}")


def _section(problems: _Problems, data: dict[str, Any], key: str) -> list[tuple[str, Any]] | None:
    """The items of a list section with their paths; None when the section is absent."""
    if key not in data or data[key] is None:
        return None
    value = data[key]
    if not isinstance(value, list):
        problems.yaml("", key, "expected a list")
        return []
    return [(f"{key}[{i}]", item) for i, item in enumerate(value)]


# --- the sections -----------------------------------------------------------------------------


TOP_LEVEL = (
    "school",
    "term",
    "calendar",
    "providers",
    "teachers",
    "classes",
    "students",
    "fees",
    "courses",
)


def _parse_school(problems: _Problems, value: Any) -> SchoolInfo | None:
    rec = _Record(
        problems,
        "school",
        value,
        (
            "code",
            "name",
            "timezone",
            "default_locale",
            "daily_notice_cap",
            "digest_time",
            "leave_cutoff_minutes",
            "offer_hours",
            "quiet_from",
            "quiet_until",
            "late_broadcast_hours",
            "patrol_time",
            "correction_days",
            "absence_streak",
            "roll_reminder_minutes",
            "fee_rule",
            "fee_reminders",
            "fee_reminder_time",
            "rating_min_ballots",
            "rating_min_share",
            "provider_min_score",
            "provider_min_attendance",
            "provider_max_withdrawal",
            "science_check",
        ),
    )
    code = rec.get("code", _code(40))
    name = rec.get("name", _text(200))
    timezone = rec.get("timezone", _timezone, required=False) or "Asia/Shanghai"
    locale = rec.get("default_locale", _locale, required=False) or "zh_CN"
    cap = rec.get("daily_notice_cap", _integer(1, 50), required=False)
    digest_time = rec.get("digest_time", _clock_value, required=False) or dt.time(18, 30)
    cutoff = rec.get("leave_cutoff_minutes", _integer(0, 24 * 60), required=False)
    offer_hours = rec.get("offer_hours", _integer(1, 14 * 24), required=False)
    quiet_from = rec.get("quiet_from", _clock_value, required=False)
    quiet_until = rec.get("quiet_until", _clock_value, required=False)
    late_hours = rec.get("late_broadcast_hours", _integer(0, 7 * 24), required=False)
    patrol_time = rec.get("patrol_time", _clock_value, required=False)
    correction_days = rec.get("correction_days", _integer(0, 31), required=False)
    streak = rec.get("absence_streak", _integer(1, 30), required=False)
    reminder = rec.get("roll_reminder_minutes", _integer(1, 240), required=False)
    fee_rule = rec.get("fee_rule", _fee_rule, required=False)
    fee_reminders = rec.get("fee_reminders", _fee_reminders, required=False)
    fee_reminder_time = rec.get("fee_reminder_time", _clock_value, required=False)
    min_ballots = rec.get(
        "rating_min_ballots",
        _with_reason(_integer(5, 1000), "ratings are never shown from fewer than 5 ballots"),
        required=False,
    )
    min_share = rec.get(
        "rating_min_share",
        _with_reason(_integer(20, 100), "ratings are never shown from under 20% of the families"),
        required=False,
    )
    min_score = rec.get("provider_min_score", _tenths(10, 50), required=False)
    min_attendance = rec.get("provider_min_attendance", _integer(0, 100), required=False)
    max_withdrawal = rec.get("provider_max_withdrawal", _integer(0, 100), required=False)
    science = rec.get("science_check", _choice(ScienceCheck), required=False)
    if (quiet_from is None) != (quiet_until is None):
        rec.fail(
            "quiet_from" if quiet_from is None else "quiet_until",
            "quiet_from and quiet_until go together: give both, e.g. 21:00 and 07:00",
        )
    if fee_reminder_time is not None and _in_quiet_hours(
        fee_reminder_time, quiet_from or dt.time(21, 0), quiet_until or dt.time(7, 0)
    ):
        rec.fail("fee_reminder_time", "fee reminders may not go in the quiet hours")
    if not rec.ok or code is None or name is None:
        return None
    return SchoolInfo(
        code,
        name,
        timezone,
        locale,
        cap,
        digest_time,
        60 if cutoff is None else cutoff,
        offer_hours or 24,
        quiet_from or dt.time(21, 0),
        quiet_until or dt.time(7, 0),
        2 if late_hours is None else late_hours,
        patrol_time or dt.time(19, 30),
        7 if correction_days is None else correction_days,
        streak or 3,
        reminder or 15,
        fee_rule,
        fee_reminders,
        fee_reminder_time or dt.time(10, 0),
        rating_min_ballots=5 if min_ballots is None else min_ballots,
        rating_min_share=20 if min_share is None else min_share,
        provider_min_score=35 if min_score is None else min_score,
        provider_min_attendance=85 if min_attendance is None else min_attendance,
        provider_max_withdrawal=20 if max_withdrawal is None else max_withdrawal,
        science_every_day=science is not ScienceCheck.WEEKLY,
    )


def _in_quiet_hours(at: dt.time, start: dt.time, end: dt.time) -> bool:
    return start <= at or at < end if start > end else start <= at < end


def _add_months(day: dt.date, months: int) -> dt.date:
    month_index = day.month - 1 + months
    year, month = day.year + month_index // 12, month_index % 12 + 1
    return dt.date(year, month, min(day.day, calendar.monthrange(year, month)[1]))


def _parse_term(problems: _Problems, value: Any, zone: dt.tzinfo) -> TermInfo | None:
    allowed = (
        "name",
        "starts_on",
        "ends_on",
        "enrolment_opens_at",
        "enrolment_closes_at",
        "rating_opens_on",
        "rating_closes_on",
        "schedule_published_on",
    )
    rec = _Record(problems, "term", value, allowed)
    name = rec.get("name", _text(100))
    starts_on = rec.get("starts_on", _date)
    ends_on = rec.get("ends_on", _date)
    opens_at = rec.get("enrolment_opens_at", _datetime(zone), required=False)
    closes_at = rec.get("enrolment_closes_at", _datetime(zone), required=False)
    rating_opens = rec.get("rating_opens_on", _date, required=False)
    rating_closes = rec.get("rating_closes_on", _date, required=False)
    published = rec.get("schedule_published_on", _date, required=False)
    if starts_on and ends_on and ends_on <= starts_on:
        rec.fail("ends_on", f"must be after starts_on ({starts_on})")
    if opens_at and closes_at and closes_at <= opens_at:
        rec.fail("enrolment_closes_at", "must be after enrolment_opens_at")
    if rating_opens and rating_closes and rating_closes < rating_opens:
        rec.fail("rating_closes_on", "must not be before rating_opens_on")
    if published and starts_on and published > _add_months(starts_on, 1):
        rec.fail(
            "schedule_published_on",
            "the schedule must be published within one month of term start (POLICY)",
        )
    if not rec.ok or name is None or starts_on is None or ends_on is None:
        return None
    return TermInfo(
        name, starts_on, ends_on, opens_at, closes_at, rating_opens, rating_closes, published
    )


def _parse_calendar(
    problems: _Problems, items: list[tuple[str, Any]], term: TermInfo | None
) -> list[DayInfo]:
    days: list[DayInfo] = []
    seen: dict[dt.date, str] = {}
    for path, value in items:
        rec = _Record(problems, path, value, ("date", "kind", "runs_weekday", "note"))
        day = rec.get("date", _date)
        kind = rec.get("kind", _choice(CalendarKind))
        runs = rec.get("runs_weekday", _weekday_number, required=False)
        note = rec.get("note", _text(200), required=False)
        if day is not None:
            if day in seen:
                rec.fail("date", f"{day} is listed twice (first at {seen[day]})")
            seen.setdefault(day, path)
            if term and not term.starts_on <= day <= term.ends_on:
                rec.fail("date", f"{day} is outside the term ({term.starts_on}–{term.ends_on})")
        if kind is CalendarKind.WORKDAY:
            if runs is None and not rec.has("runs_weekday"):
                rec.fail("runs_weekday", "required for a workday: which weekday's timetable runs")
            if day is not None and day.isoweekday() < 6:
                rec.fail(
                    "date",
                    f"{day} is a {WEEKDAY_NAMES_EN[day.weekday()]}; a make-up "
                    "workday (调休补班) is a Saturday or Sunday",
                )
        elif kind is not None and rec.has("runs_weekday"):
            rec.fail("runs_weekday", "only a workday runs another weekday's timetable")
        if rec.ok and day is not None and kind is not None:
            days.append(DayInfo(day, kind, runs, note))
    return days


def _parse_providers(
    problems: _Problems, items: list[tuple[str, Any]], codes: _Codes
) -> list[ProviderInfo]:
    allowed = (
        "code",
        "name",
        "kind",
        "whitelist_status",
        "contract_starts_on",
        "contract_ends_on",
        "contact",
    )
    found: list[ProviderInfo] = []
    for path, value in items:
        rec = _Record(problems, path, value, allowed)
        code = rec.get("code", _code(40))
        codes.claim(rec, "code", code)
        name = rec.get("name", _text(200))
        kind = rec.get("kind", _choice(ProviderKind), required=False) or ProviderKind.OUTSIDE
        # An outside provider's status is the bureau's decision: never assume it.
        status = rec.get(
            "whitelist_status", _choice(WhitelistStatus), required=kind is ProviderKind.OUTSIDE
        )
        starts = rec.get("contract_starts_on", _date, required=False)
        ends = rec.get("contract_ends_on", _date, required=False)
        contact = rec.get("contact", _text(200), required=False)
        if starts and ends and ends < starts:
            rec.fail("contract_ends_on", "must not be before contract_starts_on")
        if rec.ok and code and name:
            info = ProviderInfo(
                code, name, kind, status or WhitelistStatus.WHITELISTED, starts, ends, contact
            )
            codes.valid[code] = info
            found.append(info)
    return found


def _parse_teachers(
    problems: _Problems, items: list[tuple[str, Any]], codes: _Codes, providers: _Codes
) -> list[TeacherInfo]:
    found: list[TeacherInfo] = []
    for path, value in items:
        rec = _Record(
            problems, path, value, ("code", "name", "kind", "provider", "credentials_checked")
        )
        code = rec.get("code", _code(40))
        codes.claim(rec, "code", code)
        name = rec.get("name", _text(100))
        kind = rec.get("kind", _choice(TeacherKind))
        provider = rec.get("provider", _code(40), required=kind is TeacherKind.PROVIDER)
        providers.check(rec, "provider", provider)
        checked = rec.get("credentials_checked", _boolean, required=False) or False
        if rec.ok and code and name and kind:
            info = TeacherInfo(code, name, kind, provider, checked)
            codes.valid[code] = info
            found.append(info)
    return found


def _parse_classes(
    problems: _Problems, items: list[tuple[str, Any]], codes: _Codes, teachers: _Codes
) -> list[ClassInfo]:
    found: list[ClassInfo] = []
    for path, value in items:
        rec = _Record(problems, path, value, ("code", "grade", "name", "head_teacher"))
        code = rec.get("code", _code(20))
        codes.claim(rec, "code", code)
        grade = rec.get("grade", _integer(1, 9))
        name = rec.get("name", _text(100))
        head = rec.get("head_teacher", _code(40), required=False)
        teachers.check(rec, "head_teacher", head)
        if rec.ok and code and grade and name:
            info = ClassInfo(code, grade, name, head)
            codes.valid[code] = info
            found.append(info)
    return found


def _parse_fees(
    problems: _Problems,
    items: list[tuple[str, Any]],
    codes: _Codes,
    providers: _Codes,
    term: TermInfo | None,
    zone: dt.tzinfo,
) -> list[FeeInfo]:
    allowed = (
        "code",
        "name",
        "amount",
        "unit",
        "provider",
        "approval_ref",
        "disclosed_on",
        "description",
        "covers",
        "effective_from",
        "effective_to",
        "rule",
    )
    enrolment_day = (
        term.enrolment_opens_at.astimezone(zone).date()
        if term and term.enrolment_opens_at
        else None
    )
    found: list[FeeInfo] = []
    for path, value in items:
        rec = _Record(problems, path, value, allowed)
        code = rec.get("code", _code(40))
        codes.claim(rec, "code", code)
        name = rec.get("name", _text(200))
        amount = rec.get("amount", _yuan_to_fen)
        unit = rec.get("unit", _choice(FeeUnit))
        provider = rec.get("provider", _code(40), required=False)
        providers.check(rec, "provider", provider)
        approval = rec.get("approval_ref", _text(100), required=False)
        disclosed = rec.get("disclosed_on", _date, required=False)
        description = rec.get("description", _text(2000), required=False)
        covers = rec.get("covers", _choice(FeeCovers), required=False) or FeeCovers.COURSE
        effective_from = rec.get("effective_from", _date, required=False)
        effective_to = rec.get("effective_to", _date, required=False)
        rule = rec.get("rule", _fee_rule, required=False)
        if covers is FeeCovers.FREE and amount:
            rec.fail(
                "amount",
                f"{code!r} is declared free (covers: free); it may not carry a charge (POLICY)",
            )
        if effective_from and effective_to and effective_to < effective_from:
            rec.fail("effective_to", "effective_to is before effective_from")
        supplier = providers.valid.get(provider) if provider else None
        if supplier and supplier.whitelist_status is not WhitelistStatus.WHITELISTED:
            rec.fail(
                "provider",
                f"provider {provider!r} is {supplier.whitelist_status.value}; fees may be "
                "collected only for whitelisted providers (POLICY)",
            )
        if disclosed and enrolment_day and disclosed > enrolment_day:
            rec.fail(
                "disclosed_on",
                f"fees must be disclosed before enrolment opens ({enrolment_day}) (POLICY)",
            )
        if rec.ok and code and name and amount is not None and unit:
            info = FeeInfo(
                code,
                name,
                amount,
                unit,
                provider,
                approval,
                disclosed,
                description,
                covers,
                effective_from,
                effective_to,
                rule,
            )
            codes.valid[code] = info
            found.append(info)
    return found


COURSE_FIELDS = (
    "code",
    "name",
    "description",
    "category",
    "period",
    "level",
    "grades",
    "weekdays",
    "time",
    "starts_at",
    "ends_at",
    "venue",
    "teacher",
    "provider",
    "capacity",
    "fee",
    "min_size",
    "allocation",
)


@dataclass
class _Refs:
    providers: _Codes
    teachers: _Codes
    fees: _Codes


def _course_times(rec: _Record) -> tuple[dt.time, dt.time] | None:
    if rec.has("time"):
        if rec.has("starts_at") or rec.has("ends_at"):
            rec.fail("time", "give either time or starts_at/ends_at, not both")
            return None
        times = rec.get("time", _time_range)
        fld = "time"
    else:
        if not (rec.has("starts_at") or rec.has("ends_at")):
            rec.fail("time", "required, e.g. time: '15:40-16:40'")
            return None
        start = rec.get("starts_at", _clock_value)
        end = rec.get("ends_at", _clock_value)
        times = (start, end) if start and end else None
        fld = "ends_at"
    if times and times[1] <= times[0]:
        rec.fail(fld, f"ends at {times[1]:%H:%M}, not after it starts ({times[0]:%H:%M})")
        return None
    return times


def _check_course_people(
    rec: _Record, refs: _Refs, teacher: str | None, provider: str | None
) -> None:
    supplier = refs.providers.valid.get(provider) if provider else None
    if supplier and supplier.whitelist_status is not WhitelistStatus.WHITELISTED:
        rec.fail(
            "provider",
            f"provider {provider!r} is {supplier.whitelist_status.value}; only whitelisted "
            "providers may run courses (POLICY)",
        )
    person = refs.teachers.valid.get(teacher) if teacher else None
    if person is None:
        return
    if person.kind is TeacherKind.PROVIDER and person.provider != provider:
        rec.fail(
            "teacher",
            f"teacher {teacher!r} works for provider {person.provider!r}; the course must name "
            "that provider",
        )
    if person.kind is not TeacherKind.STAFF and not person.credentials_checked:
        rec.fail(
            "teacher",
            f"teacher {teacher!r} comes from outside the school and credentials_checked is not "
            "true; outside staff are checked before they teach (POLICY)",
        )


def _check_course_fee(rec: _Record, refs: _Refs, fee: str | None, provider: str | None) -> None:
    standard = refs.fees.valid.get(fee) if fee else None
    if standard is None:
        return
    if standard.provider and standard.provider != provider:
        rec.fail(
            "fee",
            f"fee {fee!r} is collected for provider {standard.provider!r}, not for this course",
        )
    if standard.disclosed_on is None and (provider or standard.amount_fen > 0):
        rec.fail(
            "fee",
            f"fee {fee!r} has no disclosed_on date; undisclosed fees may not be charged (POLICY)",
        )


def _parse_course(rec: _Record, refs: _Refs, code: str | None) -> CourseInfo | None:
    name = rec.get("name", _text(200))
    description = rec.get("description", _text(4000), required=False)
    category = rec.get("category", _choice(Category))
    period = rec.get("period", _integer(1, 2))
    level = rec.get("level", _choice(Level), required=False)
    grades = rec.get("grades", _grades)
    weekdays = rec.get("weekdays", _weekday_mask)
    times = _course_times(rec)
    venue = rec.get("venue", _text(200))
    teacher = rec.get("teacher", _code(40))
    refs.teachers.check(rec, "teacher", teacher)
    provider = rec.get("provider", _code(40), required=False)
    refs.providers.check(rec, "provider", provider)
    capacity = rec.get("capacity", _integer(1), required=False)
    min_size = rec.get("min_size", _integer(1), required=False)
    if min_size is not None and capacity is not None and min_size > capacity:
        rec.fail("min_size", f"{min_size} is larger than the capacity ({capacity})")
    allocation = rec.get("allocation", _choice(Allocation), required=False)
    fee = rec.get("fee", _code(40), required=False)
    refs.fees.check(rec, "fee", fee)
    _check_course_people(rec, refs, teacher, provider)
    _check_course_fee(rec, refs, fee, provider)
    if not rec.ok:
        return None
    assert code and name and category and period and grades and weekdays and times and venue
    assert teacher
    return CourseInfo(
        code,
        name,
        description,
        category,
        period,
        level,
        grades[0],
        grades[1],
        weekdays,
        times[0],
        times[1],
        venue,
        teacher,
        provider,
        capacity,
        fee,
        min_size,
        allocation or Allocation.FIRST_COME,
    )


def _parse_courses(
    problems: _Problems, items: list[tuple[str, Any]], codes: _Codes, refs: _Refs
) -> list[CourseInfo]:
    found: list[CourseInfo] = []
    for path, value in items:
        rec = _Record(problems, path, value, COURSE_FIELDS)
        code = rec.get("code", _code(40))
        codes.claim(rec, "code", code)
        info = _parse_course(rec, refs, code)
        if info:
            codes.valid[info.code] = info
            found.append(info)
    return found


# --- students: inline or from a roster file ---------------------------------------------------

# Header spellings accepted in roster files, after _header() normalises them.
COLUMN_ALIASES = {
    "student_no": ("student_no", "student_number", "studentno", "no", "学号", "学生编号", "编号"),
    "name": ("name", "student_name", "student", "姓名", "学生姓名", "名字"),
    "class": ("class", "class_code", "class_name", "班级", "班级代码", "班级编号", "班别"),
}
_HEADER_LOOKUP = {alias: column for column, aliases in COLUMN_ALIASES.items() for alias in aliases}
HEADER_SEARCH_ROWS = 10  # rosters often start with a title row or two above the header


def _header(cell: str) -> str:
    return re.sub(r"[\s\-]+", "_", cell.strip().lower())


@dataclass(frozen=True)
class _Row:
    line: int
    values: dict[str, str]
    location: str = ""  # the YAML path of an inline student; empty for roster rows


def _cell_text(value: Any) -> str:
    if value is None:
        return ""
    if isinstance(value, float) and value.is_integer():
        return str(int(value))  # spreadsheets store 学号 20260101 as 20260101.0
    if isinstance(value, dt.datetime | dt.date):
        return value.isoformat()
    return str(value).strip()


def _read_csv_rows(path: Path) -> Iterator[tuple[int, list[str]]]:
    data = path.read_bytes()
    try:
        text = data.decode("utf-8-sig")
    except UnicodeDecodeError:
        # Excel on Chinese Windows saves "CSV" as GBK; gb18030 is its superset.
        text = data.decode("gb18030")
    first_line = text.split("\n", 1)[0]
    delimiter = "\t" if "\t" in first_line and "," not in first_line else ","
    reader = csv.reader(io.StringIO(text, newline=""), delimiter=delimiter)
    for row in reader:
        yield reader.line_num, [cell.strip() for cell in row]


def _read_xlsx_rows(path: Path, sheet: str | None) -> Iterator[tuple[int, list[str]]]:
    workbook = openpyxl.load_workbook(path, read_only=True, data_only=True)
    try:
        if sheet is not None and sheet not in workbook.sheetnames:
            raise ValueError(f"no sheet named {sheet!r}; sheets: {', '.join(workbook.sheetnames)}")
        worksheet = workbook[sheet] if sheet is not None else workbook.worksheets[0]
        rows = worksheet.iter_rows(min_row=1, values_only=True)
        for number, row in enumerate(rows, start=1):
            yield number, [_cell_text(v) for v in row]
    finally:
        workbook.close()


def _find_header(
    rows: list[tuple[int, list[str]]], problems: _Problems, name: str
) -> tuple[int, dict[str, int]] | None:
    """The header row (the first with all required columns) and each column's index."""
    best: tuple[int, dict[str, int]] | None = None
    for position, (line, cells) in enumerate(rows[:HEADER_SEARCH_ROWS]):
        columns: dict[str, int] = {}
        for index, cell in enumerate(cells):
            column = _HEADER_LOOKUP.get(_header(cell))
            if column and column in columns:
                problems.file(name, line, cell, f"a second {column!r} column")
                return None
            if column:
                columns[column] = index
        if len(columns) == len(COLUMN_ALIASES):
            return position, columns
        if columns and best is None:
            best = (line, columns)
    line = best[0] if best else 1
    found = best[1] if best else {}
    for column, aliases in COLUMN_ALIASES.items():
        if column not in found:
            accepted = ", ".join(a for a in aliases if not a.isascii()) + ", " + column
            problems.file(name, line, column, f"missing column (accepted headers: {accepted})")
    return None


def _read_roster(path: Path, name: str, sheet: str | None, problems: _Problems) -> list[_Row]:
    suffix = path.suffix.lower()
    if suffix not in ROSTER_SUFFIXES:
        problems.file(name, None, "", "rosters must be .csv or .xlsx (save .xls files as .xlsx)")
        return []
    try:
        if suffix in {".xlsx", ".xlsm"}:
            rows = list(_read_xlsx_rows(path, sheet))
        else:
            rows = list(_read_csv_rows(path))
    except FileNotFoundError:
        problems.file(name, None, "", "file not found (paths are relative to the YAML file)")
        return []
    except (OSError, zipfile.BadZipFile, KeyError, ValueError, csv.Error) as exc:
        problems.file(name, None, "", f"cannot read the roster: {exc}")
        return []
    header = _find_header(rows, problems, name)
    if header is None:
        return []
    position, columns = header
    found: list[_Row] = []
    for line, cells in rows[position + 1 :]:
        if not any(cells):
            continue
        values = {col: cells[i] if i < len(cells) else "" for col, i in columns.items()}
        found.append(_Row(line, values))
    return found


def _roster_source(
    problems: _Problems, value: Any, base_dir: Path
) -> tuple[Path, str, str | None] | None:
    if isinstance(value, str):
        value = {"file": value}
    rec = _Record(problems, "students", value, ("file", "sheet"))
    ref = rec.get("file", _text(500))
    sheet = rec.get("sheet", _text(100), required=False)
    if not rec.ok or ref is None:
        return None
    return base_dir / ref, ref, sheet


def _student_from_row(
    row: _Row, name: str, problems: _Problems, classes: _Codes, by_class_name: dict[str, str]
) -> StudentInfo | None:
    ok = True
    checked: dict[str, str] = {}
    # A class may be given by code ("3-2") or by name ("三年级2班"), as rosters differ.
    for column, limit in (("student_no", 40), ("name", 100), ("class", 100)):
        text = row.values.get(column, "").strip()
        if not text:
            problems.file(name, row.line, column, "required", row.location)
            ok = False
        elif len(text) > limit:
            message = f"too long (at most {limit} characters)"
            problems.file(name, row.line, column, message, row.location)
            ok = False
        checked[column] = text
    class_ref = checked["class"]
    class_code = class_ref if class_ref in classes.seen else by_class_name.get(class_ref)
    if class_ref and class_code is None:
        problems.file(name, row.line, "class", f"unknown class {class_ref!r}", row.location)
        ok = False
    if not ok or class_code is None:
        return None
    return StudentInfo(checked["student_no"], checked["name"], class_code)


def _inline_student_rows(problems: _Problems, items: list[tuple[str, Any]]) -> list[_Row]:
    rows: list[_Row] = []
    for path, value in items:
        rec = _Record(problems, path, value, ("student_no", "name", "class"))
        values = {
            key: str(rec.get(key, _text(200), required=False) or "")
            for key in ("student_no", "name", "class")
        }
        line = problems.source.line(path) or 0
        if rec.ok:
            rows.append(_Row(line, values, path))
    return rows


def _parse_students(
    problems: _Problems, data: dict[str, Any], base_dir: Path, classes: _Codes
) -> list[StudentInfo] | None:
    value = data.get("students")
    if value is None:
        return None
    if isinstance(value, list):
        name = problems.yaml_name
        items = _section(problems, data, "students") or []
        rows = _inline_student_rows(problems, items)
        if not items:
            problems.yaml("", "students", "no students; leave the section out to keep them")
    else:
        source = _roster_source(problems, value, base_dir)
        if source is None:
            return []
        path, name, sheet = source
        rows = _read_roster(path, name, sheet, problems)
        if not rows and not any(p.file == name for p in problems.errors):
            # Importing an empty roster would set every student inactive: refuse.
            problems.file(name, None, "", "the roster has no students")
    by_class_name = {c.name: c.code for c in classes.valid.values()}
    students: list[StudentInfo] = []
    first_line: dict[str, int] = {}
    for row in rows:
        student = _student_from_row(row, name, problems, classes, by_class_name)
        number = row.values.get("student_no", "").strip()
        if number in first_line:
            message = f"duplicate student_no {number!r} (first on line {first_line[number]})"
            problems.file(name, row.line, "student_no", message, row.location)
            continue
        if number:
            first_line[number] = row.line
        if student:
            students.append(student)
    return students


# --- policy advisories ------------------------------------------------------------------------


def _advise(
    problems: _Problems,
    classes: list[ClassInfo],
    courses: list[CourseInfo],
    providers: list[ProviderInfo],
    term: TermInfo | None,
) -> None:
    """Warnings, not errors: a school may import its roster before its programme is final."""
    if not courses:
        return
    grades = sorted({c.grade for c in classes})
    for grade in grades:
        offered = [c for c in courses if c.grade_min <= grade <= c.grade_max]
        if not any(c.category is Category.SCIENCE for c in offered):
            problems.yaml(
                "",
                "courses",
                f"no science course for grade {grade}; science is mandatory (POLICY)",
                warning=True,
            )
        for day in range(5):
            if not any(c.period == 2 and c.weekdays & (1 << day) for c in offered):
                problems.yaml(
                    "",
                    "courses",
                    f"grade {grade} has no enrichment (period 2) course on "
                    f"{WEEKDAY_NAMES_EN[day]}; 1+N asks for an interest activity every day",
                    warning=True,
                )
    if term is None:
        return
    used = {c.provider for c in courses if c.provider}
    for provider in providers:
        ends = provider.contract_ends_on
        if provider.code in used and ends is not None and ends < term.ends_on:
            problems.yaml(
                "",
                "providers",
                f"the contract with {provider.code!r} ends on {ends}, "
                f"before the term ends ({term.ends_on})",
                warning=True,
            )


# --- load and validate ------------------------------------------------------------------------


def load_and_validate(path: Path) -> ParsedSchool:
    """Read and check an import file and its roster; no database work.

    Raises ``ImportValidationError`` with every problem found, sorted by file and line.
    """
    path = Path(path)
    problems = _Problems(path.name)
    data = _load_yaml(path, problems)
    if data is None or problems.errors:
        if not problems.errors:
            problems.yaml("", "", "the file is empty")
        raise ImportValidationError(problems.sorted_errors())
    if not isinstance(data, dict):
        problems.yaml("", "", "expected a mapping with sections: " + ", ".join(TOP_LEVEL))
        raise ImportValidationError(problems.sorted_errors())
    parsed = _parse_document(problems, data, path)
    if problems.errors or parsed is None:
        raise ImportValidationError(problems.sorted_errors())
    return parsed


def _parse_document(problems: _Problems, data: dict[str, Any], path: Path) -> ParsedSchool | None:
    for key in data:
        # "x-" keys are scratch space for YAML anchors, as in docker-compose files.
        if key not in TOP_LEVEL and not str(key).startswith("x-"):
            problems.yaml("", str(key), "unknown section; expected: " + ", ".join(TOP_LEVEL))
    for key in ("school", "term"):
        if data.get(key) is None:
            problems.yaml("", key, "required section is missing")
    school = _parse_school(problems, data["school"]) if data.get("school") is not None else None
    zone = ZoneInfo(school.timezone) if school else dt.UTC
    term = _parse_term(problems, data["term"], zone) if data.get("term") is not None else None

    codes = {k: _Codes(k) for k in ("provider", "teacher", "class", "fee", "course")}
    calendar_items = _section(problems, data, "calendar")
    days = _parse_calendar(problems, calendar_items, term) if calendar_items is not None else None
    providers = _parse_providers(
        problems, _section(problems, data, "providers") or [], codes["provider"]
    )
    teachers = _parse_teachers(
        problems, _section(problems, data, "teachers") or [], codes["teacher"], codes["provider"]
    )
    classes = _parse_classes(
        problems, _section(problems, data, "classes") or [], codes["class"], codes["teacher"]
    )
    fees = _parse_fees(
        problems,
        _section(problems, data, "fees") or [],
        codes["fee"],
        codes["provider"],
        term,
        zone,
    )
    refs = _Refs(codes["provider"], codes["teacher"], codes["fee"])
    courses = _parse_courses(
        problems, _section(problems, data, "courses") or [], codes["course"], refs
    )
    students = _parse_students(problems, data, path.parent, codes["class"])
    _advise(problems, classes, courses, providers, term)
    if school is None or term is None:
        return None
    return ParsedSchool(
        source=path,
        school=school,
        term=term,
        calendar=days,
        providers=providers,
        teachers=teachers,
        classes=classes,
        fees=fees,
        courses=courses,
        students=students,
        warnings=list(problems.warnings),
    )


# --- writing to the database ------------------------------------------------------------------

M = TypeVar("M", bound=Base)


def _columns(info: Any, *references: str, **extra: Any) -> dict[str, Any]:
    """A parsed dataclass as column values: the fields holding codes of other rows are left out
    and their ids given in ``extra`` (the dataclasses use the models' column names)."""
    values = {f.name: getattr(info, f.name) for f in fields(info) if f.name not in references}
    return {**values, **extra}


def _ref(ids: dict[str, int], code: str | None) -> int | None:
    return ids[code] if code is not None else None


def _assign(row: Base, values: dict[str, Any]) -> bool:
    """Set changed attributes only; reports whether anything changed."""
    changed = False
    for name, value in values.items():
        if getattr(row, name) != value:
            setattr(row, name, value)
            changed = True
    return changed


class _Writer:
    """Upserts on natural keys within one session, counting what happened per kind."""

    def __init__(self, session: AsyncSession) -> None:
        self.session = session
        self.counts = {kind: KindCounts() for kind in KINDS}
        self.school_id = 0
        self.term_id = 0
        self.students_deactivated = 0
        self.calendar_days_removed = 0

    async def rows(self, model: type[M], key: Callable[[M], Any], *where: Any) -> dict[Any, M]:
        result = await self.session.scalars(select(model).where(*where))
        return {key(row): row for row in result}

    def upsert(
        self, kind: str, existing: dict[Any, M], key: Any, model: type[M], values: dict[str, Any]
    ) -> M:
        counts = self.counts[kind]
        row = existing.get(key)
        if row is None:
            row = model(**values)
            self.session.add(row)
            existing[key] = row
            counts.created += 1
        elif _assign(row, values):
            counts.updated += 1
        else:
            counts.unchanged += 1
        return row


async def _write_school_and_term(w: _Writer, parsed: ParsedSchool) -> None:
    code = parsed.school.code
    schools = await w.rows(School, lambda r: r.code, School.code == code)
    school = w.upsert("school", schools, code, School, _columns(parsed.school))
    await w.session.flush()
    w.school_id = school.id

    name = parsed.term.name
    terms = await w.rows(Term, lambda r: r.name, Term.school_id == school.id, Term.name == name)
    values = _columns(parsed.term, school_id=school.id)
    term = w.upsert("term", terms, name, Term, values)
    await w.session.flush()
    w.term_id = term.id


async def _write_people(w: _Writer, parsed: ParsedSchool) -> tuple[dict[str, int], dict[str, int]]:
    """Providers then teachers; returns their ids by code."""
    sid = w.school_id
    providers = await w.rows(Provider, lambda r: r.code, Provider.school_id == sid)
    for p in parsed.providers:
        w.upsert("providers", providers, p.code, Provider, _columns(p, school_id=sid))
    await w.session.flush()
    provider_ids = {code: row.id for code, row in providers.items()}

    teachers = await w.rows(Teacher, lambda r: r.code, Teacher.school_id == sid)
    for t in parsed.teachers:
        values = _columns(t, "provider", school_id=sid, provider_id=_ref(provider_ids, t.provider))
        w.upsert("teachers", teachers, t.code, Teacher, values)
    await w.session.flush()
    return provider_ids, {code: row.id for code, row in teachers.items()}


async def _write_classes(
    w: _Writer, parsed: ParsedSchool, teacher_ids: dict[str, int]
) -> dict[str, int]:
    sid = w.school_id
    classes = await w.rows(SchoolClass, lambda r: r.code, SchoolClass.school_id == sid)
    for c in parsed.classes:
        head = _ref(teacher_ids, c.head_teacher)
        values = _columns(c, "head_teacher", school_id=sid, head_teacher_id=head)
        w.upsert("classes", classes, c.code, SchoolClass, values)
    await w.session.flush()
    return {code: row.id for code, row in classes.items()}


async def _write_programme(
    w: _Writer, parsed: ParsedSchool, provider_ids: dict[str, int], teacher_ids: dict[str, int]
) -> None:
    """Fee standards, then the courses that point at them."""
    ids = {"school_id": w.school_id, "term_id": w.term_id}
    zone = ZoneInfo(parsed.school.timezone)
    fees = await w.rows(
        FeeStandard,
        lambda r: r.code,
        FeeStandard.term_id == w.term_id,
        FeeStandard.superseded_at.is_(None),
    )
    for f in parsed.fees:
        values = _columns(f, "provider", **ids, provider_id=_ref(provider_ids, f.provider))
        # Each standard stores its whole rule (the school's, with its own changes): what was
        # disclosed with it stays with it.
        values["rule"] = fee_rules.parse(f.rule, fee_rules.parse(parsed.school.fee_rule)).as_json()
        values["disclosed_at"] = (
            dt.datetime.combine(f.disclosed_on, dt.time(0), zone).astimezone(dt.UTC)
            if f.disclosed_on
            else None
        )
        row = fees.get(f.code)
        if row is not None and row.disclosed_at is not None:
            # Disclosed: never edited. A change in what families read is a new version.
            if fee_service.differs(row, values):
                # A new version is disclosed when it is imported, never earlier: a date left
                # from the old version must not backdate it.
                now = utcnow()
                if values["disclosed_at"] is None or values["disclosed_at"] < now:
                    values["disclosed_at"] = now
                    values["disclosed_on"] = now.astimezone(zone).date()
                fees[f.code] = await fee_service.supersede(
                    w.session, row, values, user_id=None, now=now
                )
                w.counts["fees"].updated += 1
            else:
                w.counts["fees"].unchanged += 1
            continue
        w.upsert("fees", fees, f.code, FeeStandard, values)
    await w.session.flush()
    fee_ids = {code: row.id for code, row in fees.items()}

    courses = await w.rows(Course, lambda r: r.code, Course.term_id == w.term_id)
    for c in parsed.courses:
        values = _columns(
            c,
            "teacher",
            "provider",
            "fee",
            **ids,
            teacher_id=teacher_ids[c.teacher],
            provider_id=_ref(provider_ids, c.provider),
            fee_standard_id=_ref(fee_ids, c.fee),
        )
        w.upsert("courses", courses, c.code, Course, values)
    await w.session.flush()


async def _write_calendar(w: _Writer, days: list[DayInfo]) -> None:
    """The calendar section is the whole list of exceptions: days left out are removed."""
    existing = await w.rows(CalendarDay, lambda r: r.date, CalendarDay.term_id == w.term_id)
    wanted = {d.date for d in days}
    for old_date, row in list(existing.items()):
        if old_date not in wanted:
            await w.session.delete(row)
            del existing[old_date]
            w.calendar_days_removed += 1
    for d in days:
        values = _columns(d, school_id=w.school_id, term_id=w.term_id)
        w.upsert("calendar_days", existing, d.date, CalendarDay, values)
    await w.session.flush()


async def _write_students(
    w: _Writer, students: list[StudentInfo], class_ids: dict[str, int]
) -> None:
    """Students missing from the roster are set inactive, never deleted: their attendance,
    bills and guardians' links are records the school must keep."""
    sid = w.school_id
    existing = await w.rows(Student, lambda r: r.student_no, Student.school_id == sid)
    listed = {s.student_no for s in students}
    for s in students:
        class_id = class_ids[s.class_code]
        values = _columns(s, "class_code", school_id=sid, class_id=class_id, active=True)
        w.upsert("students", existing, s.student_no, Student, values)
    for number, row in existing.items():
        if number not in listed and row.active:
            row.active = False
            w.students_deactivated += 1
    await w.session.flush()


async def write_school(
    session: AsyncSession, parsed: ParsedSchool, *, actor_label: str = "cli"
) -> ImportReport:
    """Write a validated import into the caller's transaction."""
    w = _Writer(session)
    await _write_school_and_term(w, parsed)
    provider_ids, teacher_ids = await _write_people(w, parsed)
    class_ids = await _write_classes(w, parsed, teacher_ids)
    await _write_programme(w, parsed, provider_ids, teacher_ids)
    if parsed.calendar is not None:
        await _write_calendar(w, parsed.calendar)
    if parsed.students is not None:
        await _write_students(w, parsed.students, class_ids)
    report = ImportReport(
        school_id=w.school_id,
        school_code=parsed.school.code,
        term_id=w.term_id,
        counts=w.counts,
        students_deactivated=w.students_deactivated,
        calendar_days_removed=w.calendar_days_removed,
        warnings=list(parsed.warnings),
    )
    audit.record(
        session,
        report.school_id,
        "school.import",
        actor_label=actor_label,
        target=("term", report.term_id),
        details={
            "file": parsed.source.name,
            "counts": {kind: vars(c) for kind, c in report.counts.items()},
            "students_deactivated": report.students_deactivated,
            "calendar_days_removed": report.calendar_days_removed,
        },
    )
    return report


async def import_school(db: Database, path: Path, *, actor_label: str = "cli") -> ImportReport:
    """Validate ``path`` and write it in one transaction; nothing is written if anything fails.

    Raises ``ImportValidationError`` (listing every problem) when the input is wrong.
    """
    # Reading a 600-row spreadsheet takes a moment; keep the event loop free meanwhile.
    parsed = await asyncio.to_thread(load_and_validate, Path(path))
    async with db.transaction() as session:
        return await write_school(session, parsed, actor_label=actor_label)
