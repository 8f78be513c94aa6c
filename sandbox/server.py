"""The sandbox over HTTP: a Bot API-compatible server, its files, the page API and the page.

python-telegram-bot talks to it unchanged::

    ApplicationBuilder().token(token).base_url(f"{url}/bot").base_file_url(f"{url}/file/bot")

- ``POST|GET /bot{token}/{method}``: the Bot API (JSON body, form or multipart), with
  Telegram's answers and errors, flood limits (`Limits`) and injected faults (`Faults`);
- ``GET /file/bot{token}/{file_path}``: files, as `getFile` names them;
- ``/sandbox/api/…``: what the web page uses (see `sandbox/web/`), ``/sandbox/files/{file_id}``;
- ``/`` and ``/static/…``: the page itself, when `sandbox/web/` has it.
"""

from __future__ import annotations

import asyncio
import copy
import functools
import json
import time
import urllib.parse
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from aiohttp import BodyPartReader, hdrs, web

from sandbox import media
from sandbox.botapi import Answer
from sandbox.core import Sandbox, SandboxError
from sandbox.limits import Faults, Limits, settings_dict, update_settings
from sandbox.model import JSON, ApiError, Params, Upload, bad_request

__all__ = ["Faults", "Limits", "Sandbox", "SandboxError", "create_app", "run_sandbox"]

SANDBOX = web.AppKey("sandbox", Sandbox)
PAGE_STRINGS = web.AppKey("page_strings", dict)
WEB_DIR = Path(__file__).resolve().parent / "web"
MAX_BODY = media.MAX_UPLOAD_BYTES + (1 << 20)
MAX_EVENT_WAIT = 60.0
MAX_PHOTOS = 10  # pictures a person sends at once: one album
STRINGS_PLACEHOLDER = "__STRINGS__"  # in index.html: where the page's strings go
_dumps = functools.partial(json.dumps, ensure_ascii=False, separators=(",", ":"))


def create_app(
    sandbox: Sandbox, *, page_strings: Mapping[str, Any] | None = None
) -> web.Application:
    """The sandbox's web application. `page_strings` (texts of the page per locale) are handed
    to the page in /sandbox/api/info and /sandbox/api/strings."""
    app = web.Application(client_max_size=MAX_BODY)
    app[SANDBOX] = sandbox
    app[PAGE_STRINGS] = dict(page_strings or {})
    app.router.add_route("*", "/bot{token}/{method}", _bot_api)
    app.router.add_get("/file/bot{token}/{path:.+}", _download)
    app.router.add_get("/sandbox/files/{file_id}", _page_file)
    api = "/sandbox/api"
    app.router.add_get(f"{api}/info", _info)
    app.router.add_get(f"{api}/strings", _strings)
    app.router.add_get(f"{api}/personas", _personas)
    app.router.add_get(f"{api}/chats/{{chat_id}}/messages", _messages)
    app.router.add_get(f"{api}/chats/{{chat_id}}/commands", _commands)
    app.router.add_post(f"{api}/chats/{{chat_id}}/send", _send)
    app.router.add_post(f"{api}/chats/{{chat_id}}/photos", _send_photos)
    app.router.add_post(f"{api}/chats/{{chat_id}}/press", _press)
    app.router.add_post(f"{api}/chats/{{chat_id}}/migrate", _migrate)
    app.router.add_get(f"{api}/events", _events)
    app.router.add_get(f"{api}/counters", _counters)
    app.router.add_post(f"{api}/config", _config)
    app.router.add_get("/", _index)
    app.router.add_get("/static/{path:.+}", _static)

    async def opened(app: web.Application) -> None:
        sandbox.open()

    async def closing(app: web.Application) -> None:
        await sandbox.close()

    app.on_startup.append(opened)
    app.on_shutdown.append(closing)
    return app


async def run_sandbox(
    sandbox: Sandbox,
    host: str = "127.0.0.1",
    port: int = 8081,
    *,
    page_strings: Mapping[str, Any] | None = None,
) -> web.AppRunner:
    """Serve the sandbox on host:port; returns the started runner (call `cleanup()` on it)."""
    runner = web.AppRunner(create_app(sandbox, page_strings=page_strings))
    await runner.setup()
    await web.TCPSite(runner, host, port).start()
    return runner


# ---------------------------------------------------------------------------------------------
# The Bot API


async def _bot_api(request: web.Request) -> web.Response:
    sb = request.app[SANDBOX]
    method = request.match_info["method"]
    sb.counters.methods[method] += 1
    if request.match_info["token"] != sb.token:
        return _answer(sb, ApiError(401, "Unauthorized").payload(), 401)
    handler = sb.api.method(method)
    if handler is None:
        return _answer(sb, ApiError(404, "Not Found").payload(), 404)
    try:
        params = await _read_params(request, sb)
        plan = sb.plan_faults(method.lower())
        if plan.delay > 0:
            sb.counters.faults["delayed"] += 1
            await asyncio.sleep(plan.delay)
        if plan.bad_gateway:  # refused before it is carried out
            sb.counters.faults["bad_gateway"] += 1
            raise ApiError(502, "Bad Gateway")
        result = await handler(params)
        if plan.hang > 0:
            # Carried out, but the answer comes too late for the client, as when Telegram got
            # a request and the answer was lost: a bot that simply retries sends twice.
            sb.counters.faults["timeout"] += 1
            await sb.hang(plan.hang)
    except ApiError as error:
        return _answer(sb, error.payload(), error.code)
    if isinstance(result, Answer):
        return _answer(
            sb, {"ok": True, "result": result.result, "description": result.description}
        )
    return _answer(sb, {"ok": True, "result": result})


def _answer(sb: Sandbox, body: JSON, status: int = 200) -> web.Response:
    data = _dumps(body).encode()
    sb.counters.statuses[status] += 1
    sb.counters.bytes_out += len(data)
    return web.Response(body=data, status=status, content_type="application/json")


async def _read_params(request: web.Request, sb: Sandbox) -> Params:
    """Parameters from the query string and a JSON, form or multipart body."""
    values: JSON = dict(request.query)
    files: dict[str, Upload] = {}
    length = request.content_length
    if length is not None and length > MAX_BODY:
        raise ApiError(413, "Request Entity Too Large")
    if request.content_type.startswith("multipart/"):
        sb.counters.bytes_in += await _read_multipart(request, values, files)
        return Params(values, files)
    try:
        body = await request.read()
    except web.HTTPRequestEntityTooLarge:
        raise ApiError(413, "Request Entity Too Large") from None
    sb.counters.bytes_in += len(body)
    if not body:
        return Params(values)
    try:
        if request.content_type == "application/json":
            data = json.loads(body)
            if not isinstance(data, dict):
                raise ValueError
            values.update(data)
        else:
            values.update(urllib.parse.parse_qsl(body.decode(), keep_blank_values=True))
    except ValueError:
        raise bad_request("can't parse request body") from None
    return Params(values)


async def _read_multipart(request: web.Request, values: JSON, files: dict[str, Upload]) -> int:
    reader = await request.multipart()
    size = 0
    while (part := await reader.next()) is not None:
        if not isinstance(part, BodyPartReader) or part.name is None:
            continue
        data = bytearray()
        while chunk := await part.read_chunk():
            data += chunk
            size += len(chunk)
            if size > MAX_BODY:
                raise ApiError(413, "Request Entity Too Large")
        if part.filename is not None:
            content_type = part.headers.get(hdrs.CONTENT_TYPE)
            files[part.name] = Upload(bytes(data), part.filename, content_type)
        else:
            values[part.name] = data.decode(part.get_charset(default="utf-8"))
    return size


async def _download(request: web.Request) -> web.Response:
    sb = request.app[SANDBOX]
    if request.match_info["token"] != sb.token:
        return _answer(sb, ApiError(401, "Unauthorized").payload(), 401)
    stored = sb.files_by_path.get(request.match_info["path"])
    if stored is None:
        return _answer(sb, ApiError(404, "Not Found").payload(), 404)
    sb.counters.bytes_out += len(stored.data)
    return web.Response(body=stored.data, content_type=stored.mime_type)


# ---------------------------------------------------------------------------------------------
# The page API


def _json(data: Any, status: int = 200) -> web.Response:
    return web.json_response(data, status=status, dumps=_dumps)


def _error(message: str, status: int = 400) -> web.Response:
    return _json({"error": message}, status)


def _chat_id(request: web.Request) -> int:
    try:
        return int(request.match_info["chat_id"])
    except ValueError:
        raise web.HTTPNotFound(text="no such chat") from None


async def _body(request: web.Request) -> JSON:
    try:
        body = await request.json()
    except ValueError:
        raise web.HTTPBadRequest(text="the body must be JSON") from None
    if not isinstance(body, dict):
        raise web.HTTPBadRequest(text="the body must be a JSON object")
    return body


def _settings(sb: Sandbox) -> JSON:
    return {"limits": settings_dict(sb.limits), "faults": settings_dict(sb.faults)}


async def _info(request: web.Request) -> web.Response:
    sb = request.app[SANDBOX]
    bot = {k: sb.bot_user[k] for k in ("id", "username", "first_name")}
    return _json({"bot": bot, **_settings(sb), "strings": request.app[PAGE_STRINGS]})


async def _strings(request: web.Request) -> web.Response:
    return _json(request.app[PAGE_STRINGS])


async def _personas(request: web.Request) -> web.Response:
    return _json({"personas": request.app[SANDBOX].personas})


async def _messages(request: web.Request) -> web.Response:
    sb = request.app[SANDBOX]
    try:
        messages = sb.messages(_chat_id(request))
    except SandboxError as exc:
        return _error(str(exc), 404)
    return _json({"messages": messages, "seq": sb.seq})


async def _commands(request: web.Request) -> web.Response:
    """The command menu a person sees in a chat (``?user_id=``)."""
    sb = request.app[SANDBOX]
    try:
        user_id = int(request.query.get("user_id", "0"))
    except ValueError:
        return _error("user_id must be a number")
    return _json({"commands": sb.commands_for(_chat_id(request), user_id)})


async def _send(request: web.Request) -> web.Response:
    sb = request.app[SANDBOX]
    body = await _body(request)
    user_id, text = body.get("user_id"), body.get("text")
    if not isinstance(user_id, int) or not isinstance(text, str):
        return _error("send needs user_id (a number) and text")
    try:
        message = await sb.user_sends(user_id, _chat_id(request), text)
    except SandboxError as exc:
        return _error(str(exc))
    return _json({"message": message})


async def _send_photos(request: web.Request) -> web.Response:
    """The person sends pictures: multipart with `user_id`, an optional `caption` and up to 10
    `photo` files of at most 10 MB each. Several pictures are one album."""
    sb = request.app[SANDBOX]
    if not request.content_type.startswith("multipart/"):
        return _error("send photos as multipart/form-data")
    fields: dict[str, str] = {}
    photos: list[tuple[bytes, str | None]] = []
    reader = await request.multipart()
    while (part := await reader.next()) is not None:
        if not isinstance(part, BodyPartReader) or part.name is None:
            continue
        if part.filename is None:
            if part.name in ("user_id", "caption"):
                fields[part.name] = (await part.read(decode=False)).decode(
                    part.get_charset(default="utf-8")
                )
            continue
        if part.name != "photo":
            continue
        if len(photos) == MAX_PHOTOS:
            return _error(f"at most {MAX_PHOTOS} photos at once")
        data = bytearray()
        while chunk := await part.read_chunk():
            data += chunk
            if len(data) > media.MAX_PHOTO_BYTES:
                return _error(f"photo {len(photos) + 1} is larger than 10 MB", 413)
        photos.append((bytes(data), part.filename))
    try:
        user_id = int(fields.get("user_id", ""))
    except ValueError:
        return _error("send photos needs user_id (a number)")
    try:
        messages = await sb.user_sends_photos(
            user_id, _chat_id(request), photos, fields.get("caption", "")
        )
    except SandboxError as exc:
        return _error(str(exc))
    return _json({"messages": messages})


async def _press(request: web.Request) -> web.Response:
    sb = request.app[SANDBOX]
    body = await _body(request)
    user_id, message_id, data = body.get("user_id"), body.get("message_id"), body.get("data")
    if not isinstance(user_id, int) or not isinstance(message_id, int):
        return _error("press needs user_id and message_id (numbers) and data")
    if not isinstance(data, str):
        return _error("press needs data (the button's callback data)")
    try:
        query_id = await sb.user_presses(user_id, _chat_id(request), message_id, data)
    except SandboxError as exc:
        return _error(str(exc))
    return _json({"callback_query_id": query_id})


async def _migrate(request: web.Request) -> web.Response:
    """Upgrade a group to a supergroup, as Telegram does when a group grows or changes."""
    try:
        new_id = request.app[SANDBOX].migrate_group(_chat_id(request))
    except ValueError as exc:
        return _error(str(exc))
    return _json({"migrate_to_chat_id": new_id})


async def _events(request: web.Request) -> web.Response:
    """Long poll: events after `after`, for one chat (and the supergroup it became) or all."""
    sb = request.app[SANDBOX]
    try:
        after = int(request.query.get("after", "0"))
        chat = request.query.get("chat_id")
        chats = sb.chat_family(int(chat)) if chat else None
        timeout = min(max(float(request.query.get("timeout", "25")), 0.0), MAX_EVENT_WAIT)
    except ValueError:
        return _error("after, chat_id and timeout must be numbers")
    deadline = time.monotonic() + timeout
    while True:
        seq = sb.seq
        # A page that outlived an earlier sandbox may ask from the future: answer at once so
        # it takes the current seq.
        events = sb.events.after(after, chats) if after <= seq else []
        remaining = deadline - time.monotonic()
        if events or after > seq or remaining <= 0 or sb.closing:
            return _json({"seq": seq, "events": events})
        await sb.events.signal.wait(remaining)


async def _counters(request: web.Request) -> web.Response:
    return _json(request.app[SANDBOX].counters.as_dict())


async def _config(request: web.Request) -> web.Response:
    """Change limits and faults at run time: ``{"limits": {...}, "faults": {...}}``."""
    sb = request.app[SANDBOX]
    body = await _body(request)
    changes: list[tuple[Limits | Faults, Any]] = [
        (sb.limits, body.get("limits")),
        (sb.faults, body.get("faults")),
    ]
    try:
        for settings, change in changes:  # check everything before changing anything
            if change is not None:
                if not isinstance(change, dict):
                    raise ValueError("limits and faults must be objects")
                update_settings(copy.deepcopy(settings), change)
    except ValueError as exc:
        return _error(str(exc))
    seed = sb.faults.seed
    for settings, change in changes:
        if change:
            update_settings(settings, change)
    if sb.faults.seed != seed:
        sb.reseed(sb.faults.seed)
    return _json(_settings(sb))


async def _page_file(request: web.Request) -> web.Response:
    stored = request.app[SANDBOX].files.get(request.match_info["file_id"])
    if stored is None:
        raise web.HTTPNotFound(text="no such file")
    headers = {}
    if stored.file_name:
        quoted_name = urllib.parse.quote(stored.file_name)
        headers[hdrs.CONTENT_DISPOSITION] = f"inline; filename*=UTF-8''{quoted_name}"
    return web.Response(body=stored.data, content_type=stored.mime_type, headers=headers)


# ---------------------------------------------------------------------------------------------
# The page


async def _index(request: web.Request) -> web.StreamResponse:
    """index.html, with the page's strings in both languages in place of its placeholder."""
    index = WEB_DIR / "index.html"
    try:
        template = await asyncio.to_thread(index.read_text, encoding="utf-8")
    except FileNotFoundError:
        return web.Response(
            status=404, text="The sandbox page is not installed (sandbox/web/index.html)."
        )
    strings = _dumps(request.app[PAGE_STRINGS])
    # "</script>" or "<!--" inside the JSON would end the script element early.
    strings = strings.replace("<", "\\u003c").replace(">", "\\u003e").replace("&", "\\u0026")
    page = template.replace(STRINGS_PLACEHOLDER, strings, 1)
    return web.Response(
        text=page, content_type="text/html", headers={hdrs.CACHE_CONTROL: "no-cache"}
    )


async def _static(request: web.Request) -> web.StreamResponse:
    root = WEB_DIR.resolve()
    path = (root / request.match_info["path"]).resolve()
    if not path.is_relative_to(root) or not path.is_file():
        raise web.HTTPNotFound(text="not found")
    return web.FileResponse(path, headers={hdrs.CACHE_CONTROL: "no-cache"})
