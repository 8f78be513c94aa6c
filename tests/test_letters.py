"""Parent invitations: codes per guardian, the office's CSV and the printed letters."""

from __future__ import annotations

import base64
import csv
import datetime as dt
import io
import re
import stat
import zlib
from pathlib import Path
from zoneinfo import ZoneInfo

import pytest
from babel.support import Translations
from sqlalchemy import func, select

from bot.i18n import Translator
from bot.services import invites, qr
from bot.services.invites import InvitePreview
from bot.services.letters import (
    CSV_COLUMNS,
    ParentInvitation,
    issue_parent_invitations,
    render_letters_pdf,
    write_csv,
)
from storage.db import Database
from storage.models import Invite, School, SchoolClass, Student

SHANGHAI = ZoneInfo("Asia/Shanghai")
WEEK = dt.timedelta(days=7)


@pytest.fixture
async def school_id(db: Database) -> int:
    """Three classes with students (one left the school), and a second school."""
    async with db.transaction() as session:
        school = School(code="hq", name="河清实验学校", timezone="Asia/Shanghai")
        other = School(code="other", name="别的学校")
        session.add_all([school, other])
        await session.flush()
        classes = {
            code: SchoolClass(school_id=school.id, code=code, grade=3, name=name)
            for code, name in (("3-1", "三年级1班"), ("3-2", "三年级2班"), ("3-10", "三年级10班"))
        }
        foreign = SchoolClass(school_id=other.id, code="9-9", grade=9, name="九年级9班")
        session.add_all([*classes.values(), foreign])
        await session.flush()
        session.add_all(
            [
                Student(
                    school_id=school.id, class_id=classes["3-2"].id, student_no="S3", name="王芳"
                ),
                Student(
                    school_id=school.id, class_id=classes["3-2"].id, student_no="S2", name="李雷"
                ),
                Student(
                    school_id=school.id, class_id=classes["3-1"].id, student_no="S1", name="张伟"
                ),
                Student(
                    school_id=school.id,
                    class_id=classes["3-1"].id,
                    student_no="S9",
                    name="赵六",
                    active=False,
                ),
                Student(
                    school_id=school.id, class_id=classes["3-10"].id, student_no="S10", name="陈一"
                ),
                Student(school_id=other.id, class_id=foreign.id, student_no="X1", name="外校生"),
            ]
        )
        return school.id


async def issue(db: Database, school_id: int, **kwargs: object) -> list[ParentInvitation]:
    async with db.transaction() as session:
        return await issue_parent_invitations(
            session,
            school_id=school_id,
            ttl=WEEK,
            **kwargs,  # type: ignore[arg-type]
        )


async def test_codes_for_the_active_students_of_the_chosen_classes(
    db: Database, school_id: int
) -> None:
    before = dt.datetime.now(dt.UTC)
    issued = await issue(db, school_id, class_codes=["3-2", "3-1"], bot_username="@KehouBot")

    assert [(i.class_code, i.student_name) for i in issued] == [
        ("3-1", "张伟"),  # 赵六 has left the school
        ("3-2", "李雷"),
        ("3-2", "王芳"),
    ]
    for invitation in issued:
        assert len(invitation.code) == invites.CODE_LENGTH
        assert invitation.deep_link == f"https://t.me/KehouBot?start={invitation.code}"
        assert invitation.expires_at.tzinfo == SHANGHAI
        assert before + WEEK <= invitation.expires_at <= dt.datetime.now(dt.UTC) + WEEK
    # Every code works, and for the right child.
    for telegram_id, invitation in enumerate(issued, start=100):
        async with db.transaction() as session:
            preview = await invites.inspect(session, telegram_id, invitation.code)
        assert isinstance(preview, InvitePreview)
        assert (preview.student_name, preview.class_name) == (
            invitation.student_name,
            invitation.class_name,
        )


async def test_all_classes_in_class_order_and_no_link_without_a_username(
    db: Database, school_id: int
) -> None:
    issued = await issue(db, school_id, class_codes=None)
    assert [i.student_name for i in issued] == ["张伟", "李雷", "王芳", "陈一"]  # 3-1, 3-2, 3-10
    assert all(i.deep_link is None for i in issued)


async def test_each_guardian_gets_a_code_of_their_own(db: Database, school_id: int) -> None:
    issued = await issue(db, school_id, class_codes=["3-1"], guardians_per_child=2)
    assert [i.student_name for i in issued] == ["张伟", "张伟"]
    assert issued[0].code != issued[1].code
    for telegram_id, invitation in ((201, issued[0]), (202, issued[1])):
        async with db.transaction() as session:
            preview = await invites.inspect(session, telegram_id, invitation.code)
        assert isinstance(preview, InvitePreview)
        assert preview.student_name == "张伟"


async def test_unknown_classes_are_named_and_nothing_is_issued(
    db: Database, school_id: int
) -> None:
    with pytest.raises(ValueError, match=r"9-9, 5-5"):  # another school's class is unknown too
        await issue(db, school_id, class_codes=["3-1", "9-9", "5-5"])
    async with db.transaction() as session:
        assert await session.scalar(select(func.count()).select_from(Invite)) == 0


def invitation(
    name: str, code: str, link: str | None, expires_at: dt.datetime
) -> ParentInvitation:
    return ParentInvitation(
        student_name=name,
        student_no="S" + code[:3],
        class_code="3-1",
        class_name="三年级1班",
        code=code,
        deep_link=link,
        expires_at=expires_at,
    )


# 17:00 UTC on the 20th is already the 21st in Shanghai.
EXPIRES = dt.datetime(2026, 12, 20, 17, 0, tzinfo=dt.UTC).astimezone(SHANGHAI)
SAMPLE = [
    invitation("李小明", "A" * 16, qr.deep_link("KehouBot", "A" * 16), EXPIRES),
    invitation("欧阳娜娜", "B" * 16, qr.deep_link("KehouBot", "B" * 16), EXPIRES),
    invitation("Anna Smith", "C" * 16, None, EXPIRES),
]


def test_csv_opens_in_excel_with_one_row_per_invitation(tmp_path: Path) -> None:
    path = tmp_path / "codes.csv"
    write_csv(SAMPLE, path)
    raw = path.read_bytes()
    assert raw.startswith(b"\xef\xbb\xbf")
    rows = list(csv.reader(io.StringIO(raw.decode("utf-8-sig"))))
    assert rows[0] == list(CSV_COLUMNS)
    assert rows[1] == [
        "三年级1班",
        "SAAA",
        "李小明",
        "AAAA-AAAA-AAAA-AAAA",
        "https://t.me/KehouBot?start=AAAAAAAAAAAAAAAA",
        "2026-12-21",
    ]
    assert [row[3] for row in rows[1:]] == [invites.pretty(i.code) for i in SAMPLE]
    assert rows[3][4] == ""
    assert stat.S_IMODE(path.stat().st_mode) == 0o600  # the file holds live codes

    write_csv(SAMPLE[:1], path, timezone=dt.UTC)
    assert path.read_text(encoding="utf-8-sig").splitlines()[1].endswith(",2026-12-20")


# --- reading the PDF back without a PDF library ----------------------------------------------


def page_count(pdf: bytes) -> int:
    """Page objects, checked against the page tree's count."""
    pages = len(re.findall(rb"/Type\s*/Page(?![A-Za-z])", pdf))
    trees = re.findall(rb"<<[^<>]*/Type\s*/Pages\b[^<>]*>>", pdf)
    assert [re.findall(rb"/Count\s+(\d+)", tree) for tree in trees] == [[str(pages).encode()]]
    return pages


def _unescape(literal: bytes) -> bytes:
    out, i = bytearray(), 0
    while i < len(literal):
        if literal[i : i + 1] != b"\\":
            out.append(literal[i])
            i += 1
            continue
        octal = re.match(rb"[0-7]{1,3}", literal[i + 1 : i + 4])
        if octal:
            out.append(int(octal.group(), 8) & 0xFF)
            i += 1 + len(octal.group())
        else:
            escaped = literal[i + 1 : i + 2]
            out += {b"n": b"\n", b"r": b"\r", b"t": b"\t", b"b": b"\b", b"f": b"\f"}.get(
                escaped, escaped
            )
            i += 2
    return bytes(out)


def shown_text(pdf: bytes) -> bytes:
    """The bytes of every string the pages show, joined: Latin-1 for Helvetica and Courier,
    UTF-16-BE for the Song CID font."""
    strings = []
    for header, stream in re.findall(rb"<<([^<>]*)>>\s*stream\r?\n(.*?)endstream", pdf, re.DOTALL):
        content = stream
        if b"/ASCII85Decode" in header:
            content = base64.a85decode(content.strip().removesuffix(b"~>"))
        if b"/FlateDecode" in header:
            content = zlib.decompressobj().decompress(content)  # ignores a trailing EOL
        strings += [_unescape(s[1:-1]) for s in re.findall(rb"\((?:[^\\()]|\\.)*\)", content)]
    return b"".join(strings)


class Catalog(Translations):
    """A stand-in catalog: one translated message is enough to show the letter uses gettext."""

    def gettext(self, message: str) -> str:
        return {"Letter to parents": "致家长的一封信"}.get(message, message)


def translator(locale: str, translations: Translations | None = None) -> Translator:
    return Translator(
        locale=locale, translations=translations or Translations(), timezone=SHANGHAI
    )


def test_one_page_per_invitation_with_the_child_and_the_code() -> None:
    pdf = render_letters_pdf(
        SAMPLE, school_name="河清实验学校", translator=translator("zh_CN", Catalog())
    )
    assert pdf.startswith(b"%PDF-")
    assert page_count(pdf) == len(SAMPLE)
    text = shown_text(pdf)
    for item in SAMPLE:
        assert invites.pretty(item.code).encode() in text
    for name in ("李小明", "欧阳娜娜", "河清实验学校", "致家长的一封信"):
        assert name.encode("utf-16-be") in text
    assert b"Anna Smith" in text  # a Latin name in a Chinese letter is set in Helvetica


def test_english_letter_shows_the_school_local_expiry_date() -> None:
    pdf = render_letters_pdf(
        SAMPLE[:2],
        school_name="河清实验学校",
        translator=translator("en"),
        issued_on=dt.date(2026, 11, 22),
    )
    assert page_count(pdf) == 2
    text = shown_text(pdf)
    assert b"Letter to parents" in text  # one name everywhere: the bot says it too
    # Today's features (bot.features), the term-end rating among them.
    assert b"calendar" in text and b"digest" in text and b"attendance" in text
    assert b"rate each course at term end" in text
    assert b"December 21, 2026" in text  # the code's expiry, in Shanghai
    assert b"November 22, 2026" in text  # the letter's date
    assert "李小明".encode("utf-16-be") in text  # a Chinese name in an English letter


def test_a_long_letter_still_fits_one_page() -> None:
    long_name = "某某市某某区第一实验小学教育集团东校区" * 6
    pdf = render_letters_pdf(SAMPLE, school_name=long_name, translator=translator("zh_CN"))
    assert page_count(pdf) == len(SAMPLE)


def test_nothing_to_print_is_an_error() -> None:
    with pytest.raises(ValueError):
        render_letters_pdf([], school_name="x", translator=translator("en"))


def test_deep_links_and_qr_codes() -> None:
    code = "ABCDEFGHJKMNPQRS"
    assert qr.deep_link(None, code) is None
    assert qr.deep_link("", code) is None
    assert qr.deep_link("@KehouBot ", code) == f"https://t.me/KehouBot?start={code}"
    with pytest.raises(ValueError):
        qr.deep_link("not a bot", code)
    assert qr.qr_png("https://t.me/KehouBot").startswith(b"\x89PNG\r\n\x1a\n")
    matrix = qr.qr_matrix(f"https://t.me/KehouBot?start={code}")
    assert len(matrix) == len(matrix[0]) >= 21
    # The finder pattern: a dark 7-module square ring in the top-left corner, no quiet zone.
    assert matrix[0][:8] == [True] * 7 + [False]
    assert [row[0] for row in matrix[:7]] == [True] * 7
    assert matrix[1][1:6] == [False] * 5
