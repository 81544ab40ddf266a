"""The reference/target pair's verdict classes, each shown on an injected edit, and sides in worker processes."""

from __future__ import annotations

import dataclasses
import json
import sys
from pathlib import Path

import helpers
import pytest
import torch
from gate_targets import ActionHeadSplitSum, CachesEncoderInputsByShape, Raises

from act_equiv.case import MUST_KEEP
from act_equiv.cli import main
from act_equiv.gate import Gate
from act_equiv.models import ACT, ACTPolicy
from act_equiv.report import pair_errors
from act_equiv.run.worker import _pack, _unpack
from act_equiv.targets import Target
from act_equiv.targets.mutants import (
    BackboneMicroBatched,
    CameraFeaturesMemoisedByAddress,
    LayerNormAffineDroppedInEval,
    SoftmaxUnshiftedFloat32,
)

EVAL, TRAIN = MUST_KEEP
TESTS = str(Path(__file__).parent)


def test_same_bits_are_bitwise_at_both_levels() -> None:
    verdict = helpers.verdict(Target("concat", ACT), EVAL, backend=None)
    assert verdict.passed and {c.name for c in verdict.classes.values()} == {"bitwise"}, verdict.classes


@pytest.mark.parametrize("case", [EVAL, TRAIN], ids=["eval", "train"])
def test_a_reordered_sum_is_rounding_with_float64_evidence(case) -> None:
    """Float32 outputs differ, float64 runs of both sides agree to float64 rounding: a warning, not a failure;
    `strict` fails it."""
    verdict = helpers.verdict(Target("split", ActionHeadSplitSum), case, backend=None)
    model = verdict.classes["model"]
    assert model.name == "rounding" and "float64" in model.evidence and model.label == "", model
    assert verdict.passed and verdict.warnings and not verdict.failures, verdict.summary()
    strict = helpers.verdict(Target("split", ActionHeadSplitSum), case, strict=True, backend=None)
    assert not strict.passed and "[model: rounding]" in strict.failures[0], strict.failures


@pytest.mark.parametrize("scale", [1.0, 100.0])
def test_a_float32_only_path_cannot_vouch_for_itself(scale: float) -> None:
    """The target's float32 eval takes a softmax without the max subtraction, its float64 the stock one. At scale 1
    that is rounding, and the target's float32 stays as close to the reference's float64 as the reference's own; at
    scale 100 its actions are NaN: divergent at both levels, never "max |diff| 0", and in the pairs table."""
    case = dataclasses.replace(EVAL, batch=dataclasses.replace(EVAL.batch, scale=scale))
    verdict = helpers.verdict(Target("fused", SoftmaxUnshiftedFloat32), case, backend=None)
    if scale == 1.0:
        assert verdict.passed and verdict.classes["model"].name == "rounding", verdict.classes
        assert "as close to the reference's float64" in verdict.classes["model"].evidence
        return
    assert not verdict.passed, verdict.summary()
    for level in ("model", "policy"):
        pair_class = verdict.classes[level]
        assert pair_class.name == "divergent" and "nan" in pair_class.evidence, pair_class
        assert "max |diff| 0" not in pair_class.evidence, pair_class
    pairs = pair_errors([verdict.to_dict()])
    worst = pairs["reference/target @ " + verdict.info["settings"]]
    assert worst["max_abs"] == float("inf") and worst["failed"], worst


class SkewedOnlyInFloat32(ACT):
    """A float32-only path with finite outputs: the action head's output nudged by 1e-4 in float32 only (float64
    runs agree exactly)."""

    def decode(self, tokens, pos_embed, batch_size):
        out = super().decode(tokens, pos_embed, batch_size)
        return out * (1 + 1e-4) if out.dtype == torch.float32 else out


def test_a_finite_float32_only_change_is_divergent_by_the_reference_float64() -> None:
    verdict = helpers.verdict(Target("skewed", SkewedOnlyInFloat32), EVAL, backend=None)
    model = verdict.classes["model"]
    assert not verdict.passed and model.name == "divergent", model
    assert "further from the reference's float64" in model.evidence, model


class ShiftedHead(ACT):
    def decode(self, tokens, pos_embed, batch_size):
        return super().decode(tokens, pos_embed, batch_size) * (1 + 1e-6)


def test_a_real_change_is_divergent_even_in_float64() -> None:
    verdict = helpers.verdict(Target("shifted", ShiftedHead), EVAL, backend=None)
    model = verdict.classes["model"]
    assert not verdict.passed and model.name == "divergent" and "differ too" in model.evidence, model


class QueueReversed(ACTPolicy):
    """A policy-only bug: the action queue hands out a chunk's actions last first."""

    def select_action(self, batch):
        if self.temporal_ensembler is None and not self._action_queue:
            actions = self.predict_action_chunk(batch)[:, : self.config.n_action_steps]
            self._action_queue.extend(actions.flip(1).transpose(0, 1))
        return super().select_action(batch)


def test_a_policy_only_edit_is_divergent_at_the_policy_level_only() -> None:
    case = dataclasses.replace(EVAL, config=dataclasses.replace(EVAL.config, chunk_size=4, n_action_steps=3,
                                                                 temporal_ensemble_coeff=None))
    verdict = helpers.verdict(Target("queue", ACT, policy=QueueReversed), case, backend=None)
    assert verdict.classes["model"].name == "bitwise", verdict.classes
    policy = verdict.classes["policy"]
    assert not verdict.passed and policy.name == "divergent" and "policy/rollout" in policy.evidence, policy


class RaisesToo(ACT):
    def forward(self, batch):
        raise RuntimeError("the reference is broken the same way")


def test_both_sides_raising_alike_is_raised_both() -> None:
    """A pre-existing bug is not the edit's regression: a warning with both tracebacks' innermost frames."""
    verdict = helpers.verdict(Target("raises", Raises), EVAL, reference=Target("raises-too", RaisesToo), backend=None)
    model = verdict.classes["model"]
    assert verdict.passed and model.name == "raised-both" and "RuntimeError at forward" in model.evidence, model
    assert "in forward" in model.evidence  # the innermost frame, on one line
    strict = helpers.verdict(Target("raises", Raises), EVAL, reference=Target("raises-too", RaisesToo), strict=True,
                             backend=None)
    assert not strict.passed


def test_one_side_raising_is_raised_with_the_side_named() -> None:
    verdict = helpers.verdict(Target("concat", ACT), EVAL, reference=Target("raises-too", RaisesToo), backend=None)
    model = verdict.classes["model"]
    assert not verdict.passed and model.name == "raised" and model.evidence.startswith("the reference raised"), model


def test_unsupported_fails_for_the_target_and_skips_for_the_reference() -> None:
    never = Target("narrow", ACT, unsupported=lambda config: "no environment state here")
    lost = helpers.verdict(never, EVAL, backend=None)
    assert not lost.passed and lost.classes["model"].name == "unsupported", lost.classes
    assert "target narrow cannot run this case: no environment state here" in lost.failures[0]
    older = helpers.verdict(Target("concat", ACT), EVAL, reference=never, backend=None)
    assert older.passed and "reference narrow cannot" in older.info["skipped"]


# -- sides in worker processes --------------------------------------------------------------------------------------
@pytest.fixture
def tests_on_path(monkeypatch: pytest.MonkeyPatch) -> None:
    """Worker processes import `gate_targets` from tests/ (execnet passes the environment on)."""
    monkeypatch.setenv("PYTHONPATH", TESTS)


def test_a_worker_side_computes_what_the_in_process_side_does(tests_on_path: None) -> None:
    """Compiled with dynamo's `eager` backend (it traces and proves its graph ran as any backend does, without
    AOTAutograd's compile of the whole training step: half this test's time), on the training case without its
    cameras: tracing the whole step costs by the parameters, and the backbones hold most of them (25 s against 15 s
    a side, measured)."""
    case = helpers.TRAIN_WITHOUT_CAMERAS
    with Gate(target="gate_targets:ActionHeadSplitSum", target_python=sys.executable, explain=False,
              backend="eager") as gate:
        worker = gate.verdict(case)
    local = helpers.verdict(Target("split", ActionHeadSplitSum), case, backend="eager", trained_structures=1)
    assert worker.classes["model"].name == local.classes["model"].name == "rounding"
    assert {(c.pair, c.tensor): c.max_abs for c in worker.checks} == {(c.pair, c.tensor): c.max_abs
                                                                        for c in local.checks}
    # The worker compiled its own module and proved the compiled graph ran there, and trained it compiled there.
    assert any(c.pair == "target/compiled" for c in worker.checks)
    assert {"trajectory compiled", "trajectory compiled-step"} <= worker.classes.keys()
    assert worker.info["compile"]["graphs"] >= 1 and not worker.info["compile"]["fell_back_to_eager"]


@pytest.mark.parametrize(("target", "message"), [("Hangs", "no reply"), ("Crashes", "died")])
def test_a_hung_or_dead_worker_is_a_finding_and_the_run_goes_on(tests_on_path: None, target: str,
                                                                message: str) -> None:
    """A request limit of 3 s: each fresh worker's start-up is not a request (`WORKER_STARTUP`), and the requests
    before the hanging forward (a tiny model's build and load) take milliseconds."""
    with Gate(target=f"gate_targets:{target}", target_python=sys.executable, explain=False,
              worker_timeout=3) as gate:
        first = gate.verdict(EVAL)
        assert not first.passed and first.findings[0].check == "worker_failed", first.summary()
        assert message in first.findings[0].message
        assert gate.verdict(EVAL).findings[0].check == "worker_failed"  # a fresh worker served the next case


def test_a_request_limit_shorter_than_the_start_up_still_starts_the_worker() -> None:
    """A worker's start-up (its interpreter, torch, the side's imports: seconds for LeRobot) is limited by
    `WORKER_STARTUP`, not by `--worker-timeout`: before, a limit below the start-up was a traceback from `open`."""
    with Gate(target="concat", target_python=sys.executable, explain=False, backend=None,
              worker_timeout=0.1) as gate:
        assert gate.runner.target.environment()["process"].startswith("worker pid ")


def test_side_usage_errors_exit_2(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    missing = str(tmp_path / "python")
    assert main(["check", "--target-python", missing, "--report-dir", str(tmp_path)]) == 2
    assert f"--target-python '{missing}': no such Python interpreter" in capsys.readouterr().err
    assert main(["check", "--reference", "lerobot@HEAD", "--lerobot-repo", str(tmp_path)]) == 2
    assert "is not a git repository" in capsys.readouterr().err
    assert main(["check", "--reference", "nowhere:Model", "--reference-python", sys.executable]) == 2
    assert "--reference 'nowhere:Model' does not load in the worker" in capsys.readouterr().err


def test_a_reference_that_raises_outside_the_classed_stages_is_a_finding() -> None:
    """The reference's own `unsupported` hook raising is no pair class's stage: it is `reference_raised`, and the
    case runs no forms."""

    def broken(config):
        raise RuntimeError("the reference cannot even say what it supports")

    verdict = helpers.verdict(Target("concat", ACT), EVAL, reference=Target("broken", ACT, unsupported=broken),
                              backend=None)
    [finding] = verdict.findings
    assert not verdict.passed and finding.check == "reference_raised", verdict.summary()
    assert "reference:unsupported" in finding.message and "cannot even say" in finding.message


def test_a_run_that_compared_nothing_fails_and_says_why(tests_on_path: None, tmp_path: Path,
                                                         capsys: pytest.CaptureFixture[str]) -> None:
    """Both sides raising alike on every case is `raised-both` each time, a warning; a run of nothing else proved
    nothing, so it exits 1 saying so."""
    code = main(["check", "--reference", "gate_targets:Raises", "--target", "gate_targets:Raises", "--backend",
                 "none", "--profile", "ci", "--max-examples", "1", "--seed", "1", "--report-dir", str(tmp_path)])
    out = capsys.readouterr().out
    assert code == 1, out
    assert "FAIL: nothing compared: none of the" in out and "both sides raise RuntimeError at forward" in out, out
    [report] = tmp_path.glob("*/report.json")
    result = json.loads(report.read_text())["result"]
    assert result["passed"] is False and result["compared"] == 0 and result["cases"] > 0, result


def _compiled_act(config):
    import torch

    return torch.compile(ACT(config), backend="eager")


class _PolicyCompilingItsModel(ACTPolicy):
    def __init__(self, config, model):
        import torch

        super().__init__(config, model)
        self.model = torch.compile(model, backend="eager")


@pytest.mark.parametrize(("target", "level"), [
    (Target("compiled-model", _compiled_act), "model"),
    (Target("compiled-policy", ACT, policy=_PolicyCompilingItsModel), "policy"),
], ids=["model", "policy"])
def test_a_module_replaced_by_its_compiled_wrapper_breaks_the_checkpoint_contract(target: Target, level: str) -> None:
    """torch.compile returns a wrapper whose state_dict keys gain `_orig_mod.` (pytorch#101107): the reference's
    checkpoint no longer loads strictly, at the level that holds the wrapper; the evidence names the keys and the
    fix."""
    verdict = helpers.verdict(target, EVAL, backend=None)
    layout = verdict.classes[level]
    assert not verdict.passed and layout.name == "layout", verdict.classes
    assert "every key gains `_orig_mod.`" in layout.evidence and "getattr(model, '_orig_mod', model)" in layout.evidence
    if level == "policy":
        assert verdict.classes["model"].name == "bitwise", verdict.classes


class _PolicyWithoutChunks(ACTPolicy):
    """An older policy API: no predict_action_chunk."""

    def __getattribute__(self, name: str):
        if name == "predict_action_chunk":
            raise AttributeError(name)
        return super().__getattribute__(name)


def test_a_missing_policy_api_is_unsupported_at_the_policy_level_with_the_reason() -> None:
    """Not `raised`: the side cannot express that level. The target losing it fails; the reference lacking it is
    accepted (the edit added it). The model level is compared either way."""
    older = Target("older-policy", ACT, policy=_PolicyWithoutChunks)
    lost = helpers.verdict(older, EVAL, backend=None)
    policy = lost.classes["policy"]
    assert not lost.passed and policy.name == "unsupported", lost.classes
    assert "the target cannot run the policy level: _PolicyWithoutChunks has no predict_action_chunk" in policy.evidence
    assert lost.classes["model"].name == "bitwise"
    gained = helpers.verdict(Target("concat", ACT), EVAL, reference=older, backend=None)
    assert gained.passed and gained.classes["policy"].name == "unsupported", gained.classes


def test_a_checkpoint_round_trip_that_raised_is_not_remembered_as_passed() -> None:
    """The round trip is checked once per structure, but only a finished one is remembered: a save that raised
    fails every case of the structure, not only the first."""
    with helpers.gate(Target("concat", ACT), backend=None) as gate:
        for side in (gate.runner.reference, gate.runner.target):
            side.saves_checkpoints = lambda case: True

        def broken_save(case, directory):
            raise RuntimeError("cannot write the checkpoint")

        gate.runner.reference.save_checkpoint = broken_save
        for case in (EVAL, dataclasses.replace(EVAL, weight_seed=EVAL.weight_seed + 1)):
            verdict = gate.verdict(case)
            assert verdict.classes["policy"].name == "raised", (case.describe(), verdict.classes)
            assert "cannot write the checkpoint" in verdict.classes["policy"].evidence


@pytest.mark.parametrize("scale", [0.0, 0.01, 0.1])
def test_code_that_ignores_a_parameter_at_its_init_value_cannot_hide(scale: float) -> None:
    """Weights at init (scale 0) leave every LayerNorm at weight 1 / bias 0, so dropping them is bitwise; drawn away
    from init, even near it (0.01), the same edit is divergent."""
    case = dataclasses.replace(EVAL, weight_scale=scale)
    verdict = helpers.verdict(Target("no-affine", LayerNormAffineDroppedInEval), case, backend=None)
    model = verdict.classes["model"]
    if scale == 0.0:
        assert verdict.passed and model.name == "bitwise", model
    else:
        assert not verdict.passed and model.name == "divergent", model


@pytest.mark.parametrize("case", [EVAL, TRAIN], ids=["eval", "train"])
def test_the_further_batch_sizes_are_compared_with_the_reference(case) -> None:
    """A case of 3 rows is bitwise for a backbone micro-batched by 4; the compiled stage runs the target again at
    4 and 5 rows (in training too), and there the reference judges it, not only the target's own compiled form."""
    case = dataclasses.replace(case, batch=dataclasses.replace(case.batch, batch_size=3))
    verdict = helpers.verdict(Target("micro", BackboneMicroBatched), case, backend="eager")
    model = verdict.classes["model"]
    assert not verdict.passed and model.name == "divergent", model
    assert "bitwise at the case's batch size 3, but not at batch 5" in model.evidence, model
    assert {"reference/target@batch4", "reference/target@batch5"} <= {check.pair for check in verdict.checks}
    clean = helpers.verdict(Target("concat", ACT), case, backend="eager")
    assert clean.passed and "reference/target@batch5" in {check.pair for check in clean.checks}, clean.summary()
    # Rounding at the case's size has no float64 run at the further sizes: not judged there (an element-wise bound
    # alone would call honest rounding divergent).
    rounding = helpers.verdict(Target("split", ActionHeadSplitSum), case, backend="eager")
    assert rounding.passed and rounding.classes["model"].name == "rounding", rounding.summary()


def test_the_float64_policy_evidence_computes_what_the_float32_policy_did() -> None:
    """The reference's policy outputs (loss, chunk, rollout) in float32 and float64 are the same computation: they
    differ by float32 rounding only, so the float64 run can judge a target's float32 rounding."""
    with helpers.gate(Target("concat", ACT), backend=None) as gate:
        reference = gate.runner.reference
        reference.build(EVAL)
        float32, float64 = reference.policy(EVAL), reference.policy(EVAL, float64=True)
        assert float32.keys() == float64.keys() and "policy/rollout" in float32
        for name, value in float32.items():
            assert (value.double() - float64[name]).abs().max() < 1e-5, name


def test_a_policy_that_caches_by_address_fails_in_a_robot_loop() -> None:
    """The rollout writes each observation into the same input buffers, as a robot loop does: camera features
    memoised by `data_ptr` go stale from the second step, and the policy level is divergent whatever the allocator
    did at the model level."""
    verdict = helpers.verdict(Target("memo", CameraFeaturesMemoisedByAddress), EVAL, backend=None)
    assert not verdict.passed and verdict.classes["policy"].name == "divergent", verdict.classes


def test_a_target_whose_outputs_depend_on_what_ran_before_is_stateful() -> None:
    """The target's instance runs a batch of other values before the case's, as a loop calling it would: a cache of
    encoder tokens keyed by shape hands back the first batch's, so the target differs from the reference, while a
    fresh instance with the same weights does not: a `stateful` finding, beside the divergent model level."""
    verdict = helpers.verdict(Target("cache", CachesEncoderInputsByShape), EVAL, backend=None)
    assert not verdict.passed and [f.check for f in verdict.findings] == ["stateful"], verdict.findings
    assert verdict.classes["model"].name == "divergent", verdict.classes
    clean = helpers.verdict(Target("concat", ACT), EVAL, backend=None)
    assert clean.passed and not clean.findings, clean.summary()
    real = helpers.verdict(Target("shifted", ShiftedHead), EVAL, backend=None)
    assert "stateful" not in [f.check for f in real.findings], real.findings


def test_the_worker_transport_keeps_what_torch_save_keeps() -> None:
    """A worker's requests and replies keep each tensor's dtype, values, view (strides, offset), aliasing,
    `requires_grad` and Parameter type, as `torch.save` did, and carry other objects as pickle does."""
    base = torch.arange(24, dtype=torch.float64).reshape(4, 6)
    value = {
        "view": base.t()[1:, ::2], "alias": base[0], "expanded": torch.ones(3).expand(2, 3),
        "bf16": torch.randn(2, 3).to(torch.bfloat16), "flag": torch.tensor([True, False]), "scalar": torch.tensor(7),
        "empty": torch.empty(0, 5), "parameter": torch.nn.Parameter(torch.randn(2)),
        "frozen": torch.nn.Parameter(torch.randn(2), requires_grad=False), "grad": torch.randn(2).requires_grad_(),
        "other": [torch.float16, torch.Size([2]), ("text", 1.5, None)],
    }
    back = _unpack(_pack(value))
    assert back["other"] == value["other"]
    for name, tensor in value.items():
        if name != "other":
            got = back[name]
            assert (type(got), got.dtype, got.shape, got.stride(), got.storage_offset(), got.requires_grad) == \
                (type(tensor), tensor.dtype, tensor.shape, tensor.stride(), tensor.storage_offset(),
                 tensor.requires_grad), name
            assert torch.equal(got.detach(), tensor.detach()), name
    back["alias"][1] = -1.0  # base[0, 1]: the two views of `base` share one storage again
    assert back["view"][0, 0].item() == -1.0
