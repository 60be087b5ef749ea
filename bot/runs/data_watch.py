"""New data offers a retrain: a scheduled job watches `GANOPS_DATA_WATCH` (any fsspec URI).

When at least `GANOPS_DATA_WATCH_MIN` images arrived there since the champion's snapshot (files
modified after the champion version was registered), it posts one card: how many, a few
thumbnails in the thread, **Retrain / Not now** (approvers only, audited). One offer per
(model, snapshot digest), kept in the `data_offers` table and posted with `post_keyed`, so a
restarted bot posts no second card; a new champion (a new snapshot) may be offered again.
"""

from __future__ import annotations

import hashlib
import io
import logging
import time
from collections.abc import Callable

from ganops.bot.blocks.data_watch import OfferView, offer_card, offer_text
from ganops.bot.errors import UpstreamError
from ganops.bot.runs.start import post_keyed
from ganops.bot.services import Services
from ganops.bot.store import Store
from ganops.model.registry import CHAMPION
from ganops.pipeline.db import Row

log = logging.getLogger(__name__)

IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg")
THUMBNAILS = 4
_SCHEMA = (
    """CREATE TABLE IF NOT EXISTS data_offers (
        offer_id TEXT PRIMARY KEY,
        model TEXT NOT NULL,
        champion_version TEXT NOT NULL,
        digest TEXT NOT NULL,
        source TEXT NOT NULL,
        new_images INTEGER NOT NULL,
        state TEXT NOT NULL,            -- offered | retraining | dismissed
        channel TEXT,
        message_ts TEXT,
        acted_by TEXT,
        run_id TEXT,
        created_at REAL NOT NULL
    )""",
)


def new_images(uri: str, since: float) -> list[tuple[float, str]]:
    """(mtime, URL) of the images under `uri` modified after `since`, newest first."""
    import fsspec

    fs, root = fsspec.core.url_to_fs(uri)
    if not fs.exists(root):
        return []
    found = []
    for path, info in fs.find(root, detail=True).items():
        if not path.lower().endswith(IMAGE_SUFFIXES):
            continue
        stamp = info.get("mtime") or info.get("LastModified") or info.get("updated") or 0
        mtime = stamp.timestamp() if hasattr(stamp, "timestamp") else float(stamp)
        if mtime > since:
            found.append((mtime, fs.unstrip_protocol(path)))
    return sorted(found, reverse=True)


class DataOffers:
    """The `data_offers` table."""

    def __init__(self, store: Store) -> None:
        self.store = store
        store.migrate("data_offers", 1, _SCHEMA)

    def get(self, offer_id: str) -> OfferView | None:
        with self.store.connect() as conn:
            row = conn.execute("SELECT * FROM data_offers WHERE offer_id=?", (offer_id,)).fetchone()
        return _view(row) if row is not None else None

    def add(self, view: OfferView) -> bool:
        with self.store.tx() as conn:
            cur = conn.execute(
                "INSERT OR IGNORE INTO data_offers(offer_id, model, champion_version, digest,"
                " source, new_images, state, created_at) VALUES(?,?,?,?,?,?,'offered',?)",
                (view.offer_id, view.model, view.champion_version, view.digest, view.source,
                 view.new_images, time.time()),
            )  # fmt: skip
            if cur.rowcount == 1:
                self.store.audit(
                    "ganops", "data_offer", view.offer_id, "offered", {"new": view.new_images}, conn
                )
        return cur.rowcount == 1

    def set_message(self, offer_id: str, channel: str, ts: str) -> None:
        with self.store.connect() as conn:
            conn.execute(
                "UPDATE data_offers SET channel=?, message_ts=? WHERE offer_id=?",
                (channel, ts, offer_id),
            )

    def message(self, offer_id: str) -> tuple[str | None, str | None]:
        with self.store.connect() as conn:
            row = conn.execute(
                "SELECT channel, message_ts FROM data_offers WHERE offer_id=?", (offer_id,)
            ).fetchone()
        return (row["channel"], row["message_ts"]) if row is not None else (None, None)

    def act(self, offer_id: str, user: str, state: str, run_id: str | None = None) -> bool:
        """offered -> retraining | dismissed, once; audited either way."""
        with self.store.tx() as conn:
            cur = conn.execute(
                "UPDATE data_offers SET state=?, acted_by=?, run_id=? "
                "WHERE offer_id=? AND state='offered'",
                (state, user, run_id, offer_id),
            )
            ok = cur.rowcount == 1
            outcome = state if ok else f"{state}:no-op"
            self.store.audit(user, "data_offer", offer_id, outcome, {"run_id": run_id}, conn)
        return ok


class DataWatcher:
    """One `tick()` per `GANOPS_DATA_WATCH_INTERVAL`."""

    def __init__(
        self,
        services: Services,
        *,
        source: str,
        minimum: int,
        channel: str,
        models: tuple[str, ...] = ("cut", "cyclegan"),
        thumbnails: Callable[[list[str]], bytes] | None = None,
    ) -> None:
        self.services, self.source, self.minimum = services, source, minimum
        self.channel, self.models = channel, models
        self.offers = DataOffers(services.store)
        self.thumbnails = thumbnails or thumbnail_grid

    def tick(self) -> None:
        for model in self.models:
            try:
                champion = self.services.registry.get_alias(model, CHAMPION)
            except UpstreamError as exc:
                log.warning("data watch: no champion for %s: %s", model, exc)
                continue
            if champion is None:
                continue
            digest = champion.tags.get("data_digest") or f"v{champion.version}"
            offer_id = "data-" + hashlib.sha256(f"{model}:{digest}".encode()).hexdigest()[:16]
            if self.services.runbook.posted(f"{offer_id}:card") is not None:
                continue  # offered for this snapshot already (also across restarts)
            found = new_images(self.source, champion.created_at or 0.0)
            if len(found) < self.minimum:
                continue
            view = OfferView(offer_id, model, champion.version, digest, self.source, len(found))
            self.offers.add(view)
            self._post(view, [p for _, p in found[:THUMBNAILS]])

    def _post(self, view: OfferView, paths: list[str]) -> None:
        blocks = offer_card(view)
        ts = post_keyed(
            self.services.slack,
            self.services.runbook,
            f"{view.offer_id}:card",
            self.channel,
            None,
            offer_text(view),
            blocks,
        )
        self.offers.set_message(view.offer_id, self.channel, ts)
        try:
            self.services.slack.files_upload_v2(
                channel=self.channel,
                thread_ts=ts,
                content=self.thumbnails(paths),
                filename=f"{view.offer_id}.png",
                title=f"{len(paths)} of the {view.new_images} new images",
            )
        except Exception:  # the card is up; thumbnails are a nicety
            log.exception("data watch: could not upload the thumbnails")
        log.info("data watch: offered %s: %d new images", view.offer_id, view.new_images)


def thumbnail_grid(paths: list[str], side: int = 96) -> bytes:
    """The images side by side, `side` px each, as one PNG."""
    import fsspec
    from PIL import Image

    grid = Image.new("RGB", (side * max(1, len(paths)), side), "white")
    for i, path in enumerate(paths):
        with fsspec.open(path, "rb") as f, Image.open(f) as image:
            grid.paste(image.convert("RGB").resize((side, side)), (i * side, 0))
    buf = io.BytesIO()
    grid.save(buf, format="PNG")
    return buf.getvalue()


def _view(row: Row) -> OfferView:
    return OfferView(
        offer_id=row["offer_id"],
        model=row["model"],
        champion_version=row["champion_version"],
        digest=row["digest"],
        source=row["source"],
        new_images=row["new_images"],
        state=row["state"],
        acted_by=row["acted_by"],
        run_id=row["run_id"],
    )
