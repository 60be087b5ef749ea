"""LocalDeployer with its default command, the real `ganops serve`, on a tiny real bundle: the
version goes live and stylizes; a version that cannot load is rolled back and v1 serves on."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from ganops.pipeline.deploy.local import LocalDeployer
from tests.fakes.serving import get, make_bundle, png_bytes, post

pytestmark = pytest.mark.slow  # real model servers (torch) as processes


def test_ganops_serve_goes_live_and_a_bad_version_is_rolled_back(tmp_path: Path) -> None:
    bundle = make_bundle(tmp_path / "bundle-v1", version="1")
    deployer = LocalDeployer(tmp_path / "state", ready_timeout_s=240)
    try:
        first = deployer.deploy("cut", "1", str(bundle))
        assert first.ok, first.message
        live = deployer.serving()
        assert live is not None
        assert get(live.url + "/readyz")[0] == 200
        status, body = post(live.url + "/v1/stylize", png_bytes(np.full((32, 32, 3), 0.5)))
        assert status == 200
        assert body.startswith(b"\x89PNG")

        bad = deployer.deploy("cut", "2", str(tmp_path / "no-such-bundle"))
        assert not bad.ok
        assert bad.rolled_back
        assert "v1 keeps serving" in bad.message
        assert "cannot load" in bad.message  # the server's own one-line reason
        assert deployer.serving() == live
        assert get(live.url + "/readyz")[0] == 200
        assert deployer.current("cut") == "1"
    finally:
        deployer.stop()
    assert deployer.current("cut") is None


def test_tritonclient_binary_tensors_through_the_split_reach_both_versions(
    tmp_path: Path,
) -> None:
    """Two real `ganops serve` processes behind the split at 50%: a stock client with binary
    tensors (Inference-Header-Content-Length both ways) on one keep-alive connection gets
    whole answers from each version, and the split's address survives the promotion."""
    import tritonclient.http as triton

    v1 = make_bundle(tmp_path / "bundle-v1", version="1")
    v2 = make_bundle(tmp_path / "bundle-v2", version="2")
    deployer = LocalDeployer(tmp_path / "state", ready_timeout_s=240)
    try:
        assert deployer.deploy("cut", "1", str(v1)).ok
        canary = deployer.set_canary("cut", "2", str(v2), 50)
        assert canary.ok, canary.message
        endpoint = deployer.endpoint()
        assert endpoint is not None
        client = triton.InferenceServerClient(endpoint.removeprefix("http://"), concurrency=1)
        pixels = np.full((2, 32, 32, 3), 128, dtype=np.uint8)
        tensor = triton.InferInput("images", list(pixels.shape), "UINT8")
        tensor.set_data_from_numpy(pixels, binary_data=True)
        out = triton.InferRequestedOutput("images", binary_data=True)
        versions = []
        for _ in range(24):
            result = client.infer("ganops-cut", [tensor], outputs=[out])
            assert result.as_numpy("images").shape == (2, 32, 32, 3)
            versions.append(result.get_response()["model_version"])
        assert set(versions) == {"1", "2"}  # P(one version 24 times) = 2**-23
        assert deployer.set_canary("cut", "2", str(v2), 100).ok
        assert deployer.endpoint() == endpoint
        result = client.infer("ganops-cut", [tensor], outputs=[out])
        assert result.get_response()["model_version"] == "2"
        client.close()
    finally:
        deployer.stop()
