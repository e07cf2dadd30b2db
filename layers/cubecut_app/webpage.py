"""The web page the API serves at ``/`` (and ``/web``): plain HTML, CSS and JavaScript from
the ``web/`` folder beside this module, no build step and nothing loaded from elsewhere.

The page calls the API with relative URLs (``v1/resolve``, then the TESScut ``sector``,
``quicklook`` and ``astrocut`` routes), so it works wherever the API is mounted. Its
Content-Security-Policy allows nothing but this origin (and the ``blob:`` URL of the
preview), so a browser enforces the "no external URL" rule too.
"""
from __future__ import annotations

from functools import lru_cache
from importlib import resources

#: Files served, with their media types: ``index.html`` at ``/`` and ``/web``, the others
#: at ``/web/<name>``.
ASSETS = {"index.html": "text/html; charset=utf-8", "app.js": "text/javascript; charset=utf-8",
          "style.css": "text/css; charset=utf-8"}
CONTENT_SECURITY_POLICY = ("default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' blob:; "
                           "connect-src 'self'; form-action 'self'; base-uri 'none'; frame-ancestors 'none'")
HEADERS = {"Content-Security-Policy": CONTENT_SECURITY_POLICY, "X-Content-Type-Options": "nosniff",
           "Cache-Control": "max-age=300"}


@lru_cache(maxsize=len(ASSETS))
def asset(name: str) -> str:
    """The text of one of :data:`ASSETS` (KeyError for any other name)."""
    if name not in ASSETS:
        raise KeyError(name)
    return resources.files(__package__).joinpath("web", name).read_text(encoding="utf-8")
