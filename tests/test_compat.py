"""act_equiv.compat and act_equiv.testing: every version branch, on the installed torch and on stand-ins for older
releases.

Only one torch is installed, so older releases are imitated by replacing `compat.dynamo_config` /
`compat.inductor_config` with namespaces that have (or lack) the names those releases had.
"""

from __future__ import annotations

import traceback
from collections.abc import Callable, Iterator
from types import SimpleNamespace
from typing import Any

import pytest
import torch
from torch import nn

from act_equiv import ACTConfig, compat, testing
from act_equiv.models import ACT, build


@pytest.fixture(autouse=True)
def _fresh_dynamo() -> Iterator[None]:
    compat.reset()
    yield
    compat.reset()


def _old_dynamo(**names: Any) -> SimpleNamespace:
    return SimpleNamespace(**names)


def _breaks(x: torch.Tensor) -> torch.Tensor:
    y = torch.sin(x)
    testing.graph_break()
    return torch.cos(y)


def _no_break(x: torch.Tensor) -> torch.Tensor:
    return torch.cos(torch.sin(x)) + 1  # 3 call_function ops (explain does not count method calls)


# -- torch_version ---------------------------------------------------------------------------------------------------
@pytest.mark.parametrize(("version", "expected"), [("2.2.1+cu121", (2, 2)), ("2.15.0a0+git1234", (2, 15)),
                                                   ("2.13.0", (2, 13))])
def test_torch_version_parses_release_strings(monkeypatch: pytest.MonkeyPatch, version: str,
                                              expected: tuple[int, int]) -> None:
    monkeypatch.setattr(torch, "__version__", version)
    assert compat.torch_version() == expected


def test_torch_version_rejects_garbage(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(torch, "__version__", "nightly")
    with pytest.raises(ValueError, match="unparseable"):
        compat.torch_version()


def test_torch_version_of_installed_torch_is_supported() -> None:
    assert (2, 2) <= compat.torch_version() < (3, 0)


# -- recompile limit -------------------------------------------------------------------------------------------------
def test_recompile_limit_new_name_on_installed_torch() -> None:
    if compat.torch_version() < (2, 7):
        pytest.skip("recompile_limit is named cache_size_limit before torch 2.7")
    assert compat.recompile_limit_name() == "recompile_limit"
    before = compat.recompile_limit()
    with testing.recompile_limit_set(3):
        assert compat.recompile_limit() == 3
        assert torch._dynamo.config.cache_size_limit == 3  # the old name is an alias of the new one
    assert compat.recompile_limit() == before


def test_recompile_limit_old_name(monkeypatch: pytest.MonkeyPatch) -> None:
    old = _old_dynamo(cache_size_limit=8)  # torch 2.2 .. 2.6
    monkeypatch.setattr(compat, "dynamo_config", lambda: old)
    assert compat.recompile_limit_name() == "cache_size_limit"
    assert compat.recompile_limit() == 8
    with testing.recompile_limit_set(2):
        assert old.cache_size_limit == 2
    assert old.cache_size_limit == 8


def test_recompile_limit_missing_everywhere(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(compat, "dynamo_config", lambda: _old_dynamo())
    with pytest.raises(AttributeError, match="neither recompile_limit nor cache_size_limit"):
        compat.recompile_limit()


def test_recompile_limit_set_restores_after_error_and_rejects_zero() -> None:
    before = compat.recompile_limit()
    with pytest.raises(RuntimeError), testing.recompile_limit_set(2):
        raise RuntimeError("boom")
    assert compat.recompile_limit() == before
    with pytest.raises(ValueError, match=">= 1"), testing.recompile_limit_set(0):
        pass


# -- fail_on_recompile_limit -----------------------------------------------------------------------------------------
def test_fail_on_recompile_limit_installed_torch() -> None:
    if not testing.fail_on_recompile_limit_supported():
        pytest.skip("this torch has no fail switch")
    name = "fail_on_recompile_limit_hit" if compat.torch_version() >= (2, 7) else "fail_on_cache_limit_hit"
    before = getattr(torch._dynamo.config, name)
    with testing.fail_on_recompile_limit(True) as active:
        assert active is True
        assert getattr(torch._dynamo.config, name) is True
    assert getattr(torch._dynamo.config, name) == before


@pytest.mark.parametrize("name", ["fail_on_recompile_limit_hit", "fail_on_cache_limit_hit"])  # >= 2.7, 2.6
def test_fail_on_recompile_limit_either_name(monkeypatch: pytest.MonkeyPatch, name: str) -> None:
    fake = _old_dynamo(cache_size_limit=8, **{name: False})
    monkeypatch.setattr(compat, "dynamo_config", lambda: fake)
    assert testing.fail_on_recompile_limit_supported()
    with testing.fail_on_recompile_limit(True) as active:
        assert active and getattr(fake, name) is True
    assert getattr(fake, name) is False


def test_fail_on_recompile_limit_unsupported_is_a_noop(monkeypatch: pytest.MonkeyPatch) -> None:
    fake = _old_dynamo(cache_size_limit=8)  # torch <= 2.5
    monkeypatch.setattr(compat, "dynamo_config", lambda: fake)
    assert not testing.fail_on_recompile_limit_supported()
    with testing.fail_on_recompile_limit(True) as active:
        assert active is False
    assert vars(fake) == {"cache_size_limit": 8}


@pytest.mark.parametrize("message", [
    "cache_size_limit reached",  # torch <= 2.6
    "recompile_limit reached",
    "Dynamo recompile limit exceeded\n  Explanation: ...",  # torch 2.13
    "torch._dynamo hit config.cache_size_limit (8)",
])
def test_recompile_limit_reason_recognised(message: str) -> None:
    assert compat.is_recompile_limit_reason(message)


def test_unrelated_reason_is_not_a_recompile_limit() -> None:
    assert not compat.is_recompile_limit_reason("Unsupported Tensor.item() call with capture_scalar_outputs=False")


def test_recompile_limit_is_recorded_in_unimplemented_counters() -> None:
    fn = torch.compile(_no_break, backend="eager", dynamic=False)
    before = compat.unimplemented_counters()
    with testing.recompile_limit_set(1):
        fn(torch.ones(2))
        fn(torch.ones(3))  # a new static shape needs a second entry: over the limit, runs eagerly
    new = compat.counter_delta(before, compat.unimplemented_counters())
    assert any(compat.is_recompile_limit_reason(key) for key in new), new


def test_recompile_limit_error_under_fullgraph() -> None:
    fn = torch.compile(_no_break, backend="eager", dynamic=False, fullgraph=True)
    with testing.recompile_limit_set(1):
        fn(torch.ones(2))
        with pytest.raises(Exception) as info:  # the class is private and differs by release
            fn(torch.ones(3))
    assert compat.is_recompile_limit_error(info.value)
    assert not compat.is_graph_break_error(info.value)


def test_recompile_limit_error_by_class_name_and_old_message() -> None:
    class FailOnCacheLimitHit(Exception):  # noqa: N818 - torch 2.6 spells it so
        pass

    assert compat.is_recompile_limit_error(FailOnCacheLimitHit("Hard failure due to fail_on_cache_limit_hit"))
    from torch._dynamo.exc import Unsupported

    old = Unsupported("cache_size_limit reached")  # what torch <= 2.5 raises under fullgraph=True
    old.remove_from_stats()
    assert compat.is_recompile_limit_error(old)
    wrapped = RuntimeError("outer")
    wrapped.__cause__ = old
    assert compat.is_recompile_limit_error(wrapped)
    assert not compat.is_recompile_limit_error(ValueError("cache_size_limit reached"))  # not dynamo's


# -- counters --------------------------------------------------------------------------------------------------------
def test_counter_delta_keeps_only_growth() -> None:
    assert compat.counter_delta({"a": 1, "b": 2}, {"a": 1, "b": 3, "c": 1}) == {"b": 1, "c": 1}


def test_graph_break_reasons_since_snapshot_name_the_user_line() -> None:
    start = compat.graph_break_reasons_count()
    torch.compile(_breaks, backend="eager")(torch.ones(2))
    reasons = compat.graph_break_reasons_since(start)
    assert len(reasons) == 1
    assert "test_compat.py" in reasons[0] and "in _breaks" in reasons[0]
    # a reset in between empties dynamo's log: a stale, larger snapshot returns everything logged since
    compat.reset()
    assert compat.graph_break_reasons_since(start + 1000) == []


# -- reset -----------------------------------------------------------------------------------------------------------
def test_reset_drops_compiled_graphs() -> None:
    calls: list[int] = []

    def backend(gm: torch.fx.GraphModule, example_inputs: list[Any]) -> Any:
        calls.append(1)
        return gm.forward

    fn = torch.compile(_no_break, backend=backend)
    fn(torch.ones(2))
    fn(torch.ones(2))
    assert len(calls) == 1
    compat.reset()
    fn(torch.ones(2))
    assert len(calls) == 2


# -- explain ---------------------------------------------------------------------------------------------------------
def test_explain_reports_break_with_location() -> None:
    result = compat.explain(_breaks, torch.ones(3))
    assert result.graph_count == 2
    assert result.graph_break_count == 1
    assert len(result.break_reasons) == 1
    assert "graph_break" in result.break_reasons[0]
    assert "test_compat.py" in result.break_reasons[0] and "in _breaks" in result.break_reasons[0]
    assert result.op_count == 2


def test_explain_clean_function() -> None:
    result = compat.explain(_no_break, torch.ones(3))
    assert (result.graph_count, result.graph_break_count, result.break_reasons, result.op_count) == (1, 0, [], 3)


def test_explain_result_from_other_release_shapes() -> None:
    frame = traceback.FrameSummary("/somewhere/model.py", 12, "forward")
    reason = SimpleNamespace(reason="call_function BuiltinVariable(print) [ConstantVariable(str)] {}\nmore",
                             user_stack=[frame])
    # no graph_break_count field, a reason without a stack, more reasons than graphs - 1
    output = SimpleNamespace(graphs=[1, 2], break_reasons=[reason, SimpleNamespace(reason="x", user_stack=None)],
                             op_count=7)
    result = compat._explain_result(output)
    assert result.graph_count == 2
    assert result.graph_break_count == 2
    assert result.break_reasons == [
        "call_function BuiltinVariable(print) [ConstantVariable(str)] {} (at /somewhere/model.py:12 in forward)", "x"]
    assert result.op_count == 7


def test_explain_result_is_frozen() -> None:
    result = compat.ExplainResult(1, 0, [], 3)
    with pytest.raises(AttributeError):
        result.graph_count = 2  # type: ignore[misc]


# -- exceptions ------------------------------------------------------------------------------------------------------
def test_graph_break_error_described_with_location() -> None:
    fn = torch.compile(_breaks, backend="eager", fullgraph=True)
    with pytest.raises(Exception) as info:  # torch._dynamo.exc.Unsupported is private
        fn(torch.ones(2))
    assert compat.is_graph_break_error(info.value)
    description = compat.describe_exception(info.value)
    assert "\n" not in description
    assert "graph_break" in description
    assert "test_compat.py" in description and "in _breaks" in description


def test_describe_exception_falls_back_to_message_location() -> None:
    error = RuntimeError('Unsupported thing\n\nfrom user code:\n   File "/a/b.py", line 3, in outer\n'
                         '   File "/a/c.py", line 9, in inner\n    x.item()\n')
    assert compat.describe_exception(error) == "Unsupported thing (at /a/c.py:9 in inner)"
    assert compat.describe_exception(ValueError("plain")) == "plain"
    assert not compat.is_graph_break_error(ValueError("plain"))


# -- backends --------------------------------------------------------------------------------------------------------
def test_backend_names_and_lookup() -> None:
    names = compat.backend_names()
    assert {"inductor", "aot_eager", "eager"} <= set(names)
    assert callable(compat.lookup_backend("aot_eager"))


def test_inductor_modes_and_backend() -> None:
    modes = compat.inductor_modes()
    assert {"default", "reduce-overhead", "max-autotune"} <= set(modes)
    assert callable(compat.inductor_backend("reduce-overhead", dynamic=False))
    with pytest.raises(ValueError, match="allowed"):
        compat.inductor_backend("fastest")


# -- fallback_random -------------------------------------------------------------------------------------------------
def test_fallback_random_sets_and_restores() -> None:
    before = torch._inductor.config.fallback_random
    with compat.fallback_random():
        assert torch._inductor.config.fallback_random is True
        with compat.fallback_random(False):
            assert torch._inductor.config.fallback_random is False
        assert torch._inductor.config.fallback_random is True
    assert torch._inductor.config.fallback_random == before


def test_fallback_random_on_stand_in_config(monkeypatch: pytest.MonkeyPatch) -> None:
    fake = SimpleNamespace(fallback_random=False)
    monkeypatch.setattr(compat, "inductor_config", lambda: fake)
    with compat.fallback_random():
        assert fake.fallback_random is True
    assert fake.fallback_random is False


# -- inject_miscompile -----------------------------------------------------------------------------------------------
def test_inject_miscompile_switches_on_installed_torch() -> None:
    config = torch._inductor.config
    with testing.inject_miscompile("relu") as names:
        assert "cpp.inject_relu_bug_TESTING_ONLY" in names
        assert config.cpp.inject_relu_bug_TESTING_ONLY == "accuracy"
    assert config.cpp.inject_relu_bug_TESTING_ONLY is None
    with testing.inject_miscompile("relu", device="cuda") as names:
        assert names == ["triton.inject_relu_bug_TESTING_ONLY"]
        assert config.triton.inject_relu_bug_TESTING_ONLY == "accuracy"
        assert config.cpp.inject_relu_bug_TESTING_ONLY is None
    with testing.inject_miscompile("log1p", device="cpu") as names:
        assert names == ["cpp.inject_log1p_bug_TESTING_ONLY"]


def test_inject_miscompile_uses_only_switches_this_torch_has(monkeypatch: pytest.MonkeyPatch) -> None:
    fake = SimpleNamespace(cpp=SimpleNamespace(inject_relu_bug_TESTING_ONLY=None), triton=SimpleNamespace())
    monkeypatch.setattr(compat, "inductor_config", lambda: fake)
    with testing.inject_miscompile("relu", reset_dynamo=False) as names:
        assert names == ["cpp.inject_relu_bug_TESTING_ONLY"]
        assert fake.cpp.inject_relu_bug_TESTING_ONLY == "accuracy"
    assert fake.cpp.inject_relu_bug_TESTING_ONLY is None
    with pytest.raises(ValueError, match="no inductor bug-injection switch"), testing.inject_miscompile(
            "log1p", reset_dynamo=False):
        pass


@pytest.mark.parametrize(("kwargs", "match"), [({"op": "gelu"}, "op="), ({"bug": "subtle"}, "bug="),
                                               ({"op": "log1p", "bug": "runtime_error"}, "log1p")])
def test_inject_miscompile_rejects_unknown(kwargs: dict[str, str], match: str) -> None:
    with pytest.raises(ValueError, match=match), testing.inject_miscompile(**kwargs):
        pass


class _ReluNet(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.linear = nn.Linear(8, 8)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.relu(self.linear(x)) * 2


@pytest.mark.compile
def test_inject_miscompile_really_miscompiles_on_cpu() -> None:
    """PyTorch's own switch makes inductor emit relu(x) = x + 1: compiled output moves by ~2 (the * 2)."""
    torch.manual_seed(0)
    net, x = _ReluNet().eval(), torch.randn(4, 8)
    with torch.no_grad():
        expected = net(x)
        with testing.inject_miscompile("relu", device="cpu"):
            buggy = torch.compile(net, backend="inductor")(x)
        healthy = torch.compile(net, backend="inductor")(x)  # the exit reset dropped the buggy graph
    assert (buggy - expected).abs().max().item() > 1.0
    torch.testing.assert_close(healthy, expected)


# -- TF32 ------------------------------------------------------------------------------------------------------------
def _fp32_precision_backends() -> SimpleNamespace:
    """torch >= 2.9: per-op `fp32_precision` strings (cuDNN convolutions default to TF32)."""
    op = SimpleNamespace
    return SimpleNamespace(cuda=op(matmul=op(fp32_precision="none")),
                           cudnn=op(conv=op(fp32_precision="tf32"), rnn=op(fp32_precision="tf32")))


def _allow_tf32_backends() -> SimpleNamespace:
    """torch <= 2.8: the `allow_tf32` booleans (cuDNN's on by default)."""
    return SimpleNamespace(cuda=SimpleNamespace(matmul=SimpleNamespace(allow_tf32=False)),
                           cudnn=SimpleNamespace(allow_tf32=True))


def test_tf32_disabled_with_fp32_precision_api(monkeypatch: pytest.MonkeyPatch) -> None:
    fake = _fp32_precision_backends()
    monkeypatch.setattr(compat, "_backends", lambda: fake)
    assert compat.tf32_enabled()
    with compat.tf32_disabled():
        assert not compat.tf32_enabled()
        assert fake.cuda.matmul.fp32_precision == fake.cudnn.conv.fp32_precision == "ieee"
        assert not hasattr(fake.cudnn, "allow_tf32")  # never mixes in the legacy API
    assert (fake.cuda.matmul.fp32_precision, fake.cudnn.conv.fp32_precision) == ("none", "tf32")


def test_tf32_disabled_with_allow_tf32_flags(monkeypatch: pytest.MonkeyPatch) -> None:
    fake = _allow_tf32_backends()
    monkeypatch.setattr(compat, "_backends", lambda: fake)
    assert compat.tf32_enabled()
    with compat.tf32_disabled():
        assert not compat.tf32_enabled()
        assert fake.cuda.matmul.allow_tf32 is False and fake.cudnn.allow_tf32 is False
    assert fake.cudnn.allow_tf32 is True


def test_tf32_disabled_on_installed_torch_restores() -> None:
    before = compat.tf32_enabled()
    with compat.tf32_disabled():
        assert not compat.tf32_enabled()
    assert compat.tf32_enabled() == before


# -- autocast support ------------------------------------------------------------------------------------------------
def test_cpu_bfloat16_autocast_is_supported() -> None:
    assert compat.autocast_supported("cpu", torch.bfloat16)


def test_cpu_float16_autocast_support_says_whether_act_can_run_under_it(
        tiny_config: Callable[..., ACTConfig], make_batch: Callable[..., dict[str, Any]]) -> None:
    """torch 2.2 autocasts CPU fp16 but cannot run ACT's LayerNorm in Half; the probe must tell."""
    config = tiny_config()
    batch = make_batch(config, with_action=False)
    model = build(config, 0, ACT).eval()
    try:
        with torch.no_grad(), torch.autocast("cpu", dtype=torch.float16):
            actions, _ = model(batch)
        ran = actions.dtype == torch.float16
    except RuntimeError:
        ran = False
    assert compat.autocast_supported("cpu", torch.float16) == ran


def test_autocast_that_torch_would_disable_is_unsupported() -> None:
    if torch.cuda.is_available():
        pytest.skip("needs a machine without CUDA")
    assert not compat.autocast_supported("cuda", torch.bfloat16)  # torch warns and disables autocast
    assert not compat.autocast_supported("cpu", torch.float64)


# -- is_compiling ----------------------------------------------------------------------------------------------------
def test_is_compiling_inside_and_outside_dynamo() -> None:
    seen: list[bool] = []

    def probe(x: torch.Tensor) -> torch.Tensor:
        seen.append(testing.is_compiling())
        return x + 1

    probe(torch.ones(1))
    torch.compile(probe, backend="eager", fullgraph=True)(torch.ones(1))
    assert seen == [False, True]


def test_is_compiling_before_torch_2_3(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(testing, "_PUBLIC_IS_COMPILING", None)
    monkeypatch.setattr(torch._dynamo, "is_compiling", lambda: True)
    assert testing.is_compiling()


# -- module inlining -------------------------------------------------------------------------------------------------
@pytest.mark.parametrize(("names", "version", "expected"), [
    ({"inline_inbuilt_nn_modules": True}, "2.14.1", True),  # deprecated, always on
    ({"inline_inbuilt_nn_modules": False}, "2.4.0", False),  # opt-in before 2.5
    ({}, "2.2.2", False),  # not yet there: guards on each module instance
    ({}, "2.20.0", True),  # removed: always on
])
def test_fresh_modules_share_graphs_by_release(monkeypatch: pytest.MonkeyPatch, names: dict[str, bool],
                                               version: str, expected: bool) -> None:
    monkeypatch.setattr(compat, "dynamo_config", lambda: _old_dynamo(**names))
    monkeypatch.setattr(torch, "__version__", version)
    assert compat.fresh_modules_share_graphs() is expected


# -- graph-break log and no-compiled-frames errors -------------------------------------------------------------------
def test_graph_break_log_missing_in_a_release_reads_as_empty(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delattr(torch._dynamo.utils, "graph_break_reasons")
    assert compat.graph_break_reasons_count() == 0
    assert compat.graph_break_reasons_since(0) == []


def chained(outer: BaseException, inner: BaseException) -> BaseException:
    """`outer` raised from `inner`, as a wrapper re-raises: its `__cause__` set, its traceback real."""
    try:
        try:
            raise inner
        except type(inner) as caught:
            raise outer from caught
    except type(outer) as error:
        return error


def test_no_compiled_frames_error_is_found_in_the_cause_chain() -> None:
    outer = chained(ValueError("wrapper"), RuntimeError("torch.compile with fullgraph=True found no compiled frames"))
    assert compat.is_no_compiled_frames_error(outer)
    assert not compat.is_no_compiled_frames_error(RuntimeError("graph break"))


# -- skip marks after a dynamo-disabled call -------------------------------------------------------------------------
def _compiled_graph_runs(net: nn.Module) -> int:
    runs = []

    def counting(gm: torch.fx.GraphModule, example_inputs: list[torch.Tensor]) -> Any:
        def run(*args: Any) -> Any:
            runs.append(1)
            return gm.forward(*args)

        return run

    torch.compile(net, backend=counting)(torch.ones(2, 8))
    return len(runs)


def test_a_module_compiles_again_after_a_dynamo_disabled_call() -> None:
    """torch 2.2 marks code run while dynamo is disabled as skip-forever; reset + clear_skip_marks undo it."""
    net = _ReluNet()
    with torch._dynamo.config.patch(disable=True):
        assert _compiled_graph_runs(net) == 0
    compat.reset()
    compat.clear_skip_marks(net)
    assert _compiled_graph_runs(net) == 1


def test_clear_skip_marks_resets_module_call_code_only_where_modules_are_not_inlined(
        monkeypatch: pytest.MonkeyPatch) -> None:
    cleared: list[str] = []
    monkeypatch.setattr(torch._C._dynamo.eval_frame, "reset_code", lambda code: cleared.append(code.co_name))
    monkeypatch.setattr(compat, "fresh_modules_share_graphs", lambda: True)
    compat.clear_skip_marks(_ReluNet())
    assert cleared == []
    monkeypatch.setattr(compat, "fresh_modules_share_graphs", lambda: False)
    compat.clear_skip_marks(_ReluNet())
    assert "_call_impl" in cleared and "forward" in cleared


# -- deployment exports ----------------------------------------------------------------------------------------------
class _Exporting(nn.Module):
    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x + 1 if testing.is_exporting() else x


def test_is_exporting_inside_torch_export_only() -> None:
    x = torch.zeros(2, 3)
    assert torch.equal(_Exporting()(x), x)
    assert torch.equal(torch.export.export(_Exporting(), (x,)).module()(x), x + 1)


def test_is_exporting_before_torch_2_4_reads_the_onnx_flag(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delattr(torch.compiler, "is_exporting")
    monkeypatch.setattr(torch.onnx, "is_in_onnx_export", lambda: True)
    assert testing.is_exporting()


def test_exporter_message_is_the_innermost_error_without_colour_codes() -> None:
    outer = chained(RuntimeError("Failed to export. \x1b[96mThis is step 1/3\x1b[0m"),
                    ValueError("Could not guard on data-dependent expression\nmore"))
    assert compat.exporter_message(outer) == "ValueError: Could not guard on data-dependent expression"
    assert compat.exporter_message(RuntimeError("\x1b[1mbold\x1b[0m")) == "RuntimeError: bold"


def test_export_specialisation_is_found_in_the_cause_chain() -> None:
    class Specialises(nn.Module):
        def forward(self, x: torch.Tensor) -> torch.Tensor:
            return x + torch.zeros(int(x.shape[0]), 3)

    with pytest.raises(Exception) as caught:
        compat.export_program(Specialises(), (torch.zeros(2, 3),), ({0: compat.batch_dim()},))
    wrapped = RuntimeError("exporter failed")
    wrapped.__cause__ = caught.value
    assert compat.is_export_specialisation_error(caught.value) and compat.is_export_specialisation_error(wrapped)
    assert not compat.is_export_specialisation_error(RuntimeError("Could not guard on data-dependent expression"))


def test_onnx_dynamo_exporter_refused_where_torch_lacks_it(monkeypatch: pytest.MonkeyPatch) -> None:
    assert compat.onnx_dynamo_supported() == (compat.torch_version() >= (2, 5))
    monkeypatch.setattr(compat, "onnx_dynamo_supported", lambda: False)
    with pytest.raises(RuntimeError, match=r"no torch.onnx.export\(dynamo=True\)"):
        compat.onnx_export(nn.Identity(), (torch.zeros(2),), "dynamo", ["x"], ["y"], None, {})


def test_aoti_refused_where_torch_lacks_it(monkeypatch: pytest.MonkeyPatch) -> None:
    from act_equiv.forms import missing

    assert compat.aoti_supported() == (compat.torch_version() >= (2, 6))
    monkeypatch.setattr(compat, "aoti_supported", lambda: False)
    with pytest.raises(RuntimeError, match="aoti_compile_and_package"):
        compat.aoti_package(None, "unused.pt2")
    assert "the aoti form needs torch >= 2.6" in (missing("aoti") or "")
