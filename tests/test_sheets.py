"""Reports written as CSV/XLSX never run as formulas and keep exact cents; uploaded payment
exports (CSV in UTF-8 or GB18030, XLSX) read back as the text a person sees, row numbers and all.
No database, no Telegram."""

from __future__ import annotations

import csv
import datetime as dt
import io
from collections.abc import Iterator
from decimal import Decimal

import openpyxl
import pytest

from bot.services.sheets import (
    AMOUNT,
    NAME,
    PAID_AT,
    REFERENCE,
    STUDENT_NO,
    Cell,
    Sheet,
    SheetError,
    Table,
    parse_amount,
    parse_paid_at,
    read_table,
    safe_text,
    safe_title,
    write_csv,
    write_xlsx,
)

FORMULAS = ["=1+1", "+86 138", "-2+3", "@SUM(A1)", "\t=1", "\r=1", '=HYPERLINK("http://x","点我")']


def csv_cells(data: bytes) -> list[list[str]]:
    assert data.startswith(b"\xef\xbb\xbf")
    return list(csv.reader(io.StringIO(data[3:].decode("utf-8"), newline="")))


def xlsx(data: bytes) -> openpyxl.Workbook:
    return openpyxl.load_workbook(io.BytesIO(data))


def made_xlsx(rows: list[list[object]], number_formats: dict[str, str] | None = None) -> bytes:
    """A workbook as an admin's Excel would save it (openpyxl's normal mode)."""
    workbook = openpyxl.Workbook()
    sheet = workbook.active
    for row in rows:
        sheet.append(row)
    for coordinate, number_format in (number_formats or {}).items():
        sheet[coordinate].number_format = number_format
    out = io.BytesIO()
    workbook.save(out)
    return out.getvalue()


# --- writing ----------------------------------------------------------------------------------


@pytest.mark.parametrize("text", FORMULAS)
def test_safe_text_escapes_what_a_spreadsheet_would_run(text: str) -> None:
    assert safe_text(text) == "'" + text


@pytest.mark.parametrize("text", ["张三", "", "a=b", "280.00", "三年级2班", "'quoted", " =x"])
def test_safe_text_leaves_ordinary_text_alone(text: str) -> None:
    assert safe_text(text) == text


def test_csv_escapes_formula_looking_text_in_header_and_rows() -> None:
    data = write_csv(["=学号", "姓名"], [[text, "张三"] for text in FORMULAS])
    cells = csv_cells(data)
    assert cells[0] == ["'=学号", "姓名"]
    assert [row[0] for row in cells[1:]] == ["'" + text for text in FORMULAS]


def test_csv_is_excel_friendly_bom_crlf_and_plain_values() -> None:
    data = write_csv(
        ["学号", "金额", "退款", "日期", "时间", "次数", "备注"],
        [
            ["301", Decimal("280.00"), Decimal("0.10"), dt.date(2026, 9, 3), None, 3, None],
            [
                "302",
                Decimal("1234.5"),
                Decimal("-5.00"),
                None,
                dt.datetime(2026, 9, 3, 10, 12, 5),
                0,
                "张",
            ],
        ],
    )
    assert data.startswith(b"\xef\xbb\xbf")
    assert data.count(b"\r\n") == 3 and data.replace(b"\r\n", b"").count(b"\n") == 0
    assert csv_cells(data)[1:] == [
        ["301", "280.00", "0.10", "2026-09-03", "", "3", ""],
        # A negative amount is a number, not text to escape.
        ["302", "1234.5", "-5.00", "", "2026-09-03 10:12:05", "0", "张"],
    ]


def test_csv_refuses_floats_and_zoned_datetimes() -> None:
    with pytest.raises(TypeError):
        write_csv(["金额"], [[280.1]])  # type: ignore[list-item]
    with pytest.raises(ValueError):
        write_csv(["时间"], [[dt.datetime(2026, 9, 3, 10, tzinfo=dt.UTC)]])


def test_xlsx_never_stores_a_formula_and_escapes_text() -> None:
    data = write_xlsx([Sheet("缴费", ["=学号", "@备注"], [["=1+1", text] for text in FORMULAS])])
    sheet = xlsx(data).active
    seen = 0
    for row in sheet.iter_rows():
        for cell in row:
            assert cell.data_type != "f", cell.coordinate
            assert isinstance(cell.value, str) and cell.value.startswith("'"), cell.coordinate
            seen += 1
    assert seen == 2 * (len(FORMULAS) + 1)
    # XML reads a bare carriage return back as a line feed; the escape is what matters.
    expected = ["'" + text.replace("\r", "\n") for text in FORMULAS]
    assert [c.value for c in sheet["B"]][1:] == expected


def test_xlsx_money_keeps_exact_cents_as_numbers_with_two_places() -> None:
    amounts = [Decimal("280.00"), Decimal("0.10"), Decimal("1234.56"), Decimal("-5.50")]
    data = write_xlsx([Sheet("金额", ["学号", "金额"], [["301", a] for a in amounts])])
    cells = [row[1] for row in xlsx(data).active.iter_rows(min_row=2)]
    assert [c.data_type for c in cells] == ["n"] * 4
    assert [c.number_format for c in cells] == ["0.00"] * 4
    assert [Decimal(str(c.value)).quantize(Decimal("0.01")) for c in cells] == amounts


def test_xlsx_types_ints_dates_bold_header_and_fitted_widths() -> None:
    long_id = 110101201001011234  # 18 digits: Excel would round it as a number
    data = write_xlsx(
        [
            Sheet(
                "明细",
                ["班级", "class", "人数", "日期", "支付时间", "身份证"],
                [
                    [
                        "三年级二班三年级二班",
                        "abcdefghij",
                        42,
                        dt.date(2026, 9, 3),
                        dt.datetime(2026, 9, 3, 10, 12, 5),
                        long_id,
                    ]
                ],
            )
        ]
    )
    sheet = xlsx(data).active
    header, row = list(sheet.iter_rows())
    assert all(cell.font.b for cell in header)
    assert not any(cell.font.b for cell in row)
    assert row[2].value == 42 and row[2].data_type == "n"
    assert row[3].is_date and row[3].value.date() == dt.date(2026, 9, 3)
    assert row[4].is_date and row[4].value == dt.datetime(2026, 9, 3, 10, 12, 5)
    assert row[5].value == str(long_id) and row[5].data_type == "s"
    widths = {key: dim.width for key, dim in sheet.column_dimensions.items()}
    # Ten Chinese characters need about twice the room of ten Latin letters.
    assert widths["A"] >= 2 * widths["B"] - 4
    assert widths["B"] >= 10


def test_xlsx_strips_characters_xml_cannot_hold_and_writes_every_sheet() -> None:
    rows: Iterator[list[Cell]] = ([f"{n:04d}", "张\x01三", Decimal(n)] for n in range(3000))
    data = write_xlsx([Sheet("名单", ["学号", "姓名", "金额"], rows), Sheet("空", ["x"], [])])
    book = xlsx(data)
    assert book.sheetnames == ["名单", "空"]
    first = book["名单"]
    assert first.max_row == 3001
    assert first["B2"].value == "张三"
    assert first["A3001"].value == "2999" and first["C3001"].value == 2999


def test_sheet_titles_are_safe_short_and_unique() -> None:
    assert safe_title("2026秋/缴费:明细?") == "2026秋_缴费_明细_"
    assert len(safe_title("很长的标题" * 10)) == 31
    assert safe_title("'") == "Sheet"
    assert safe_title("History") != "History"
    assert safe_title("缴费", ["缴费"]) == "缴费 (2)"
    long = "长" * 40
    second = safe_title(long, [safe_title(long)])
    assert len(second) == 31 and second.endswith(" (2)")
    data = write_xlsx([Sheet("缴费", ["a"], []), Sheet("缴费", ["a"], [])])
    assert xlsx(data).sheetnames == ["缴费", "缴费 (2)"]


# --- reading ----------------------------------------------------------------------------------


def test_chinese_text_round_trips_through_csv() -> None:
    header = ["学号", "姓名", "班级", "备注"]
    rows = [
        ["20260101", "王小明", "三年级2班", '说"好的", 明天交'],
        ["20260102", "欧阳娜娜", "三年级（2）班", "周一至周五 16:50–17:50"],
    ]
    table = read_table(write_csv(header, rows), "report.csv")
    assert table.header == tuple(header)
    assert [list(row.cells) for row in table.rows] == rows
    assert [row.number for row in table.rows] == [2, 3]


def test_gb18030_csv_with_chinese_headers_is_read() -> None:
    text = "学号,学生姓名,实收金额（元）,交易时间\r\n301,张三,280.00,2026/9/3 10:12\r\n"
    table = read_table(text.encode("gb18030"), "班级收款.csv")
    assert table.find(*STUDENT_NO) == 0
    assert table.find(*NAME) == 1
    assert table.find(*AMOUNT) == 2
    assert table.rows[0].cells == ("301", "张三", "280.00", "2026/9/3 10:12")


def test_utf16_tab_text_from_excel_is_read() -> None:
    text = "学号\t金额\r\n301\t1,234.50\r\n"  # the comma in the amount must not split it
    table = read_table(text.encode("utf-16"), "export.txt")
    assert table.header == ("学号", "金额")
    assert table.rows[0].cells == ("301", "1,234.50")


@pytest.mark.parametrize(
    ("text", "cells"),
    [
        ("学号;金额\n301;280,5\n", ("301", "280,5")),
        ('学号,金额\n301,"1,234.50"\n', ("301", "1,234.50")),
        ("学号\t金额\n301\t280\n", ("301", "280")),
    ],
)
def test_csv_delimiter_is_sniffed(text: str, cells: tuple[str, ...]) -> None:
    table = read_table(text.encode(), "pay.csv")
    assert table.header == ("学号", "金额")
    assert table.rows[0].cells == cells


def test_wechat_backticks_are_dropped() -> None:
    text = "交易时间,商户订单号,订单金额\n`2026-09-03 10:12:05,`4200001,`280.00\n"
    row = read_table(text.encode(), "wechat.csv").rows[0]
    assert row.cells == ("2026-09-03 10:12:05", "4200001", "280.00")


@pytest.mark.parametrize("data", [b"\xfe\x80\xff\x41\x80\x80", b"\x00\x01\x02\x03" * 8])
def test_undecodable_csv_is_refused_not_guessed(data: bytes) -> None:
    with pytest.raises(SheetError) as caught:
        read_table(data, "pay.csv")
    assert "UTF-8" in caught.value.msgid and caught.value.params == {}


def test_xlsx_numbers_and_dates_read_as_a_person_sees_them() -> None:
    data = made_xlsx(
        [
            ["学号", "姓名", "金额", "支付时间"],
            [301, "张三", 280.5, dt.datetime(2026, 9, 3, 10, 12, 5)],
            [20260101.0, "李四", 280.0, dt.date(2026, 9, 4)],
            [302, "王五", 0.1 + 0.2, None],
            [7, "赵六", 99.99, None],
        ],
        number_formats={"A5": "000000"},  # 学号 shown zero-padded: 000007
    )
    table = read_table(data, "收款.xlsx")
    cells = [row.cells for row in table.rows]
    assert cells[0] == ("301", "张三", "280.5", "2026-09-03 10:12:05")
    assert cells[1] == ("20260101", "李四", "280", "2026-09-04")
    assert cells[2][2] == "0.3"
    assert cells[3][0] == "000007"
    column = table.find(*AMOUNT)
    assert [parse_amount(row.get(column)) for row in table.rows] == [28050, 28000, 30, 9999]
    assert parse_paid_at(table.rows[0].get(table.find(*PAID_AT))) == dt.datetime(
        2026, 9, 3, 10, 12, 5
    )


def test_xlsx_is_recognised_by_content_and_our_own_report_reads_back() -> None:
    data = write_xlsx([Sheet("缴费", ["学号", "金额"], [["301", Decimal("280.50")]])])
    for name in ("report.XLSX", "report.csv", "report"):
        table = read_table(data, name)
        assert table.rows[0].cells == ("301", "280.5")


@pytest.mark.parametrize(
    ("data", "name"),
    [
        (b"whatever", "缴费.xls"),
        (b"\xd0\xcf\x11\xe0\xa1\xb1\x1a\xe1" + b"\x00" * 64, "renamed.csv"),  # an .xls inside
    ],
)
def test_xls_is_refused_with_a_way_out(data: bytes, name: str) -> None:
    with pytest.raises(SheetError) as caught:
        read_table(data, name)
    assert ".xlsx" in caught.value.msgid and ".xls)" in caught.value.msgid


@pytest.mark.parametrize(
    ("data", "name", "word"),
    [
        (b"", "pay.csv", "empty"),
        (b"\xef\xbb\xbf", "pay.csv", "empty"),
        (b"\r\n , ,\r\n\r\n", "pay.csv", "empty"),
        (made_xlsx([]), "pay.xlsx", "empty"),
        (b"PK\x03\x04 not really a zip", "pay.xlsx", "cannot be read"),
        (b"%PDF-1.4", "pay.pdf", ".csv or .xlsx"),
    ],
)
def test_unusable_files_are_refused(data: bytes, name: str, word: str) -> None:
    with pytest.raises(SheetError) as caught:
        read_table(data, name)
    assert word in caught.value.msgid


def test_csv_row_numbers_are_the_lines_a_user_sees() -> None:
    text = '\n学号,金额,备注\n301,280,\n\n302,300,"两行\n的备注"\n303,310,\n'
    table = read_table(text.encode(), "pay.csv")
    assert table.header_row == 2
    assert [(row.number, row.get(0)) for row in table.rows] == [(3, "301"), (5, "302"), (7, "303")]
    assert table.rows[1].get(2) == "两行\n的备注"


def test_xlsx_row_numbers_are_the_spreadsheet_rows() -> None:
    data = made_xlsx([[], ["学号", "金额"], [301, 280], [None, None], [302, 300]])
    table = read_table(data, "pay.xlsx")
    assert table.header_row == 2
    assert [(row.number, row.get(0)) for row in table.rows] == [(3, "301"), (5, "302")]


def test_header_is_found_below_title_lines_when_asked() -> None:
    text = "#支付宝交易记录明细查询\n#账号:[2088xxxx]\n\n 学号 ,金额（元）\n301,280\n"
    plain = read_table(text.encode(), "alipay.csv")
    assert plain.header_row == 1 and plain.find(*STUDENT_NO) is None
    table = read_table(text.encode(), "alipay.csv", header_with=(STUDENT_NO, AMOUNT))
    assert table.header_row == 4
    assert [(row.number, row.cells) for row in table.rows] == [(5, ("301", "280"))]


def test_header_aliases_ignore_width_case_spaces_and_units() -> None:
    table = Table(
        (
            "序号",
            "　学　号　",
            "ＳＴＵＤＥＮＴ＿ＮＯ",
            "金额",
            "实收金额（元）",
            "退款金额",
            "商户订单号",
            "Paid At",
        ),
        1,
        (),
    )
    assert table.find(*STUDENT_NO) == 1  # 学号 is the first alias: it wins over student_no
    assert table.find("student_no") == 2
    assert table.find(*AMOUNT) == 4  # 实收金额 before the bare 金额; 退款金额 is never an amount
    assert table.find(*REFERENCE) == 6
    assert table.find(*PAID_AT) == 7
    assert table.find(*NAME) is None
    with pytest.raises(SheetError) as caught:
        table.require(*NAME)
    assert caught.value.params == {"names": "姓名 / 学生姓名 / name"}
    assert str(caught.value) == "The file has no column 姓名 / 学生姓名 / name."


def test_row_get_tolerates_short_rows_and_missing_columns() -> None:
    table = read_table("学号,金额,备注\n301\n".encode(), "pay.csv")
    row = table.rows[0]
    assert row.get(0) == "301" and row.get(2) == "" and row.get(table.find(*NAME)) == ""


# --- values -----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "fen"),
    [
        ("280", 28000),
        ("280.0", 28000),
        ("280.00", 28000),
        ("280.000", 28000),
        ("¥280.00", 28000),
        ("￥280", 28000),
        ("￥ 280", 28000),
        ("1,234.50", 123450),
        ("280 元", 28000),
        ("280元", 28000),
        ("280.5", 28050),
        ("0.01", 1),
        ("２８０．５", 28050),
        ("`280.00", 28000),
        ("100000", 10_000_000),
        ("  99.99 ", 9999),
    ],
)
def test_parse_amount_reads_yuan_into_exact_fen(text: str, fen: int) -> None:
    assert parse_amount(text) == fen


@pytest.mark.parametrize(
    ("text", "word"),
    [
        ("-280", "negative"),
        ("¥-1", "negative"),
        ("−5", "negative"),
        ("280.005", "decimal places"),
        ("0.001", "decimal places"),
        ("", "missing"),
        ("  ", "missing"),
        ("¥", "missing"),
        ("二百八十", "not an amount"),
        ("abc", "not an amount"),
        ("1,2345", "not an amount"),
        ("280.5.1", "not an amount"),
        ("1e3", "not an amount"),
        ("NaN", "not an amount"),
        ("(280)", "not an amount"),
        ("100000.01", "more than"),
        ("1,000,000", "more than"),
    ],
)
def test_parse_amount_refuses_what_is_not_a_payment(text: str, word: str) -> None:
    with pytest.raises(ValueError) as caught:
        parse_amount(text)
    assert isinstance(caught.value, SheetError)
    assert word in caught.value.msgid
    assert caught.value.msgid.format(**caught.value.params)  # the handler's translation works


@pytest.mark.parametrize(
    ("text", "when"),
    [
        ("2026-09-03 10:12:05", dt.datetime(2026, 9, 3, 10, 12, 5)),
        ("2026/9/3 10:12", dt.datetime(2026, 9, 3, 10, 12)),
        ("2026-09-03", dt.date(2026, 9, 3)),
        ("2026年9月3日", dt.date(2026, 9, 3)),
        ("2026年9月3日 10:12", dt.datetime(2026, 9, 3, 10, 12)),
        ("2026-09-03T10:12:05.123", dt.datetime(2026, 9, 3, 10, 12, 5)),
        ("20260903101205", dt.datetime(2026, 9, 3, 10, 12, 5)),
        ("２０２６－０９－０３　１０：１２", dt.datetime(2026, 9, 3, 10, 12)),
        ("", None),
        ("  ", None),
    ],
)
def test_parse_paid_at_reads_what_exports_write(text: str, when: dt.date | None) -> None:
    assert parse_paid_at(text) == when
    assert type(parse_paid_at(text)) is type(when)


@pytest.mark.parametrize("text", ["2026-02-30", "2026-09-03 25:00", "昨天", "9/3", "2026-09"])
def test_parse_paid_at_refuses_what_it_cannot_read(text: str) -> None:
    with pytest.raises(ValueError):
        parse_paid_at(text)
