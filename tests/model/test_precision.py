"""The autocast dtype each device gets, chosen by compute capability."""

from __future__ import annotations

import pytest
import torch

from ganops.model.train import amp_dtype

GPU = torch.device("cuda", 0)


@pytest.mark.parametrize(
    ("capability", "expected"),
    [
        ((7, 0), torch.float16),  # V100
        ((7, 5), torch.float16),  # T4
        ((8, 0), torch.bfloat16),  # A100
        ((8, 6), torch.bfloat16),  # A10, RTX 30xx
        ((9, 0), torch.bfloat16),  # H100, H200
    ],
)
def test_gpus_before_ampere_get_fp16_whatever_is_bf16_supported_says(
    monkeypatch: pytest.MonkeyPatch, capability: tuple[int, int], expected: torch.dtype
) -> None:
    asked: list[torch.device] = []

    def fake_capability(device: torch.device) -> tuple[int, int]:
        asked.append(device)
        return capability

    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "get_device_capability", fake_capability)
    # What torch answers on a T4 or V100: bf16 "supported", by emulation.
    monkeypatch.setattr(torch.cuda, "is_bf16_supported", lambda *a, **k: True)
    assert amp_dtype(GPU, enabled=True) is expected
    assert asked == [GPU]  # the training device's own capability, not device 0's by default
    assert amp_dtype(GPU, enabled=False) is None


def test_fp16_trains_with_a_grad_scaler_and_bf16_without() -> None:
    from ganops.model.config import TrainConfig, preset
    from ganops.model.trainers import GanTrainer, StepOptions

    cfg = TrainConfig(net=preset("tiny"))
    cpu = torch.device("cpu")
    assert GanTrainer(cfg, StepOptions(cpu, amp_dtype=torch.float16)).scaler is not None
    assert GanTrainer(cfg, StepOptions(cpu, amp_dtype=torch.bfloat16)).scaler is None


@pytest.mark.parametrize(("mode", "marks"), [("default", 0), ("reduce-overhead", 1)])
def test_cuda_graph_modes_mark_each_step(
    monkeypatch: pytest.MonkeyPatch, mode: str, marks: int
) -> None:
    # CUDA graphs are opt-in (compile_mode); when on, every step starts a graph-tree iteration.
    from ganops.model.config import TrainConfig, preset
    from ganops.model.trainers import StepOptions, make_trainer

    calls: list[str] = []
    monkeypatch.setattr(torch, "compile", lambda module, **kwargs: module)  # no compile time
    monkeypatch.setattr(torch.compiler, "cudagraph_mark_step_begin", lambda: calls.append("x"))
    assert TrainConfig().compile_mode == "default"
    cfg = TrainConfig(net=preset("tiny"), batch_size=2, compile_mode=mode)
    opts = StepOptions(torch.device("cpu"), compile=True, compile_mode=mode)
    make_trainer(cfg, opts).train_step(torch.rand(2, 3, 32, 32), torch.rand(2, 3, 32, 32))
    assert len(calls) == marks
