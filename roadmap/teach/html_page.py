"""The walkthrough (or one lesson) as one self-contained HTML page, for a classroom projector.

Everything the page shows travels inside the file: the diagrams as SVG data, the roadmap plot
as PNG data, the styles in a ``<style>`` element; no script, no font or image is fetched, so
it opens the same offline, from a USB stick or an e-mail. The text is the lessons' Markdown,
rendered by markdown-it-py (which rich already brings).
"""

from __future__ import annotations

import base64
import html
import re
import tempfile
from pathlib import Path
from typing import Any

from markdown_it import MarkdownIt

from roadmap.arch.roadmaps import get_roadmap
from roadmap.errors import RoadmapError
from roadmap.teach import diagram
from roadmap.teach.diagram import Diagram

STYLE = """
body { font-family: "Helvetica Neue", Helvetica, Arial, sans-serif; font-size: 19px;
       line-height: 1.5; color: #222; max-width: 1180px; margin: 0 auto; padding: 24px 40px; }
h1 { font-size: 2.1em; margin-bottom: 0.2em; }
h2 { font-size: 1.5em; margin-top: 2.2em; border-bottom: 2px solid #ddd; padding-bottom: 0.2em; }
code { background: #f3f3f3; padding: 0 0.25em; border-radius: 3px; font-size: 0.92em; }
pre { background: #f6f8fa; padding: 12px 16px; overflow-x: auto; font-size: 0.8em;
      line-height: 1.35; border-radius: 6px; }
table { border-collapse: collapse; font-size: 0.72em; margin: 1em 0; }
th, td { border: 1px solid #ccc; padding: 3px 7px; text-align: right; }
th:first-child, td:first-child { text-align: left; }
img { max-width: 100%; }
figure.diagrams { display: flex; flex-wrap: wrap; gap: 18px; align-items: flex-start; }
figure.diagrams img { border: 1px solid #e5e5e5; border-radius: 6px; background: #fff; }
nav { font-size: 0.85em; columns: 2; }
hr { border: none; border-top: 1px solid #eee; margin: 2em 0; }
"""


_OWN_DATA = ("data:image/svg+xml;base64,", "data:image/png;base64,")


def svg_data(d: Diagram) -> str:
    """A diagram as an ``<img>`` source that needs no file."""
    return "data:image/svg+xml;base64," + base64.b64encode(diagram.svg(d).encode()).decode()


def png_data(path: Path) -> str:
    """A PNG file as an ``<img>`` source that needs no file."""
    return "data:image/png;base64," + base64.b64encode(Path(path).read_bytes()).decode()


def html_page(markdown_text: str, title: str) -> str:
    """A complete HTML document from Markdown (diagram images gathered into figures)."""
    renderer = MarkdownIt("commonmark", {"html": False}).enable("table")
    default = renderer.validateLink
    # our own diagrams come as SVG data, which markdown-it refuses by default (an SVG from
    # an untrusted author can carry script; these are generated here, as text and shapes)
    renderer.validateLink = lambda url: url.startswith(_OWN_DATA) or default(url)
    body = _anchor_lessons(_group_figures(renderer.render(markdown_text)))
    return (
        '<!DOCTYPE html>\n<html lang="en">\n<head>\n<meta charset="utf-8">\n'
        f"<title>{html.escape(title)}</title>\n"
        '<meta name="viewport" content="width=device-width, initial-scale=1">\n'
        f"<style>{STYLE}</style>\n</head>\n<body>\n{body}\n</body>\n</html>\n"
    )


def _anchor_lessons(body: str) -> str:
    """Each lesson heading gets the step's name as its id (``walkthrough.html#widen``), and a
    list of links to them goes before the first lesson."""
    pattern = re.compile(r"<h2>(\d+)\. <code>(\w+)</code>")
    steps = pattern.findall(body)
    body = pattern.sub(lambda m: f'<h2 id="{m[2]}">{m[1]}. <code>{m[2]}</code>', body)
    if len(steps) < 2:
        return body
    links = "".join(f'<li><a href="#{name}">{n}. {name}</a></li>' for n, name in steps)
    first = body.index(f'<h2 id="{steps[0][1]}">')
    return body[:first] + f'<nav><ol start="0">{links}</ol></nav>\n' + body[first:]


def _group_figures(body: str) -> str:
    """Paragraphs that hold only diagram images become one row of figures."""
    out, lines = [], body.split("\n")
    for line in lines:
        if line.startswith('<p><img src="data:image/svg') and line.endswith("</p>"):
            out.append('<figure class="diagrams">' + line[3:-4] + "</figure>")
        else:
            out.append(line)
    return "\n".join(out)


def write_lessons(out: Path, lessons: list, study: Any = None) -> list[Path]:
    """Write lessons as one document: ``.html`` self-contained, ``.md`` with its diagrams (and
    the roadmap plot) as files beside it. With a ``study`` it is the walkthrough: the measured
    table and the plot first. Returns every file written."""
    from roadmap.report import study_table
    from roadmap.teach import lesson
    from roadmap.util import files

    out = Path(out)
    if out.suffix not in (".md", ".html"):
        raise RoadmapError(f"{out}: write lessons to a .md or an .html file")
    written: list[Path] = []
    if out.suffix == ".html":
        image = svg_data
    else:
        folder = out.with_name(out.stem + "_diagrams")

        def image(d: Diagram) -> str:
            path = folder / (_slug(d.title) + ".svg")
            files.write_text(path, diagram.svg(d) + "\n")
            written.append(path)
            return f"{folder.name}/{path.name}"

    if study is None:
        text = "\n\n".join(lesson.lesson_markdown(les, heading="#", image=image) for les in lessons)
        title = f"roadmap: {lessons[0].step.name}"
    else:
        table = study_table.study_markdown(study, "Every step, measured here", paper=True)
        plot = _plot(study, out, inline=out.suffix == ".html", written=written)
        text = lesson.walkthrough_markdown(lessons, table, plot, image=image)
        title = lesson.walkthrough_title(get_roadmap(lessons[0].step.roadmap))
    content = html_page(text, title) if out.suffix == ".html" else text
    files.write_text(out, content)
    return [out, *written]


def _plot(study: Any, out: Path, inline: bool, written: list[Path]) -> str:
    """The roadmap plot: a PNG beside the document, or its data for a self-contained page
    (without latency it plots sizes and accuracy, and says so in its notes)."""
    from roadmap.report.plot import plot_study

    path = out.with_name(out.stem + "_roadmap.png")
    if inline:
        with tempfile.TemporaryDirectory(prefix="roadmap-page-") as tmp:
            return png_data(plot_study(study, Path(tmp) / "roadmap.png"))
    plot_study(study, path)
    written.append(path)
    return path.name


def _slug(text: str) -> str:
    return re.sub(r"[^a-z0-9]+", "-", text.lower()).strip("-")[:80]
