"""act_equiv.run.compiled: CompiledForm proves compiled code ran, and says why when it did not."""

from __future__ import annotations

import copy
from collections.abc import Iterator
from typing import Any

import pytest
import torch
from torch import nn

from act_equiv import ACTConfig, compat, testing
from act_equiv.case import BatchSpec, make_batch
from act_equiv.errors import (
    ExportError,
    ExportSpecialisedError,
    GraphBreakError,
    InputMutatedError,
    NotCompiledError,
    PolicyApiMissingError,
    RecompileLimitError,
    WorkerError,
)
from act_equiv.models import ACT, build
from act_equiv.run import compiled
from act_equiv.run.compiled import CompiledForm, CompileStats, CountingBackend, counting_backend
from act_equiv.run.records import ErrorRecord, error_kind


@pytest.fixture(autouse=True)
def _fresh_dynamo() -> Iterator[None]:
    compat.reset()
    yield
    compat.reset()


def tiny_config(**overrides: Any) -> ACTConfig:
    fields: dict[str, Any] = {
        "vision_backbone": "tiny_resnet", "dim_model": 16, "n_heads": 2, "dim_feedforward": 32, "chunk_size": 4,
        "n_action_steps": 4, "n_encoder_layers": 1, "n_decoder_layers": 1, "n_vae_encoder_layers": 1,
        "latent_dim": 4, "camera_shapes": ((3, 32, 32),), "state_dim": 3, "action_dim": 2,
    }
    return ACTConfig(**{**fields, **overrides})


def tiny_batch(batch_size: int = 2, seed: int = 0) -> dict[str, Any]:
    gen = torch.Generator().manual_seed(seed)
    return {
        "observation.state": torch.randn(batch_size, 3, generator=gen),
        "observation.images": [torch.randn(batch_size, 3, 32, 32, generator=gen)],
        "action": torch.randn(batch_size, 4, 2, generator=gen),
        "action_is_pad": torch.zeros(batch_size, 4, dtype=torch.bool),
    }


class _Small(nn.Module):
    """Compiles in milliseconds with the eager backend."""

    def __init__(self, seed: int = 0) -> None:
        super().__init__()
        torch.manual_seed(seed)
        self.linear = nn.Linear(4, 4)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.linear(x).tanh()


class _Breaking(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.linear = nn.Linear(4, 4)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = self.linear(x)
        testing.graph_break()
        return y.relu()


# -- construction ----------------------------------------------------------------------------------------------------
@pytest.mark.parametrize("backend", ["aot_eager", "eager"])
def test_mode_needs_inductor(backend: str) -> None:
    with pytest.raises(ValueError, match=r"only applies to backend='inductor'.*pass mode=None"):
        CompiledForm(_Small(), backend=backend, mode="max-autotune")


@pytest.mark.parametrize(("kwargs", "match"), [
    ({"backend": "inductor", "mode": "fastest"}, "allowed: None, .*reduce-overhead"),
    ({"backend": "tvm_but_misspelled"}, "not a registered dynamo backend"),
    ({"backend": "eager", "dynamic": "yes"}, "allowed None, True, False"),
])
def test_invalid_arguments_name_allowed_values(kwargs: dict[str, Any], match: str) -> None:
    with pytest.raises(ValueError, match=match):
        CompiledForm(_Small(), **kwargs)


@pytest.mark.parametrize("mode", [None, "default", "reduce-overhead", "max-autotune"])
def test_inductor_modes_construct_without_compiling(mode: str | None) -> None:
    form = CompiledForm(_Small(), backend="inductor", mode=mode)
    assert form.stats == CompileStats()


def test_one_counting_backend_per_backend_mode_dynamic() -> None:
    assert counting_backend("eager") is counting_backend("eager")
    assert counting_backend("inductor", "default") is counting_backend("inductor", None)
    assert counting_backend("inductor", None, True) is not counting_backend("inductor", None, None)
    assert CompiledForm(_Small(), backend="aot_eager").counting is CompiledForm(_Small(1), backend="aot_eager").counting


# -- the normal path -------------------------------------------------------------------------------------------------
def test_tiny_act_aot_eager_runs_compiled_and_bitwise_equal() -> None:
    model = build(tiny_config(), seed=0, form=ACT).eval()
    form = CompiledForm(model, backend="aot_eager")
    with torch.no_grad():
        actions, _ = form(tiny_batch())
        expected, _ = model(tiny_batch())
    stats = form.stats
    assert stats.frames_compiled >= 1
    assert stats.graphs == 1
    assert not stats.fell_back_to_eager and stats.reason is None
    assert (stats.calls, stats.recompiles, stats.graph_breaks, stats.eager_calls) == (1, 0, 0, 0)
    assert stats.compile_seconds > 0
    assert torch.equal(actions, expected)


def test_batch_size_change_is_a_recompile() -> None:
    model = build(tiny_config(), seed=0, form=ACT).eval()
    form = CompiledForm(model, backend="eager", dynamic=False)
    with torch.no_grad():
        form(tiny_batch(2))
        snapshot = copy.deepcopy(form.stats)
        form(tiny_batch(3))
        form(tiny_batch(2))  # cached: no new graph
    assert form.stats.recompiles == 1
    delta = form.stats.since(snapshot)
    assert (delta.calls, delta.frames_compiled, delta.recompiles, delta.fell_back_to_eager) == (2, 1, 1, False)
    assert form.stats.graphs == 1 and not form.stats.fell_back_to_eager


def test_fresh_model_of_same_structure_reuses_the_graph_without_false_alarm() -> None:
    first = CompiledForm(_Small(0), backend="eager")
    second = CompiledForm(_Small(1), backend="eager")
    x = torch.randn(2, 4)
    first(x)
    out = second(x)
    assert first.stats.frames_compiled == 1
    if not compat.fresh_modules_share_graphs():
        pytest.skip("this torch guards on each module instance: fresh models compile their own graph")
    assert second.stats.frames_compiled == 0  # shared graph: nothing compiled for this form ...
    assert second.stats.graphs == 1 and not second.stats.fell_back_to_eager  # ... yet compiled code ran
    torch.testing.assert_close(out, second.module(x), rtol=0, atol=0)


# -- the silent eager fallback ---------------------------------------------------------------------------------------
def test_fresh_backend_objects_hit_the_recompile_limit_and_are_caught(monkeypatch: pytest.MonkeyPatch) -> None:
    """The spec's trap: a new backend object per model recompiles each time; past the limit dynamo runs eager."""
    if not compat.fresh_modules_share_graphs():
        pytest.skip("this torch compiles each module instance separately: the shared-code trap does not arise; "
                    "test_recompile_limit_one_falls_back_on_the_recompile covers the detector here")
    x = torch.randn(2, 4)
    monkeypatch.setattr(compiled, "counting_backend", lambda *settings: CountingBackend("eager"))
    forms = [CompiledForm(_Small(i), backend="eager", fullgraph=False) for i in range(compat.recompile_limit() + 2)]
    for form in forms:
        torch.testing.assert_close(form(x), form.module(x))  # outputs stay "correct" either way
    within, over, after = forms[compat.recompile_limit() - 1], forms[-2], forms[-1]
    assert not within.stats.fell_back_to_eager and within.stats.graphs == 1
    assert over.stats.fell_back_to_eager and over.stats.graphs == 0 and over.stats.frames_compiled == 0
    assert over.stats.reason is not None and "recompile limit" in over.stats.reason
    # dynamo stays silent after the first hit; the detector still sees that nothing compiled ran
    assert after.stats.fell_back_to_eager
    assert after.stats.reason is not None and "recompile limit" in after.stats.reason


def test_recompile_limit_one_falls_back_on_the_recompile() -> None:
    form = CompiledForm(_Small(), backend="eager", dynamic=False, fullgraph=False)
    with testing.recompile_limit_set(1):
        form(torch.randn(2, 4))
        assert not form.stats.fell_back_to_eager
        form(torch.randn(3, 4))
    assert form.stats.fell_back_to_eager and form.stats.eager_calls == 1 and form.stats.graphs == 0
    assert form.stats.reason is not None and "recompile limit" in form.stats.reason


def test_recompile_limit_under_fullgraph_raises_our_error() -> None:
    form = CompiledForm(_Small(), backend="eager", dynamic=False, fullgraph=True)
    with testing.recompile_limit_set(1):
        form(torch.randn(2, 4))
        with pytest.raises(RecompileLimitError, match=r"recompile_limit=1|cache_size_limit=1") as info:
            form(torch.randn(3, 4))
    assert "\n" not in info.value.reason
    assert error_kind(info.value) == "not_compiled"


def test_fail_switch_turns_the_silent_fallback_into_an_error() -> None:
    if not testing.fail_on_recompile_limit_supported():
        pytest.skip("torch <= 2.5 has no fail switch; the runtime detector covers it")
    form = CompiledForm(_Small(), backend="eager", dynamic=False, fullgraph=False)
    with testing.recompile_limit_set(1), testing.fail_on_recompile_limit(True):
        form(torch.randn(2, 4))
        with pytest.raises(RecompileLimitError):
            form(torch.randn(3, 4))


# -- graph breaks ----------------------------------------------------------------------------------------------------
def test_graph_break_under_fullgraph_raises_graph_break_error() -> None:
    form = CompiledForm(_Breaking(), backend="eager", fullgraph=True)
    with pytest.raises(GraphBreakError) as info:
        form(torch.randn(2, 4))
    reason = info.value.reason
    assert "graph_break" in reason and "test_compiled.py" in reason and "in forward" in reason
    assert "\n" not in reason
    assert error_kind(info.value) == "graph_break"


class _OtherNamedBreakError(GraphBreakError):
    """Another name for the same failure: the oracle must still see a graph break."""


@pytest.mark.parametrize(("error", "kind"), [
    (NotCompiledError("dynamo disabled"), "not_compiled"),
    (RecompileLimitError("limit"), "not_compiled"),
    (GraphBreakError("break"), "graph_break"),
    (_OtherNamedBreakError("break"), "graph_break"),
    (RuntimeError("GraphBreakError"), "raised"),
    (WorkerError("hung"), "worker_failed"),
    (ExportSpecialisedError("batch 2 only"), "specialised"),
    (ExportError("refused"), "raised"),
    (InputMutatedError(["observation.state"], "the target"), "input_mutated"),
    (PolicyApiMissingError("no predict_action_chunk"), "unsupported"),
])
def test_error_kind_is_decided_by_class_not_by_name(error: Exception, kind: str) -> None:
    assert error_kind(error) == kind
    record = ErrorRecord.capture("compiled", error)
    assert record.kind == kind and record.type == type(error).__name__


def test_dynamo_s_own_graph_break_error_is_a_graph_break() -> None:
    """A target that compiles itself raises dynamo's exception, not ours: classified through `compat`."""
    with pytest.raises(Exception) as info:  # whatever dynamo raises: its kind is the point
        torch.compile(_Breaking(), backend="eager", fullgraph=True)(torch.randn(2, 4))
    assert not isinstance(info.value, GraphBreakError)
    assert error_kind(info.value) == "graph_break"


def test_graph_break_without_fullgraph_is_counted_and_explained() -> None:
    form = CompiledForm(_Breaking(), backend="eager", fullgraph=False)
    x = torch.randn(2, 4)
    out = form(x)
    assert form.stats.graphs == 2 and not form.stats.fell_back_to_eager
    assert form.stats.graph_breaks >= 1
    assert any("test_compiled.py" in r for r in form.stats.break_reasons)
    result = compat.explain(form.module, x)
    assert result.graph_count == 2 and result.graph_break_count >= 1
    torch.testing.assert_close(out, form.module(x), rtol=0, atol=0)


def test_clean_act_explains_to_one_graph() -> None:
    model = build(tiny_config(), seed=0, form=ACT).eval()
    with torch.no_grad():
        result = compat.explain(model, tiny_batch())
    assert (result.graph_count, result.graph_break_count) == (1, 0) and result.op_count > 0


# -- inductor (slow on CPU) ------------------------------------------------------------------------------------------
@pytest.mark.compile
def test_fallback_random_makes_the_compiled_vae_sample_match_eager() -> None:
    """Training-mode forward draws the VAE sample with randn_like; inductor's own RNG would draw another. Without
    a camera: the sample does not depend on one, and the backbone's kernels were most of the compile."""
    config = tiny_config(dropout=0.0, camera_shapes=(), env_state_dim=2)
    model = build(config, seed=0, form=ACT).train()
    batch = make_batch(config, BatchSpec(batch_size=2, seed=0))
    with compat.fallback_random(), torch.no_grad():
        form = CompiledForm(model, backend="inductor")
        torch.manual_seed(1)
        actions, (mu, log_sigma_x2) = form(batch)
        torch.manual_seed(1)
        expected, (expected_mu, _) = model(batch)
    assert form.stats.frames_compiled >= 1 and not form.stats.fell_back_to_eager
    assert mu is not None and log_sigma_x2 is not None and expected_mu is not None
    torch.testing.assert_close(mu, expected_mu)
    torch.testing.assert_close(actions, expected)  # without fallback_random the sample moves actions by ~1


@pytest.mark.compile
def test_injected_inductor_miscompile_is_visible_through_compiled_form() -> None:
    """PyTorch's own relu bug switch: the compiled form still reports compiled code ran, and the output is wrong."""
    model = build(tiny_config(), seed=0, form=ACT).eval()
    with torch.no_grad():
        expected, _ = model(tiny_batch())
        with testing.inject_miscompile("relu", device="cpu"):
            form = CompiledForm(model, backend="inductor")
            actions, _ = form(tiny_batch())
    assert form.stats.graphs == 1 and not form.stats.fell_back_to_eager
    assert (actions - expected).abs().max().item() > 1e-2
