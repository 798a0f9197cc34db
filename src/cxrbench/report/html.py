"""HTML pieces of the report: one self-contained page that opens from file:// with no network.

Every text that comes from the results folder (encoder, head, tag, target and file names, notes, CSV cells) can
hold anything, so every piece here escapes what it is given (`esc`) and callers pass plain text, never markup; the
only markup passed between pieces is what these functions return. Style and script are inline: no external CSS,
JS or fonts.

The inline script records, once the page has loaded, how many images there are and which failed
(`data-images`, `data-images-broken` on <body>) and any script or resource error seen while loading
(`data-page-errors`), so that a headless browser can check the page with `--dump-dom` (tests/test_report.py).
It writes nothing to the console: a clean page is a silent one.
"""

from __future__ import annotations

import html
import re
from collections.abc import Iterable, Sequence

import pandas as pd

CSS = """
body { font-family: system-ui, -apple-system, "Segoe UI", Roboto, Helvetica, Arial, sans-serif; margin: 0 auto;
       max-width: 1200px; padding: 1rem 2rem 4rem; color: #1d1d1f; line-height: 1.45; }
h1 { margin-bottom: 0.2rem; } h2 { border-bottom: 2px solid #ddd; padding-top: 1rem; } h3 { margin-top: 2rem; }
nav ul { columns: 2; } .meta { color: #555; font-size: 0.9rem; }
.values { background: #eef4fb; border-left: 4px solid #3b73b9; padding: 0.5rem 0.8rem; }
.warning { background: #fff4e5; border-left: 4px solid #d9822b; padding: 0.5rem 0.8rem; }
.flag { display: inline-block; background: #d9822b; color: #fff; border-radius: 3px; padding: 0 0.4rem;
        font-size: 0.8rem; margin-left: 0.3rem; vertical-align: middle; }
.table-wrap { overflow-x: auto; }
table { border-collapse: collapse; font-size: 0.85rem; margin: 0.5rem 0; }
th, td { border: 1px solid #ccc; padding: 0.2rem 0.5rem; text-align: right; white-space: normal;
         overflow-wrap: anywhere; }
td { min-width: 4.5rem; }
th:first-child, td:first-child { text-align: left; min-width: 9rem; max-width: 22rem; }
thead th { background: #f3f3f3; }
tr.published td { color: #555; font-style: italic; }
tr.flagged td:first-child { color: #a55a14; font-weight: 600; }
tr.verdict-better td:last-child { color: #1a7f37; } tr.verdict-worse td:last-child { color: #c62828; }
figure { margin: 1rem 0; } figure img { max-width: 100%; height: auto; border: 1px solid #eee; }
figcaption { font-size: 0.85rem; color: #555; }
.gallery { display: flex; flex-wrap: wrap; gap: 0.5rem; }
.gallery figure { margin: 0; width: 220px; } .gallery img { width: 100%; }
ul.notes { font-size: 0.85rem; color: #555; }
ul.deviations { font-size: 0.85rem; border-left: 3px solid #d97706; padding-left: 1.6rem; }
"""

SCRIPT = """
(function () {
  var problems = [];
  window.addEventListener("error", function (event) {
    var source = event.target && event.target !== window ? (event.target.src || event.target.href || "") : "";
    problems.push(source ? "failed to load " + source : "error: " + event.message);
  }, true);
  window.addEventListener("unhandledrejection", function (event) { problems.push("unhandled rejection: " + event.reason); });
  window.addEventListener("load", function () {
    var images = Array.prototype.slice.call(document.images);
    var broken = images.filter(function (image) { return !(image.complete && image.naturalWidth > 0); });
    document.body.setAttribute("data-images", String(images.length));
    document.body.setAttribute("data-images-broken", broken.map(function (image) { return image.getAttribute("src"); }).join(" "));
    document.body.setAttribute("data-page-errors", problems.join(" | "));
    var wide = Array.prototype.slice.call(document.querySelectorAll("table")).filter(function (table) {
      return table.getBoundingClientRect().width > document.documentElement.clientWidth;
    });
    document.body.setAttribute("data-wide-tables", String(wide.length));
  });
})();
"""


def esc(text: object) -> str:
    """Text from the results folder, safe in element content and in quoted attributes."""
    return html.escape(str(text), quote=True)


def slug(text: str) -> str:
    """Lower-case letters, digits and dashes: for element ids and file names made from user text."""
    return re.sub(r"[^a-z0-9]+", "-", text.lower()).strip("-")[:60] or "item"


def heading(level: int, text: str, anchor: str | None = None, flags: Sequence[str] = ()) -> str:
    ident = f' id="{esc(anchor)}"' if anchor else ""
    return f"<h{level}{ident}>{esc(text)}{badges(flags)}</h{level}>\n"


def badges(flags: Iterable[str]) -> str:
    """Orange labels for what makes a run differ from the published protocol (random init, synthetic data...)."""
    return "".join(f' <span class="flag">{esc(flag)}</span>' for flag in flags)


def paragraph(text: str, css: str | None = None) -> str:
    attribute = f' class="{esc(css)}"' if css else ""
    return f"<p{attribute}>{esc(text)}</p>\n"


def notes(lines: Iterable[str]) -> str:
    items = "".join(f"<li>{esc(line)}</li>" for line in lines)
    return f'<ul class="notes">{items}</ul>\n' if items else ""


def definitions(items: Iterable[tuple[str, str]], css: str) -> str:
    """A list of (term, explanation) pairs, the term in bold: e.g. each deviation from a paper and its reason."""
    entries = "".join(f"<li><strong>{esc(term)}</strong>: {esc(text)}</li>" for term, text in items)
    return f'<ul class="{esc(css)}">{entries}</ul>\n' if entries else ""


def table(frame: pd.DataFrame, index_title: str = "", row_classes: Sequence[str] | None = None,
          caption: str | None = None) -> str:
    """A frame of text cells as an HTML table: index as the first column, `row_classes` (one CSS class string per
    row, '' for none) to style published, flagged or verdict rows."""
    classes = list(row_classes) if row_classes is not None else [""] * len(frame)
    head = "".join(f"<th>{esc(c)}</th>" for c in [index_title, *frame.columns])
    body = []
    for css, (index, values) in zip(classes, zip(frame.index, frame.to_numpy().tolist())):
        attribute = f' class="{esc(css)}"' if css else ""
        cells = "".join(f"<td>{esc(_cell(v))}</td>" for v in values)
        body.append(f"<tr{attribute}><td>{esc(index)}</td>{cells}</tr>")
    title = f"<caption>{esc(caption)}</caption>" if caption else ""
    return (f'<div class="table-wrap"><table>{title}<thead><tr>{head}</tr></thead>'
            f"<tbody>{''.join(body)}</tbody></table></div>\n")


def _cell(value: object) -> str:
    return "–" if value is None or (isinstance(value, float) and pd.isna(value)) else str(value)


def figure(src: str, alt: str, caption: str = "") -> str:
    """An image (a relative path under the report folder) with its alt text and caption."""
    text = f"<figcaption>{esc(caption)}</figcaption>" if caption else ""
    return f'<figure><img src="{esc(src)}" alt="{esc(alt)}">{text}</figure>\n'


def gallery(figures: Iterable[str]) -> str:
    return f'<div class="gallery">{"".join(figures)}</div>\n'


def navigation(entries: Sequence[tuple[str, str]]) -> str:
    """Links to the sections: (anchor, text)."""
    items = "".join(f'<li><a href="#{esc(anchor)}">{esc(text)}</a></li>' for anchor, text in entries)
    return f"<nav><ul>{items}</ul></nav>\n"


def page(title: str, body: str) -> str:
    return (f'<!DOCTYPE html>\n<html lang="en">\n<head>\n<meta charset="utf-8">\n'
            f'<meta name="viewport" content="width=device-width, initial-scale=1">\n'
            f'<meta name="generator" content="cxrbench report">\n<title>{esc(title)}</title>\n'
            f"<style>{CSS}</style>\n<script>{SCRIPT}</script>\n</head>\n<body>\n{body}</body>\n</html>\n")
