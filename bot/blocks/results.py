"""The readable parts of the results card: headline metrics with human names and the way they
should move, the gate's verdict in words with its margin, a short data digest, and the links.
Pure helpers for `bot.blocks.runs.results_card`; the full metric table goes in the thread.

The metric names are `model.evaluate`'s (that module loads torch, so they are listed here).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

from slack_sdk.models.blocks import MarkdownTextObject, SectionBlock

from ganops.bot.blocks.common import code, escape, link, literal

HEADLINE_LIMIT = 5
DIGEST_CHARS = 12


@dataclass(frozen=True)
class Headline:
    key: str  # the metric's name in MLflow and the pipeline's results
    name: str  # what a person reads
    higher_is_better: bool

    @property
    def title(self) -> str:
        # Words, not an arrow: "↓" after a name reads as "went down".
        return f"{self.name} ({'higher' if self.higher_is_better else 'lower'} is better)"


# Every metric the pipeline reports, by its MLflow key, in words a reviewer reads: "B" is the
# target-style domain, the ground truth is the target-style image paired with an input.
# The *_term and *_guard values are the deploy score's internals: in the thread table only.
# In the order the thread's table lists them.
METRIC_NAMES: dict[str, str] = {
    "deploy_score": "deploy score",
    "ssim": "likeness to the ground truth, SSIM",
    "kid": "distance to the target style, KID",
    "hist_dist": "colour distance to the target style",
    "diversity": "variety of outputs vs inputs",
    "psnr": "pixel match to the ground truth, PSNR in dB",
    "kid_term": "score part: target style",
    "hist_term": "score part: colours",
    "ssim_term": "score part: likeness",
    "diversity_guard": "score part: variety guard",
}
# The same, short enough for the thread's monospace table to fit a Slack message's width.
SHORT_NAMES: dict[str, str] = {
    "deploy_score": "deploy score",
    "ssim": "likeness (SSIM)",
    "psnr": "pixel match (PSNR dB)",
    "kid": "style distance (KID)",
    "hist_dist": "colour distance",
    "diversity": "output variety",
    "kid_term": "part: style",
    "hist_term": "part: colours",
    "ssim_term": "part: likeness",
    "diversity_guard": "part: variety guard",
}
LOWER_IS_BETTER = frozenset({"kid", "hist_dist"})


def metric_name(key: str, short: bool = False) -> str:
    """The plain name of a metric; a key this bot does not know is shown as it is."""
    return (SHORT_NAMES if short else METRIC_NAMES).get(key, key)


def judged(key: str, delta: float) -> str:
    """ "better", "worse" or "same", by which way the metric should move."""
    if delta == 0:
        return "same"
    return "better" if (delta < 0) == (key in LOWER_IS_BETTER) else "worse"


def _headline(key: str) -> Headline:
    return Headline(key, metric_name(key), key not in LOWER_IS_BETTER)


# In the order the card shows them; the first HEADLINE_LIMIT that a run measured are shown.
HEADLINES: tuple[Headline, ...] = tuple(
    _headline(k) for k in ("deploy_score", "ssim", "kid", "hist_dist", "diversity", "psnr")
)


def number(value: float) -> str:
    """Three significant figures: 0.0556, 0.116, 17.2, 142 (the thread has four decimals)."""
    if abs(value) >= 100:
        return f"{value:.0f}"
    return f"{value:.3g}"


def _signed(value: float) -> str:
    return ("+" if value >= 0 else "−") + number(abs(value))


def headline_text(h: Headline, new: float, old: float | None) -> str:
    """ "*likeness to the ground truth, SSIM (higher is better)*\n0.116 · champion 0.086
    (+0.031, better)"."""
    line = f"*{h.title}*\n{number(new)}"
    if old is not None:
        delta = new - old
        better = delta > 0 if h.higher_is_better else delta < 0
        verdict = "same" if delta == 0 else ("better" if better else "worse")
        line += f" · champion {number(old)} ({_signed(delta)}, {verdict})"
    return line


def headlines_section(
    metrics: Mapping[str, float], champion: Mapping[str, float] | None
) -> SectionBlock | None:
    """Up to HEADLINE_LIMIT headline metrics as a two-column section; None if none is known."""
    shown = [h for h in HEADLINES if h.key in metrics][:HEADLINE_LIMIT]
    if not shown:
        return None
    fields = [
        MarkdownTextObject(
            text=headline_text(h, metrics[h.key], None if champion is None else champion.get(h.key))
        )
        for h in shown
    ]
    return SectionBlock(fields=fields)


def verdict(
    *,
    passed: bool | None,
    score: float | None,
    champion_score: float | None,
    champion_version: str | None,
    reason: str | None = None,
) -> str:
    """The gate's verdict in words, with the margin over the champion when there is one;
    otherwise with the pipeline's own reason (which names the bar: floor or untrained G)."""
    if passed is None:
        head = ":grey_question: *Gate: no verdict recorded*"
    elif passed:
        head = ":white_check_mark: *Gate passed*"
    else:
        head = ":no_entry: *Gate not passed*"
    if score is None or champion_score is None:
        return f"{head}: {escape(reason)}" if reason else head
    margin = score - champion_score
    rel = f", {margin / abs(champion_score):+.0%}" if champion_score else ""
    verb = "beats" if margin > 0 else "does not beat"
    line = (
        f"{head}: deploy score {number(score)} {verb} champion "
        f"v{escape(champion_version or '?')} ({number(champion_score)}) by {_signed(margin)}{rel}"
    )
    # The pipeline's reason carries the paired bootstrap's interval: the gate's real test.
    return f"{line}\n_{escape(reason)}_" if reason else line


def short_digest(digest: str | None) -> str:
    """ "sha256:ea5845e78d77…64 hex" -> "ea5845e78d77": enough to tell data sets apart."""
    if not digest:
        return "unknown"
    return digest.partition(":")[2][:DIGEST_CHARS] if ":" in digest else digest[:DIGEST_CHARS]


def data_line(uri: str | None, digest: str | None) -> str:
    where = literal(uri) if uri else "unknown source"
    return f"*Data*: {where} · digest {literal(short_digest(digest))}"


def links_line(
    *,
    mlflow_run_url: str | None,
    model_version_url: str | None,
    version: str,
    kfp_link: str,
) -> str:
    """The links that are known, the KFP run's (or the local run's id) always."""
    links = []
    if mlflow_run_url:
        links.append(link(mlflow_run_url, "MLflow run"))
    if model_version_url:
        links.append(link(model_version_url, f"model version v{escape(version)}"))
    links.append(kfp_link)
    return " · ".join(links)


def metrics_reply_text(table: str, champion_version: str | None) -> str:
    """The thread reply under the card: every metric, internals included, to four decimals."""
    versus = f"champion v{champion_version}" if champion_version else "no champion"
    return f"Every metric, challenger vs {versus}:\n{code(table)}"


__all__ = [
    "HEADLINES",
    "LOWER_IS_BETTER",
    "METRIC_NAMES",
    "SHORT_NAMES",
    "Headline",
    "data_line",
    "headlines_section",
    "judged",
    "links_line",
    "metric_name",
    "metrics_reply_text",
    "number",
    "short_digest",
    "verdict",
]
