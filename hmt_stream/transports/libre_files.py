"""POST /translate_file (a multipart upload: .txt, .md, .html) and the download of its translation, readable at the
URL it answers for as long as its session is kept (session.retention_s)."""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import PurePosixPath, PureWindowsPath
from urllib.parse import quote

from aiohttp import web

from .. import errors
from ..errors import HmtError
from .forwarded import forwarded_host, is_https
from .guard import authenticate, owner_of
from .libre_text import run
from .libre_wire import api_key, bad, language, read_body
from .rest import translator_of

# File extension -> our document format.
FORMATS = {".txt": "text", ".md": "markdown", ".markdown": "markdown", ".html": "html", ".htm": "html"}
_MEDIA = {"text": "text/plain", "markdown": "text/markdown", "html": "text/html"}
_UNSAFE = re.compile(r"[^A-Za-z0-9._-]+")


@dataclass(frozen=True)
class TranslatedFile:
    name: str
    format: str
    owner: str | None


# The files translated here, by session id: the id in the download URL is the capability to read the file (the
# way LibreTranslate's own URLs work), and only sessions of uploaded files can be read through it.
FILES = web.AppKey("libretranslate_files", dict[str, TranslatedFile])


def _safe_name(filename: str | None) -> str:
    """The upload's own name, without any folder, in characters safe in a URL and a header."""
    base = PureWindowsPath(PurePosixPath(filename or "").name).name
    return _UNSAFE.sub("_", base).lstrip(".") or "file.txt"


async def translate_file(request: web.Request) -> web.Response:
    body = await read_body(request)
    authenticate(request, api_key(body))
    upload = body.get("file")
    if not isinstance(upload, web.FileField):
        raise bad("Invalid request: missing file parameter")
    name = _safe_name(upload.filename)
    format = FORMATS.get(PurePosixPath(name).suffix.lower())
    if format is None:
        raise bad(f"Invalid request: file format not supported (supported: {', '.join(FORMATS)})")
    source, target = language(body, "source"), language(body, "target")
    try:
        text = upload.file.read().decode("utf-8-sig")
    except UnicodeDecodeError:
        raise bad("Invalid request: the file is not UTF-8 text") from None
    if not text.strip():
        raise bad("Invalid request: empty file")
    session = await run(request, text, source, target, format)
    files = request.app[FILES]
    translator = translator_of(request)
    for gone in [key for key, kept in files.items() if translator.find(key, kept.owner) is None]:
        del files[gone]  # their sessions have been evicted: so have their files
    files[session.id] = TranslatedFile(name, format, owner_of(request))
    host = forwarded_host(request) or request.host
    url = f"{'https' if is_https(request) else 'http'}://{host}/download_file/{session.id}/{quote(name)}"
    return web.json_response({"translatedFileUrl": url})


async def download(request: web.Request) -> web.Response:
    session_id = request.match_info["session"]
    kept = request.app[FILES].get(session_id)
    session = None if kept is None else translator_of(request).find(session_id, kept.owner)
    if kept is None or session is None:
        raise HmtError(errors.NOT_FOUND, "no such translated file (unknown, or expired with its session)")
    return web.Response(text=session.text, content_type=_MEDIA[kept.format], charset="utf-8",
                        headers={"Content-Disposition": f'attachment; filename="{kept.name}"'})


def setup(app: web.Application) -> None:
    app[FILES] = {}
