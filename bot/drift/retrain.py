"""What an alarm's Retrain now trains on: the champion's data plus the inputs captured during
the episode as domain A (`pipeline.captured`).

With capture on, a retrain needs `GANOPS_DRIFT_MIN_CAPTURED` inputs served by the drifting
version since the alarm went pending (earlier ones may be of the old kind, and the retrained
version's drift reference is fitted on these); with fewer, the plan says how many are missing and nothing is launched, since a retrain on
the old data cannot learn the new inputs. With capture off, the retrain runs on the champion's
data as before, and the plan says that it will not see the new inputs.
"""

from __future__ import annotations

import dataclasses
import json
import logging
from dataclasses import dataclass

from ganops.bot.blocks.alarms import AlarmView
from ganops.bot.errors import UpstreamError
from ganops.bot.ports import RunParams
from ganops.bot.services import Services
from ganops.bot.settings import Settings
from ganops.pipeline.captured import CapturedSpec, dump_specs, held_out_count, load_specs

log = logging.getLogger("ganops.bot")

# What a drift retrain keeps of the drifting version's run: the same base data, sizes and
# training length (a drift retrain changes the data, not the recipe).
_KEPT = ("data", "synthetic_n", "seed", "image_size", "preset", "steps", "epochs", "captured")


@dataclass(frozen=True)
class RetrainPlan:
    params: RunParams | None  # None: not enough captured inputs, launch nothing
    captured: int  # inputs captured during the episode (0 with capture off)
    needed: int
    capture_on: bool

    @property
    def missing(self) -> int:
        return max(0, self.needed - self.captured)

    @property
    def held_out(self) -> int:
        return held_out_count(self.captured) if self.capture_on else 0


def retrain_params(services: Services, model: str, version: str) -> RunParams:
    """Retrain on the same data as the drifting version, when its tags say which."""
    kept: dict[str, object] = {}
    try:
        info = services.registry.get_version(model, version)
    except UpstreamError:
        info = None
    if info is not None and info.tags.get("params"):
        try:
            recorded = json.loads(info.tags["params"])
            kept = {k: recorded[k] for k in _KEPT if recorded.get(k) is not None}
        except (ValueError, AttributeError, TypeError):
            log.warning("version %s of %s has unreadable params tag", version, model)
    params = RunParams(model=model)
    try:
        return dataclasses.replace(params, **kept)  # type: ignore[arg-type]
    except TypeError:
        return params


def plan_retrain(
    services: Services, settings: Settings, view: AlarmView, *, now: float
) -> RetrainPlan:
    """The drift retrain's parameters for an alarm, or why there are none."""
    base = retrain_params(services, view.model, view.version)
    need = settings.drift_min_captured
    if settings.capture_rate <= 0 or not settings.capture_uri:
        return RetrainPlan(base, 0, need, capture_on=False)
    from ganops.model.serving.capture import list_captured  # torch-free: fsspec and numpy

    spec = CapturedSpec(
        uri=settings.capture_uri,
        model=view.model,
        version=view.version,
        since=view.opened_at,
        until=now,
    )
    found = [
        c
        for c in list_captured(spec.uri, model=spec.model, version=spec.version, since=spec.since)
        if c.time <= now
    ]
    if len(found) < need:
        return RetrainPlan(None, len(found), need, capture_on=True)
    try:
        earlier = load_specs(base.captured)
    except ValueError:
        earlier = []
    params = dataclasses.replace(base, captured=dump_specs([*earlier, spec]))
    return RetrainPlan(params, len(found), need, capture_on=True)
