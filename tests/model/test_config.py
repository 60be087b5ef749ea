from __future__ import annotations

import pytest

from ganops.model.config import PRESETS, NetConfig, preset


def test_presets_have_the_documented_sizes() -> None:
    assert (PRESETS["tiny"].image_size, PRESETS["tiny"].ngf, PRESETS["tiny"].n_blocks) == (
        32,
        16,
        3,
    )
    assert (PRESETS["full"].image_size, PRESETS["full"].ngf, PRESETS["full"].n_blocks) == (
        256,
        64,
        9,
    )


def test_preset_rejects_unknown_names() -> None:
    with pytest.raises(ValueError, match="unknown preset"):
        preset("huge")
    with pytest.raises(ValueError, match="unknown model"):
        preset("tiny", model="pix2pix")


def test_net_config_round_trips_through_a_dict() -> None:
    cfg = preset("tiny", model="cyclegan", image_size=48)
    assert NetConfig.from_dict(cfg.to_dict()) == cfg
    assert NetConfig.from_dict({**cfg.to_dict(), "unknown": 1}) == cfg
