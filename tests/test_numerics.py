"""Pinned numerics and autocast: the settings are applied and restored, and a report states them."""

from __future__ import annotations

import os

import pytest
import torch

from act_equiv import compat, numerics


@pytest.fixture
def workspace_unset(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("CUBLAS_WORKSPACE_CONFIG", raising=False)


@pytest.mark.usefixtures("workspace_unset")
def test_cuda_pinning_sets_and_restores_every_flag() -> None:
    before = (torch.are_deterministic_algorithms_enabled(), torch.backends.cudnn.deterministic,
              torch.backends.cudnn.benchmark, compat.tf32_enabled())
    torch.backends.cudnn.benchmark = True
    try:
        with numerics.pinned("cuda"):
            assert torch.are_deterministic_algorithms_enabled()
            assert torch.is_deterministic_algorithms_warn_only_enabled()
            assert torch.backends.cudnn.deterministic and not torch.backends.cudnn.benchmark
            assert not compat.tf32_enabled()
            assert os.environ["CUBLAS_WORKSPACE_CONFIG"] == numerics.CUBLAS_WORKSPACE
        assert torch.backends.cudnn.benchmark
    finally:
        torch.backends.cudnn.benchmark = before[2]
    assert (torch.are_deterministic_algorithms_enabled(), torch.backends.cudnn.deterministic,
            torch.backends.cudnn.benchmark, compat.tf32_enabled()) == before


def test_cuda_pinning_restores_after_an_error() -> None:
    before = torch.are_deterministic_algorithms_enabled()
    with pytest.raises(RuntimeError, match="inside"), numerics.pinned("cuda"):
        raise RuntimeError("inside")
    assert torch.are_deterministic_algorithms_enabled() == before


@pytest.mark.usefixtures("workspace_unset")
def test_cpu_runs_change_nothing() -> None:
    with numerics.pinned("cpu"):
        assert not torch.are_deterministic_algorithms_enabled()
        assert "CUBLAS_WORKSPACE_CONFIG" not in os.environ
    assert numerics.pinned_settings("cpu")["tf32"] == "n/a (cpu)"


def test_pinned_settings_state_what_cuda_runs_use() -> None:
    assert numerics.pinned_settings("cuda") == {"tf32": False, "deterministic": True,
                                                "cublas_workspace": os.environ.get("CUBLAS_WORKSPACE_CONFIG")}


def test_autocast_context() -> None:
    linear = torch.nn.Linear(4, 4)
    with numerics.autocast("cpu", "bfloat16"):
        assert linear(torch.ones(1, 4)).dtype == torch.bfloat16
    with numerics.autocast("cpu", None):
        assert linear(torch.ones(1, 4)).dtype == torch.float32
