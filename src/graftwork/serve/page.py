"""`GET /`: a page to try the served models in a browser, from files shipped in the package.

    GET /                 page/index.html
    GET /page/page.js     the page's script: the form, the API calls, the answers drawn
    GET /page/page.css    its style

The page lists the models (`GET /v1/models`), takes a text (a question and a context for an
extractive-QA model, a prompt for a causal_lm one) and shows the answer: labels with their
scores, entities highlighted at their character offsets, the answer span marked in its context,
seq2seq text, and causal_lm text as it streams (`/generate` with `"stream": true`). It calls
the same `/v1` API as any client, so nothing is answered twice. Query parameters fill the form
(`model`, `text`, `question`, `context`, `max_new_tokens`) and `run=1` submits it, which is how
a link (and the test, in headless Chromium) drives it.

The three files need no token (they hold code, no data: `PUBLIC`, which the guard lets by);
every API call they make does. With a token configured, the page asks for it, keeps it in the
tab's sessionStorage and sends it as `Authorization: Bearer`; a link may carry it in the
fragment (`/#token=...`: a fragment is never sent to the server), which the page takes and
removes from the address bar. The Host check applies to the page as to everything else. Each
file is served with a Content-Security-Policy that allows this origin's scripts, styles and
requests only.

Written by hand: the page is plain HTML, JavaScript and CSS with no build step and nothing
loaded from elsewhere (FastAPI's Swagger UI and ReDoc load their scripts from a CDN, which is
why `/docs` and `/redoc` are off unless `--docs` asks for them, and they show JSON, not
entities in their text). The files sit in `page/` beside this module (package data in
pyproject.toml). Left out: many inputs at once, file uploads, generation settings other than
the number of new tokens.
"""

from __future__ import annotations

from functools import cache
from importlib import resources

from fastapi import APIRouter
from fastapi.responses import Response
from starlette.exceptions import HTTPException

FOLDER = "page"
INDEX = "index.html"
# the page's own files, by name, with their media types: nothing else is served from FOLDER
FILES = {"page.js": "text/javascript; charset=utf-8", "page.css": "text/css; charset=utf-8"}
# the paths served without a token (the guard's exemption, beside /health)
PUBLIC = frozenset({"/", *(f"/{FOLDER}/{name}" for name in FILES)})
HEADERS = {
    "Content-Security-Policy": "default-src 'none'; script-src 'self'; style-src 'self'; "
    "connect-src 'self'; img-src 'self' data:; base-uri 'none'; form-action 'none'; "
    "frame-ancestors 'none'",
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "no-referrer",
    "Cache-Control": "no-cache",
}

router = APIRouter(include_in_schema=False)


@cache
def read(name: str) -> bytes:
    """One of the page's files, as shipped in the package."""
    return (resources.files(__package__) / FOLDER / name).read_bytes()


@router.get("/")
async def index() -> Response:
    return Response(read(INDEX), media_type="text/html; charset=utf-8", headers=HEADERS)


@router.get(f"/{FOLDER}/{{name}}")
async def asset(name: str) -> Response:
    if name not in FILES:
        raise HTTPException(404, f"the page has no file '{name}' ({', '.join(FILES)})")
    return Response(read(name), media_type=FILES[name], headers=HEADERS)
