"""act_equiv's property suite. Runs in this repo's tests and, through the pytest plugin, against any target:

    pytest -n auto --act-target mypkg.modeling:make_act

Every property draws from `act_equiv.strategies` within the loaded profile's scope.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest
import torch
from hypothesis import assume, example, given, settings
from hypothesis import strategies as st

from act_equiv import profiles
from act_equiv import strategies as aes
from act_equiv.case import MUST_KEEP, MUST_KEEP_INFERENCE, Case
from act_equiv.config import ACTConfig, ConfigError
from act_equiv.errors import UsageError
from act_equiv.gate import Gate
from act_equiv.models import LegacyACT, build
from act_equiv.oracle.verdict import CaseVerdict, Divergence
from act_equiv.plugin import activate, record
from act_equiv.run.numerics import AUTOCAST_DTYPES
from act_equiv.run.side import InProcessSide

# Before any decorator below: a Hypothesis settings object copies the profile loaded when it is created.
activate()



def _gate(act_options: dict[str, Any], **overrides: Any) -> Gate:
    """The session's gate with `overrides`; skips where this machine cannot run them (no CUDA device, or an
    autocast dtype this torch does not apply on the device) or where they conflict with the session's options (an
    autocast fixture under `--act-dtype float64`). Bad session options never get here: the plugin stops the
    session on them as a pytest usage error."""
    try:
        return Gate(**{"explain": False, **act_options, **overrides})
    except UsageError as error:
        if set(error.settings) & set(overrides):
            pytest.skip(str(error))
        raise


def assert_holds(gate: Gate, case: Case, compiled: bool = True) -> CaseVerdict:
    """The property: every form agrees on this case. The verdict goes to the session's report; a failing one raises
    `Divergence`, on which Hypothesis shrinks."""
    __tracebackhide__ = True  # the failure reads as the property's, not as this helper's
    verdict = record(gate.verdict(case, compiled))
    if not verdict.passed:
        raise Divergence(verdict)
    return verdict


def _session_gate(act_options: dict[str, Any], **overrides: Any) -> Iterator[Gate]:
    """A session fixture's gate (`_gate`), closed when the session ends (its worker processes, if any)."""
    with _gate(act_options, **overrides) as gate:
        yield gate


@pytest.fixture(scope="session")
def act_gate(act_options: dict[str, Any]) -> Iterator[Gate]:
    yield from _session_gate(act_options)


@pytest.fixture(scope="session")
def act_gate_cuda(act_options: dict[str, Any]) -> Iterator[Gate]:
    """The same gate on CUDA (TF32 off, deterministic algorithms): skips without a device."""
    yield from _session_gate(act_options, device="cuda")


@pytest.fixture(scope="session")
def act_gate_inductor(act_options: dict[str, Any]) -> Iterator[Gate]:
    """The gate with inductor, the backend that really generates code (the default backend may not). Its training
    is not compiled (minutes a structure on CPU): `act-equiv check --backend inductor` compiles it."""
    yield from _session_gate(act_options, backend="inductor", mode=None, trained_structures=0)


@pytest.fixture(scope="session", params=list(AUTOCAST_DTYPES))
def act_gate_autocast(request: pytest.FixtureRequest, act_options: dict[str, Any]) -> Iterator[Gate]:
    """The gate under each autocast dtype, on the session's device (training compiled by `act_gate` only)."""
    yield from _session_gate(act_options, autocast=request.param, trained_structures=0)


@pytest.fixture(scope="session", params=list(AUTOCAST_DTYPES))
def act_gate_inductor_autocast(request: pytest.FixtureRequest, act_options: dict[str, Any]) -> Iterator[Gate]:
    """The gate under each autocast dtype with inductor, on the session's device (training not compiled)."""
    yield from _session_gate(act_options, autocast=request.param, backend="inductor", mode=None,
                             trained_structures=0)


@pytest.fixture(scope="session", params=list(AUTOCAST_DTYPES))
def act_gate_cuda_autocast(request: pytest.FixtureRequest, act_options: dict[str, Any]) -> Iterator[Gate]:
    """The gate under each autocast dtype on CUDA, with inductor (the mixed-precision path people deploy)."""
    yield from _session_gate(act_options, device="cuda", autocast=request.param, backend="inductor", mode=None,
                             trained_structures=0)


@pytest.fixture(scope="session", params=["exported", "onnx", "onnx-torchscript"])
def act_gate_deployed(request: pytest.FixtureRequest, act_options: dict[str, Any]) -> Iterator[Gate]:
    """The gate with one deployment form and no compiled one (skips where its runtime is missing, with the reason:
    the onnx form names the `[export]` extra)."""
    form, _, exporter = request.param.partition("-")
    yield from _session_gate(act_options, forms=form, onnx_exporter=exporter or "dynamo")


@pytest.fixture(scope="session")
def act_gate_aoti(act_options: dict[str, Any]) -> Iterator[Gate]:
    yield from _session_gate(act_options, forms="aoti")


def _cases(**pins: Any) -> st.SearchStrategy[Case]:
    return aes.cases(**{**profiles.scope(), **pins})


# Sharded by camera count and mode: pytest-xdist spreads shards over workers, and every run covers each
# camera count in both modes whatever Hypothesis draws. Each shard draws a third of the loaded profile's examples
# (the eight shards together over twice the profile's count; 3 each under "ci", where a compiled case costs 5-10 s
# on 2 cores: a compile's cost grows with the cameras, hardly with the depth).
SHARDS = [(cameras, training) for cameras in range(4) for training in (False, True)]
SHARD_EXAMPLES = max(1, settings().max_examples // 3)


@pytest.mark.compile
@pytest.mark.parametrize(("cameras", "training"), SHARDS, ids=[f"{c}cam-{'train' if t else 'eval'}" for c, t in SHARDS])
@settings(max_examples=SHARD_EXAMPLES)
@given(data=st.data())
def test_forms_agree(act_gate: Gate, cameras: int, training: bool, data: st.DataObject) -> None:
    """legacy == target (eager, bitwise); compiled ~ target (tolerance table); gradients in training; compiled
    code ran; no graph break; recompiles within the allowance when only the batch size changes."""
    # Compiled at up to two layers of each kind (a compile's cost grows with depth): LeRobot's depth is drawn by the
    # covering array's deep rows and the eager stages, and by `act-equiv check`'s compiled search.
    case = data.draw(_cases(cameras=min(cameras, profiles.scope()["max_cameras"]), training=training, max_layers=2,
                            **aes.magnitudes_for(act_gate.settings.autocast)), "case")
    assert_holds(act_gate, case)


ROWS = aes.covering_rows()


@pytest.mark.parametrize("row", ROWS, ids=[f"row{i}" for i in range(len(ROWS))])
@settings(max_examples=2)
@given(data=st.data())
def test_covering_array_eager(act_gate: Gate, row: dict[str, object], data: st.DataObject) -> None:
    """Every row of the strength-3 covering array (`act_equiv.coverage`): legacy == target eager, whatever the
    rest of the case; the session report's 3-way table counts what these rows and the properties covered."""
    scope = {**profiles.scope(), **aes.magnitudes_for(act_gate.settings.autocast)}
    case = data.draw(aes.covering_cases(row, **scope), "case")
    assert_holds(act_gate, case, compiled=False)


@pytest.mark.compile
@pytest.mark.parametrize("case", MUST_KEEP, ids=["eval", "train"])
def test_forms_agree_must_keep(act_gate: Gate, case: Case) -> None:
    assert_holds(act_gate, case)


@pytest.mark.compile
@settings(max_examples=1)
@given(case=_cases(cameras=st.integers(0, 2), max_layers=1))
@example(case=MUST_KEEP[0])
def test_forms_agree_inductor(act_gate_inductor: Gate, case: Case) -> None:
    """Inductor generates code: the fp32 tolerance and the fp64-referenced check are exercised here."""
    assert_holds(act_gate_inductor, case)


@pytest.mark.compile
@settings(max_examples=3)
@given(case=_cases(cameras=st.integers(0, 2), max_layers=1, **aes.magnitudes_for("float16")))
@example(case=MUST_KEEP[1])
def test_forms_agree_autocast(act_gate_autocast: Gate, case: Case) -> None:
    """Mixed precision: legacy == target bitwise under autocast; compiled within the autocast tolerance (its
    gradients round differently from eager's backward); the reference really ran in the autocast dtype."""
    assert_holds(act_gate_autocast, case)


@pytest.mark.compile
@settings(max_examples=1)
@given(case=_cases(cameras=st.integers(0, 2), max_layers=1, **aes.magnitudes_for("float16")))
def test_forms_agree_inductor_autocast(act_gate_inductor_autocast: Gate, case: Case) -> None:
    """Inductor under autocast: the autocast tolerance and its fp64-referenced check on generated code."""
    assert_holds(act_gate_inductor_autocast, case)


# Deployment exports cost seconds each (aoti: a C++ compile, ~30-40 s on 2 cores), so few cases per form; each
# case runs at its own batch size, at 1 and at two more, all from one export.
def _inference_cases() -> st.SearchStrategy[Case]:
    return _cases(cameras=st.integers(0, profiles.scope()["max_cameras"]), training=False, batch={"actions": False},
                  max_layers=1)


@pytest.mark.compile
@settings(max_examples=3)
@given(case=_inference_cases())
@example(case=MUST_KEEP_INFERENCE)
def test_deployed_forms_agree(act_gate_deployed: Gate, case: Case) -> None:
    """Each deployment form (exported; onnx by either exporter) against the eager target per the tolerance table,
    at every batch size from one export; inference only (eval, no actions)."""
    assert_holds(act_gate_deployed, case)


@pytest.mark.compile
@settings(max_examples=1)
@given(case=_inference_cases())
def test_aoti_agrees(act_gate_aoti: Gate, case: Case) -> None:
    """The AOTInductor package against the eager target (inductor's tolerance), at every batch size."""
    assert_holds(act_gate_aoti, case)


@pytest.mark.cuda
@pytest.mark.compile
@given(case=_cases())
@example(case=MUST_KEEP[1])
def test_forms_agree_cuda(act_gate_cuda: Gate, case: Case) -> None:
    magnitudes = aes.magnitudes_for(act_gate_cuda.settings.autocast)
    assume(case.batch.scale in magnitudes["scales"] and case.weight_scale in magnitudes["weight_scales"])
    assert_holds(act_gate_cuda, case)


@pytest.mark.cuda
@pytest.mark.compile
@settings(max_examples=4)
@given(case=_cases(cameras=st.integers(0, 2), **aes.magnitudes_for("float16")))
@example(case=MUST_KEEP[1])
def test_forms_agree_cuda_autocast(act_gate_cuda_autocast: Gate, case: Case) -> None:
    assert_holds(act_gate_cuda_autocast, case)


@settings(max_examples=3)
@given(case=_cases())
def test_graph_breaks_measured(act_options: dict[str, Any], case: Case) -> None:
    """Graph breaks of both eager forms are measured (torch._dynamo.explain), reported, never assumed; the
    target must trace to one graph."""
    verdict = record(_gate(act_options, backend=None, mode=None, explain=True).verdict(case))
    explained = verdict.info["explain"]
    assert explained["reference"] is not None, verdict.info
    assert explained["target"]["graph_break_count"] == 0, explained["target"]["break_reasons"]


@given(config=aes.configs(**profiles.scope()), seed=st.integers(0, 2**16))
def test_state_dict_compatible(act_gate: Gate, config: ACTConfig, seed: int) -> None:
    """The target's checkpoint layout is LeRobot's: its state_dict loads strict=True into the legacy form
    and back, with the same tensors."""
    side = act_gate.runner.target
    if not isinstance(side, InProcessSide):
        pytest.skip("the target runs in a worker process: its layout is judged in every verdict (class `layout`)")
    target = side.target.factory(config)
    target.load_state_dict(build(config, seed, LegacyACT).state_dict(), strict=True)
    legacy = LegacyACT(config)
    legacy.load_state_dict(target.state_dict(), strict=True)
    for key, value in target.state_dict().items():
        assert torch.equal(value, legacy.state_dict()[key]), key


@given(invalid=aes.invalid_configs())
def test_invalid_configs_rejected(invalid: aes.InvalidConfig) -> None:
    """Every broken rule is rejected up front with an error naming the field."""
    with pytest.raises(ConfigError) as caught:
        ACTConfig.from_dict(invalid.kwargs)
    assert caught.value.field == invalid.field
    assert invalid.field in str(caught.value)

