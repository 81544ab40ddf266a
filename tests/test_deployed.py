"""Deployment forms (act_equiv.run.deployed) under the oracle: the wrapper is the model, and every export check is
shown to fail by injection: a target that specialises to its example batch, an export that drops one camera's
tokens, an exporter that cannot trace the target."""

from __future__ import annotations

import dataclasses
import importlib.util

import helpers
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from act_equiv import compat, forms, profiles, testing
from act_equiv import strategies as aes
from act_equiv.case import MUST_KEEP, BatchSpec, Case, make_batch
from act_equiv.cli import main
from act_equiv.config import OBS_IMAGES
from act_equiv.errors import ExportSpecialisedError, UsageError
from act_equiv.gate import Gate
from act_equiv.models import ACT, LegacyACT, build
from act_equiv.run import deployed
from act_equiv.run.deployed import DeployedForm, DeploymentModule, deployment_inputs

EVAL = dataclasses.replace(MUST_KEEP[0], batch=BatchSpec(2, seed=1, actions=False))
"""Two cameras of different resolutions, state and env, inference batch 2."""
ONNX = forms.missing("onnx")
needs_onnx = pytest.mark.skipif(ONNX is not None, reason=ONNX or "")
needs_onnx_dynamo = pytest.mark.skipif(ONNX is not None or not compat.onnx_dynamo_supported(),
                                       reason=ONNX or "torch.onnx.export(dynamo=True) needs torch >= 2.5")
AOTI = forms.missing("aoti")
needs_aoti = pytest.mark.skipif(AOTI is not None, reason=AOTI or "")


class SpecialisedToExampleBatch(ACT):
    """Reads the batch size as a Python int: an exporter fixes it to the example's (eager is right at any size)."""

    def decode(self, tokens, pos_embed, batch_size):
        return super().decode(tokens, pos_embed, int(batch_size))


class DropsLastCameraWhenExported(ACT):
    """Right eagerly; in an exported graph the last camera's tokens are missing from the encoder's input."""

    def encoder_inputs(self, batch, latent_sample):
        if testing.is_exporting() and len(batch.get(OBS_IMAGES, ())) > 1:
            batch = {**batch, OBS_IMAGES: batch[OBS_IMAGES][:-1]}
        return super().encoder_inputs(batch, latent_sample)


class DataDependentBranch(ACT):
    """Branches on a tensor's value: eager runs it, torch.export cannot trace it."""

    def decode(self, tokens, pos_embed, batch_size):
        if tokens.abs().sum() > 0:
            tokens = tokens * 1.0
        return super().decode(tokens, pos_embed, batch_size)


# -- the wrapper --------------------------------------------------------------------------------------------------
@settings(max_examples=10)
@given(config=aes.configs(**profiles.scope()), spec=aes.batch_specs())
def test_the_deployment_wrapper_is_the_model(config, spec) -> None:
    """`DeploymentModule` over the flat inputs computes the dict call's actions bit for bit (legacy and concat)."""
    batch = make_batch(config, spec)
    for form in (LegacyACT, ACT):
        model = build(config, 0, form).eval()
        with torch.no_grad():
            expected = model(batch)[0]
            actual = DeploymentModule(config, model)(*deployment_inputs(config, batch))
        assert torch.equal(expected, actual), form.__name__


def test_input_names_follow_the_config() -> None:
    config = EVAL.config
    assert deployed.input_names(config) == ["observation.state", "observation.environment_state",
                                            "observation.images.0", "observation.images.1"]
    assert len(deployment_inputs(config, make_batch(config, EVAL.batch))) == 4


# -- export_specialised ----------------------------------------------------------------------------------------------
class _Fixed(DeployedForm):
    """A stand-in runtime: serves its example batch only, or returns the example batch whatever the input."""

    name = "stand-in"

    def __init__(self, example, refuse: bool) -> None:
        self.refuse = refuse
        super().__init__(DeploymentModule(EVAL.config, torch.nn.Identity()), example)

    def _export(self, module, example) -> None:
        self.rows = example[0].shape[0]

    def _run(self, inputs):
        if self.refuse and inputs[0].shape[0] != self.rows:
            raise RuntimeError("Got invalid dimensions for input")
        return torch.zeros(self.rows, 4, 2)

    def load(self, module) -> bool:
        return True


@pytest.mark.parametrize("refuse", [True, False], ids=["refuses", "returns-example-batch"])
def test_an_export_that_serves_only_its_example_batch_is_specialised(refuse: bool) -> None:
    example = [torch.zeros(2, 3)]
    form = _Fixed(example, refuse)
    assert form(example).shape == (2, 4, 2)
    with pytest.raises(ExportSpecialisedError, match="exported at batch 2"):
        form([torch.zeros(3, 3)])


def test_export_specialised_by_torch_export_is_a_finding() -> None:
    verdict = helpers.verdict(SpecialisedToExampleBatch, EVAL, forms="exported")
    found = helpers.failures(verdict)
    assert "export_specialised" in found, found
    assert "Constraints violated" in found["export_specialised"]


@needs_onnx
@pytest.mark.compile
def test_export_specialised_by_the_torchscript_onnx_exporter_is_a_finding() -> None:
    """The TorchScript exporter traces the batch size as a constant: onnxruntime refuses another batch size."""
    verdict = helpers.verdict(SpecialisedToExampleBatch, EVAL, forms="onnx", onnx_exporter="torchscript")
    found = helpers.failures(verdict)
    assert "export_specialised" in found, found
    assert "exported at batch 2, refused batch 1" in found["export_specialised"]


# -- one camera's tokens dropped ----------------------------------------------------------------------------------
def test_exported_graph_without_one_camera_is_a_bitwise_mismatch() -> None:
    found = helpers.failures(helpers.verdict(DropsLastCameraWhenExported, EVAL, forms="exported"))
    assert "target/exported:actions" in found, found
    assert "(bitwise)" in found["target/exported:actions"]


@needs_onnx_dynamo
@pytest.mark.compile
def test_onnx_runtime_output_without_one_camera_is_caught() -> None:
    found = helpers.failures(helpers.verdict(DropsLastCameraWhenExported, EVAL, forms="onnx"))
    assert "target/onnx:actions" in found, found
    assert "miscompile" in found["target/onnx:actions"]


@needs_onnx
def test_an_onnx_graph_that_lost_a_camera_input_is_a_finding() -> None:
    """The TorchScript exporter drops inputs the traced graph does not use: the graph no longer takes the camera."""
    found = helpers.failures(helpers.verdict(DropsLastCameraWhenExported, EVAL, forms="onnx",
                                             onnx_exporter="torchscript"))
    assert "export_raised" in found, found
    assert "(missing ['observation.images.1'])" in found["export_raised"]


# -- exporter errors ----------------------------------------------------------------------------------------------
@pytest.mark.parametrize("form", ["exported", pytest.param("onnx", marks=needs_onnx_dynamo),
                                  pytest.param("aoti", marks=needs_aoti)])
def test_an_exporter_error_is_a_finding_with_its_message(form: str) -> None:
    found = helpers.failures(helpers.verdict(DataDependentBranch, EVAL, forms=form))
    assert "export_raised" in found, found
    assert f"export:{form}" in found["export_raised"]
    assert "data-dependent" in found["export_raised"] or "DataDependent" in found["export_raised"], found


def test_exporter_errors_are_judged_only_after_the_eager_forms_agree() -> None:
    """The deployment forms run in the compiled stage: an eager divergence needs no export."""
    with helpers.gate(DataDependentBranch, forms="exported") as gate:
        assert gate.verdict(EVAL, compiled=False).passed


def test_training_cases_run_no_deployment_form() -> None:
    verdict = helpers.verdict(DataDependentBranch, MUST_KEEP[1], forms="exported")
    assert verdict.passed and "deployed" not in verdict.info


# -- the clean target ---------------------------------------------------------------------------------------------
def test_clean_target_exports_bitwise_at_every_batch_size_from_one_export() -> None:
    with Gate(forms="exported", explain=False) as gate:
        first = gate.verdict(dataclasses.replace(EVAL, batch=BatchSpec(1, seed=1, actions=False)))
        second = gate.verdict(dataclasses.replace(EVAL, batch=BatchSpec(3, seed=2), weight_seed=7))
        for verdict, sizes in ((first, 3), (second, 4)):
            assert verdict.passed, verdict.summary()
            pairs = {c.pair for c in verdict.checks if c.pair.startswith("target/exported")}
            assert len(pairs) == sizes and all(c.max_abs == 0 for c in verdict.checks if c.pair in pairs)
        assert first.info["deployed"]["exported"] == {"example_batch": 2, "exported": True,
                                                      "export_seconds": first.info["deployed"]["exported"][
                                                          "export_seconds"]}
        assert second.info["deployed"]["exported"] == {"example_batch": 2, "exported": False}
        assert first.info["deployed"]["batch_sizes"] == [1, 3, 4]


# -- bad options --------------------------------------------------------------------------------------------------
@pytest.mark.parametrize(("keywords", "message"), [
    ({"forms": "compiled,frozen"}, r"forms='compiled,frozen' is invalid: a comma-separated list of \['compiled'"),
    ({"forms": "exported", "onnx_exporter": "tf"}, r"onnx_exporter='tf' is invalid: one of \['dynamo'"),
    ({"forms": "exported", "autocast": "bfloat16"}, "run without autocast"),
    ({"forms": "onnx", "dtype": "float64"}, "runs float32 only"),
])
def test_bad_form_options_name_the_allowed_values(keywords: dict[str, str], message: str) -> None:
    if keywords.get("forms") == "onnx" and ONNX is not None:
        pytest.skip(ONNX)
    with pytest.raises(UsageError, match=message):
        Gate(**keywords)


def test_onnx_without_its_runtime_is_refused_naming_the_extra(monkeypatch: pytest.MonkeyPatch,
                                                              capsys: pytest.CaptureFixture[str]) -> None:
    find_spec = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec", lambda name, *a: None if name == "onnxruntime"
                        else find_spec(name, *a))
    with pytest.raises(UsageError, match=r"needs onnxruntime: pip install 'act-equiv\[export\]'"):
        Gate(forms="compiled,onnx")
    assert main(["check", "--forms", "onnx", "--max-examples", "1"]) == 2
    assert "act-equiv check: --forms 'onnx': the onnx form needs onnxruntime: pip install 'act-equiv[export]'" \
        in capsys.readouterr().err


def test_without_compiled_no_torch_compile_form_runs() -> None:
    with Gate(forms="exported", explain=False) as gate:
        assert gate.settings.backend is None and gate.settings.deployed_forms == ("exported",)
        verdict = gate.verdict(EVAL)
        assert verdict.passed and "compile" not in verdict.info


@given(data=st.data())
@settings(max_examples=1)
def test_settings_label_names_the_deployment_forms(data: st.DataObject) -> None:
    with Gate(forms=data.draw(st.sampled_from(["exported", "compiled,exported"])), explain=False) as gate:
        assert gate.runner.settings.label().endswith(", exported")
        assert gate.environment()["forms"] in ("exported", "compiled,exported")


def test_a_case_that_shrinks_to_batch_one_is_served_by_an_export_at_batch_two() -> None:
    """torch.export specialises a dynamic dimension whose example size is 1, so exports use a batch >= 2."""
    with Gate(forms="exported", explain=False) as gate:
        case = Case(EVAL.config, BatchSpec(1, seed=0, actions=False))
        verdict = gate.verdict(case)
        assert verdict.passed and verdict.info["deployed"]["exported"]["example_batch"] == 2


def test_the_report_counts_each_forms_exports_and_structures() -> None:
    from act_equiv import report

    with Gate(forms="exported", explain=False) as gate:
        verdicts = [gate.verdict(dataclasses.replace(EVAL, weight_seed=seed)).to_dict() for seed in (0, 1)]
        built = report.build(verdicts, gate.environment(), {"kind": "check"})
        timings = {"export_seconds_median": None, "export_seconds_max": None, "export_seconds_total": None}
        assert built["deployed"]["exported"] | timings == {
            "cases": 2, "exports": 1, "distinct_structures": 1, **timings, "batch_sizes": [1, 2, 3, 4]}
        assert "| exported | 2 | 1 | 1 |" in report.markdown(built)
        assert "target/exported@batch1 @ cpu float32, not compiled, exported" in built["pairs"]
