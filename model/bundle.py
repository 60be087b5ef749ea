"""The model bundle: everything serving needs, as a folder or inside an MLflow model version.

Files: `bundle.json` (`{"net": NetConfig dict, "model": ..., "version": ..., "data_digest":
..., "train": {...}}`), `generator.pt` (the generator's state_dict; loaded with
`weights_only=True`, so no pickle from the registry is ever executed) and, optionally,
`drift_reference.json`. An MLflow version carries these as the model's extra files.

`load_bundle` accepts a bundle folder, a training checkpoint file (a dict holding "net" and
"generator"), or `models:/name@alias` / `models:/name/version`.
"""

from __future__ import annotations

import json
import shutil
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from torch import nn

from ganops.model.config import NetConfig

BUNDLE_JSON = "bundle.json"
WEIGHTS = "generator.pt"
DRIFT_REFERENCE = "drift_reference.json"
BUNDLE_FILES = (BUNDLE_JSON, WEIGHTS, DRIFT_REFERENCE)


class BundleError(Exception):
    """A bundle is missing, unreadable or does not match its own config (one-line message)."""


@dataclass
class Bundle:
    generator: nn.Module  # in eval mode, on the requested device
    net: NetConfig
    meta: dict[str, Any]
    drift_reference: dict[str, Any] | None
    source_uri: str

    @property
    def model(self) -> str:
        return str(self.meta.get("model", self.net.model))

    @property
    def version(self) -> str | None:
        value = self.meta.get("version")
        return None if value is None else str(value)


def unwrap(module: nn.Module) -> nn.Module:
    """The plain module inside DDP / DataParallel / torch.compile wrappers."""
    while True:
        inner = getattr(module, "module", None) or getattr(module, "_orig_mod", None)
        if not isinstance(inner, nn.Module):
            return module
        module = inner


def save_bundle(
    out_dir: str | Path,
    generator: nn.Module,
    net_cfg: NetConfig,
    meta: dict[str, Any],
    drift_reference: dict[str, Any] | None = None,
) -> Path:
    """Write a bundle folder and return its path. `meta` keys go to the top of bundle.json."""
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    state = {k: v.detach().cpu() for k, v in unwrap(generator).state_dict().items()}
    torch.save(state, out / WEIGHTS)
    doc = {"model": net_cfg.model, **meta, "net": net_cfg.to_dict()}
    (out / BUNDLE_JSON).write_text(json.dumps(doc, indent=2, sort_keys=True, default=str))
    if drift_reference is not None:
        (out / DRIFT_REFERENCE).write_text(json.dumps(drift_reference, indent=2))
    elif (out / DRIFT_REFERENCE).exists():
        (out / DRIFT_REFERENCE).unlink()
    return out


def bundle_files(bundle_dir: str | Path) -> list[Path]:
    """The bundle's files that exist, in a fixed order (what gets logged as extra files)."""
    return [Path(bundle_dir) / n for n in BUNDLE_FILES if (Path(bundle_dir) / n).is_file()]


def load_bundle(
    uri: str | Path, device: str | torch.device = "cpu", tracking_uri: str | None = None
) -> Bundle:
    """Load a bundle folder, a training checkpoint, or an MLflow `models:/` URI.

    `models:/` URIs are resolved on `tracking_uri` (also used as the registry URI), or, when
    it is None, on MLflow's configured default.

    Raises:
        BundleError: the source is missing, corrupt, or does not match its config.
    """
    text = str(uri)
    if text.startswith("models:/"):
        return _load_registered(text, device, tracking_uri)
    path = Path(text)
    if path.is_dir():
        return _load_dir(path, device, source_uri=text)
    if path.is_file():
        return _load_checkpoint(path, device)
    raise BundleError(f"no model at {text}: not a bundle folder, checkpoint file or models:/ URI")


def _read_json(path: Path) -> dict[str, Any]:
    try:
        data = json.loads(path.read_text())
    except (OSError, ValueError) as exc:
        raise BundleError(f"{path}: unreadable JSON ({exc})") from None
    if not isinstance(data, dict):
        raise BundleError(f"{path}: expected a JSON object")
    return data


def _torch_load(path: Path) -> Any:
    try:
        return torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # torch raises many types for bad files; all mean "corrupt"
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise BundleError(f"{path}: not a readable weights file ({first})") from None


def _net_config(data: Any, where: str) -> NetConfig:
    if not isinstance(data, dict):
        raise BundleError(f"{where}: no network config ('net') found")
    try:
        return NetConfig.from_dict(data)
    except (TypeError, ValueError) as exc:
        raise BundleError(f"{where}: bad network config ({exc})") from None


def _build(net: NetConfig, state: Any, device: str | torch.device, where: str) -> nn.Module:
    from ganops.model.networks import build_generator  # late: keeps this module importable alone

    if not isinstance(state, dict):
        raise BundleError(f"{where}: the generator weights are not a state_dict")
    try:
        generator = build_generator(net)
        generator.load_state_dict(state)
    except (RuntimeError, ValueError, KeyError) as exc:
        first = str(exc).strip().splitlines()[0]
        raise BundleError(f"{where}: weights do not match the network config ({first})") from None
    return generator.to(device).eval()


def _load_dir(path: Path, device: str | torch.device, source_uri: str) -> Bundle:
    for name in (BUNDLE_JSON, WEIGHTS):
        if not (path / name).is_file():
            raise BundleError(f"{path}: not a model bundle ({name} is missing)")
    doc = _read_json(path / BUNDLE_JSON)
    net = _net_config(doc.get("net"), str(path / BUNDLE_JSON))
    generator = _build(net, _torch_load(path / WEIGHTS), device, str(path))
    drift = _read_json(path / DRIFT_REFERENCE) if (path / DRIFT_REFERENCE).is_file() else None
    meta = {k: v for k, v in doc.items() if k != "net"}
    return Bundle(generator, net, meta, drift, source_uri)


def _load_checkpoint(path: Path, device: str | torch.device) -> Bundle:
    ckpt = _torch_load(path)
    if not isinstance(ckpt, dict) or "generator" not in ckpt:
        raise BundleError(f"{path}: not a ganops checkpoint (no 'generator' weights)")
    net = _net_config(ckpt.get("net"), str(path))
    generator = _build(net, ckpt["generator"], device, str(path))
    meta: dict[str, Any] = {"model": net.model}
    for key in ("step", "data_digest", "train", "version", "seed"):
        if key in ckpt:
            meta[key] = ckpt[key]
    drift = ckpt.get("drift_reference")
    return Bundle(generator, net, meta, drift if isinstance(drift, dict) else None, str(path))


def parse_models_uri(uri: str) -> tuple[str, str | None, str | None]:
    """`models:/name@alias` -> (name, alias, None); `models:/name/3` -> (name, None, "3")."""
    rest = uri.removeprefix("models:/")
    if "@" in rest:
        name, alias = rest.split("@", 1)
        if name and alias:
            return name, alias, None
    elif "/" in rest:
        name, version = rest.rsplit("/", 1)
        if name and version.isdigit():
            return name, None, version
    raise BundleError(f"bad model URI {uri!r}: use models:/NAME@ALIAS or models:/NAME/VERSION")


def _load_registered(uri: str, device: str | torch.device, tracking_uri: str | None) -> Bundle:
    import mlflow
    from mlflow.exceptions import MlflowException

    name, alias, version = parse_models_uri(uri)
    tmp = Path(tempfile.mkdtemp(prefix="ganops-bundle-"))
    try:
        if alias is not None:
            client = mlflow.MlflowClient(tracking_uri=tracking_uri, registry_uri=tracking_uri)
            version = client.get_model_version_by_alias(name, alias).version
        local = mlflow.artifacts.download_artifacts(
            artifact_uri=f"models:/{name}/{version}",
            dst_path=str(tmp),
            tracking_uri=tracking_uri,
            registry_uri=tracking_uri,
        )
        extra = Path(local) / "extra_files"
        if not (extra / BUNDLE_JSON).is_file():
            raise BundleError(f"{uri}: the model version carries no bundle files")
        bundle = _load_dir(extra, device, source_uri=uri)
    except (MlflowException, OSError) as exc:
        first = (str(exc).strip().splitlines() or [type(exc).__name__])[0]
        raise BundleError(f"cannot load {uri}: {first}") from None
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    bundle.meta.update({"registered_model": name, "version": str(version)})
    return bundle
