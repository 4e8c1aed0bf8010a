"""Serves the console's static files. They need no credential: they hold no data, only the
code of the pages, which asks for an access token and sends it (from sessionStorage) as
`Authorization: Bearer` on every API call; every byte of data comes from the token-checked
APIs. The content security policy keeps the pages to this origin's scripts, so a value
shown on a page can't run code that reads the token."""
from __future__ import annotations

from pathlib import Path

from fastapi import APIRouter
from fastapi.responses import FileResponse

from services.runtime.http import ApiError

STATIC = Path(__file__).parent / "static"
TYPES = {".html": "text/html; charset=utf-8", ".js": "text/javascript; charset=utf-8",
         ".css": "text/css; charset=utf-8"}
HEADERS = {"Content-Security-Policy": "default-src 'self'; img-src 'self' data:; frame-ancestors 'none'",
           "X-Content-Type-Options": "nosniff", "Referrer-Policy": "no-referrer", "Cache-Control": "no-cache"}

router = APIRouter(tags=["console"])


@router.get("/console", response_class=FileResponse)
def console_page() -> FileResponse:
    """The console's page (public: no data in it; it signs in with an access token)."""
    return FileResponse(STATIC / "index.html", media_type=TYPES[".html"], headers=HEADERS)


@router.get("/console/{name}", response_class=FileResponse)
def console_file(name: str) -> FileResponse:
    """The console's scripts and styles (public, as the page)."""
    path = STATIC / name
    if "/" in name or path.suffix not in TYPES or not path.is_file():  # only files of static/ itself
        raise ApiError(404, "not_found", f"no console file {name!r}", "name")
    return FileResponse(path, media_type=TYPES[path.suffix], headers=HEADERS)
