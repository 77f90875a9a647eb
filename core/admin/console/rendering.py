"""How the console's pages are rendered: its Jinja2 templates, their filters, and
:func:`page`, which gives every template who is signed in and the session's CSRF token."""

from __future__ import annotations

from datetime import datetime
from pathlib import Path
from typing import Any

from jinja2 import StrictUndefined
from litestar import Request
from litestar.plugins.jinja import JinjaTemplateEngine
from litestar.response import Template
from litestar.template import TemplateConfig
from markupsafe import Markup, escape

from arrears_router.admin.console.fields import CHINESE
from arrears_router.admin.console.sessions import Session
from arrears_router.admin.tokens import Principal
from arrears_router.payment import CST

__all__ = ["STATIC_DIR", "TEMPLATE_DIR", "age", "page", "template_config", "when", "yuan"]

TEMPLATE_DIR = Path(__file__).with_name("templates")
STATIC_DIR = Path(__file__).with_name("static")


def when(moment: datetime | None) -> str:
    """A stored time as the commands show it: CST, its offset written out."""
    return "—" if moment is None else moment.astimezone(CST).isoformat(sep=" ", timespec="seconds")


def age(seconds: float | None) -> str:
    """How long ago, to the unit that matters: ``42 s``, ``7 min``, ``3 h 5 min``, ``2 d 4 h``."""
    if seconds is None:
        return "—"
    whole = int(seconds)
    if whole < 60:
        return f"{whole} s"
    minutes, hours, days = whole // 60, whole // 3600, whole // 86400
    if hours == 0:
        return f"{minutes} min"
    if days == 0:
        return f"{hours} h {minutes % 60} min"
    return f"{days} d {hours % 24} h"


def yuan(fen: int) -> str:
    return f"¥{fen / 100:.2f}"


def field(name: str) -> Markup:
    """A protocol field's name, with its Chinese name beside it where it has one."""
    chinese = CHINESE.get(name)
    english = Markup('<code class="en">{}</code>').format(name)
    if chinese is None:
        return english
    return english + Markup(' <span class="zh" lang="zh-CN">{}</span>').format(escape(chinese))


def _configure(engine: JinjaTemplateEngine) -> None:
    environment = engine.engine
    environment.undefined = StrictUndefined  # a misspelt name fails the page, not blanks it
    environment.trim_blocks = environment.lstrip_blocks = True
    environment.filters.update(when=when, age=age, yuan=yuan)
    environment.globals.update(field=field)


def template_config() -> TemplateConfig[JinjaTemplateEngine]:
    return TemplateConfig(engine=JinjaTemplateEngine, directory=TEMPLATE_DIR,
                          engine_callback=_configure)


def page(request: Request[Any, Any, Any], template: str, *, status: int = 200,
         **context: Any) -> Template:
    """``template`` rendered with ``context``, and ``me`` (the signed-in Principal, or None
    on the login page) and ``csrf`` (the token every form sends back)."""
    me: Principal | None = request.scope.get("user")
    session: Session | None = request.scope.get("auth")
    return Template(template_name=template, status_code=status, context={
        "me": me, "csrf": session.csrf if session else "", **context})
