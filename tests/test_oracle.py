"""Every check of the oracle, shown to fail: each test injects one bug and expects the verdict to name it."""

from __future__ import annotations

import contextlib
import math

import pytest
import torch

from act_equiv import compat, numerics
from act_equiv.case import BatchSpec, Case
from act_equiv.compare import compare
from act_equiv.config import OBS_ENV_STATE, OBS_STATE
from act_equiv.gate import Gate, UsageError
from act_equiv.models import ACT
from act_equiv.suite import MUST_KEEP
from act_equiv.targets import Target
from act_equiv.tolerance import EXACT, tolerance_for

EVAL, TRAIN = MUST_KEEP


def gate_for(model_cls: type, **options: object) -> Gate:
    gate = Gate(**{"backend": "aot_eager", "explain": False, **options})
    gate.runner.target = Target(model_cls.__name__, model_cls)
    return gate


def findings(gate: Gate, case: Case) -> dict[str, str]:
    verdict = gate.verdict(case)
    assert not verdict.passed, "the injected bug was not caught"
    return {f.check: f.message for f in verdict.findings} | {
        f"{c.pair}:{c.tensor}": c.message for c in verdict.checks if not c.passed}


class SwappedStateEnv(ACT):
    """Wrong token order: the env token where the state token belongs (their 1-D embeddings are by slot)."""

    def encoder_inputs(self, batch, latent_sample):
        swapped = {**batch, OBS_STATE: batch[OBS_ENV_STATE], OBS_ENV_STATE: batch[OBS_STATE]}
        proj_s, proj_e = self.encoder_robot_state_input_proj, self.encoder_env_state_input_proj
        self.encoder_robot_state_input_proj, self.encoder_env_state_input_proj = proj_e, proj_s
        try:
            return super().encoder_inputs(swapped, latent_sample)
        finally:
            self.encoder_robot_state_input_proj, self.encoder_env_state_input_proj = proj_s, proj_e


class GraphBreak(ACT):
    def encoder_inputs(self, batch, latent_sample):
        compat.graph_break()
        return super().encoder_inputs(batch, latent_sample)


class BatchSizeCache(ACT):
    """A Python-side cache keyed by batch size: dynamo guards on it and recompiles for every new size."""

    def __init__(self, config):
        super().__init__(config)
        self.seen: dict[int, bool] = {}

    def decode(self, tokens, pos_embed, batch_size):
        self.seen[batch_size] = True
        if len(self.seen) > 1:
            tokens = tokens + 0.0
        return super().decode(tokens, pos_embed, batch_size)


class Nondeterministic(ACT):
    calls = 0

    def decode(self, tokens, pos_embed, batch_size):
        Nondeterministic.calls += 1
        return super().decode(tokens, pos_embed, batch_size) + 1e-3 * Nondeterministic.calls


class Renamed(ACT):
    def __init__(self, config):
        super().__init__(config)
        self.head = self.action_head
        del self.action_head

    def decode(self, tokens, pos_embed, batch_size):
        self.action_head = self.head
        return super().decode(tokens, pos_embed, batch_size)


class Raises(ACT):
    def encoder_inputs(self, batch, latent_sample):
        raise RuntimeError("boom in the target")


class RaisesWhenCompiled(ACT):
    """Correct eagerly; compiled, an out-of-range index that only the compiled code's run meets (tracing with
    fake tensors cannot see index values, so it is no graph break)."""

    def decode(self, tokens, pos_embed, batch_size):
        if compat.is_compiling():
            tokens = tokens + tokens.new_zeros(1).index_select(0, torch.full((1,), 5, device=tokens.device))
        return super().decode(tokens, pos_embed, batch_size)


class NoFloat64(ACT):
    """Fine in float32, raises in float64: the rmse check's float64 reference cannot be built."""

    def decode(self, tokens, pos_embed, batch_size):
        if tokens.dtype == torch.float64:
            raise RuntimeError("no float64 kernel")
        return super().decode(tokens, pos_embed, batch_size)


class DecoderOutsideAutocast(ACT):
    """Switches autocast off around the decoder: full precision where the reference runs in half precision."""

    def decode(self, tokens, pos_embed, batch_size):
        with torch.autocast(tokens.device.type, enabled=False):
            return super().decode(tokens.float(), pos_embed.float(), batch_size)


def test_wrong_token_order_is_a_bitwise_mismatch() -> None:
    found = findings(gate_for(SwappedStateEnv), EVAL)
    assert "legacy/target:actions" in found
    assert "Greatest absolute difference" in found["legacy/target:actions"]


def test_graph_break_is_reported_with_its_reason() -> None:
    found = findings(gate_for(GraphBreak), EVAL)
    assert "graph_break" in found


def test_silently_eager_compiled_path_is_caught() -> None:
    """TORCHDYNAMO_DISABLE=1 (or this switch) makes torch.compile a no-op: outputs stay "correct"."""
    import torch._dynamo

    with torch._dynamo.config.patch(disable=True):
        found = findings(gate_for(ACT), EVAL)
    assert "compiled_ran" in found
    assert "no compiled graph ran" in found["compiled_ran"]


def test_recompile_limit_is_caught() -> None:
    with compat.recompile_limit_set(1):
        found = findings(gate_for(BatchSizeCache), EVAL)
    assert "compiled_ran" in found or "recompiles" in found


def test_data_dependent_recompiles_exceed_the_allowance() -> None:
    found = findings(gate_for(BatchSizeCache), EVAL)
    # torch 2.2's dynamo cannot trace the dict keyed by a symbolic size: there it is caught as a graph break.
    assert "recompiles" in found or (compat.torch_version() < (2, 5) and "graph_break" in found), found


def test_nondeterministic_eager_is_refused() -> None:
    found = findings(gate_for(Nondeterministic, backend=None), EVAL)
    assert "eager_nondeterministic" in found


def test_checkpoint_layout_change_names_the_keys() -> None:
    found = findings(gate_for(Renamed, backend=None), EVAL)
    assert "action_head.weight" in found["layout"] and "head.weight" in found["layout"]


def test_target_that_raises_is_a_finding_not_a_crash() -> None:
    found = findings(gate_for(Raises, backend=None), EVAL)
    assert "boom in the target" in found["target_raised"]


def test_training_gradients_are_compared() -> None:
    class DetachedLatent(ACT):
        def latent(self, batch, batch_size):
            sample, mu, log_sigma_x2 = super().latent(batch, batch_size)
            return sample.detach(), mu, log_sigma_x2

    found = findings(gate_for(DetachedLatent, backend=None), TRAIN)
    assert any(key.startswith("legacy/target:grad/vae_encoder") for key in found), found


def test_a_wrong_tolerance_would_hide_a_rounding_difference() -> None:
    """Bitwise is the default for eager; a reordering that only rounds differently passes only at rounding."""
    expected = {"x": torch.tensor([1.0, 2.0, 3.0])}
    rounded = {"x": expected["x"] + torch.tensor([0.0, 2.4e-7, 0.0])}
    assert not compare(expected, rounded, "p", EXACT)[0].passed
    assert compare(expected, rounded, "p", tolerance_for("eager", torch.float32, eager_rounding=True))[0].passed
    real_bug = {"x": expected["x"] + torch.tensor([0.0, 1e-3, 0.0])}
    assert not compare(expected, real_bug, "p", tolerance_for("eager", torch.float32, eager_rounding=True))[0].passed


def test_fp64_reference_tells_rounding_from_miscompile() -> None:
    tol = tolerance_for("compiled", torch.float32, "inductor")
    ref = torch.linspace(-1, 1, 64, dtype=torch.float64)
    eager = (ref + 1e-4 * torch.sin(ref * 50)).float()
    rounding = (ref - 1e-4 * torch.sin(ref * 50)).float()
    miscompile = (ref + 1e-2 * torch.cos(ref * 7)).float()
    same_error = compare({"t": eager}, {"t": rounding}, "p", tol, {"t": ref})[0]
    assert same_error.passed and same_error.rmse is not None and "rounding" in same_error.message
    wrong = compare({"t": eager}, {"t": miscompile}, "p", tol, {"t": ref})[0]
    assert not wrong.passed and "miscompile" in wrong.message


@pytest.mark.parametrize(
    ("actual", "kind"),
    [(torch.zeros(2, 3), "shape"), (torch.zeros(3, 2, dtype=torch.float64), "dtype"),
     (torch.tensor([[0.0, float("nan")], [0.0, 0.0], [0.0, 0.0]]), "nan"), (None, "missing")],
)
def test_structural_mismatches_have_their_own_kind(actual: torch.Tensor | None, kind: str) -> None:
    check = compare({"t": torch.zeros(3, 2)}, {"t": actual}, "p", EXACT)[0]
    assert not check.passed and check.kind == kind and math.isinf(check.ratio)


@pytest.mark.compile
def test_inductor_miscompile_is_caught() -> None:
    """PyTorch's own bug-injection switch makes inductor miscompile relu; the oracle must see it."""
    gate = Gate(backend="inductor", explain=False)
    case = Case(EVAL.config.replace(camera_shapes=[(3, 32, 32)]), BatchSpec(2, seed=3))
    with compat.inject_miscompile("relu"):
        verdict = gate.verdict(case)
    assert not verdict.passed
    assert any(c.pair == "target/compiled" and not c.passed for c in verdict.checks)


def test_compiled_only_failure_is_a_finding() -> None:
    found = findings(gate_for(RaisesWhenCompiled), EVAL)
    assert "compiled_raised" in found and "the compiled target raised" in found["compiled_raised"]


def test_float64_reference_that_raises_is_a_finding() -> None:
    """bf16 autocast training with aot_eager has an rmse tolerance, so the float64 reference is built."""
    found = findings(gate_for(NoFloat64, autocast="bfloat16"), TRAIN)
    assert "reference64_raised" in found and "no float64 kernel" in found["reference64_raised"]


def test_autocast_switched_off_in_the_target_is_caught() -> None:
    found = findings(gate_for(DecoderOutsideAutocast, autocast="bfloat16"), EVAL)
    assert "dtypes differ: expected torch.bfloat16, actual torch.float32" in found["legacy/target:actions"]


def test_autocast_that_never_took_effect_is_caught(monkeypatch: pytest.MonkeyPatch) -> None:
    """torch disables an unsupported autocast with a warning only; the run would then test full precision."""
    monkeypatch.setattr(numerics, "autocast", lambda device, name: contextlib.nullcontext())
    found = findings(gate_for(ACT, autocast="bfloat16"), EVAL)
    assert "autocast_ran" in found and "did not take effect" in found["autocast_ran"]


def test_autocast_runs_bitwise_where_the_kernels_are_the_same() -> None:
    """Under bf16 autocast legacy/target stays bitwise, and aot_eager's forward too (eval)."""
    verdict = gate_for(ACT, autocast="bfloat16").verdict(EVAL)
    assert verdict.passed, verdict.summary()
    assert all(c.tolerance.bitwise and c.max_abs == 0 for c in verdict.checks)


@pytest.mark.compile
def test_inductor_miscompile_under_autocast_is_caught() -> None:
    gate = Gate(backend="inductor", autocast="bfloat16", explain=False)
    case = Case(EVAL.config.replace(camera_shapes=[(3, 32, 32)]), BatchSpec(2, seed=3))
    with compat.inject_miscompile("relu"):
        verdict = gate.verdict(case)
    assert not verdict.passed
    assert any(c.pair == "target/compiled" and not c.passed for c in verdict.checks)


@pytest.mark.parametrize(
    ("options", "message"),
    [({"autocast": "int8"}, "--autocast 'int8' is invalid: one of ['bfloat16', 'float16'] or none"),
     ({"autocast": "bfloat16", "dtype": "float64"}, "--autocast bfloat16 needs --dtype float32")],
)
def test_bad_autocast_options_name_the_allowed_values(options: dict[str, str], message: str) -> None:
    with pytest.raises(UsageError) as caught:
        Gate(**options)
    assert message in str(caught.value)


def test_autocast_this_torch_would_disable_is_refused(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(compat, "autocast_supported", lambda device, dtype: dtype == torch.bfloat16)
    with pytest.raises(UsageError, match=r"--autocast float16 is not supported on --device cpu .* supported here: "
                                         r"\['bfloat16'\]"):
        Gate(autocast="float16")
