"""`act-equiv bench` with tiny settings: every form timed, compiled code proven to run, fields reported."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from act_equiv import plots
from act_equiv.cli import main, parser
from act_equiv.cli.bench import ROWS, WHOLE_STEP


@pytest.mark.parametrize("training", [False, True], ids=["inference", "training"])
def test_bench_reports_every_form(tmp_path: Path, training: bool, capsys: pytest.CaptureFixture) -> None:
    args = ["bench", "--config", "small", "--batch-size", "2", "--num-runs", "2", "--warmup", "1",
            "--backend", "eager", "--report-dir", str(tmp_path)]
    assert main([*args, "--training"] if training else args) == 0
    (path,) = tmp_path.glob("bench-*/bench.json")
    result = json.loads(path.read_text())
    assert set(result["rows"]) == set(ROWS) | ({WHOLE_STEP} if training else set())
    for name, row in result["rows"].items():
        assert row["median_ms"] > 0 and row["samples_per_s"] > 0 and row["p25_ms"] <= row["p75_ms"]
        assert (row["compile_s"] is not None) == ("compiled" in name)
        assert row.get("graphs_compiled", 1) >= 1
    assert result["rows"]["legacy eager"]["speedup_vs_legacy_eager"] == 1.0
    assert result["settings"]["training"] is training
    assert result["graph_breaks"]["legacy"]["breaks"] == 0 and result["graph_breaks"]["concat"]["graphs"] == 1
    assert "| concat compiled |" in (path.parent / "bench.md").read_text()
    if training:  # each compiled training's per-step error beside the float64 envelope, plotted where it can be
        assert set(result["training_error"]) == {"concat compiled", "concat compiled-step"}
        assert all(len(rows) == 3 and "envelope_max_abs" in rows[0] for rows in result["training_error"].values())
        assert "Training error, concat compiled-step vs concat eager" in (path.parent / "bench.md").read_text()
        assert set(result.get("plots", {})) == (set(result["training_error"]) if plots.available() else set())
    assert "speedup vs legacy eager" in capsys.readouterr().out


def test_bench_rejects_bad_options(capsys: pytest.CaptureFixture) -> None:
    assert main(["bench", "--mode", "max-autotune", "--backend", "eager"]) == 2
    assert "act-equiv bench: --mode 'max-autotune' needs --backend 'inductor' (got 'eager')" in capsys.readouterr().err
    assert main(["bench", "--num-runs", "0"]) == 2
    assert "--num-runs 0 is invalid" in capsys.readouterr().err


def test_bench_takes_the_option_tables_gate_options() -> None:
    """`--device`, `--backend` and `--mode` are the table's (bench compiles, so its backend is never `none`)."""
    args = parser().parse_args(["bench"])
    assert (args.device, args.backend, args.mode, args.report_dir) == ("cpu", "inductor", None, "reports")
    with pytest.raises(SystemExit):
        parser().parse_args(["bench", "--backend", "none"])


@pytest.mark.compile
def test_bench_adds_the_deployment_forms(tmp_path: Path) -> None:
    args = ["bench", "--config", "small", "--batch-size", "1", "--num-runs", "2", "--warmup", "1",
            "--forms", "exported,onnx", "--report-dir", str(tmp_path)]
    assert main(args) == 0
    (path,) = tmp_path.glob("bench-*/bench.json")
    rows = json.loads(path.read_text())["rows"]
    assert set(rows) == {"legacy eager", "concat eager", "concat exported", "concat onnxruntime"}
    assert rows["concat exported"]["compile_s"] > 0 and rows["concat onnxruntime"]["median_ms"] > 0


def test_bench_rejects_bad_forms(capsys: pytest.CaptureFixture) -> None:
    assert main(["bench", "--forms", "compiled,tensorrt"]) == 2
    assert "--forms 'compiled,tensorrt' is invalid: a comma-separated list of ['compiled', 'exported'" \
        in capsys.readouterr().err
    assert main(["bench", "--forms", "exported", "--training"]) == 2
    assert "time inference" in capsys.readouterr().err
