"""Spreadsheets in and out: reports written as CSV and XLSX that no spreadsheet will run as
formulas, and the payment exports admins upload (DingTalk 班级收款, a bank's or WeChat's, as CSV
or XLSX) read as text the way a person sees them, with money parsed exactly into fen.

No database and no Telegram here. Errors meant for the admin are `SheetError`s: an English
msgid (marked with `N_` so it is extracted) and named parameters; the handler translates it:
`t.gettext(error.msgid).format(**error.params)`.
"""

from __future__ import annotations

import csv
import datetime as dt
import io
import itertools
import re
import unicodedata
import warnings
import zipfile
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from decimal import Decimal

import openpyxl
from openpyxl.cell import WriteOnlyCell
from openpyxl.cell.cell import ILLEGAL_CHARACTERS_RE
from openpyxl.styles import Font
from openpyxl.utils import get_column_letter
from openpyxl.utils.exceptions import InvalidFileException

from bot.i18n import N_

Cell = str | int | Decimal | dt.date | None  # a datetime is a date too; floats are refused

MAX_YUAN = Decimal(100_000)  # one payment above this is a typo, as in the importer's fees
MAX_ROWS = 50_000  # far above a school's term; stops a runaway file early
MAX_TITLE = 31  # Excel's limit on a sheet's name
MAX_TEXT = 32_767  # Excel's limit on a cell's text
WIDTH_SAMPLE = 300  # rows measured to fit the column widths; the rest are streamed
HEADER_SEARCH_ROWS = 10  # exports may put a title or an account line above the header

# Header spellings of the columns Kehou reads, most specific first: when a file has two of
# them (金额 and 实收金额), the earlier one wins.
STUDENT_NO = ("学号", "学生学号", "学生编号", "学籍号", "student_no", "student number")
AMOUNT = ("实收金额", "缴费金额", "支付金额", "交易金额", "金额", "amount", "paid")
REFERENCE = (
    "交易单号",
    "支付单号",
    "商户订单号",
    "交易号",
    "订单号",
    "流水号",
    "reference",
    "transaction",
)
PAID_AT = ("支付时间", "缴费时间", "交易时间", "付款时间", "date", "paid_at")
NAME = ("姓名", "学生姓名", "name")

CSV_SUFFIXES = (".csv", ".tsv", ".txt")
XLSX_SUFFIXES = (".xlsx", ".xlsm")
_ZIP_MAGIC = b"PK\x03\x04"
_OLE_MAGIC = b"\xd0\xcf\x11\xe0"  # .xls, and .xlsx files protected with a password


class SheetError(ValueError):
    """A problem with a file or a value the admin can fix; `msgid` is for gettext."""

    def __init__(self, msgid: str, **params: str | int) -> None:
        super().__init__(msgid.format(**params))  # the English text, for logs
        self.msgid = msgid
        self.params = params


# --- writing ----------------------------------------------------------------------------------

_FORMULA_STARTS = ("=", "+", "-", "@", "\t", "\r")


def safe_text(value: str) -> str:
    """The text as a cell a spreadsheet shows and never runs (OWASP "CSV injection")."""
    return "'" + value if value.startswith(_FORMULA_STARTS) else value


def _decimal_text(value: Decimal) -> str:
    if not value.is_finite():
        raise ValueError(f"not a finite amount: {value}")
    return format(value, "f")  # 280.00 stays 280.00; never 2.8E+2


def _naive(value: dt.datetime) -> dt.datetime:
    if value.tzinfo is not None:
        # Spreadsheets have no zones: the caller says which clock the report is in.
        raise ValueError("convert datetimes to the school's zone and drop tzinfo first")
    return value


def _check(value: object) -> None:
    if isinstance(value, bool | float):  # True would print as 1; a float loses cents
        raise TypeError(f"cells are str, int, Decimal, date or None, not {type(value).__name__}")


def _csv_cell(value: Cell) -> str:
    _check(value)
    if value is None:
        return ""
    if isinstance(value, str):
        return safe_text(value)
    if isinstance(value, Decimal):
        return _decimal_text(value)
    if isinstance(value, int):
        return str(value)
    if isinstance(value, dt.datetime):
        return _naive(value).isoformat(sep=" ", timespec="seconds")
    if isinstance(value, dt.date):
        return value.isoformat()
    raise TypeError(f"cells are str, int, Decimal, date or None, not {type(value).__name__}")


def write_csv(header: Sequence[str], rows: Iterable[Sequence[Cell]]) -> bytes:
    """A report as CSV: UTF-8 with a BOM (so Excel in China shows the Chinese), CRLF lines."""
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\r\n")
    writer.writerow([_csv_cell(name) for name in header])
    for row in rows:
        writer.writerow([_csv_cell(value) for value in row])
    return out.getvalue().encode("utf-8-sig")


@dataclass(frozen=True)
class Sheet:
    title: str
    header: Sequence[str]
    rows: Iterable[Sequence[Cell]]


_TITLE_FORBIDDEN = re.compile(r"[\[\]:*?/\\\x00-\x1f]")


def safe_title(title: str, taken: Iterable[str] = ()) -> str:
    """A sheet name Excel accepts: no []:*?/\\, no edge apostrophe, ≤31 characters, unique."""
    base = _TITLE_FORBIDDEN.sub("_", title).strip().strip("'").strip()
    if not base or base.casefold() == "history":  # Excel reserves "History"
        base = "Sheet" if not base else base + "_"
    used = {name.casefold() for name in taken}
    candidate = base[:MAX_TITLE]
    number = 2
    while candidate.casefold() in used:
        suffix = f" ({number})"
        candidate = base[: MAX_TITLE - len(suffix)].rstrip() + suffix
        number += 1
    return candidate


def _display_width(text: str) -> int:
    return sum(2 if unicodedata.east_asian_width(c) in "WF" else 1 for c in text)


def _xlsx_value(value: Cell) -> tuple[Cell, str | None]:
    """The value openpyxl stores and its number format; text is always escaped text."""
    _check(value)
    if isinstance(value, str):
        text = ILLEGAL_CHARACTERS_RE.sub("", safe_text(value))  # XML cannot hold them
        return text[:MAX_TEXT], None
    if isinstance(value, Decimal):
        _decimal_text(value)  # refuses NaN and infinities
        return value, "0.00"
    if isinstance(value, int):
        if abs(value) >= 10**15:  # Excel keeps 15 digits: a long number is an id, kept whole
            return str(value), None
        return value, None
    if isinstance(value, dt.datetime):
        return _naive(value), "yyyy-mm-dd hh:mm:ss"
    if isinstance(value, dt.date):
        return value, "yyyy-mm-dd"
    if value is None:
        return None, None
    raise TypeError(f"cells are str, int, Decimal, date or None, not {type(value).__name__}")


def _shown(value: Cell) -> str:
    """Roughly the text Excel shows, to fit a column's width."""
    if isinstance(value, Decimal):
        return f"{value:,.2f}"
    if isinstance(value, dt.datetime):
        return value.isoformat(sep=" ", timespec="seconds")
    return "" if value is None else str(value)


def _cell(worksheet: object, value: Cell, number_format: str | None = None) -> WriteOnlyCell:
    made = WriteOnlyCell(worksheet, value=value)
    if isinstance(value, str):
        made.data_type = "s"  # never a formula, whatever the text (openpyxl guesses by "=")
    if number_format:
        made.number_format = number_format
    return made


def _widths(header: Sequence[str], sample: list[list[tuple[Cell, str | None]]]) -> list[int]:
    """Column widths in Excel's units (a CJK character is two), from the header and a sample."""
    widths = [_display_width(name) for name in header]
    for row in sample:
        for index, (value, _) in enumerate(row):
            width = _display_width(_shown(value))
            if index < len(widths):
                widths[index] = max(widths[index], width)
            else:
                widths.append(width)
    return [min(max(width, 4) + 2, 60) for width in widths]


def write_xlsx(sheets: Sequence[Sheet]) -> bytes:
    """A report as XLSX, streamed (openpyxl write-only): bold header, money as 0.00 numbers."""
    if not sheets:
        raise ValueError("a workbook needs at least one sheet")
    workbook = openpyxl.Workbook(write_only=True)
    bold = Font(bold=True)
    titles: list[str] = []
    for sheet in sheets:
        title = safe_title(sheet.title, titles)
        titles.append(title)
        worksheet = workbook.create_sheet(title)
        rows = iter(sheet.rows)
        # Widths must be set before the first row is written: measure a sample, stream the rest.
        sample = [[_xlsx_value(v) for v in row] for row in itertools.islice(rows, WIDTH_SAMPLE)]
        for index, width in enumerate(_widths(sheet.header, sample), start=1):
            worksheet.column_dimensions[get_column_letter(index)].width = width
        worksheet.freeze_panes = "A2"  # the header stays in view while scrolling
        header = [_cell(worksheet, _xlsx_value(name)[0]) for name in sheet.header]
        for made in header:
            made.font = bold
        worksheet.append(header)
        for row in sample:
            worksheet.append([_cell(worksheet, value, fmt) for value, fmt in row])
        for raw in rows:
            worksheet.append([_cell(worksheet, *_xlsx_value(value)) for value in raw])
    out = io.BytesIO()
    workbook.save(out)
    return out.getvalue()


# --- reading ----------------------------------------------------------------------------------


@dataclass(frozen=True)
class Row:
    number: int  # the row as the admin sees it: the spreadsheet's row, or the CSV's line
    cells: tuple[str, ...]

    def get(self, column: int | None) -> str:
        """The cell's text; "" for a column the file lacks or a short row."""
        if column is None or column >= len(self.cells):
            return ""
        return self.cells[column]


def _header_key(text: str) -> str:
    """全角/半角, case, spaces, _-*: and a trailing unit like （元） do not matter."""
    key = unicodedata.normalize("NFKC", text).casefold().strip()
    key = re.sub(r"\s*[(\[][^()\[\]]*[)\]]$", "", key)
    return re.sub(r"[\s_\-*:.]+", "", key)


@dataclass(frozen=True)
class Table:
    header: tuple[str, ...]
    header_row: int  # the header's row number as the admin sees it
    rows: tuple[Row, ...]  # the non-blank rows below the header

    def find(self, *aliases: str) -> int | None:
        """The column whose header is one of the aliases (the earliest alias wins), or None."""
        keys = [_header_key(cell) for cell in self.header]
        for alias in aliases:
            wanted = _header_key(alias)
            if wanted in keys:
                return keys.index(wanted)
        return None

    def require(self, *aliases: str) -> int:
        """As find, but a missing column is a SheetError naming the accepted headers."""
        column = self.find(*aliases)
        if column is None:
            raise SheetError(N_("The file has no column {names}."), names=" / ".join(aliases))
        return column


def read_table(data: bytes, filename: str, *, header_with: Sequence[Sequence[str]] = ()) -> Table:
    """An uploaded CSV or XLSX as text. The header is the first non-blank row or, with
    header_with (alias sets such as (STUDENT_NO, AMOUNT)), the first of the first 10 non-blank
    rows that has all of those columns, so a title line above it does not matter."""
    rows = _rows(data, filename)
    if not rows:
        raise SheetError(N_("The file is empty."))
    position = 0
    for index, (number, cells) in enumerate(rows[:HEADER_SEARCH_ROWS]):
        table = Table(tuple(cells), number, ())
        if header_with and all(table.find(*aliases) is not None for aliases in header_with):
            position = index
            break
    body = rows[position + 1 :]
    if len(body) > MAX_ROWS:
        raise SheetError(N_("The file has more than {limit} rows."), limit=MAX_ROWS)
    number, header = rows[position]
    return Table(tuple(header), number, tuple(Row(n, tuple(cells)) for n, cells in body))


_Numbered = list[tuple[int, list[str]]]
_ENOUGH = MAX_ROWS + HEADER_SEARCH_ROWS + 1  # non-blank rows read before giving up


def _rows(data: bytes, filename: str) -> _Numbered:
    """The file's non-blank rows, numbered as the admin sees them."""
    suffix = "." + filename.rsplit(".", 1)[-1].lower() if "." in filename else ""
    if suffix == ".xls" or data.startswith(_OLE_MAGIC):
        raise SheetError(N_("Old Excel files (.xls) cannot be read: save it as .xlsx."))
    if suffix in XLSX_SUFFIXES or data.startswith(_ZIP_MAGIC):
        return _xlsx_rows(data)
    if suffix not in (*CSV_SUFFIXES, ""):
        raise SheetError(N_("Send a .csv or .xlsx file."))
    return _csv_rows(data)


def _decode(data: bytes) -> str:
    if data.startswith((b"\xff\xfe", b"\xfe\xff")):  # Excel's "Unicode text" is UTF-16
        encodings: tuple[str, ...] = ("utf-16",)
    else:
        # Excel on Chinese Windows saves "CSV" as GBK; GB18030 is its superset.
        encodings = ("utf-8-sig", "gb18030")
    for encoding in encodings:
        try:
            text = data.decode(encoding)
        except UnicodeDecodeError:
            continue
        if "\x00" not in text:  # text has no NULs; a binary file decoded by luck does
            return text
    raise SheetError(N_("The file is not readable text: save it as CSV UTF-8 or as .xlsx."))


def _delimiter(text: str) -> str:
    """The delimiter that splits the first lines most often; a comma on a tie. Counting every
    line, the header's included, keeps "1,234.50" in a tab-separated file from winning."""
    sample = text.splitlines()[:20]
    best, most = ",", 0
    for candidate in (",", "\t", ";"):
        try:
            splits = sum(len(r) - 1 for r in csv.reader(sample, delimiter=candidate) if r)
        except csv.Error:
            continue
        if splits > most:
            best, most = candidate, splits
    return best


def _csv_rows(data: bytes) -> _Numbered:
    text = _decode(data)
    reader = csv.reader(io.StringIO(text, newline=""), delimiter=_delimiter(text))
    rows: _Numbered = []
    line = 1
    try:
        for record in reader:
            # WeChat Pay's bills start every cell with ` so Excel keeps it as text.
            cells = [cell.strip().removeprefix("`").strip() for cell in record]
            if any(cells):
                rows.append((line, cells))
                if len(rows) >= _ENOUGH:
                    break
            line = reader.line_num + 1  # a quoted cell may span lines: a row starts where it does
    except csv.Error:
        raise SheetError(N_("Line {row} of the file cannot be read."), row=line) from None
    return rows


_XLSX_BROKEN = N_("The .xlsx file cannot be read: open it in Excel and save it again.")


def _xlsx_rows(data: bytes) -> _Numbered:
    rows: _Numbered = []
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # openpyxl warns about styles other apps write
        try:
            workbook = openpyxl.load_workbook(io.BytesIO(data), read_only=True, data_only=True)
        except (zipfile.BadZipFile, InvalidFileException, KeyError, OSError, ValueError):
            raise SheetError(_XLSX_BROKEN) from None
        try:
            if not workbook.worksheets:
                return rows
            worksheet = workbook.worksheets[0]
            worksheet.reset_dimensions()  # some exporters write a wrong size: read what is there
            for number, row in enumerate(worksheet.iter_rows(), start=1):
                cells = [_cell_text(cell) for cell in row]
                while cells and not cells[-1]:
                    cells.pop()
                if cells:
                    rows.append((number, cells))
                    if len(rows) >= _ENOUGH:
                        break
        except (zipfile.BadZipFile, KeyError, ValueError, TypeError):
            raise SheetError(_XLSX_BROKEN) from None
        finally:
            workbook.close()
    return rows


_ZERO_PADDED = re.compile(r"^0{2,}$")  # a number format like 000000 shows 301 as 000301


def _number_text(value: int | float) -> str:
    if isinstance(value, float):
        if value.is_integer() and abs(value) < 2**53:
            return str(int(value))  # 学号 20260101 stored as 20260101.0
        # 15 significant digits, as Excel shows: 280.00000000000006 is the 280 a person sees.
        return format(Decimal(format(value, ".15g")), "f")
    return str(value)


def _cell_text(cell: object) -> str:
    value = getattr(cell, "value", None)
    if value is None:
        return ""
    if isinstance(value, bool):
        return "TRUE" if value else "FALSE"
    if isinstance(value, int | float):
        text = _number_text(value)
        number_format = getattr(cell, "number_format", None) or ""
        if _ZERO_PADDED.match(number_format) and text.isdigit():
            text = text.zfill(len(number_format))
        return text
    if isinstance(value, dt.datetime):
        if value.time() == dt.time(0):
            return value.date().isoformat()
        return value.isoformat(sep=" ", timespec="seconds")
    if isinstance(value, dt.date | dt.time):
        return value.isoformat()
    return str(value).strip()


# --- values -----------------------------------------------------------------------------------

_AMOUNT = re.compile(r"^(?:\d{1,3}(?:,\d{3})+|\d+)(?:\.\d+)?$")
_SHOWN = 40  # characters of a bad value quoted back to the admin


def _quoted(raw: str) -> str:
    return raw if len(raw) <= _SHOWN else raw[: _SHOWN - 1] + "…"


def parse_amount(text: str) -> int:
    """Yuan as written in an export (280, ¥280.00, ￥1,234.50, 280 元) → fen, exactly."""
    raw = text.strip()
    value = unicodedata.normalize("NFKC", raw).strip().removeprefix("`").strip()  # ￥ → ¥
    value = re.sub(r"^(?:¥|RMB|CNY)\s*", "", value, flags=re.IGNORECASE)
    value = re.sub(r"\s*(?:元|RMB|CNY)$", "", value, flags=re.IGNORECASE)
    if not value:
        raise SheetError(N_("The amount is missing."))
    if value.startswith(("-", "\u2212")):
        raise SheetError(N_("The amount {value} is negative."), value=_quoted(raw))
    if not _AMOUNT.match(value):
        raise SheetError(N_("{value} is not an amount in yuan."), value=_quoted(raw))
    yuan = Decimal(value.replace(",", ""))  # the pattern admits only digits, commas and a point
    if yuan > MAX_YUAN:
        raise SheetError(
            N_("The amount {value} is more than {limit} yuan."),
            value=_quoted(raw),
            limit=int(MAX_YUAN),
        )
    fen = yuan * 100
    if fen != fen.to_integral_value():
        raise SheetError(
            N_("The amount {value} has more than 2 decimal places."), value=_quoted(raw)
        )
    return int(fen)


_PAID_AT = re.compile(
    r"^(?P<y>\d{4})\s*[-/.年]\s*(?P<m>\d{1,2})\s*[-/.月]\s*(?P<d>\d{1,2})\s*[日号]?"
    r"(?:(?:\s*T\s*|\s+|(?<=[日号]))"
    r"(?P<H>\d{1,2})\s*[:时点]\s*(?P<M>\d{1,2})\s*(?:[:分]\s*(?P<S>\d{1,2})(?:\.\d+)?\s*秒?|分)?)?$"
)
_COMPACT = re.compile(
    r"^(?P<y>\d{4})(?P<m>\d{2})(?P<d>\d{2})(?:(?P<H>\d{2})(?P<M>\d{2})(?P<S>\d{2}))?$"
)


def parse_paid_at(text: str) -> dt.datetime | dt.date | None:
    """When a payment was made, as exports write it (2026-09-03 10:12:05, 2026/9/3 10:12,
    2026年9月3日, 20260903101205): naive, in the payment system's clock; None when empty."""
    raw = text.strip()
    value = unicodedata.normalize("NFKC", raw).strip().removeprefix("`").strip()
    if not value:
        return None
    found = _PAID_AT.match(value) or _COMPACT.match(value)
    if found is None:
        raise SheetError(N_("{value} is not a date and time."), value=_quoted(raw))
    parts = found.groupdict()
    try:
        day = dt.date(int(parts["y"]), int(parts["m"]), int(parts["d"]))
        if parts["H"] is None:
            return day
        clock = dt.time(int(parts["H"]), int(parts["M"]), int(parts["S"] or 0))
    except ValueError:  # 2026-02-30, 25:00
        raise SheetError(N_("{value} is not a date and time."), value=_quoted(raw)) from None
    return dt.datetime.combine(day, clock)
