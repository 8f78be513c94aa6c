"""The `kehou` command as an operator uses it, each run in its own process."""

from __future__ import annotations

import csv
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

from bot.services import invites
from bot.services.invites import InvitePreview
from storage.db import Database

DEMO = Path(__file__).resolve().parent.parent / "bot" / "demo" / "school.yaml"
KEHOU = str(Path(sys.executable).with_name("kehou"))


def kehou(*args: str, cwd: Path, **env: str) -> subprocess.CompletedProcess[str]:
    clean = {k: v for k, v in os.environ.items() if not k.startswith(("KEHOU_", "TELEGRAM_"))}
    return subprocess.run(
        [KEHOU, *args], cwd=cwd, env={**clean, **env}, capture_output=True, text=True, timeout=300
    )


def test_run_without_a_token_says_what_to_do(tmp_path: Path) -> None:
    result = kehou("run", cwd=tmp_path)
    assert result.returncode == 2
    assert "TELEGRAM_BOT_TOKEN" in result.stderr and "BotFather" in result.stderr
    assert "Traceback" not in result.stderr


def test_a_bad_setting_is_one_line(tmp_path: Path) -> None:
    result = kehou("migrate", cwd=tmp_path, KEHOU_TIMEZONE="Mars/Olympus")
    assert result.returncode == 2
    assert result.stderr.strip().splitlines() == [
        "kehou: configuration error: KEHOU_TIMEZONE: unknown time zone 'Mars/Olympus'"
    ]


@pytest.fixture(scope="module")
def imported(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A working folder where the demo school has been imported into the default database."""
    folder = tmp_path_factory.mktemp("operator")
    result = kehou("import", str(DEMO), cwd=folder)
    assert result.returncode == 0, result.stderr
    assert (folder / "kehou.sqlite3").is_file()
    return folder


async def test_admin_invite_prints_a_code_that_works(imported: Path) -> None:
    result = kehou(
        "invite", "admin", "--school", "heqing", cwd=imported, KEHOU_BOT_USERNAME="hq_bot"
    )
    assert result.returncode == 0, result.stderr
    code = re.search(r"/start ([0-9A-Z]{16})", result.stdout)
    assert code is not None
    assert f"https://t.me/hq_bot?start={code.group(1)}" in result.stdout
    assert (imported / "invites" / "admin-invite.png").read_bytes().startswith(b"\x89PNG")
    db = Database(f"sqlite+aiosqlite:///{imported}/kehou.sqlite3")
    try:
        async with db.transaction() as session:
            preview = await invites.inspect(session, 4242, code.group(1))
    finally:
        await db.dispose()
    assert isinstance(preview, InvitePreview) and preview.school_name == "河清实验学校"


def test_parent_letters_and_csv_per_class(imported: Path) -> None:
    out = imported / "letters"
    result = kehou(
        "invite",
        "parents",
        "--school",
        "heqing",
        "--class",
        "1-1",
        "--out",
        str(out),
        cwd=imported,
    )
    assert result.returncode == 0, result.stderr
    with (out / "parents-1-1.csv").open(encoding="utf-8-sig") as fp:
        rows = list(csv.DictReader(fp))
    assert len(rows) >= 20
    assert all(re.fullmatch(r"([0-9A-Z]{4}-){3}[0-9A-Z]{4}", r["code"]) for r in rows)
    pdf = (out / "letters-1-1.pdf").read_bytes()
    assert pdf.startswith(b"%PDF")
    assert len(re.findall(rb"/Type /Page\b", pdf)) == len(rows)


def test_unknown_class_issues_nothing(imported: Path) -> None:
    result = kehou(
        "invite",
        "parents",
        "--school",
        "heqing",
        "--class",
        "9-99",
        "--out",
        str(imported / "none"),
        cwd=imported,
    )
    assert result.returncode == 1
    assert "9-99" in result.stderr
    assert not list((imported / "none").glob("*.csv"))


def test_teacher_codes(imported: Path) -> None:
    result = kehou("invite", "teachers", "--school", "heqing", "--out", "t", cwd=imported)
    assert result.returncode == 0, result.stderr
    with (imported / "t" / "teachers.csv").open(encoding="utf-8-sig") as fp:
        rows = list(csv.DictReader(fp))
    assert rows and all(len(r["code"]) == 19 for r in rows)


def test_an_import_warning_is_a_line_of_its_own(tmp_path: Path) -> None:
    (tmp_path / "students.csv").write_bytes((DEMO.parent / "students.csv").read_bytes())
    text = DEMO.read_text(encoding="utf-8")
    # One provider's contract ends before the term does: a warning, not an error.
    text = text.replace("contract_ends_on: 2027-01-31", "contract_ends_on: 2026-12-31", 1)
    (tmp_path / "school.yaml").write_text(text, encoding="utf-8")
    result = kehou("import", "school.yaml", cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    assert result.stdout.endswith("\n")
    warnings = [line for line in result.stdout.splitlines() if "warning" in line]
    assert len(warnings) == 1
    assert re.fullmatch(
        r"warning: school\.yaml:\d+ providers: the contract with 'QIZHI' ends on 2026-12-31, "
        r"before the term ends \(\d{4}-\d\d-\d\d\)",
        warnings[0],
    )
