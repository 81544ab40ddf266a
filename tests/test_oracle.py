"""Every check of the oracle, shown to fail: each test injects one bug and expects the verdict to name it."""

from __future__ import annotations

import contextlib
import dataclasses
import math

import helpers
import pytest
import torch

from act_equiv import compat, testing
from act_equiv.case import MUST_KEEP, BatchSpec, Case
from act_equiv.config import OBS_ENV_STATE, OBS_STATE, ACTConfig
from act_equiv.errors import UsageError
from act_equiv.gate import Gate
from act_equiv.models import ACT, LegacyACT
from act_equiv.oracle.compare import compare
from act_equiv.oracle.judge import judge
from act_equiv.oracle.tolerance import EXACT, tolerance_for
from act_equiv.run import numerics
from act_equiv.run.runner import Runner
from act_equiv.run.side import InProcessSide
from act_equiv.settings import Settings
from act_equiv.targets import Target
from act_equiv.targets.mutants import ZeroLatentFloat32

EVAL, TRAIN = MUST_KEEP


def runner_for(target: type, settings: Settings) -> Runner:
    """A runner of `target` against the legacy reference, both in this process."""
    return Runner(InProcessSide(Target("legacy", LegacyACT), settings),
                  InProcessSide(Target(target.__name__, target), settings), settings)


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
        testing.graph_break()
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
        if testing.is_compiling():
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
    found = helpers.failures(helpers.verdict(SwappedStateEnv, EVAL))
    assert "reference/target:actions" in found
    assert "Greatest absolute difference" in found["reference/target:actions"]


def test_graph_break_is_reported_with_its_reason() -> None:
    found = helpers.failures(helpers.verdict(GraphBreak, EVAL))
    assert "graph_break" in found


def test_silently_eager_compiled_path_is_caught() -> None:
    """TORCHDYNAMO_DISABLE=1 (or this switch) makes torch.compile a no-op: outputs stay "correct"."""
    import torch._dynamo

    with torch._dynamo.config.patch(disable=True):
        found = helpers.failures(helpers.verdict(ACT, EVAL))
    assert "compiled_ran" in found
    assert "no compiled graph ran" in found["compiled_ran"]


def test_recompile_limit_is_caught() -> None:
    with testing.recompile_limit_set(1):
        found = helpers.failures(helpers.verdict(BatchSizeCache, EVAL))
    assert "compiled_ran" in found or "recompiles" in found


def test_data_dependent_recompiles_exceed_the_allowance() -> None:
    found = helpers.failures(helpers.verdict(BatchSizeCache, EVAL))
    # torch 2.2's dynamo cannot trace the dict keyed by a symbolic size: there it is caught as a graph break.
    assert "recompiles" in found or (compat.torch_version() < (2, 5) and "graph_break" in found), found


def test_nondeterministic_eager_is_refused() -> None:
    found = helpers.failures(helpers.verdict(Nondeterministic, EVAL, backend=None))
    assert "eager_nondeterministic" in found


def test_checkpoint_layout_change_names_the_keys() -> None:
    verdict = helpers.verdict(Renamed, EVAL, backend=None)
    layout = verdict.classes["model"]
    assert not verdict.passed and layout.name == "layout"
    assert "action_head.weight" in layout.evidence and "head.weight" in layout.evidence


def test_target_that_raises_is_a_finding_not_a_crash() -> None:
    verdict = helpers.verdict(Raises, EVAL, backend=None)
    raised = verdict.classes["model"]
    assert not verdict.passed and raised.name == "raised"
    assert "the target raised" in raised.evidence and "boom in the target" in raised.evidence


def test_training_gradients_are_compared() -> None:
    class DetachedLatent(ACT):
        def latent(self, batch, batch_size):
            sample, mu, log_sigma_x2 = super().latent(batch, batch_size)
            return sample.detach(), mu, log_sigma_x2

    found = helpers.failures(helpers.verdict(DetachedLatent, TRAIN, backend=None))
    assert any(key.startswith("reference/target:grad/vae_encoder") for key in found), found


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
    """PyTorch's own bug-injection switch makes inductor miscompile relu; the oracle must see it. Without cameras
    (the feed-forward layers' relu is miscompiled too; a backbone's kernels were most of the compile)."""
    with Gate(backend="inductor", explain=False) as gate:
        case = Case(EVAL.config.replace(camera_shapes=[]), BatchSpec(2, seed=3))
        with testing.inject_miscompile("relu"):
            verdict = gate.verdict(case)
        assert not verdict.passed
        assert any(c.pair == "target/compiled" and not c.passed for c in verdict.checks)


def test_compiled_only_failure_is_a_finding() -> None:
    found = helpers.failures(helpers.verdict(RaisesWhenCompiled, EVAL))
    assert "compiled_raised" in found and "the compiled form of the target raised" in found["compiled_raised"]


def test_autocast_switched_off_in_the_target_is_caught() -> None:
    found = helpers.failures(helpers.verdict(DecoderOutsideAutocast, EVAL, autocast="bfloat16"))
    assert "dtypes differ: expected torch.bfloat16, actual torch.float32" in found["reference/target:actions"]


def test_autocast_that_never_took_effect_is_caught(monkeypatch: pytest.MonkeyPatch) -> None:
    """torch disables an unsupported autocast with a warning only; the run would then test full precision."""
    monkeypatch.setattr(numerics, "autocast", lambda device, name: contextlib.nullcontext())
    found = helpers.failures(helpers.verdict(ACT, EVAL, autocast="bfloat16"))
    assert "autocast_ran" in found and "did not take effect" in found["autocast_ran"]


def test_autocast_runs_bitwise_where_the_kernels_are_the_same() -> None:
    """Under bf16 autocast reference/target stays bitwise, and aot_eager's forward too (eval)."""
    verdict = helpers.verdict(ACT, EVAL, autocast="bfloat16")
    assert verdict.passed, verdict.summary()
    assert all(c.tolerance.bitwise and c.max_abs == 0 for c in verdict.checks)


@pytest.mark.compile
def test_inductor_miscompile_under_autocast_is_caught() -> None:
    with Gate(backend="inductor", autocast="bfloat16", explain=False) as gate:
        case = Case(EVAL.config.replace(camera_shapes=[]), BatchSpec(2, seed=3))
        with testing.inject_miscompile("relu"):
            verdict = gate.verdict(case)
        assert not verdict.passed
        assert any(c.pair == "target/compiled" and not c.passed for c in verdict.checks)


@pytest.mark.parametrize(
    ("options", "message"),
    [({"autocast": "int8"}, "autocast='int8' is invalid: one of ['bfloat16', 'float16'] or none"),
     ({"autocast": "bfloat16", "dtype": "float64"}, "autocast='bfloat16' needs dtype='float32'")],
)
def test_bad_autocast_options_name_the_allowed_values(options: dict[str, str], message: str) -> None:
    """The library names its settings; the command line shows its own flags for them."""
    with pytest.raises(UsageError) as caught:
        Gate(**options)
    assert message in str(caught.value)
    assert message.replace("autocast=", "--autocast ").replace("dtype=", "--dtype ") in caught.value.for_flags()


def test_autocast_this_torch_would_disable_is_refused(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(compat, "autocast_supported", lambda device, dtype: dtype == torch.bfloat16)
    with pytest.raises(UsageError, match=r"autocast='float16' is not supported on device='cpu' .* supported here: "
                                         r"\['bfloat16'\]"):
        Gate(autocast="float16")


# -- soundness: each test below passed on the oracle before these loopholes were closed -----------------------------
class LatentShiftedWhenCompiled(ACT):
    """Compiled training with the VAE only: the latent sample shifted by 1e-3 relative. Before, the float64
    reference drew another latent sample, so eager's own "error" was as large as the signal and the fp64 check
    accepted this."""

    def latent(self, batch, batch_size):
        sample, mu, log_sigma_x2 = super().latent(batch, batch_size)
        return (sample * (1 + 1e-3) if testing.is_compiling() else sample), mu, log_sigma_x2


VAE_TRAIN = Case(ACTConfig(env_state_dim=3, camera_shapes=[], action_dim=3, vision_backbone="tiny_resnet",
                           dim_model=16, n_heads=2, dim_feedforward=16, chunk_size=4, n_action_steps=4,
                           n_encoder_layers=1, n_decoder_layers=1, n_vae_encoder_layers=1, latent_dim=8, dropout=0.1),
                 BatchSpec(batch_size=4, seed=2, pad="some"), training=True, weight_seed=5)


@pytest.mark.compile
def test_compiled_vae_latent_shift_fails_under_inductor_and_the_clean_target_passes() -> None:
    """The float64 reference draws the float32 run's latent sample (and dropout masks), so it is the same
    computation done exactly: eager's error against it is rounding, and a 1e-3 shift is a miscompile."""
    clean = helpers.verdict(ACT, VAE_TRAIN, backend="inductor")
    assert clean.passed, clean.summary()
    found = helpers.failures(helpers.verdict(LatentShiftedWhenCompiled, VAE_TRAIN, backend="inductor"))
    assert any(key.startswith("target/compiled:") and "miscompile" in text for key, text in found.items()), found


def test_non_finite_reference_is_its_own_finding() -> None:
    """Inputs at 1e30 overflow float32 inside the model: legacy and target are equally NaN, which compared as equal
    before; now nothing is compared with a reference that is not finite."""
    case = dataclasses.replace(EVAL, batch=dataclasses.replace(EVAL.batch, scale=1e30))
    found = helpers.failures(helpers.verdict(ACT, case))
    assert "reference_not_finite" in found and case.describe() in found["reference_not_finite"]


class WrongOnceBatchIsSymbolic(ACT):
    """Compiled code that is right at the first batch size and wrong at the sizes of the dynamic-shape graph."""

    def decode(self, tokens, pos_embed, batch_size):
        actions = super().decode(tokens, pos_embed, batch_size)
        return actions * 1.001 if testing.is_compiling() and batch_size >= 3 else actions


def test_dynamic_batch_graph_outputs_are_compared() -> None:
    """The compiled calls at further batch sizes were made only to count recompiles, their outputs thrown away."""
    case = dataclasses.replace(EVAL, batch=dataclasses.replace(EVAL.batch, batch_size=1))
    verdict = helpers.verdict(WrongOnceBatchIsSymbolic, case)
    failed = {c.pair for c in verdict.checks if not c.passed}
    assert failed == {"target/compiled@batch3", "target/compiled@batch4"}, verdict.summary()


class LoadRaisesValueError(ACT):
    def load_state_dict(self, state_dict, strict=True, assign=False):
        raise ValueError("this loader only reads safetensors")


def test_a_target_whose_loader_raises_anything_is_a_finding() -> None:
    """Only RuntimeError was caught around load_state_dict; a ValueError crashed the tool."""
    verdict = helpers.verdict(LoadRaisesValueError, EVAL)
    raised = verdict.classes["model"]
    assert not verdict.passed and raised.name == "raised"
    assert "ValueError at build" in raised.evidence and "safetensors" in raised.evidence


class NoDeepcopy(ACT):
    def __deepcopy__(self, memo):
        raise TypeError("holds a handle that cannot be copied")


@pytest.mark.parametrize("target", [NoDeepcopy, NoFloat64, ZeroLatentFloat32])
def test_a_target_without_float64_gets_the_legacy_float64_reference(target: type) -> None:
    """A target that cannot be copied to float64, or run in it (LeRobot's zero latent is hard-coded float32), is
    fine in float32: once it agrees with legacy bitwise, the legacy model's float64 run is an exact reference for
    it. Before, each of these failed every run that needed a float64 reference (`reference64_raised`)."""
    case = dataclasses.replace(EVAL, config=dataclasses.replace(EVAL.config, use_vae=False))
    run = runner_for(target, Settings(backend="eager", reference64=True)).run(case)
    verdict = judge(run)
    assert verdict.passed, verdict.summary()
    assert verdict.info["reference64"].startswith("reference float64") and "reference64" in run.outputs


class NoFloat64Reordered(NoFloat64):
    """No float64 either, and one rounding step away from legacy in float32 (as a reordering refactor would be)."""

    def decode(self, tokens, pos_embed, batch_size):
        return super().decode(tokens, pos_embed, batch_size) * (1 + 2**-23)


def test_the_legacy_float64_run_is_refused_for_a_target_that_differs_in_float32() -> None:
    """The legacy float64 run is exact for the target only when both computed the same float32 numbers: a target
    within rounding of legacy (a rounding class, which passes) gets no float64 reference at all."""
    case = dataclasses.replace(EVAL, config=dataclasses.replace(EVAL.config, use_vae=False))
    run = runner_for(NoFloat64Reordered, Settings(backend="eager", reference64=True)).run(case)
    verdict = judge(run)
    assert any(c.pair == "reference/target" and c.max_abs > 0 for c in verdict.checks), "the injected rounding is gone"
    assert verdict.classes["model"].label == "rounding (tolerance only, no float64 evidence)", verdict.classes
    assert "reference64" in run.outputs and verdict.info["reference64"].startswith("none"), verdict.info


class NoFloat64Legacy(LegacyACT):
    def decode(self, tokens, pos_embed, batch_size):
        if tokens.dtype == torch.float64:
            raise RuntimeError("no float64 kernel in the legacy model either")
        return super().decode(tokens, pos_embed, batch_size)


def test_no_float64_reference_at_all_is_a_finding() -> None:
    found = helpers.failures(helpers.verdict(NoFloat64, TRAIN, reference=Target("legacy", NoFloat64Legacy),
                                             autocast="bfloat16"))
    assert "reference64_raised" in found and "legacy model either" in found["reference64_raised"]


def test_aot_eager_autocast_outputs_stay_bitwise_in_training() -> None:
    """Forward outputs of aot_eager under autocast are measured bitwise; only its gradients get the autocast
    tolerance (before, every tensor of a training case did)."""
    verdict = helpers.verdict(ACT, TRAIN, autocast="bfloat16")
    assert verdict.passed, verdict.summary()
    compiled = {c.tensor: c.tolerance for c in verdict.checks if c.pair == "target/compiled"}
    assert compiled["actions"].bitwise and compiled["loss"].bitwise
    assert not compiled["grad/action_head.weight"].bitwise
