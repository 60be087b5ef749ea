"""The model server's Prometheus metrics, in a registry of their own.

The names are public (the alert rules in manifests/monitoring/ and the bot's drift watcher
query them); change them only together with those.
"""

from __future__ import annotations

from collections.abc import Mapping

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest
from prometheus_client.exposition import CONTENT_TYPE_LATEST

from ganops.model.drift import DriftScore

LATENCY_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0)
BATCH_BUCKETS = (1, 2, 4, 8, 16, 32, 64)
CONTENT_TYPE = CONTENT_TYPE_LATEST
INITIAL_STATUSES = ("200", "400", "500", "503", "504")


class ServingMetrics:
    """Request, latency, batch, model-info, drift and output metrics of one server process."""

    def __init__(self) -> None:
        self.registry = CollectorRegistry(auto_describe=True)
        reg = self.registry
        self.requests = Counter(
            "gan_requests_total", "Stylize requests by HTTP status.", ["status"], registry=reg
        )
        # Series at 0 from the first scrape: `increase()` and `rate()` ignore a counter's
        # first sample, so a status whose series appeared with its first request would lose
        # the requests counted before that scrape (a canary's first errors, say).
        for status in INITIAL_STATUSES:
            self.requests.labels(status)
        self.latency = Histogram(
            "gan_request_latency_seconds",
            "Stylize request latency, from request headers read to response ready.",
            buckets=LATENCY_BUCKETS,
            registry=reg,
        )
        self.batch = Histogram(
            "gan_batch_size", "Images per stylize request.", buckets=BATCH_BUCKETS, registry=reg
        )
        self.rejected = Counter(
            "gan_requests_rejected_total",
            "Requests refused with 503 because --max-inflight requests were in flight.",
            registry=reg,
        )
        self.timeouts = Counter(
            "gan_request_timeouts_total", "Requests answered 504 at the deadline.", registry=reg
        )
        self.inflight = Gauge("gan_inflight_requests", "Requests in flight.", registry=reg)
        self.drift_dropped = Counter(
            "gan_drift_dropped_total",
            "Image batches left out of drift monitoring because its queue was full.",
            registry=reg,
        )
        labels = ["model", "version"]
        self.info = Gauge("gan_model_info", "The served model (value 1).", labels, registry=reg)
        self.drift = Gauge(
            "gan_input_drift_score",
            "Input drift statistic / its calibrated threshold; > 1 means drift.",
            labels,
            registry=reg,
        )
        self.feature = Gauge(
            "gan_input_drift_feature_score",
            "Per-feature KS distance / its Bonferroni threshold, on the same scale.",
            [*labels, "feature"],
            registry=reg,
        )
        self.fill = Gauge(
            "gan_drift_window_fill", "How full the drift window is (0..1).", labels, registry=reg
        )
        self.output = Gauge(
            "gan_output_feature",
            "Mean of each output-image feature (the drift features) over the last "
            "--output-window output images.",
            [*labels, "feature"],
            registry=reg,
        )
        self.output_dropped = Counter(
            "gan_output_stats_dropped_total",
            "Output batches left out of the output statistics because the queue was full.",
            registry=reg,
        )
        self._labels: tuple[str, str] | None = None

    def set_model(self, model: str, version: str, drift: bool) -> None:
        """Announce the served model; with a drift monitor, its gauges start at 0."""
        self._labels = (model, version)
        self.info.labels(model, version).set(1)
        if drift:
            self.drift.labels(model, version).set(0)
            self.fill.labels(model, version).set(0)

    def observe_request(self, status: int, seconds: float, batch: int | None) -> None:
        self.requests.labels(str(status)).inc()
        self.latency.observe(seconds)
        if batch is not None:
            self.batch.observe(batch)

    def observe_drift(self, score: DriftScore | None, fill: float) -> None:
        """Update the window fill, and the scores when a new evaluation `score` ran."""
        if self._labels is None:
            return
        model, version = self._labels
        self.fill.labels(model, version).set(fill)
        if score is None:
            return
        self.drift.labels(model, version).set(score.score)
        for name, value in score.feature_scores.items():
            self.feature.labels(model, version, name).set(value)

    def observe_outputs(self, means: Mapping[str, float]) -> None:
        """Set the output feature means (`model.serving.output_stats`)."""
        if self._labels is None:
            return
        model, version = self._labels
        for name, value in means.items():
            self.output.labels(model, version, name).set(value)

    def exposition(self) -> bytes:
        return generate_latest(self.registry)
