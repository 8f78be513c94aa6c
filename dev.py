#!/usr/bin/env python3
"""Set-up and everyday commands for a fresh machine that has only Python 3.11+ and pip.

    python3 dev.py start   # install into .venv if needed, then bring up the demo (no token needed)
    python3 dev.py test    # install into .venv if needed, then run the whole test suite
    python3 dev.py catalogs  # after changing user-visible text: refresh locales/*.po

Extra arguments after `test` go to pytest; after `start`, to `kehou demo` (e.g. --port 9000).
To run the real bot against Telegram, use `.venv/bin/kehou run` (see the README).
"""

from __future__ import annotations

import hashlib
import os
import subprocess
import sys
import venv
from pathlib import Path

ROOT = Path(__file__).resolve().parent
VENV = ROOT / ".venv"
BIN = VENV / ("Scripts" if os.name == "nt" else "bin")
STAMP = VENV / ".kehou-installed"


def ensure_installed() -> None:
    """Create .venv and install Kehou with its test tools, again only when pyproject changes."""
    if sys.version_info < (3, 11):  # noqa: UP036 - dev.py must say this even on an old Python
        sys.exit("Kehou needs Python 3.11 or newer; this is " + sys.version.split()[0])
    wanted = hashlib.sha256((ROOT / "pyproject.toml").read_bytes()).hexdigest()
    if STAMP.is_file() and STAMP.read_text() == wanted:
        return
    if not (BIN / "python").exists():
        print("creating .venv …", flush=True)
        venv.EnvBuilder(with_pip=True).create(VENV)
    print("installing Kehou and its dependencies into .venv …", flush=True)
    pip = [str(BIN / "python"), "-m", "pip", "--disable-pip-version-check", "-q"]
    subprocess.run([*pip, "install", "-e", f"{ROOT}[dev]"], check=True)
    STAMP.write_text(wanted)


def update_catalogs() -> int:
    """Extract messages, merge them into every catalog, and mirror English msgids as msgstrs.

    The code's msgids are English, so the English catalog is the identity; keeping it filled
    lets the tests insist that no catalog has an untranslated message.
    """
    pybabel = str(BIN / "pybabel")
    pot = ROOT / "locales" / "messages.pot"
    subprocess.run(
        [
            pybabel,
            "extract",
            "-F",
            "babel.cfg",
            "--no-location",
            "--sort-output",
            "--project",
            "Kehou",
            "-o",
            str(pot),
            ".",
        ],
        cwd=ROOT,
        check=True,
        capture_output=True,
    )
    for locale in ("zh_CN", "en"):
        po = ROOT / "locales" / locale / "LC_MESSAGES" / "messages.po"
        action = "update" if po.exists() else "init"
        subprocess.run(
            [
                pybabel,
                action,
                "-i",
                str(pot),
                "-d",
                "locales",
                "-l",
                locale,
                "--width",
                "99",
                *(["--no-fuzzy-matching", "--ignore-obsolete"] if action == "update" else []),
            ],
            cwd=ROOT,
            check=True,
            capture_output=True,
        )
    fill = (
        "from babel.messages.pofile import read_po, write_po\n"
        "p = 'locales/en/LC_MESSAGES/messages.po'\n"
        "c = read_po(open(p, 'rb'), locale='en')\n"
        "for m in c:\n"
        "    if m.id and not (all(m.string) if isinstance(m.string, tuple) else m.string):\n"
        "        m.string = m.id\n"
        "write_po(open(p, 'wb'), c, omit_header=False, width=99, no_location=True)\n"
    )
    subprocess.run([str(BIN / "python"), "-c", fill], cwd=ROOT, check=True)
    print("catalogs updated; translate the empty msgstr entries in locales/zh_CN")
    return 0


def main(argv: list[str]) -> int:
    if not argv or argv[0] not in ("start", "test", "catalogs"):
        print(__doc__)
        return 2
    ensure_installed()
    command, rest = argv[0], argv[1:]
    if command == "catalogs":
        return update_catalogs()
    if command == "test":
        return subprocess.run([str(BIN / "pytest"), *rest], cwd=ROOT).returncode
    return subprocess.run([str(BIN / "kehou"), "demo", *rest], cwd=ROOT).returncode


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
