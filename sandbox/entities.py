"""Telegram's text formatting: HTML parse mode to plain text and entities, and back to safe HTML.

Offsets and lengths of entities are in UTF-16 code units, as in the Bot API: an emoji outside
the Basic Multilingual Plane counts two, a Chinese character one. The HTML parser follows the
rules of TDLib (which the Bot API server uses), including its error messages, so a bot that
works here formats the same way on Telegram.
"""

from __future__ import annotations

import html
import re
from dataclasses import dataclass
from typing import Any

Entity = dict[str, Any]

# TDLib's notion of a space inside tags.
_TAG_SPACE = " \t\r\n\v\f\0"
# What Telegram trims from both ends of a message.
_TRIM = " \t\r\n\v\f"
_SPECIAL = re.compile(r"[<&]")
_ASTRAL = re.compile("[\U00010000-\U0010ffff]")
_NAMED = {"lt": "<", "gt": ">", "amp": "&", "quot": '"'}
_ENTITY_REF = re.compile(r"&(?:#[xX]([0-9a-fA-F]{1,8})|#([0-9]{1,10})|([a-zA-Z]{2,4}));")
_TAGS = frozenset(
    "a b strong i em s strike del u ins tg-spoiler tg-emoji span pre code blockquote".split()
)
_SIMPLE = {
    "b": "bold",
    "strong": "bold",
    "i": "italic",
    "em": "italic",
    "s": "strikethrough",
    "strike": "strikethrough",
    "del": "strikethrough",
    "u": "underline",
    "ins": "underline",
    "tg-spoiler": "spoiler",
    "span": "spoiler",
}
# TDLib sorts entities that start together by length (longest first), then by this priority.
_PRIORITY = {
    "blockquote": 0,
    "expandable_blockquote": 0,
    "pre": 10,
    "code": 20,
    "text_link": 49,
    "text_mention": 49,
    "bold": 90,
    "italic": 91,
    "underline": 92,
    "strikethrough": 93,
    "spoiler": 94,
    "custom_emoji": 99,
}
# Auto-detected entities may not overlap these.
_OPAQUE = frozenset({"code", "pre", "text_link", "text_mention", "custom_emoji"})
_LINK_SCHEMES = ("http", "https", "tg", "ton", "tonsite")
_SCHEME = re.compile(r"([A-Za-z][A-Za-z0-9+-]*):")
_USER_LINK = re.compile(r"tg://user\?id=(\d{1,20})$", re.IGNORECASE)
# Entities Telegram finds in any text by itself (a subset: no bare domains, phones, cashtags).
_DETECT = re.compile(
    # URLs end at spaces and at CJK or full-width punctuation (，。！）…).
    '(?P<url>(?<![A-Za-z0-9])https?://[^\\s<>"\u3000-\u303f\uff00-\uffef]+)'
    r"|(?P<email>(?<![A-Za-z0-9._%+-])[A-Za-z0-9._%+-]+@[A-Za-z0-9-]+(?:\.[A-Za-z0-9-]+)*"
    r"\.[A-Za-z]{2,}(?![A-Za-z0-9]))"
    r"|(?P<bot_command>(?<![A-Za-z0-9_/<>])/[A-Za-z0-9_]{1,64}(?:@[A-Za-z0-9_]{3,32})?"
    r"(?![A-Za-z0-9_/]))"
    r"|(?P<mention>(?<![A-Za-z0-9_@])@[A-Za-z0-9_]{4,32}(?![A-Za-z0-9_@]))"
    r"|(?P<hashtag>(?<![\w#])#\w*[^\W\d]\w*)"
)
_URL_TAIL = ".,;:!?)]}'\""


class EntityParseError(ValueError):
    """The text cannot be parsed; the message is TDLib's, for "can't parse entities: ..."."""


@dataclass
class _Open:
    tag: str
    argument: str
    offset: int  # UTF-16 offset of the entity's start in the plain text
    chunk: int  # index of the first output chunk inside the tag
    flag: bool = False  # <blockquote expandable>


def utf16_len(text: str) -> int:
    if text.isascii():
        return len(text)
    return len(text.encode("utf-16-le")) // 2


def parse_html(
    source: str, users: dict[int, dict[str, Any]] | None = None
) -> tuple[str, list[Entity]]:
    """Parse Telegram HTML into plain text and entities (unsorted, untrimmed).

    `users` resolves `tg://user?id=N` links to text mentions; unknown users lose the link.
    """
    out: list[str] = []
    u16 = 0
    stack: list[_Open] = []
    entities: list[Entity] = []
    pos = 0
    n = len(source)
    while pos < n:
        match = _SPECIAL.search(source, pos)
        end = match.start() if match else n
        if end > pos:
            chunk = source[pos:end]
            out.append(chunk)
            u16 += utf16_len(chunk)
        if match is None:
            break
        pos = end
        if source[pos] == "&":
            char, pos = _decode_reference(source, pos)
            out.append(char)
            u16 += utf16_len(char)
            continue
        if pos + 1 < n and source[pos + 1] == "/":
            pos = _close_tag(source, pos, stack, entities, out, u16, users)
        else:
            opened, pos = _open_tag(source, pos)
            opened.offset, opened.chunk = u16, len(out)
            stack.append(opened)
    if stack:
        raise EntityParseError(f'Can\'t find end tag corresponding to start tag "{stack[-1].tag}"')
    for entity in entities:
        entity.pop("_language", None)
    return "".join(out), entities


def _byte_offset(source: str, index: int) -> int:
    return len(source[:index].encode("utf-8"))


def _decode_reference(source: str, pos: int) -> tuple[str, int]:
    """A character reference at pos, or a literal '&' when it is not one Telegram knows."""
    match = _ENTITY_REF.match(source, pos)
    if match:
        hex_digits, decimal, name = match.groups()
        if name is not None:
            if name in _NAMED:
                return _NAMED[name], match.end()
        else:
            code = int(hex_digits, 16) if hex_digits else int(decimal)
            if 0 < code <= 0x10FFFF and not 0xD800 <= code <= 0xDFFF:
                return chr(code), match.end()
    return "&", pos + 1


def _unescape(text: str) -> str:
    if "&" not in text:
        return text
    out, pos = [], 0
    while (amp := text.find("&", pos)) >= 0:
        out.append(text[pos:amp])
        char, pos = _decode_reference(text, amp)
        out.append(char)
    out.append(text[pos:])
    return "".join(out)


def _scan_name(source: str, pos: int) -> int:
    while pos < len(source) and source[pos] not in _TAG_SPACE and source[pos] != ">":
        pos += 1
    return pos


def _skip_spaces(source: str, pos: int) -> int:
    while pos < len(source) and source[pos] in _TAG_SPACE:
        pos += 1
    return pos


def _open_tag(source: str, begin: int) -> tuple[_Open, int]:
    """Parse a start tag at `begin` ('<'); returns the open tag and the position after '>'."""
    n = len(source)
    pos = _scan_name(source, begin + 1)
    if pos >= n:
        raise EntityParseError(f"Unclosed start tag at byte offset {_byte_offset(source, begin)}")
    tag = source[begin + 1 : pos].lower()
    if tag not in _TAGS:
        raise EntityParseError(
            f'Unsupported start tag "{tag}" at byte offset {_byte_offset(source, begin)}'
        )
    opened = _Open(tag, "", 0, 0)
    while True:
        pos = _skip_spaces(source, pos)
        if pos >= n:
            raise EntityParseError(
                f"Unclosed start tag at byte offset {_byte_offset(source, begin)}"
            )
        if source[pos] == ">":
            break
        pos = _attribute(source, begin, pos, opened)
    if tag == "span" and opened.argument != "spoiler":
        raise EntityParseError(
            f'Tag "span" must have class "tg-spoiler" at byte offset {_byte_offset(source, begin)}'
        )
    return opened, pos + 1


def _attribute(source: str, begin: int, pos: int, opened: _Open) -> int:
    """Parse one attribute of a start tag; keeps the ones Telegram uses."""
    n = len(source)
    start = pos
    while pos < n and source[pos] not in _TAG_SPACE and source[pos] not in "=>":
        pos += 1
    name = source[start:pos].lower()
    if not name:
        raise EntityParseError(
            f'Empty attribute name in the tag "{opened.tag}" at byte offset '
            f"{_byte_offset(source, begin)}"
        )
    pos = _skip_spaces(source, pos)
    if pos < n and source[pos] != "=" and opened.tag == "blockquote" and name == "expandable":
        opened.flag = True
        return pos
    if pos >= n or source[pos] != "=":
        raise EntityParseError(
            f'Expected equal sign in declaration of an attribute of the tag "{opened.tag}" at '
            f"byte offset {_byte_offset(source, begin)}"
        )
    pos = _skip_spaces(source, pos + 1)
    if pos >= n:
        raise EntityParseError(f"Unclosed start tag at byte offset {_byte_offset(source, begin)}")
    if source[pos] in "'\"":
        quote = source[pos]
        close = source.find(quote, pos + 1)
        close = n if close < 0 else close
        value = _unescape(source[pos + 1 : close])
        pos = min(close + 1, n)
    else:
        start = pos
        while pos < n and (source[pos].isalnum() or source[pos] in ".-"):
            pos += 1
        value = source[start:pos].lower()
        if pos < n and source[pos] not in _TAG_SPACE and source[pos] != ">":
            raise EntityParseError(
                f"Unexpected end of name token at byte offset {_byte_offset(source, start)}"
            )
    if pos >= n:
        raise EntityParseError(f"Unclosed start tag at byte offset {_byte_offset(source, begin)}")
    _keep_attribute(opened, name, value)
    return pos


def _keep_attribute(opened: _Open, name: str, value: str) -> None:
    tag = opened.tag
    if tag == "a" and name == "href":
        opened.argument = value
    elif tag == "code" and name == "class" and value.startswith("language-"):
        opened.argument = value[len("language-") :]
    elif tag == "span" and name == "class" and value.startswith("tg-"):
        opened.argument = value[len("tg-") :]
    elif tag == "tg-emoji" and name == "emoji-id":
        opened.argument = value


def _close_tag(
    source: str,
    begin: int,
    stack: list[_Open],
    entities: list[Entity],
    out: list[str],
    u16: int,
    users: dict[int, dict[str, Any]] | None,
) -> int:
    """Parse an end tag at `begin` ('</'), add the entity it closes; returns the position after."""
    if not stack:
        raise EntityParseError(f"Unexpected end tag at byte offset {_byte_offset(source, begin)}")
    pos = _scan_name(source, begin + 2)
    name = source[begin + 2 : pos].lower()
    opened = stack[-1]
    if name and name != opened.tag:
        raise EntityParseError(
            f"Unmatched end tag at byte offset {_byte_offset(source, begin)}, "
            f'expected "</{opened.tag}>", found "</{name}>"'
        )
    pos = _skip_spaces(source, pos)
    if pos >= len(source) or source[pos] != ">":
        raise EntityParseError(f"Unclosed end tag at byte offset {_byte_offset(source, begin)}")
    stack.pop()
    length = u16 - opened.offset
    if length > 0:
        entity = _entity_for(opened, length, entities, "".join(out[opened.chunk :]), users)
        if entity is not None:
            entities.append(entity)
    return pos + 1


def _entity_for(
    opened: _Open,
    length: int,
    entities: list[Entity],
    inner_text: str,
    users: dict[int, dict[str, Any]] | None,
) -> Entity | None:
    offset, tag = opened.offset, opened.tag
    base: Entity = {"offset": offset, "length": length}
    if tag in _SIMPLE:
        return {**base, "type": _SIMPLE[tag]}
    if tag == "blockquote":
        return {**base, "type": "expandable_blockquote" if opened.flag else "blockquote"}
    if tag == "code":
        return {**base, "type": "code", "_language": opened.argument}
    if tag == "pre":
        # <pre><code class="language-x">…</code></pre> is one pre entity with a language.
        last = entities[-1] if entities else None
        if (
            last
            and last["type"] == "code"
            and (last["offset"], last["length"])
            == (
                offset,
                length,
            )
        ):
            entities.pop()
            if last["_language"]:
                return {**base, "type": "pre", "language": last["_language"]}
        return {**base, "type": "pre"}
    if tag == "tg-emoji":
        if not opened.argument.isdigit():
            raise EntityParseError("Invalid custom emoji identifier specified")
        return {**base, "type": "custom_emoji", "custom_emoji_id": opened.argument}
    return _link_entity(base, opened.argument or inner_text, users)


def _link_entity(base: Entity, url: str, users: dict[int, dict[str, Any]] | None) -> Entity | None:
    mention = _USER_LINK.match(url)
    if mention:
        user = (users or {}).get(int(mention.group(1)))
        return {**base, "type": "text_mention", "user": user} if user else None
    checked = check_link(url)
    return {**base, "type": "text_link", "url": checked} if checked else None


def check_link(url: str) -> str | None:
    """A link Telegram accepts, normalised as it does (no scheme means http), else None."""
    url = url.strip()
    if not url or any(c in url for c in ' \t\r\n<>"'):
        return None
    scheme_match = _SCHEME.match(url)
    if scheme_match is None:
        url = "http://" + url
    elif scheme_match.group(1).lower() not in _LINK_SCHEMES:
        return None  # javascript:, data:, file: …
    if "://" not in url:
        return url if url.lower().startswith("tg:") else None
    scheme, _, rest = url.partition("://")
    if not rest:
        return None
    if scheme.lower() in ("http", "https") and "/" not in rest:
        url += "/"
    return url


def sort_entities(entities: list[Entity]) -> list[Entity]:
    return sorted(
        entities, key=lambda e: (e["offset"], -e["length"], _PRIORITY.get(e["type"], 50))
    )


def trim(text: str, entities: list[Entity]) -> tuple[str, list[Entity]]:
    """Strip whitespace at both ends as Telegram does, moving and clipping the entities."""
    stripped = text.strip(_TRIM)
    if stripped == text:
        return text, entities
    # The trimmed characters are ASCII: one UTF-16 unit each.
    lead = len(text) - len(text.lstrip(_TRIM))
    return stripped, clip(entities, utf16_len(stripped), lead)


def clip(entities: list[Entity], size: int, shift: int = 0) -> list[Entity]:
    """Entities moved left by `shift` and clipped to [0, size); empty ones are dropped."""
    kept = []
    for entity in entities:
        start = max(entity["offset"] - shift, 0)
        end = min(entity["offset"] + entity["length"] - shift, size)
        if end > start:
            kept.append({**entity, "offset": start, "length": end - start})
    return kept


def _utf16_offsets(text: str) -> list[int] | None:
    """UTF-16 offset of every character index (and the end), or None when they are equal."""
    if not _ASTRAL.search(text):
        return None
    offsets = [0] * (len(text) + 1)
    total = 0
    for index, char in enumerate(text):
        offsets[index] = total
        total += 2 if ord(char) > 0xFFFF else 1
    offsets[len(text)] = total
    return offsets


def detect(text: str, existing: list[Entity]) -> list[Entity]:
    """The entities Telegram finds by itself: commands, links, mentions, hashtags, e-mails.

    Those inside code, pre or explicit links are not found, as on Telegram.
    """
    if not any(c in text for c in "/@#:"):
        return []
    offsets = _utf16_offsets(text)
    blocked = [(e["offset"], e["offset"] + e["length"]) for e in existing if e["type"] in _OPAQUE]
    found: list[Entity] = []
    for match in _DETECT.finditer(text):
        kind = match.lastgroup or ""
        start, end = match.span()
        if kind == "url":
            while end > start and text[end - 1] in _URL_TAIL:
                end -= 1
        if offsets is not None:
            start, end = offsets[start], offsets[end]
        if any(start < b_end and b_start < end for b_start, b_end in blocked):
            continue
        found.append({"offset": start, "length": end - start, "type": kind})
    return found


def command_entities(text: str) -> list[Entity]:
    """What a Telegram client marks in a person's message (commands, links, mentions…)."""
    return sort_entities(detect(text, []))


def validate_entities(raw: Any, size: int) -> list[Entity]:
    """Entities a bot sent explicitly, checked and clipped to the text; ValueError if malformed."""
    if not isinstance(raw, list):
        raise ValueError("entities must be a list")
    kept: list[Entity] = []
    for item in raw:
        if not isinstance(item, dict):
            raise ValueError("an entity must be an object")
        kind, offset, length = item.get("type"), item.get("offset"), item.get("length")
        if not isinstance(kind, str) or not isinstance(offset, int) or not isinstance(length, int):
            raise ValueError("an entity needs type, offset and length")
        if offset < 0 or length < 0:
            raise ValueError("an entity's offset and length must not be negative")
        entity: Entity = {"offset": offset, "length": length, "type": kind}
        for key in ("url", "user", "language", "custom_emoji_id"):
            if key in item:
                entity[key] = item[key]
        kept.append(entity)
    return clip(kept, size)


# ---------------------------------------------------------------------------------------------
# Entities to HTML, for the web page


_HTML_TAGS = {
    "bold": "b",
    "italic": "i",
    "underline": "u",
    "strikethrough": "s",
    "code": "code",
    "blockquote": "blockquote",
}
_SAFE_SCHEMES = ("http://", "https://", "mailto:", "tg://")


def _escape(text: str) -> str:
    return html.escape(text, quote=False).replace("\n", "<br>")


def _href(url: str) -> str | None:
    return html.escape(url, quote=True) if url.lower().startswith(_SAFE_SCHEMES) else None


def _open_html(entity: Entity, inner: str) -> tuple[str, str]:
    """The opening and closing HTML for one entity; ("", "") for entities shown as plain text."""
    kind = entity["type"]
    if kind in _HTML_TAGS:
        tag = _HTML_TAGS[kind]
        return f"<{tag}>", f"</{tag}>"
    if kind == "pre":
        language = entity.get("language")
        if language:
            css = html.escape(f"language-{language}", quote=True)
            return f'<pre><code class="{css}">', "</code></pre>"
        return "<pre>", "</pre>"
    if kind == "spoiler":
        return '<span class="spoiler">', "</span>"
    if kind == "expandable_blockquote":
        return '<blockquote class="expandable">', "</blockquote>"
    href = None
    if kind == "text_link":
        href = _href(str(entity.get("url", "")))
    elif kind == "url":
        href = _href(inner if "://" in inner else f"http://{inner}")
    elif kind == "email":
        href = _href(f"mailto:{inner}")
    if href is not None:
        return f'<a href="{href}" target="_blank" rel="noopener noreferrer">', "</a>"
    if kind in ("bot_command", "mention", "hashtag", "text_mention"):
        return f'<span class="{kind}">', "</span>"
    return "", ""


def to_html(text: str, entities: list[Entity] | None) -> str:
    """Render text with its entities as HTML; everything that is not an entity is escaped."""
    if not entities:
        return _escape(text)
    offsets = _utf16_offsets(text)
    if offsets is None:
        index_of = None
    else:
        index_of = {u16: index for index, u16 in enumerate(offsets)}
    size = len(text)

    def index(u16: int) -> int:
        if index_of is None:
            return min(u16, size)
        while u16 not in index_of and u16 > 0:  # an offset inside a surrogate pair
            u16 -= 1
        return index_of.get(u16, 0)

    spans = []
    for entity in sort_entities(entities):
        start, end = index(entity["offset"]), index(entity["offset"] + entity["length"])
        if end > start:
            opening, closing = _open_html(entity, text[start:end])
            spans.append((start, end, opening, closing))
    return _render_spans(text, spans)


def _render_spans(text: str, spans: list[tuple[int, int, str, str]]) -> str:
    """Nest the spans properly: one that ends inside another is closed and reopened around."""
    points = sorted({0, len(text)} | {s[0] for s in spans} | {s[1] for s in spans})
    starts: dict[int, list[tuple[int, int, str, str]]] = {}
    for span in spans:
        starts.setdefault(span[0], []).append(span)
    out: list[str] = []
    stack: list[tuple[int, int, str, str]] = []
    for here, following in zip(points, [*points[1:], len(text)], strict=True):
        ending = [i for i, span in enumerate(stack) if span[1] <= here]
        if ending:
            lowest = ending[0]
            out.extend(span[3] for span in reversed(stack[lowest:]))
            reopened = [span for span in stack[lowest:] if span[1] > here]
            del stack[lowest:]
            for span in reopened:
                out.append(span[2])
                stack.append(span)
        for span in starts.get(here, []):
            out.append(span[2])
            stack.append(span)
        out.append(_escape(text[here:following]))
    out.extend(span[3] for span in reversed(stack))
    return "".join(out)
