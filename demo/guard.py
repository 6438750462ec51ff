"""An ASGI middleware in front of Gradio's routes: two doors the studio never uses, kept shut.

* ``/gradio_api/file=<http(s) URL>``: Gradio 6 fetches public URLs through the server and
  streams them back (a proxy for anyone). The studio serves only its own files, so any
  ``file=`` target holding a URL scheme is refused (403) before Gradio sees it.
* ``/gradio_api/upload``: Gradio accepts up to 1000 files per request, each up to
  ``max_file_size``, so one request could write gigabytes. Here the whole request body is
  bounded (``MAX_UPLOAD_REQUEST_BYTES``: one image plus the multipart overhead); a body
  without a ``Content-Length`` (chunked) is refused (411), a larger one gets 413. The same
  holds for ``/gradio_api/component_server``, where the Edit tab's ``gr.ImageMask`` receives
  its drawn layers (Gradio's multipart parser there also takes up to 1000 files).

Installed with ``launch(app_kwargs={"middleware": [guard_middleware()]})`` (``launch_options``).
"""
from __future__ import annotations

from urllib.parse import unquote

from . import limits as L


async def _reply(send, status: int, text: str) -> None:
    body = text.encode()
    await send({"type": "http.response.start", "status": status,
                "headers": [(b"content-type", b"text/plain; charset=utf-8"),
                            (b"content-length", str(len(body)).encode())]})
    await send({"type": "http.response.body", "body": body})


def _file_target(path: str) -> str | None:
    """The part after ``file=`` of a file-route path, fully URL-decoded, or None."""
    i = path.find("/file=")
    if i < 0:
        return None
    target = path[i + len("/file="):]
    for _ in range(3):                      # decoded once by the server; a double-encoded target too
        decoded = unquote(target)
        if decoded == target:
            break
        target = decoded
    return target


class RequestGuard:
    def __init__(self, app, max_upload_bytes: int | None = None):
        self.app = app
        self.max_upload_bytes = max_upload_bytes if max_upload_bytes is not None else L.MAX_UPLOAD_REQUEST_BYTES

    async def __call__(self, scope, receive, send):
        if scope.get("type") != "http":
            return await self.app(scope, receive, send)
        path = scope.get("path", "")
        target = _file_target(path)
        if target is not None and ("://" in target or target.lower().startswith(("http:", "https:", "//"))):
            return await _reply(send, 403, "File not allowed.")
        if scope.get("method") == "POST" and path.rstrip("/").endswith(("/upload", "/component_server")):
            length = None
            for k, v in scope.get("headers", []):
                if k.lower() == b"content-length":
                    try:
                        length = int(v)
                    except ValueError:
                        length = -1
            if length is None:
                return await _reply(send, 411, "An upload needs a Content-Length.")
            if length < 0 or length > self.max_upload_bytes:
                return await _reply(send, 413, f"Upload too large: at most {L.MAX_UPLOAD_BYTES // 2**20} MB, "
                                               "one file per request.")
        return await self.app(scope, receive, send)


def guard_middleware(max_upload_bytes: int | None = None):
    from starlette.middleware import Middleware
    return Middleware(RequestGuard, max_upload_bytes=max_upload_bytes)
