"""The Markdown the stages write (headline, verify, screening tables), as HTML for Snakemake's report.

Snakemake's report shows images and HTML but offers other files for download only; these pages
show the tables themselves. Only the subset the stages write is rendered (``#`` headings, ``-``
lists, ``|`` tables, paragraphs, inline code); everything else is escaped text.
"""

from __future__ import annotations

import html
import os
import re
from collections.abc import Iterable
from pathlib import Path

from pipeline.storage.write import write_atomic

STYLE = (
    "body{font-family:system-ui,sans-serif;margin:1.5em;color:#222}"
    "table{border-collapse:collapse;margin:.5em 0 1em}"
    "th,td{border:1px solid #ccc;padding:.25em .6em;text-align:left}"
    "th{background:#f3f3f3}td.num{text-align:right;font-variant-numeric:tabular-nums}"
    "code{background:#f3f3f3;padding:0 .2em}"
)


def _inline(text: str) -> str:
    return re.sub(r"`([^`]*)`", r"<code>\1</code>", html.escape(text))


def _cells(row: str) -> list[str]:
    return [c.strip() for c in row.strip().strip("|").split("|")]


def _table(rows: list[str]) -> str:
    header, body = _cells(rows[0]), [_cells(r) for r in rows[2:]]
    numeric = re.compile(r"^[-+]?[\d.]+(e[-+]?\d+)?\b")
    out = ["<table>", "<tr>" + "".join(f"<th>{_inline(c)}</th>" for c in header) + "</tr>"]
    for cells in body:
        out.append(
            "<tr>"
            + "".join(f"<td{' class=num' if numeric.match(c) else ''}>{_inline(c)}</td>" for c in cells)
            + "</tr>"
        )
    return "\n".join([*out, "</table>"])


MARKS = (("#", "heading"), ("- ", "list"), ("|", "table"))
"""How a line of the stages' Markdown starts, by kind of block."""


def _blocks(lines: list[str]) -> Iterable[tuple[str, list[str]]]:
    """Runs of lines of one kind: heading, list, table, paragraph."""
    kind, run = "", []
    for line in lines:
        now = next((k for prefix, k in MARKS if line.startswith(prefix)), "paragraph" if line.strip() else "")
        if now != kind or now == "heading":
            if run:
                yield kind, run
            kind, run = now, []
        if now:
            run.append(line)
    if run:
        yield kind, run


def body_html(markdown: str) -> str:
    """The HTML of the Markdown the stages write (module doc)."""
    parts = []
    for kind, run in _blocks(markdown.splitlines()):
        if kind == "heading":
            level = min(len(run[0]) - len(run[0].lstrip("#")), 4)
            parts.append(f"<h{level}>{_inline(run[0].lstrip('#').strip())}</h{level}>")
        elif kind == "list":
            parts.append("<ul>" + "".join(f"<li>{_inline(r[2:])}</li>" for r in run) + "</ul>")
        elif kind == "table" and len(run) >= 2:
            parts.append(_table(run))
        else:
            parts.append("<p>" + " ".join(_inline(r) for r in run) + "</p>")
    return "\n".join(parts)


def page(title: str, body: str) -> str:
    """A standalone HTML page (the report shows it in a frame)."""
    return (
        f'<!DOCTYPE html>\n<html><head><meta charset="utf-8"><title>{html.escape(title)}</title>'
        f"<style>{STYLE}</style></head>\n<body>\n{body}\n</body></html>\n"
    )


def markdown_page(markdown: str, title: str) -> str:
    """A page of one Markdown text."""
    return page(title, body_html(markdown))


def write_markdown(md: str | os.PathLike, text: str, html_file: str | os.PathLike | None = None) -> None:
    """Write ``text`` to ``md`` and, where asked, its page to ``html_file`` (each atomically)."""
    write_atomic(md, lambda tmp: Path(tmp).write_text(text))
    if html_file is not None:
        title = next((line.lstrip("#").strip() for line in text.splitlines() if line.startswith("#")), "sensweep")
        write_atomic(html_file, lambda tmp: Path(tmp).write_text(markdown_page(text, title)))
