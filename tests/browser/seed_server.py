"""``python -m tests.browser.seed_server serve …``: ``trainvis serve`` plus the test pages.

The browser tests' own pages (``tests/browser/pages/``: the seed snippets and the
React/Recharts builds they need) are not part of the package, and trainvis never
serves them (issue 14). This wrapper runs ``trainvis serve`` with the same
arguments and adds one route, ``/test-pages/{path}``, that serves that folder
under the dashboard's Content-Security-Policy, so the pages run same-origin
against the real API exactly as a page of the app would.
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

from fastapi import FastAPI, Request, Response
from starlette.staticfiles import StaticFiles

import trainvis.api.app as app_module
from trainvis.api.dashboard import SECURITY_HEADERS

PAGES_DIR = Path(__file__).resolve().parent / "pages"
PAGES_PATH = "/test-pages"

_create_app = app_module.create_app


def create_app_with_pages(*args: Any, **kwargs: Any) -> FastAPI:
    """The app ``trainvis serve`` builds, plus ``GET /test-pages/{path}``."""
    app = _create_app(*args, **kwargs)
    pages = StaticFiles(directory=PAGES_DIR)

    @app.get(PAGES_PATH + "/{path:path}", include_in_schema=False)
    async def test_page(path: str, request: Request) -> Response:
        response = await pages.get_response(path, request.scope)
        response.headers.update(SECURITY_HEADERS)
        response.headers["Cache-Control"] = "no-cache"
        return response

    return app


def main(argv: list[str]) -> int:
    """Run the ``trainvis`` command line with the test pages mounted."""
    app_module.create_app = create_app_with_pages  # before the CLI binds the name
    from trainvis.cli import main as trainvis_main

    return trainvis_main(argv)


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
