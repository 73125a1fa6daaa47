"""Lessons with pictures: diagrams drawn from the spec, and the walkthrough as a web page.

The diagrams are checked by structure (which boxes, which branches, which residuals), not by
pixels; the page is checked for what it holds and, where Chromium is installed, rendered in
it headless.
"""

import re
import shutil
import subprocess
from pathlib import Path

import pytest
from typer.testing import CliRunner

import roadmap
from roadmap.cli import app
from roadmap.teach import diagram, lesson
from roadmap.teach.diagram import Box, Par, Res
from tests.helpers import representative

runner = CliRunner()
FINAL = roadmap.build_spec("alternating_se", roadmap="repvit")


def kinds(node: diagram.Node) -> list[str]:
    return [b.kind for b in diagram.boxes(node)]


def test_the_repvit_block_has_three_branches_in_training_and_one_once_fused() -> None:
    train = diagram.part(FINAL, "stages.2.blocks.0").root
    (branches,) = diagram.find(train, Par)
    assert len(branches.branches) == 3
    assert Box("identity", "identity") in branches.branches
    assert [kinds(b) for b in branches.branches] == [["dw", "bn"], ["dw"], ["identity"]]
    fused = diagram.part(FINAL, "stages.2.blocks.0", fused=True).root
    assert diagram.find(fused, Par) == [] and "bn" not in kinds(fused)
    assert kinds(fused)[:2] == ["dw", "se"]  # one folded DW, then SE (1st block of a stage)
    assert len(diagram.find(train, Res)) == len(diagram.find(fused, Res)) == 1  # the FFN's skip


def test_the_mobilenetv3_block_is_an_inverted_residual() -> None:
    spec = roadmap.build_spec("gelu", roadmap="repvit")
    root = diagram.part(spec, "stages.2.blocks.0").root
    assert kinds(root) == ["conv", "bn", "act", "dw", "bn", "act", "conv", "bn"]
    assert len(diagram.find(root, Res)) == 1  # 80 -> 80 at stride 1: a residual
    assert "1x1 conv 80->200" in [b.label for b in diagram.boxes(root)]


def test_downsampling_stem_and_head_parts() -> None:
    down = diagram.part(FINAL, "stages.2.downsample").root
    labels = [b.label for b in diagram.boxes(down)]
    assert "DW 3x3, 96, stride 2" in labels and "1x1 conv 96->192" in labels
    stem = [b.label for b in diagram.boxes(diagram.part(FINAL, "stem").root)]
    assert stem[0] == "Conv 3x3 3->24, stride 2" and "Conv 3x3 24->48, stride 2" in stem
    mnv3_head = kinds(diagram.part(roadmap.build_spec("gelu", roadmap="repvit"), "head").root)
    assert mnv3_head == ["conv", "bn", "act", "pool", "conv", "act", "linear"]
    assert kinds(diagram.part(FINAL, "head").root) == ["pool", "bn", "linear"]
    assert kinds(diagram.part(FINAL, "head", fused=True).root) == ["pool", "linear"]


def test_the_svg_holds_every_box_escaped() -> None:
    d = diagram.part(FINAL, "stages.2.blocks.0")
    text = diagram.svg(d)
    assert text.startswith("<svg") and text.count('class="box ') == len(diagram.boxes(d.root))
    assert text.count('class="add"') == 2  # the re-parameterized sum and the residual
    assert "SE 192-&gt;48-&gt;192, sigmoid" in text  # "->" escaped, not raw markup


@pytest.mark.parametrize("name", representative(roadmap.list_steps("repvit")[1:]))
def test_every_step_draws_what_it_changes(name: str) -> None:
    les = lesson.lesson(name, "repvit")
    titles = [d.title for d in les.diagrams]
    existed = lesson._has_part(les.previous.spec(), les.block_path)  # stage_ratio adds blocks
    assert [t.split(":")[0] for t in titles[:2]][: 2 if existed else 1] == (
        ["before", "after"] if existed else ["after"]
    )
    assert all(les.block_path in t for t in titles)
    after = next(d for d in les.diagrams if d.title.startswith("after:"))
    reparam = bool(diagram.find(after.root, Par))
    assert titles[-1].startswith("after, deployed:") == reparam


def test_bad_parts_are_one_line() -> None:
    result = runner.invoke(app, ["draw", "--upto", "gelu", "--part", "stages.9.blocks.0"])
    assert result.exit_code == 2 and "the network has 4 stages" in result.output


def test_draw_writes_an_svg(tmp_path: Path) -> None:
    out = tmp_path / "block.svg"
    args = ["draw", "--upto", "alternating_se", "--part", "stages.1.blocks.0", "--fused"]
    result = runner.invoke(app, [*args, "--out", str(out)])
    assert result.exit_code == 0, result.output
    assert out.read_text().startswith("<svg") and "deploy form (fused)" in out.read_text()


@pytest.fixture(scope="module")
def page(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("page") / "walkthrough.html"
    result = runner.invoke(app, ["walkthrough", "--no-latency", "--out", str(out)])
    assert result.exit_code == 0, result.output
    return out


@pytest.mark.slow
def test_the_page_is_self_contained(page: Path) -> None:
    text = page.read_text()
    assert list(page.parent.iterdir()) == [page]  # nothing beside it
    assert not re.search(r'(src|href)="(?!data:|#)', text)  # every image travels inside
    headings = re.findall(r'<h2 id="\w+">(\d+)\. <code>(\w+)</code>', text)
    assert [name for _, name in headings] == roadmap.list_steps("repvit")
    assert text.count('src="data:image/svg+xml;base64,') >= 2 * (len(headings) - 1)
    assert "<table>" in text and "<script" not in text


def test_the_markdown_walkthrough_links_its_diagram_files(tmp_path: Path) -> None:
    out = tmp_path / "w.md"
    result = runner.invoke(
        app, ["walkthrough", "--upto", "gelu", "--no-latency", "--out", str(out)]
    )
    assert result.exit_code == 0, result.output
    links = re.findall(r"\]\((w_diagrams/[^)]+\.svg)\)", out.read_text())
    assert links and all((tmp_path / link).read_text().startswith("<svg") for link in links)
    # without latency the roadmap plot stays (sizes and accuracy), and the command says so
    assert "](w_roadmap.png)" in out.read_text() and (tmp_path / "w_roadmap.png").exists()
    assert "--no-latency: the lessons carry no latency" in result.stderr


CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
FLAGS = [
    "--headless",
    "--no-sandbox",  # as root, and in containers
    "--disable-gpu",
    "--disable-background-networking",  # this machine's network is closed: no lookups
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
    "--hide-scrollbars",
]


@pytest.mark.slow  # a browser start: seconds; the fast tier checks the page's HTML
@pytest.mark.skipif(CHROMIUM is None, reason="needs Chromium (apt-get install chromium)")
def test_the_page_renders_in_a_real_browser(page: Path, tmp_path: Path) -> None:
    profile = ["--user-data-dir=" + str(tmp_path / "profile")]
    dom = subprocess.run(
        [CHROMIUM, *FLAGS, *profile, "--enable-logging=stderr", "--dump-dom", page.as_uri()],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert dom.returncode == 0, dom.stderr[-2000:]
    assert "CONSOLE" not in dom.stderr and "Uncaught" not in dom.stderr  # no page errors
    assert dom.stdout.count("<h2") == len(roadmap.list_steps("repvit")) + 1
    assert dom.stdout.count('<li><a href="#') == len(roadmap.list_steps("repvit"))
    assert dom.stdout.count("<img ") >= 20
    shot = tmp_path / "page.png"
    subprocess.run(
        [CHROMIUM, *FLAGS, *profile, f"--screenshot={shot}", "--window-size=1280,1600",
         page.as_uri()],
        capture_output=True,
        timeout=120,
        check=True,
    )  # fmt: skip
    assert shot.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and shot.stat().st_size > 50_000
