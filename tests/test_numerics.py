"""Pinned numerics and autocast: the settings are applied and restored, and a report states them."""

from __future__ import annotations

import os

import pytest
import torch

from act_equiv import compat
from act_equiv.run import numerics


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
def test_cpu_pinning_runs_one_thread_deterministically() -> None:
    """A multi-threaded convolution backward is not deterministic on CPU: one thread; nothing CUDA is touched."""
    before = (torch.are_deterministic_algorithms_enabled(), torch.get_num_threads())
    with numerics.pinned("cpu"):
        assert torch.are_deterministic_algorithms_enabled() and torch.get_num_threads() == 1
        assert "CUBLAS_WORKSPACE_CONFIG" not in os.environ
    assert (torch.are_deterministic_algorithms_enabled(), torch.get_num_threads()) == before
    assert numerics.pinned_settings("cpu") == {"tf32": "n/a (cpu)", "deterministic": True, "intra_op_threads": 1}


def test_float64_sampling_facts_hold_on_this_torch() -> None:
    """Why `float32_sampling` exists, and why it leaves dropout alone: float64 `randn` is another sample once a
    tensor has 16 elements; bernoulli masks are the same in both dtypes."""
    def draw(dtype: torch.dtype) -> tuple[torch.Tensor, torch.Tensor]:
        torch.manual_seed(7)
        normal = torch.randn(64, dtype=dtype)
        torch.manual_seed(7)
        return normal, torch.nn.functional.dropout(torch.ones(64, dtype=dtype), 0.3)

    (normal32, mask32), (normal64, mask64) = draw(torch.float32), draw(torch.float64)
    assert not torch.allclose(normal32.double(), normal64)
    assert torch.equal(mask32 != 0, mask64 != 0)


def test_float32_sampling_gives_a_float64_run_the_float32_draws() -> None:
    like = torch.zeros(4, 8, dtype=torch.float64)
    torch.manual_seed(3)
    expected = [torch.randn(4, 8), torch.rand(4, 8), torch.randn(5), torch.empty(20).normal_(),
                torch.empty(3).uniform_()]
    torch.manual_seed(3)
    with numerics.float32_sampling():
        drawn = [torch.randn_like(like), torch.rand_like(like), torch.randn(5, dtype=torch.float64),
                 torch.empty(20, dtype=torch.float64).normal_(), torch.empty(3, dtype=torch.float64).uniform_()]
        float32_untouched = torch.randn(3)
    for want, got in zip(expected, drawn, strict=True):
        assert got.dtype == torch.float64 and torch.equal(got, want.double())
    assert float32_untouched.dtype == torch.float32


def test_float32_sampling_leaves_a_batch_recipe_alone() -> None:
    """A recipe's draws from its own generator (`make_batch`, the rollout's observations) are the same numbers in a
    float64 run: before, the float64 policy rollout saw other observations than the float32 one, so its "evidence"
    was another computation (the reference's own float32 rollout 0.45 away from it)."""
    from act_equiv.case import MUST_KEEP, BatchSpec, make_batch

    config = MUST_KEEP[0].config
    plain = make_batch(config, BatchSpec(2, seed=5, actions=False), dtype=torch.float64)
    with numerics.float32_sampling():
        sampled = make_batch(config, BatchSpec(2, seed=5, actions=False), dtype=torch.float64)
    assert torch.equal(plain["observation.state"], sampled["observation.state"])
    images = zip(plain["observation.images"], sampled["observation.images"], strict=True)
    assert all(torch.equal(a, b) for a, b in images)


def test_pinned_settings_state_what_cuda_runs_use() -> None:
    assert numerics.pinned_settings("cuda") == {"tf32": False, "deterministic": True,
                                                "cublas_workspace": os.environ.get("CUBLAS_WORKSPACE_CONFIG")}


def test_autocast_context() -> None:
    linear = torch.nn.Linear(4, 4)
    with numerics.autocast("cpu", "bfloat16"):
        assert linear(torch.ones(1, 4)).dtype == torch.bfloat16
    with numerics.autocast("cpu", None):
        assert linear(torch.ones(1, 4)).dtype == torch.float32
