"""An HTTP proxy in front of a real S3 server that answers chosen requests itself: the
faults a transport must handle at the HTTP level (a 409 ConditionalRequestConflict, which
neither SeaweedFS nor moto ever sends), whatever library sends the requests.

``with FaultProxy(upstream) as proxy:`` listens on a free loopback port; every request is
relayed to ``upstream`` unchanged (the Host header too, so SigV4 signatures still hold),
except those ``proxy.answer`` claims: it is called with (method, path, headers) and returns
None to relay, or (status, body) to answer instead.
"""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Callable, Mapping
from typing import Any

Answer = Callable[[str, str, Mapping[str, str]], tuple[int, bytes] | None]

CONFLICT_409 = (
    409,
    b'<?xml version="1.0" encoding="UTF-8"?>\n<Error><Code>ConditionalRequestConflict'
    b"</Code><Message>A conflicting conditional operation is currently in progress against "
    b"this resource. Please try again.</Message></Error>",
)


class FaultProxy:
    def __init__(self, upstream: str, answer: Answer | None = None) -> None:
        self.upstream = upstream.rstrip("/")
        self.answer: Answer = answer or (lambda method, path, headers: None)
        self.url = ""
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._loop.run_forever, daemon=True)
        self._runner: Any = None
        self._session: Any = None

    def __enter__(self) -> FaultProxy:
        self._thread.start()
        asyncio.run_coroutine_threadsafe(self._start(), self._loop).result(30)
        return self

    def __exit__(self, *exc: object) -> None:
        asyncio.run_coroutine_threadsafe(self._stop(), self._loop).result(30)
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(10)
        self._loop.close()

    async def _start(self) -> None:
        import aiohttp
        from aiohttp import web

        self._session = aiohttp.ClientSession(auto_decompress=False)
        app = web.Application(client_max_size=1 << 30)
        app.router.add_route("*", "/{tail:.*}", self._relay)
        self._runner = web.AppRunner(app)
        await self._runner.setup()
        site = web.TCPSite(self._runner, "127.0.0.1", 0)
        await site.start()
        port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
        self.url = f"http://127.0.0.1:{port}"

    async def _stop(self) -> None:
        await self._session.close()
        await self._runner.cleanup()

    async def _relay(self, request: Any) -> Any:
        from aiohttp import web

        body = await request.read()
        canned = self.answer(request.method, request.path, request.headers)
        if canned is not None:
            status, text = canned
            return web.Response(status=status, body=text, content_type="application/xml")
        headers = {k: v for k, v in request.headers.items() if k.lower() != "transfer-encoding"}
        async with self._session.request(
            request.method,
            self.upstream + request.path_qs,
            headers=headers,
            data=body,
            allow_redirects=False,
        ) as resp:
            data = await resp.read()
            drop = {"transfer-encoding", "content-length", "content-encoding", "connection"}
            out = {k: v for k, v in resp.headers.items() if k.lower() not in drop}
            return web.Response(status=resp.status, body=data, headers=out)
