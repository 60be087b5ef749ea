"""Objects read through the `kserve` package's models (and the kubernetes client's models they
nest), strictly: the packages' own deserialisers drop a key they do not know, so a misspelled
field would pass unnoticed; here it fails."""

from __future__ import annotations

from typing import Any

from kserve import models as kserve_models
from kubernetes.client import models as k8s_models

NATIVE = {"str", "int", "bool", "float", "object", "datetime", "date"}


def strict(data: Any, klass: str) -> Any:
    """`data` read into the kserve / kubernetes model `klass`, refusing any key the model does
    not define (their own deserialisers drop unknown keys silently)."""
    if data is None or klass in NATIVE:
        return data
    if klass.startswith("list["):
        return [strict(item, klass[5:-1]) for item in data]
    if klass.startswith("dict("):
        sub = klass[klass.index(", ") + 2 : -1]
        return {key: strict(value, sub) for key, value in data.items()}
    model = getattr(kserve_models, klass, None) or getattr(k8s_models, klass)
    fields = {json_name: name for name, json_name in model.attribute_map.items()}
    unknown = sorted(set(data) - set(fields))
    assert not unknown, f"{klass} has no field {unknown}"
    return model(**{fields[k]: strict(v, model.openapi_types[fields[k]]) for k, v in data.items()})
