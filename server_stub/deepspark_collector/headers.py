"""Security headers on every response the app makes.

The pages are server-rendered with no JavaScript: inline SVG and one inline stylesheet, which
the policy admits by its sha256 (taken from the rendered base template, so that it follows
the stylesheet), and nothing else: no script, no frame, no other origin.
"""

from __future__ import annotations

import base64
import hashlib
import re

from jinja2 import Environment
from starlette.datastructures import MutableHeaders
from starlette.types import ASGIApp, Message, Receive, Scope, Send

STYLE = re.compile(r"<style>(.*?)</style>", re.DOTALL)


def content_security_policy(templates: Environment, page: str = "base.html") -> str:
    """A policy that admits `page`'s inline stylesheets (by hash) and nothing else inline."""
    html = templates.get_template(page).render()
    styles = " ".join(
        f"'sha256-{base64.b64encode(hashlib.sha256(css.encode()).digest()).decode()}'"
        for css in STYLE.findall(html)
    )
    return (
        f"default-src 'none'; style-src {styles}; img-src 'self'; form-action 'self'; "
        "base-uri 'none'; frame-ancestors 'none'"
    )


class SecurityHeaders:
    """ASGI middleware: the policy, nosniff, no framing, no referrer, unless set already."""

    def __init__(self, app: ASGIApp, policy: str) -> None:
        self.app = app
        self.headers = {
            "Content-Security-Policy": policy,
            "X-Content-Type-Options": "nosniff",
            "X-Frame-Options": "DENY",  # frame-ancestors, for browsers without CSP 2
            "Referrer-Policy": "no-referrer",
        }

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return

        async def send_with_headers(message: Message) -> None:
            if message["type"] == "http.response.start":
                headers = MutableHeaders(scope=message)
                for name, value in self.headers.items():
                    headers.setdefault(name, value)
            await send(message)

        await self.app(scope, receive, send_with_headers)
