"""index.html from the report's context, through one Jinja template (autoescaped:
case ids, class names and build messages come from the source data)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from jinja2 import Environment, PackageLoader, StrictUndefined, select_autoescape


def _environment() -> Environment:
    return Environment(loader=PackageLoader("medimg_build.report", "templates"),
                       autoescape=select_autoescape(["html"]), undefined=StrictUndefined,
                       trim_blocks=True, lstrip_blocks=True)


def write_html(path: Path, context: dict[str, Any]) -> Path:
    path.write_text(_environment().get_template("report.html").render(**context),
                    encoding="utf-8")
    return path
