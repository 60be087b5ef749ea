"""The Block Kit picture renderer: every block our builders make, buttons in their colours,
pictures where the blocks and files say, placeholders instead of errors, and the README
generator end to end."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path
from typing import Any

import numpy as np
from blockpng.fonts import FontBook
from blockpng.render import Reply, render_message
from blockpng.text import Style, layout, parse_inline
from PIL import Image

from ganops.bot.blocks import blocks_to_dicts
from ganops.bot.blocks.alarms import AlarmView, alarm_card
from ganops.bot.blocks.runs import CardView, RunView, approval_buttons, results_card, run_blocks

ROOT = Path(__file__).resolve().parents[2]
GREEN = (0, 122, 90)
RED = (224, 30, 90)
FONTS = FontBook()  # font discovery walks directories once for the whole module


def render(blocks: list[dict[str, Any]], **kw: Any) -> Image.Image:
    return render_message(blocks, "fallback text", fonts=FONTS, **kw)


def section(text: str) -> dict[str, Any]:
    return {"type": "section", "text": {"type": "mrkdwn", "text": text}}


def count(
    img: Image.Image, colour: tuple[int, int, int], box: tuple[int, int, int, int] | None = None
) -> int:
    """How many pixels (in `box`) have exactly this colour."""
    region = np.asarray((img.crop(box) if box else img).convert("RGB"))
    return int((region == np.array(colour)).all(axis=-1).sum())


def card() -> list[dict[str, Any]]:
    view = CardView(
        run_id="local-1",
        model="cut",
        version="7",
        requested_by="U1",
        metrics={"deploy_score": 0.5, "ssim": 0.2},
        champion_metrics={"deploy_score": 0.4, "ssim": 0.1},
        champion_version="6",
        deploy_score=0.5,
        data_digest="sha256:abc",
        files_note="files in the thread",
    )
    return blocks_to_dicts(results_card(view, "apv1"))


def alarm() -> list[dict[str, Any]]:
    view = AlarmView("ep1", "cut", "7", "firing", 2.4, 2.6, {"brightness": 3.1}, 0.0, 60.0)
    return blocks_to_dicts(alarm_card(view))


def test_every_block_type_of_our_builders_renders() -> None:
    run = blocks_to_dicts(run_blocks(RunView("r1", "cut", "U1", {"epochs": 5}, "running")))
    image = {
        "type": "image",
        "image_url": "grid",
        "alt_text": "grid",
        "title": {"type": "plain_text", "text": "Grid"},
    }
    blocks = card() + alarm() + run + [image]
    kinds = {b["type"] for b in blocks}
    assert kinds == {"header", "section", "context", "divider", "actions", "image"}
    assert any("fields" in b for b in blocks)
    img = render(blocks, images={"grid": Image.new("RGB", (64, 32), (10, 200, 10))}, width=640)
    assert img.mode == "RGB"
    assert img.width == 640
    assert count(img, (10, 200, 10)) > 1000  # the image block shows the picture it names


def test_height_grows_with_content() -> None:
    short = render([section("one line")])
    longer = render([section("one line"), {"type": "divider"}, section("two\nlines")])
    wrapped = render([section("word " * 400)])
    assert short.height < longer.height < wrapped.height


def test_buttons_are_drawn_in_their_colours() -> None:
    blocks = [section("decide"), *blocks_to_dicts([approval_buttons("a1")])]
    img = render(blocks)
    bottom = (0, img.height // 2, img.width, img.height)
    green, red = count(img, GREEN, bottom), count(img, RED, bottom)
    assert green > 300  # solid button faces, not stray pixels
    assert red > 300
    xs_green = [x for x in range(img.width) if img.getpixel((x, img.height - 20)) == GREEN]
    xs_red = [x for x in range(img.width) if img.getpixel((x, img.height - 20)) == RED]
    assert xs_green
    assert xs_red
    assert max(xs_green) < min(xs_red)  # Approve sits left of Reject
    assert count(render([section("decide")]), GREEN) == 0


def test_unknown_blocks_and_elements_become_placeholders() -> None:
    odd: list[dict[str, Any]] = [
        {"type": "rich_text", "elements": []},
        {"foo": 1},
        {"type": "image", "image_url": "gone"},
    ]
    actions: dict[str, Any] = {"type": "actions", "elements": [{"type": "static_select"}, "x"]}
    plain = render([section("x")])
    img = render([section("x"), *odd, actions])
    assert img.height > plain.height + 3 * 36


def test_files_and_thread_replies_show_their_pictures() -> None:
    blue, orange = (
        Image.new("RGB", (200, 100), (0, 0, 250)),
        Image.new("RGB", (50, 50), (250, 120, 0)),
    )
    alone = render(card())
    with_files = render(
        card(), images={"Sample grid": blue}, replies=[Reply("files", images={"Loss": orange})]
    )
    assert with_files.height > alone.height + 100 + 50
    assert count(with_files, (0, 0, 250)) > 15000
    assert count(with_files, (250, 120, 0)) > 2000


def test_text_only_message_and_missing_fonts(tmp_path: Path) -> None:
    bare = FontBook(dirs=[tmp_path])  # no font files at all: Pillow's default is used
    img = render_message([], "*hello* <@U1> `code` :rocket: :not_an_emoji:", fonts=bare)
    assert img.height > 40
    assert render_message(card() + alarm(), "t", fonts=bare).height > img.height


def test_mrkdwn_runs() -> None:
    users = {"U1": "alice"}
    runs = parse_inline(
        "*Retrain `cut`* by <@U1> via <http://kfp/run|KFP run> _now_ auto_deploy", Style(), users
    )
    by_text = {r.text.strip(): r.style for r in runs if r.text.strip()}
    assert by_text["Retrain"].bold
    assert by_text["cut"].bold
    assert by_text["cut"].code
    assert by_text["@alice"].mention
    assert "KFP run" in by_text
    assert "http://kfp/run" not in by_text
    assert by_text["now"].italic
    assert not any(s.italic for t, s in by_text.items() if "auto_deploy" in t)


def test_code_blocks_keep_their_lines() -> None:
    boxes = layout("head\n```a  b\nc```\ntail", 400, FONTS)
    assert [b.pre for b in boxes] == [False, True, False]
    assert len(boxes[1].lines) == 2
    assert [p.run.text for p in boxes[1].lines[0]] == ["a", "  ", "b"]


def test_a_modal_draws_each_input_as_a_labelled_field_and_a_submit_button() -> None:
    from blockpng.inputs import FIELD_H
    from blockpng.render import blocks_piece
    from blockpng.surfaces import render_home, render_modal

    from ganops.bot.blocks.home import HomeView, home_view
    from ganops.bot.blocks.modal import ModalOrigin, retrain_modal

    view = retrain_modal(ModalOrigin("C1", "t1")).to_dict()
    inputs = [b for b in view["blocks"] if b["type"] == "input"]
    one = blocks_piece(inputs[:1], 400, fonts=FontBook())
    assert one.height > FIELD_H + 24  # label, box and hint; a placeholder is 36 px
    img = render_modal(view)
    assert img.height > len(inputs) * (FIELD_H + 24)
    assert count(img, GREEN) > 300  # the Start run button
    home = render_home(home_view(HomeView(user="U1")).to_dict())
    assert home.width == 760
    assert count(home, GREEN) > 30  # the selected Home tab


def test_renderer_does_not_load_torch() -> None:
    code = "import sys, blockpng.render; print('torch' in sys.modules)"
    out = subprocess.run(
        [sys.executable, "-c", code],
        cwd=ROOT / "scripts",
        capture_output=True,
        text=True,
        check=True,
    )
    assert out.stdout.strip() == "False"
