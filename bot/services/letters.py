"""Printed parent invitations (致家长的一封信) and the list of codes for the school office.

The school hands each family a letter with a one-time code (POLICY.md, "Communication"). Every
guardian gets a code of their own, so a family with two guardians gets two letters. The plain
codes exist only in what this module writes: the database keeps their hashes.
"""

from __future__ import annotations

import csv
import datetime as dt
import io
import os
import re
from collections.abc import Sequence
from dataclasses import dataclass
from itertools import groupby
from pathlib import Path
from string import Formatter
from xml.sax.saxutils import escape
from zoneinfo import ZoneInfo

from reportlab.lib import colors
from reportlab.lib.enums import TA_CENTER, TA_RIGHT
from reportlab.lib.pagesizes import A4
from reportlab.lib.styles import ParagraphStyle
from reportlab.lib.units import mm
from reportlab.pdfbase import pdfmetrics
from reportlab.pdfbase.cidfonts import UnicodeCIDFont
from reportlab.platypus import (
    Flowable,
    HRFlowable,
    KeepInFrame,
    PageBreak,
    Paragraph,
    SimpleDocTemplate,
    Spacer,
    Table,
    TableStyle,
)
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from bot.features import FEATURES, LETTER
from bot.i18n import Translator
from bot.services import invites, qr
from storage.models import Invite, Role, School, SchoolClass, Student

CJK_FONT = "STSong-Light"  # one of the Adobe CID fonts every PDF reader knows; nothing to embed
LATIN_FONT = "Helvetica"
CODE_FONT = "Courier-Bold"
NAVY = colors.HexColor("#1f3a5f")
CSV_COLUMNS = ("class", "student_no", "student", "code", "link", "expires")
TEACHER_CSV_COLUMNS = ("teacher", "name", "code", "link")


@dataclass(frozen=True)
class ParentInvitation:
    """One guardian's invitation: what goes on one letter and one line of the CSV."""

    student_name: str
    student_no: str
    class_code: str
    class_name: str
    code: str  # plain, 16 characters; print it with invites.pretty()
    deep_link: str | None
    expires_at: dt.datetime  # aware, in the school's time zone


def _natural(text: str) -> tuple[tuple[int, int | str], ...]:
    """A sort key that puts class "3-2" before "3-10"."""
    return tuple(
        (0, int(part)) if part.isdigit() else (1, part) for part in re.split(r"(\d+)", text)
    )


async def issue_parent_invitations(
    session: AsyncSession,
    *,
    school_id: int,
    class_codes: list[str] | None,
    ttl: dt.timedelta,
    actor_label: str = "cli",
    bot_username: str | None = None,
    guardians_per_child: int = 1,
) -> list[ParentInvitation]:
    """Issue parent codes for every active student of the chosen classes (all when None).

    Each guardian needs a code of their own, so `guardians_per_child` codes are issued per
    student. The result is in class order, then by name. Unknown class codes raise ValueError
    before anything is issued. The caller commits.
    """
    if guardians_per_child < 1:
        raise ValueError("guardians_per_child must be at least 1")
    if ttl <= dt.timedelta(0):
        raise ValueError("ttl must be positive: a letter with an expired code is no use")
    timezone_name = await session.scalar(select(School.timezone).where(School.id == school_id))
    if timezone_name is None:
        raise ValueError(f"no school with id {school_id}")
    school_zone = ZoneInfo(timezone_name)

    query = (
        select(Student, SchoolClass)
        .join(SchoolClass, SchoolClass.id == Student.class_id)
        .where(Student.school_id == school_id, Student.active.is_(True))
    )
    if class_codes is not None:
        wanted = list(dict.fromkeys(class_codes))
        known = set(
            await session.scalars(
                select(SchoolClass.code).where(
                    SchoolClass.school_id == school_id, SchoolClass.code.in_(wanted)
                )
            )
        )
        unknown = [code for code in wanted if code not in known]
        if unknown:
            raise ValueError(f"unknown class code(s): {', '.join(unknown)}")
        query = query.where(SchoolClass.code.in_(wanted))
    rows = [(student, school_class) for student, school_class in await session.execute(query)]
    rows.sort(
        key=lambda row: (row[1].grade, _natural(row[1].code), row[0].name, row[0].student_no)
    )

    result = []
    for student, school_class in rows:
        for _ in range(guardians_per_child):
            code = await invites.create_invite(
                session,
                school_id=school_id,
                role=Role.PARENT,
                student_id=student.id,
                ttl=ttl,
                actor_label=actor_label,
            )
            expires_at = await session.scalar(
                select(Invite.expires_at).where(Invite.code_hash == invites.code_hash(code))
            )
            assert expires_at is not None
            result.append(
                ParentInvitation(
                    student_name=student.name,
                    student_no=student.student_no,
                    class_code=school_class.code,
                    class_name=school_class.name,
                    code=code,
                    deep_link=qr.deep_link(bot_username, code),
                    expires_at=expires_at.astimezone(school_zone),
                )
            )
    return result


def write_csv(
    invitations: Sequence[ParentInvitation],
    path: str | os.PathLike[str],
    *,
    timezone: dt.tzinfo | None = None,
) -> None:
    """The school office's list: one row per invitation, in UTF-8 with a BOM for Excel.

    The expiry is the school-local date (the zone `expires_at` carries, unless `timezone` is
    given).
    """
    rows = []
    for invitation in invitations:
        expires = invitation.expires_at
        if timezone is not None:
            expires = expires.astimezone(timezone)
        rows.append(
            (
                invitation.class_name,
                invitation.student_no,
                invitation.student_name,
                invites.pretty(invitation.code),
                invitation.deep_link or "",
                expires.date().isoformat(),
            )
        )
    _write_private_csv(path, CSV_COLUMNS, rows)


def write_teacher_csv(
    rows: Sequence[tuple[str, str, str]],
    path: str | os.PathLike[str],
    *,
    bot_username: str | None = None,
) -> None:
    """Teacher codes: (teacher code, name, invite code) rows, with the deep link."""
    _write_private_csv(
        path,
        TEACHER_CSV_COLUMNS,
        [
            (code, name, invites.pretty(invite), qr.deep_link(bot_username, invite) or "")
            for code, name, invite in rows
        ],
    )


def _write_private_csv(
    path: str | os.PathLike[str], header: Sequence[str], rows: Sequence[Sequence[str]]
) -> None:
    """UTF-8 with a BOM, so Excel on a Chinese Windows opens it right. The file holds live
    codes, so it is created readable by its owner only."""
    fd = os.open(Path(path), os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with open(fd, "w", encoding="utf-8-sig", newline="") as fp:
        writer = csv.writer(fp)
        writer.writerow(header)
        writer.writerows(rows)


# --- the printed letter -----------------------------------------------------------------------


def _register_fonts() -> None:
    if CJK_FONT not in pdfmetrics.getRegisteredFontNames():
        pdfmetrics.registerFont(UnicodeCIDFont(CJK_FONT))
        # Song has no bold face; let <b> fall back to the same face rather than fail.
        pdfmetrics.registerFontFamily(
            CJK_FONT, normal=CJK_FONT, bold=CJK_FONT, italic=CJK_FONT, boldItalic=CJK_FONT
        )


class _QRCode(Flowable):
    """A QR code drawn as filled rectangles, with its quiet zone, `size` points square."""

    def __init__(self, data: str, size: float) -> None:
        super().__init__()
        self.matrix = qr.qr_matrix(data)
        self.size = size
        self.width = self.height = size

    def draw(self) -> None:
        border = 4
        modules = len(self.matrix) + 2 * border
        unit = self.size / modules
        canvas = self.canv
        canvas.setFillColor(colors.black)
        canvas.setStrokeColor(colors.black)
        for y, row in enumerate(self.matrix):
            # One rectangle per run of dark modules: smaller files, no hairline seams.
            x = 0
            while x < len(row):
                if not row[x]:
                    x += 1
                    continue
                start = x
                while x < len(row) and row[x]:
                    x += 1
                canvas.rect(
                    (border + start) * unit,
                    self.size - (border + y + 1) * unit,
                    (x - start) * unit,
                    unit,
                    stroke=0,
                    fill=1,
                )


class _Letter:
    """Styles and text helpers for one language."""

    def __init__(self, translator: Translator) -> None:
        self.t = translator
        self.chinese = translator.locale.startswith("zh")
        self.font = body_font = CJK_FONT if self.chinese else LATIN_FONT
        bold_font = CJK_FONT if self.chinese else "Helvetica-Bold"
        wrap = "CJK" if self.chinese else None
        self.bullet = "●" if self.chinese else "•"
        size = 11
        self.body = ParagraphStyle(
            "body",
            fontName=body_font,
            fontSize=size,
            leading=size * 1.6,
            spaceAfter=4,
            wordWrap=wrap,
            firstLineIndent=2 * size if self.chinese else 0,
        )
        self.plain = ParagraphStyle("plain", parent=self.body, firstLineIndent=0)
        self.step = ParagraphStyle(
            "step",
            parent=self.plain,
            leftIndent=8 * mm,
            bulletIndent=3 * mm,
            bulletFontName=LATIN_FONT,
            spaceAfter=1,
        )
        self.item = ParagraphStyle(
            "item",
            parent=self.step,
            bulletFontName=body_font,
            bulletFontSize=6 if self.chinese else size,
        )
        self.heading = ParagraphStyle(
            "heading",
            parent=self.plain,
            fontName=bold_font,
            fontSize=12.5,
            leading=18,
            spaceBefore=6,
            spaceAfter=3,
            textColor=NAVY,
        )
        self.school = ParagraphStyle(
            "school", parent=self.plain, fontSize=14, leading=20, alignment=TA_CENTER
        )
        self.title = ParagraphStyle(
            "title",
            parent=self.plain,
            fontName=bold_font,
            fontSize=22,
            leading=30,
            alignment=TA_CENTER,
            spaceAfter=2,
        )
        self.label = ParagraphStyle(
            "label", parent=self.plain, fontSize=10, leading=14, textColor=colors.HexColor("#555")
        )
        self.code = ParagraphStyle(
            "code", parent=self.plain, fontName=CODE_FONT, fontSize=21, leading=28, wordWrap=None
        )
        self.caption = ParagraphStyle(
            "caption", parent=self.label, fontSize=9, leading=12, alignment=TA_CENTER
        )
        self.signature = ParagraphStyle("signature", parent=self.plain, alignment=TA_RIGHT)

    def _latin(self, char: str) -> bool:
        """Whether a character is set in Helvetica rather than Song."""
        if self.chinese:  # Chinese punctuation (“”、：) stays full width, in Song
            return " " <= char <= "~"
        try:
            char.encode("cp1252")  # what the standard Helvetica can show
        except UnicodeEncodeError:
            return False
        return True

    def mark(self, text: str) -> str:
        """Plain text as Paragraph markup: escaped, each run in a font that has its glyphs."""
        parts = []
        for latin, run in groupby(text, key=self._latin):
            chunk = escape("".join(run))
            font = LATIN_FONT if latin else CJK_FONT
            parts.append(chunk if font == self.font else f'<font name="{font}">{chunk}</font>')
        return "".join(parts)

    def fill(self, translated: str, **values: str) -> str:
        """A translated message as markup, its {placeholders} replaced by marked-up values."""
        parts = []
        for literal, field, _spec, _conversion in Formatter().parse(translated):
            parts.append(self.mark(literal))
            if field is not None:
                parts.append(values[field])
        return "".join(parts)

    def value(self, text: str, bold: bool = False) -> str:
        """A name or other text from the school's data, to go into a placeholder."""
        marked = self.mark(text)
        return f"<b>{marked}</b>" if bold else marked


def _bot_username(link: str | None) -> str | None:
    if link is None:
        return None
    match = re.fullmatch(r"https://t\.me/([A-Za-z0-9_]+)\?start=.*", link)
    return match.group(1) if match else None


def _one_letter(
    invitation: ParentInvitation,
    letter: _Letter,
    school_name: str,
    issued_on: dt.date,
    width: float,
    disclosure_url: str | None = None,
) -> list[Flowable]:
    t = letter.t
    fill = letter.fill
    child = letter.value(invitation.student_name, bold=True)
    school = letter.value(school_name)
    bot = _bot_username(invitation.deep_link)

    story: list[Flowable] = [
        Paragraph(school, letter.school),
        Paragraph(fill(t.gettext(LETTER)), letter.title),
        HRFlowable(width="100%", thickness=1.2, color=NAVY, spaceAfter=10),
        Paragraph(
            fill(
                t.gettext("Dear parent of {name} ({class_name}),"),
                name=child,
                class_name=letter.value(invitation.class_name),
            ),
            letter.plain,
        ),
        Paragraph(
            fill(
                t.gettext(
                    "{school} runs its after-school service with Kehou, an assistant in the "
                    "Telegram messaging app. With Kehou you can:"
                ),
                school=school,
            ),
            letter.body,
        ),
    ]
    for feature in FEATURES:
        story.append(Paragraph(fill(t.gettext(feature)), letter.item, bulletText=letter.bullet))
    story += [
        Spacer(0, 3),
        Paragraph(
            fill(
                t.gettext(
                    "Taking part in the after-school service is voluntary. Choosing not to take "
                    "part will never count against your child."
                )
            ),
            letter.body,
        ),
    ]
    if disclosure_url is not None:
        # The public schedule and fee standards (收费公示): what may be charged, and for what.
        story.append(
            Paragraph(
                fill(
                    t.gettext(
                        "The school's after-school schedule and its disclosed fee standards are "
                        "published at {address}"
                    ),
                    address=f'<font name="{LATIN_FONT}">{escape(disclosure_url)}</font>',
                ),
                letter.body,
            )
        )
    story.append(Paragraph(fill(t.gettext("How to join")), letter.heading))
    steps = [fill(t.gettext("Install Telegram on your phone and sign in."))]
    if bot is not None:
        steps += [
            fill(
                t.gettext(
                    "Scan the QR code below with your phone's camera. Or search for @{bot} in "
                    "Telegram and open it."
                ),
                bot=letter.mark(bot),
            ),
            fill(
                t.gettext(
                    "Tap Start. If you scanned the QR code, your code is sent for you; "
                    "otherwise send /start and then type the invitation code below."
                )
            ),
        ]
    else:
        steps += [
            fill(
                t.gettext(
                    "Search Telegram for the school's Kehou bot (your child's head teacher can "
                    "tell you its name), open it and send /start."
                )
            ),
            fill(t.gettext("When Kehou asks for it, type the invitation code below.")),
        ]
    steps.append(
        fill(
            t.gettext(
                "Read the privacy notice and give your consent. Your account is then linked to "
                "{name}."
            ),
            name=child,
        )
    )
    for number, step in enumerate(steps, start=1):
        story.append(Paragraph(step, letter.step, bulletText=f"{number}."))
    story += [
        Spacer(0, 8),
        _code_box(invitation, letter, width),
        Paragraph(fill(t.gettext("Your child's personal information")), letter.heading),
    ]
    for paragraph in (
        t.gettext(
            "Kehou keeps only the information the after-school service needs. At any time you "
            "can see everything Kehou holds about you by sending /mydata, and delete it by "
            "sending /forget."
        ),
        t.gettext(
            "This code is for one guardian only. If another guardian also wants to join, "
            "please ask the school for a separate code."
        ),
        t.gettext(
            "Please keep this code private and do not share it in group chats: whoever has it "
            "can link their Telegram account to your child. If it is lost, ask the school to "
            "cancel it and issue a new one."
        ),
        t.gettext(
            "If you have any questions, please contact your child's head teacher. Thank you "
            "for your support!"
        ),
    ):
        story.append(Paragraph(fill(paragraph), letter.body))
    story += [
        Spacer(0, 10),
        Paragraph(school, letter.signature),
        Paragraph(letter.mark(t.date(issued_on, format="long")), letter.signature),
    ]
    return story


def _code_box(invitation: ParentInvitation, letter: _Letter, width: float) -> Table:
    """The code, its validity and (with a link) the QR code, framed so it stands out."""
    t = letter.t
    expires = t.date(invitation.expires_at.astimezone(t.timezone).date(), format="long")
    details = [
        Paragraph(letter.fill(t.gettext("Invitation code")), letter.label),
        Paragraph(escape(invites.pretty(invitation.code)), letter.code),
        Paragraph(
            letter.fill(
                t.gettext("Valid until {date}. Each code can be used only once."),
                date=letter.mark(expires),
            ),
            letter.label,
        ),
    ]
    if invitation.deep_link is not None:
        picture: list[Flowable] = [
            _QRCode(invitation.deep_link, 36 * mm),
            Paragraph(letter.fill(t.gettext("Scan with your phone's camera")), letter.caption),
        ]
        cells = [[details, picture]]
        widths = [width - 44 * mm, 44 * mm]
    else:
        cells = [[details]]
        widths = [width]
    table = Table(cells, colWidths=widths)
    table.setStyle(
        TableStyle(
            [
                ("BOX", (0, 0), (-1, -1), 0.8, NAVY),
                ("BACKGROUND", (0, 0), (0, 0), colors.HexColor("#f3f6fa")),
                ("VALIGN", (0, 0), (-1, -1), "MIDDLE"),
                ("ALIGN", (-1, 0), (-1, 0), "CENTER"),
                ("LEFTPADDING", (0, 0), (-1, -1), 10),
                ("RIGHTPADDING", (0, 0), (-1, -1), 8),
                ("TOPPADDING", (0, 0), (-1, -1), 8),
                ("BOTTOMPADDING", (0, 0), (-1, -1), 8),
            ]
        )
    )
    return table


def render_letters_pdf(
    invitations: Sequence[ParentInvitation],
    *,
    school_name: str,
    translator: Translator,
    issued_on: dt.date | None = None,
    disclosure_url: str | None = None,
) -> bytes:
    """One A4 page per invitation: the letter to parents, in the translator's language.

    `disclosure_url` (`bot.web.disclosure_url`) is printed in the letter when given: the public
    page with the school's schedule and fee standards.

    `issued_on` is the date printed under the school's name; today in the school's zone by
    default. A letter that would run long is shrunk to fit, never continued on a second page.
    """
    if not invitations:
        raise ValueError("no invitations to print")
    _register_fonts()
    letter = _Letter(translator)
    issued_on = issued_on or dt.datetime.now(translator.timezone).date()
    buffer = io.BytesIO()
    document = SimpleDocTemplate(
        buffer,
        pagesize=A4,
        leftMargin=22 * mm,
        rightMargin=22 * mm,
        topMargin=18 * mm,
        bottomMargin=16 * mm,
        title=translator.gettext(LETTER),
        author=school_name,
        creator="Kehou",
    )
    story: list[Flowable] = []
    for index, invitation in enumerate(invitations):
        if index:
            story.append(PageBreak())
        story.append(
            KeepInFrame(
                document.width,
                document.height,
                _one_letter(
                    invitation,
                    letter,
                    school_name,
                    issued_on,
                    document.width,
                    disclosure_url,
                ),
                mode="shrink",
            )
        )
    document.build(story)
    return buffer.getvalue()
