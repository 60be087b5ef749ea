"""Long text in Slack blocks: a failed run's traceback and `/ganops audit 200` keep their code
fences balanced, every text stays within Slack's limits, and an error keeps its last line."""

from __future__ import annotations

import traceback
from pathlib import Path
from typing import Any

import pytest

from ganops.bot.blocks import SECTION_LIMIT, blocks_to_dicts, clip, code, code_sections
from ganops.bot.blocks.common import Keep
from ganops.bot.blocks.ops import audit_blocks, models_blocks
from ganops.bot.blocks.runs import RunView, failure_blocks
from ganops.bot.ports import ModelVersionInfo
from ganops.bot.store import Store
from ganops.pipeline.events import MAX_ERROR_CHARS, error_text


def _texts(blocks: list[Any]) -> list[str]:
    out = []
    for block in blocks_to_dicts(blocks):  # slack_sdk validates lengths in to_dict()
        if "text" in block:
            out.append(block["text"]["text"])
        out += [f["text"] for f in block.get("fields", [])]
    return out


def _balanced(text: str) -> bool:
    return text.count("```") % 2 == 0


def _load(n: int, payload: str) -> None:
    if n == 0:
        raise ValueError(f"checkpoint <{payload}> & its reference profile do not match")
    _resolve(n - 1, payload)


def _resolve(n: int, payload: str) -> None:
    _load(n, payload)  # two functions in turn: Python folds only identical frames


def real_traceback(depth: int = 80) -> str:
    """A traceback Python itself wrote, long enough to pass Slack's limit several times,
    wrapped the way kfp.local reports a failed task."""
    try:
        _load(depth, "models:/ganops-cut@champion")
    except ValueError:
        tb = traceback.format_exc()
    return f"Task 'train' finished with status FAILURE\nInner task failed: 'train'\n{tb}"


def test_a_failed_runs_traceback_keeps_its_exception_line() -> None:
    tb = real_traceback()
    assert len(tb) > 3 * SECTION_LIMIT
    error = error_text(RuntimeError(tb))  # what the pipeline records
    assert len(error) <= MAX_ERROR_CHARS
    assert error.rstrip().endswith("do not match")
    view = RunView(
        run_id="r-1",
        model="cut",
        requested_by="U1",
        state="failed",
        failed_step="train",
        error=error,
    )
    texts = _texts(failure_blocks(view))
    shown = texts[-1]
    assert len(shown) <= SECTION_LIMIT
    assert _balanced(shown)
    assert shown.startswith("```")
    assert shown.endswith("```")
    last = "ValueError: checkpoint &lt;models:/ganops-cut@champion&gt; &amp; its reference"
    assert last in shown.splitlines()[-1]  # the exception line is the block's last line
    assert "Inner task failed" in shown  # and the start is kept too
    assert "cut" in shown


def test_code_keeps_head_or_ends_and_never_tears_an_entity() -> None:
    text = "\n".join(f"line {i} a&b <x>" for i in range(1000))
    keeps: tuple[Keep, ...] = ("head", "ends")
    for keep in keeps:
        for limit in (50, 151, 777, SECTION_LIMIT):
            block = code(text, limit, keep=keep)
            assert len(block) <= limit, (keep, limit)
            assert _balanced(block), (keep, limit)
            inner = block[3:-3]
            for piece in inner.split("&")[1:]:
                assert piece.startswith(("amp;", "lt;", "gt;")), (keep, limit, piece[:8])
    assert "line 999" in code(text, keep="ends")
    assert "line 0 " in code(text, keep="ends")
    assert "line 999" not in code(text)
    assert "line 0 " in code(text)


def test_one_long_line_error_keeps_its_end() -> None:
    line = "RuntimeError: " + "x" * 5000 + " THE END"
    block = code(line, keep="ends")
    assert len(block) <= SECTION_LIMIT
    assert _balanced(block)
    assert block.endswith("THE END```")
    assert block.startswith("```RuntimeError")


def test_backticks_in_the_text_cannot_close_the_block() -> None:
    for text in ("```rm -rf```", "`", "a`\n`b", "x" * 4000 + "```"):
        block = code(text, keep="ends")
        assert block.count("```") == 2, text[:20]
    for block in _texts(code_sections("`start\n" * 2000)):
        assert block.count("```") == 2


def test_clip_closes_a_code_block_it_cuts_into() -> None:
    text = "*Title*\n```" + "y" * 5000 + "```"
    out = clip(text)
    assert len(out) <= SECTION_LIMIT
    assert _balanced(out)
    assert "… (cut)" in out
    mention = "see " + "z" * 2990 + " <@U12345678>"
    assert "<@U" not in clip(mention)  # a torn mention is dropped whole


@pytest.fixture
def audit_store(tmp_path: Path) -> Store:
    store = Store(tmp_path)
    for i in range(260):
        store.audit(
            f"U0{i:07d}",
            "approve" if i % 3 else "deploy",
            f"approval:a-{i:04d}",
            "ok" if i % 5 else "refused",
            {"version": str(i), "reason": "two-person rule <needs a second> & more " * (i % 4)},
            path="button",
        )
    return store


def test_audit_200_splits_into_sections_that_each_fit(audit_store: Store) -> None:
    rows = audit_store.list_audit(200)
    assert len(rows) == 200
    blocks = audit_blocks(rows)
    assert len(blocks) <= 50
    texts = _texts(blocks)
    assert len(texts) > 2  # split, not cut
    for t in texts:
        assert len(t) <= SECTION_LIMIT
        assert _balanced(t)
    shown = "\n".join(t.strip("`") for t in texts[1:])
    for row in rows:  # every row is shown, the oldest (last) one included
        assert f"approval:a-{int(row.object[-4:]):04d}" in shown
    assert "cut" not in shown


def test_too_much_output_says_how_much_was_left_out() -> None:
    text = "\n".join(f"row {i:05d} " + "w" * 200 for i in range(500))
    sections = _texts(code_sections(text, max_sections=3))
    assert len(sections) == 3
    assert all(len(t) <= SECTION_LIMIT and _balanced(t) for t in sections)
    shown = sum(t.count("row ") for t in sections)
    assert sections[-1].endswith(f"… {500 - shown} more lines cut```")


def test_many_model_versions_fit() -> None:
    versions = [
        ModelVersionInfo("cut", str(i), ("champion",) if i == 7 else (), 0.5, 1.7e9)
        for i in range(400)
    ]
    texts = _texts(models_blocks("cut", versions))
    assert all(len(t) <= SECTION_LIMIT and _balanced(t) for t in texts)
