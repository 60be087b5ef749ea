"""A deliberately broken copy of a registered model, for the demo's canary that must roll back.

`python -m ganops.model.broken --model cut` loads the champion of `ganops-cut` from MLflow
(`MLFLOW_TRACKING_URI`), sets every weight of its generator's last layer to NaN, and
registers the copy as a new version of the same registered model (tagged `broken`),
printing that version. Such a generator loads and answers /readyz like any other (a health
check cannot tell) while every image it makes is NaN: what only a live canary catches.
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
from pathlib import Path

import torch

from ganops.model.bundle import BundleError, load_bundle, save_bundle
from ganops.model.registry import model_uri, registered_name
from ganops.model.tracking.mlflow_tracker import MlflowTracker


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m ganops.model.broken", description=__doc__)
    p.add_argument("--model", default="cut", help="the model whose champion to copy")
    args = p.parse_args(argv)
    tracking = os.environ.get("MLFLOW_TRACKING_URI")
    if not tracking:
        print("set MLFLOW_TRACKING_URI", file=sys.stderr)
        return 2
    name = registered_name(args.model)
    try:
        bundle = load_bundle(model_uri(args.model, alias="champion"), tracking_uri=tracking)
    except BundleError as exc:
        print(f"cannot load the champion of {name}: {exc}", file=sys.stderr)
        return 2
    last = [m for m in bundle.generator.modules() if isinstance(m, torch.nn.Conv2d)][-1]
    with torch.no_grad():
        last.weight.fill_(float("nan"))
    meta = {k: v for k, v in bundle.meta.items() if k not in ("version", "registered_model")}
    tracker = MlflowTracker(tracking)
    with tempfile.TemporaryDirectory() as out:
        save_bundle(out, bundle.generator, bundle.net, {**meta, "broken": True},
                    bundle.drift_reference)  # fmt: skip
        with tracker.start_run(run_name="broken-on-purpose", tags={"broken": "demo"}):
            version = tracker.log_bundle(Path(out), bundle.generator, name)
    if version is None:
        print("MLflow registered no version", file=sys.stderr)
        return 1
    tracker.client.set_model_version_tag(name, version, "broken", "every output is NaN (demo)")
    print(version)
    return 0


if __name__ == "__main__":
    sys.exit(main())
