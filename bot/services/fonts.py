"""The CJK font that Kehou's PDFs and charts are drawn with.

ReportLab embeds TrueType outlines only (it refuses Noto Sans CJK's PostScript outlines), so
the font is WenQuanYi Micro Hei, Debian's `fonts-wqy-microhei`; `KEHOU_CJK_FONT` names another
TrueType file (.ttf or .ttc). Without one, PDFs fall back to a CID font every PDF reader knows
(nothing embedded) and charts to any CJK font matplotlib finds; `cjk_font()` is None then and
the README says how to install the font.
"""

from __future__ import annotations

import functools
import os
from pathlib import Path

ENV = "KEHOU_CJK_FONT"
PLACES = (
    Path("/usr/share/fonts/truetype/wqy/wqy-microhei.ttc"),
    Path("/usr/share/fonts/truetype/wqy/wqy-zenhei.ttc"),
    Path("/usr/share/fonts/wqy-microhei/wqy-microhei.ttc"),  # Fedora, Arch
)


@functools.cache
def cjk_font() -> Path | None:
    """The TrueType CJK font file to draw with, or None when the machine has none."""
    named = os.environ.get(ENV)
    if named:
        path = Path(named)
        if not path.is_file():
            raise FileNotFoundError(f"{ENV}={named}: no such font file")
        return path
    return next((path for path in PLACES if path.is_file()), None)
