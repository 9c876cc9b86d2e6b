"""The HTML building blocks of report.html: escaped text, tables, figures, sections and the page itself.

Every page is one self-contained file: the stylesheet and script are inlined from ``assets/`` and
images are data URLs, so nothing is fetched from the network and the file can be mailed or moved
alone. The assets are read when this module is imported, so an installation that lost them fails
at import (the wheel check imports every module), not when a report is first written.
"""
from __future__ import annotations

import html
import json
from collections.abc import Iterable, Sequence
from importlib.resources import files

ASSETS = files("keras_itl.report") / "assets"
STYLESHEET = (ASSETS / "report.css").read_text(encoding="utf-8")
GALLERY_SCRIPT = (ASSETS / "gallery.js").read_text(encoding="utf-8")
MISSING = "–"  # what a cell shows for a value the run does not have


def esc(value: object) -> str:
    """``value`` as text safe inside HTML elements and quoted attributes."""
    return html.escape(str(value), quote=True)


def number(value: float | int | None, spec: str = ".4g") -> str:
    """``value`` formatted with ``spec``; MISSING for None."""
    return MISSING if value is None else format(value, spec)


def table(headers: Sequence[str], rows: Iterable[Sequence[object]], *, table_id: str | None = None,
          numeric_from: int | None = None, css_class: str | None = None) -> str:
    """A table of escaped cells; columns from ``numeric_from`` on are right-aligned numbers.

    A cell given as ``Raw`` is inserted as it is (a link, a shaded count), never escaped.
    """
    attributes = (f' id="{esc(table_id)}"' if table_id else "") + (f' class="{esc(css_class)}"' if css_class else "")
    head = "".join(f"<th>{esc(h)}</th>" for h in headers)
    body = []
    for row in rows:
        cells = []
        for column, cell in enumerate(row):
            numeric = numeric_from is not None and column >= numeric_from
            text = cell.html if isinstance(cell, Raw) else esc(cell)
            cells.append(f'<td class="num">{text}</td>' if numeric else f"<td>{text}</td>")
        body.append(f"<tr>{''.join(cells)}</tr>")
    return f"<table{attributes}><thead><tr>{head}</tr></thead><tbody>{''.join(body)}</tbody></table>"


class Raw:
    """Markup built here from escaped parts, to go into a table cell as it is."""

    def __init__(self, markup: str):
        self.html = markup


def link(href: str, text: str) -> Raw:
    """A relative link to a file of the run or experiment."""
    return Raw(f'<a href="{esc(href)}">{esc(text)}</a>')


def key_values(pairs: Iterable[tuple[str, object]], element_id: str | None = None) -> str:
    """Name and value pairs laid out in columns (a long list of settings stays on one screen)."""
    attribute = f' id="{esc(element_id)}"' if element_id else ""
    items = "".join(f"<dt>{esc(key)}</dt><dd>{esc(MISSING if value is None else value)}</dd>" for key, value in pairs)
    return f'<dl class="key-values"{attribute}>{items}</dl>'


def figure(data_url: str | None, caption: str) -> str:
    """An embedded image with its caption; nothing when the run has no such image."""
    if data_url is None:
        return ""
    return f'<figure><img src="{data_url}" alt="{esc(caption)}"><figcaption>{esc(caption)}</figcaption></figure>'


def bullet_list(items: Iterable[str], css_class: str = "notes") -> str:
    """An escaped bullet list; nothing for no items."""
    entries = "".join(f"<li>{esc(item)}</li>" for item in items)
    return f'<ul class="{css_class}">{entries}</ul>' if entries else ""


def section(anchor: str, title: str, body: str) -> tuple[str, str, str]:
    """One section of a page: its anchor, heading and HTML body."""
    return anchor, title, body


def page(title: str, subtitle: str, sections: Sequence[tuple[str, str, str]], data: dict | None = None) -> str:
    """The whole document: header, a link bar to the sections, the sections, and (for a gallery) its data
    and script. The JSON is written so that no ``</`` can end its script element early."""
    nav = "".join(f'<a href="#{esc(anchor)}">{esc(heading)}</a>' for anchor, heading, _ in sections)
    body = "".join(f'<section id="{esc(anchor)}"><h2>{esc(heading)}</h2>{content}</section>'
                   for anchor, heading, content in sections)
    script = ""
    if data is not None:
        payload = json.dumps(data, separators=(",", ":"), allow_nan=False).replace("</", "<\\/")
        script = (f'<script type="application/json" id="gallery-data">{payload}</script>'
                  f"<script>{GALLERY_SCRIPT}</script>")
    return ("<!doctype html>\n"
            f'<html lang="en"><head><meta charset="utf-8"><meta name="viewport" content="width=device-width">'
            f'<link rel="icon" href="data:,"><title>{esc(title)}</title><style>{STYLESHEET}</style></head>'
            f"<body><header><h1>{esc(title)}</h1><p>{esc(subtitle)}</p></header><nav>{nav}</nav>"
            f"<main>{body}</main>{script}</body></html>\n")
