"""An aiohttp transport for python-telegram-bot: `AiohttpRequest`.

Why it exists: PTB's default transport, `telegram.request.HTTPXRequest`, spends most of a
request's time inside httpx and httpcore and tops out near 330 requests a second per core.
aiohttp, with its C HTTP parser and a leaner request path, reaches about 3,000, which is what a
school-wide broadcast needs (and what the benchmarks against the sandbox measure). Everything
above the socket stays PTB's: `BaseRequest.post` still parses the answer and turns Telegram's
error codes into `BadRequest`, `Forbidden`, `RetryAfter` and the rest.

Use it for both of PTB's request objects::

    ApplicationBuilder().token(token)
        .request(AiohttpRequest())
        .get_updates_request(AiohttpRequest(connection_pool_size=1))

    Bot(token, request=AiohttpRequest())

It behaves like `HTTPXRequest`: the same constructor defaults, the same bodies on the wire
(``application/x-www-form-urlencoded`` for plain calls, ``multipart/form-data`` for uploads)
and the same errors (`TimedOut` for every timeout, with a message naming the pool when no
connection became free in time; `NetworkError` for everything else on the network).
"""

from __future__ import annotations

import asyncio
import contextlib
import re
from typing import IO, Final
from urllib.parse import urlencode

import aiohttp
from telegram._utils.defaultvalue import DefaultValue
from telegram._utils.types import ODVInput
from telegram.error import NetworkError, TimedOut
from telegram.request import BaseRequest, RequestData

__all__ = ["AiohttpRequest"]

POOL_TIMEOUT_MESSAGE: Final = (
    "Pool timeout: All connections in the connection pool are occupied. "
    "Request was *not* sent to Telegram. Consider adjusting the connection "
    "pool size or the pool timeout."
)
_FORM_HEADERS: Final = {
    "User-Agent": BaseRequest.USER_AGENT,
    "Content-Type": "application/x-www-form-urlencoded",
}
_PLAIN_HEADERS: Final = {"User-Agent": BaseRequest.USER_AGENT}


class AiohttpRequest(BaseRequest):
    """A `telegram.request.BaseRequest` on an `aiohttp.ClientSession`, about ten times
    faster than PTB's httpx transport.

    Args:
        connection_pool_size: Connections open at once (``TCPConnector(limit=...)``).
        read_timeout: Seconds to wait for each read of the answer (aiohttp's ``sock_read``,
            which starts once the body is sent); `None` waits for ever.
        write_timeout: Kept for PTB's interface and returned by `write_timeout`; aiohttp has
            no write timeout, so an upload is bounded only by the network.
        connect_timeout: Seconds to open a new connection (aiohttp's ``sock_connect``).
        pool_timeout: Seconds to wait for a free connection when all
            `connection_pool_size` are in use; then `TimedOut` and nothing is sent.

    The session is created by `initialize()` inside the running event loop (PTB calls it from
    `Bot.initialize()` / `Application.initialize()`) and closed by `shutdown()`; both may be
    called again. A timeout passed to `do_request` as `None` means no timeout; one left at
    `BaseRequest.DEFAULT_NONE` means the default given here.
    """

    __slots__ = (
        "_connect_timeout",
        "_pool",
        "_pool_size",
        "_pool_timeout",
        "_read_timeout",
        "_session",
        "_write_timeout",
    )

    def __init__(
        self,
        connection_pool_size: int = 256,
        read_timeout: float | None = 5.0,
        write_timeout: float | None = 5.0,
        connect_timeout: float | None = 5.0,
        pool_timeout: float | None = 1.0,
    ) -> None:
        if connection_pool_size < 1:
            raise ValueError("connection_pool_size must be at least 1")
        self._pool_size = connection_pool_size
        self._read_timeout = read_timeout
        self._write_timeout = write_timeout
        self._connect_timeout = connect_timeout
        self._pool_timeout = pool_timeout
        self._session: aiohttp.ClientSession | None = None
        # aiohttp's own wait for a pooled connection is folded into ClientTimeout.connect
        # together with DNS and the TCP handshake, so a pool wait could not be told from a slow
        # connect. This semaphore, as large as the connector's limit, is the pool wait PTB
        # means by pool_timeout; past it the connector never has to queue.
        self._pool: asyncio.Semaphore | None = None

    # -----------------------------------------------------------------------------------------
    # Settings

    @property
    def read_timeout(self) -> float | None:
        """The default read timeout in seconds (PTB adds it to getUpdates' long-poll time)."""
        return self._read_timeout

    @property
    def write_timeout(self) -> float | None:
        """The default write timeout as given (not enforced: aiohttp has none)."""
        return self._write_timeout

    @property
    def connect_timeout(self) -> float | None:
        """The default timeout for opening a connection, in seconds."""
        return self._connect_timeout

    @property
    def pool_timeout(self) -> float | None:
        """The default wait for a free connection, in seconds."""
        return self._pool_timeout

    @property
    def connection_pool_size(self) -> int:
        """How many connections may be open at once."""
        return self._pool_size

    @property
    def initialized(self) -> bool:
        """Whether `initialize()` has opened a session that is still open."""
        return self._session is not None and not self._session.closed

    # -----------------------------------------------------------------------------------------
    # Life cycle

    async def initialize(self) -> None:
        """Open the session and its connection pool (once; again after `shutdown()`)."""
        if self.initialized:
            return
        connector = aiohttp.TCPConnector(limit=self._pool_size)
        self._session = aiohttp.ClientSession(
            connector=connector,
            cookie_jar=aiohttp.DummyCookieJar(),  # the Bot API sets no cookies
            timeout=aiohttp.ClientTimeout(total=None),
        )
        self._pool = asyncio.Semaphore(self._pool_size)

    async def shutdown(self) -> None:
        """Close the session and its connections; nothing happens when already closed."""
        session, self._session, self._pool = self._session, None, None
        if session is not None and not session.closed:
            await session.close()

    # -----------------------------------------------------------------------------------------
    # Requests

    async def do_request(
        self,
        url: str,
        method: str,
        request_data: RequestData | None = None,
        read_timeout: ODVInput[float] = BaseRequest.DEFAULT_NONE,
        write_timeout: ODVInput[float] = BaseRequest.DEFAULT_NONE,
        connect_timeout: ODVInput[float] = BaseRequest.DEFAULT_NONE,
        pool_timeout: ODVInput[float] = BaseRequest.DEFAULT_NONE,
    ) -> tuple[int, bytes]:
        """Send one request; returns the HTTP status and the body of the answer.

        Raises `TimedOut` for a timeout (its message names the pool when no connection was
        free in time and the request was not sent) and `NetworkError` for any other network
        failure; no aiohttp exception leaves this method.
        """
        session, pool = self._session, self._pool
        if session is None or pool is None or session.closed:
            raise RuntimeError("This AiohttpRequest is not initialized!")

        if isinstance(read_timeout, DefaultValue):
            read_timeout = self._read_timeout
        if isinstance(connect_timeout, DefaultValue):
            connect_timeout = self._connect_timeout
        if isinstance(pool_timeout, DefaultValue):
            pool_timeout = self._pool_timeout
        # write_timeout is part of PTB's signature only: aiohttp cannot bound a write.

        timeout = aiohttp.ClientTimeout(
            total=None, sock_read=read_timeout, sock_connect=connect_timeout
        )
        data, headers = await _body(request_data)

        if pool.locked() and pool_timeout is not None:
            try:
                async with asyncio.timeout(pool_timeout):
                    await pool.acquire()
            except TimeoutError as exc:
                raise TimedOut(POOL_TIMEOUT_MESSAGE) from exc
        else:
            await pool.acquire()
        try:
            async with session.request(
                method, url, data=data, headers=headers, timeout=timeout
            ) as response:
                return response.status, await response.read()
        except TimeoutError as exc:  # aiohttp.ServerTimeoutError and asyncio's timeouts
            raise TimedOut from exc
        except (aiohttp.ClientError, OSError) as exc:
            # The class name helps when the message is empty ("ServerDisconnectedError: ").
            raise NetworkError(f"aiohttp.ClientError: {type(exc).__name__}: {exc}") from exc
        finally:
            pool.release()


async def _body(
    request_data: RequestData | None,
) -> tuple[aiohttp.FormData | bytes | None, dict[str, str]]:
    """The body of a call as PTB's httpx transport sends it, and the headers to go with it.

    `RequestData.json_parameters` holds every parameter except the uploaded files, each as a
    string (JSON for lists, objects and numbers; strings as they are). `multipart_data` holds
    only the files, as ``{part name: (filename, bytes or binary file, MIME type)}``; a file
    parameter sent without an ``attach://`` link is absent from `json_parameters`.
    """
    if request_data is None:
        return None, _PLAIN_HEADERS
    fields = request_data.json_parameters
    if not request_data.contains_files:
        if not fields:
            return None, _PLAIN_HEADERS
        return urlencode(fields).encode("ascii"), _FORM_HEADERS
    # quote_fields=False sends file names as UTF-8, as httpx and Telegram's clients do;
    # aiohttp's default would percent-encode them and 课程表.pdf would arrive as %E8%AF%BE...
    form = aiohttp.FormData(quote_fields=False)
    for name, value in fields.items():
        form.add_field(name, value)
    for name, (filename, content, mime_type) in request_data.multipart_data.items():
        if not isinstance(content, bytes):
            content = await asyncio.to_thread(_read_from_start, content)
        form.add_field(name, content, filename=_html5_filename(filename), content_type=mime_type)
    return form, _PLAIN_HEADERS


def _read_from_start(file: IO[bytes]) -> bytes:
    """All of a file handle PTB passes on (``InputFile(read_file_handle=False)``).

    Read here rather than streamed by aiohttp, which would close the caller's file once sent;
    httpx leaves it open and starts from the beginning on every attempt, and so does this.
    """
    with contextlib.suppress(AttributeError, OSError):  # a pipe or socket: read what comes
        file.seek(0)
    return file.read()


# httpx writes a file name as HTML5 forms do: quotes and control characters percent-encoded,
# backslashes doubled. aiohttp (with quote_fields=False) doubles backslashes too, but escapes
# quotes with a backslash and refuses CR and LF; replacing those first puts httpx's bytes on
# the wire.
_HTML5_ESCAPES: Final = {'"': "%22"} | {
    chr(code): f"%{code:02X}" for code in range(0x20) if code != 0x1B
}
_HTML5_ESCAPE_RE: Final = re.compile("|".join(re.escape(char) for char in _HTML5_ESCAPES))


def _html5_filename(filename: str) -> str:
    return _HTML5_ESCAPE_RE.sub(lambda match: _HTML5_ESCAPES[match.group(0)], filename)
