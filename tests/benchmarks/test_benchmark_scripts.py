"""The benchmark scripts run end to end on CPU at a tiny size and print their ratios."""

import gzip
import json
import os
import pathlib
import re
import subprocess
import sys

import numpy as np
import pytest

ROOT = pathlib.Path(__file__).resolve().parents[2]


def run_script(name, *args):
    result = subprocess.run(
        [sys.executable, str(ROOT / "benchmarks" / name), *args],
        capture_output=True,
        text=True,
        cwd=ROOT,
        timeout=600,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    return result.stdout


def ratio(output, label):
    return float(re.search(re.escape(label) + r": ([0-9.]+)", output).group(1))


@pytest.mark.slow
def test_throughput_suite_times_the_trainer_step_and_profiles_it(tmp_path):
    # The suite runs throughput.py (four variants of the trainer's step, figures to JSON, a
    # profiler trace), batch_norm.py at three layer sizes, train_loop.py, input_pipeline.py
    # and sweep_speedup.py, as on an accelerator, at a tiny size.
    result = subprocess.run(
        ["bash", str(ROOT / "benchmarks" / "throughput_suite.sh"), str(tmp_path)],
        capture_output=True,
        text=True,
        cwd=ROOT,
        timeout=600,
        env={
            **os.environ,
            "PYTHON": sys.executable,
            "MODEL": "wrn10_1",
            "BATCHES": "8",
            "STEPS": "1",
            "ROUNDS": "1",
            "LOOP_STEPS": "6",
            "LOOP_EVERY": "2",
            "SWEEP_STEPS": "20",
        },
    )
    output = result.stdout
    assert result.returncode == 0, output[-3000:] + result.stderr[-3000:]
    assert re.search(r"synthetic: +[0-9.]+ images/s", output), output
    assert re.search(r"synthetic: .* [0-9.]+ TFLOP/s", output), output
    assert ratio(output, "real / synthetic input") > 0
    assert ratio(output, "AutoL2 / fixed-λ step time") > 0
    assert ratio(output, "batch norm, hand-written / autodiff gradient step time") > 0
    assert len(re.findall(r"hand-written / autodiff time: [0-9.]+", output)) == 3, output
    figures = json.loads((tmp_path / "batch_8.json").read_text())
    assert figures["real_over_synthetic"] == pytest.approx(
        figures["real"]["images_per_sec"] / figures["synthetic"]["images_per_sec"]
    )
    # wrn10_1 on 32×32: 25,003,264 forward FLOPs (2 per multiply-add) in its convolutions and
    # dense layer; the backward pass costs twice that, less the stem's unneeded input gradient.
    assert figures["gflop_per_image"] * 1e9 == pytest.approx(3 * 25_003_264 - 884_736)
    # The same count by layer, per step of 8 images, for the profile's TFLOP/s by layer.
    assert sum(figures["gflop_by_layer"].values()) == pytest.approx(8 * figures["gflop_per_image"])
    assert figures["gflop_by_layer"]["WideResNet/WideBlock_0/Conv_1"] > 0
    trace = re.search(r"profile of 5 synthetic steps: (\S+)", output).group(1)
    assert trace.startswith(str(tmp_path / "profile"))
    with gzip.open(trace, "rt") as file:
        assert json.load(file)["traceEvents"]
    loop = json.loads((tmp_path / "loop.json").read_text())
    # Lines at steps 2, 4, 6; the first, with compilation, is left out of the median.
    assert len(loop["images_per_sec_by_line"]) == 2
    assert loop["images_per_sec"] == pytest.approx(np.median(loop["images_per_sec_by_line"]))
    assert loop["gflop_per_image"] == pytest.approx(figures["gflop_per_image"])
    assert np.isfinite(loop["final_train_loss"])
    assert re.search(r"training loop: +[0-9.]+ images/s, median of 2 lines", output), output
    assert re.search(r"ratio input/train: [\d,]+x", output), output
    assert ratio(output, "speedup (sequential / vmapped)") > 0
    assert re.search(r"batch order \(16 seeds\): [0-9.]+ µs/step", output), output
    assert re.search(r"evaluation branch: [0-9.]+ µs/step", output), output
    assert (tmp_path / "sweep_profile").is_dir()
    # Both traces summarized: per-step time where XLA's ops ran, with their kinds.
    for name in ("profile_summary.json", "sweep_profile_summary.json"):
        summary = json.loads((tmp_path / name).read_text())
        assert 0 < summary["busy_ms"] <= summary["span_ms"]
        assert sum(summary["by_kind_ms"].values()) == pytest.approx(summary["kernel_ms"])
    assert "kernels on: no accelerator in the trace: XLA's CPU threads" in output


def test_input_pipeline_script_prints_rates_and_ratio(tmp_path):
    output = run_script(
        "input_pipeline.py",
        "--model=mlp",
        "--batch=8",
        "--steps=2",
        "--input_steps=2",
        "--warmup=1",
        "--num_train=64",
        f"--data_dir={tmp_path}",
    )
    assert "data: cifar10_random, 64 training images, batch 8" in output
    rates = re.findall(r"([\d,.]+) images/s", output)
    assert len(rates) == 3 and all(float(rate.replace(",", "")) > 0 for rate in rates)
    assert re.search(r"ratio input/train: [\d,]+x", output)


def test_batch_norm_script_times_both_gradients():
    output = run_script("batch_norm.py", "--shape=4,6,6,8", "--rounds=2", "--calls=2")
    assert "batch norm + ReLU, forward and backward, (4, 6, 6, 8) bfloat16" in output
    for implementation in ("hand_written", "autodiff"):
        assert re.search(
            implementation + r": [0-9.]+ ms \(median of 2 blocks\), XLA counts [0-9.]+ MB", output
        ), output
    assert ratio(output, "hand-written / autodiff time") > 0


def test_theory_flow_script_times_the_flow():
    output = run_script(
        "theory_l2_flow.py", "--parts=speed", "--num_train=50", "--num_test=20", "--num_times=5"
    )
    assert re.search(r"kernel n=50 m=20: [0-9.]+ s", output), output
    assert re.search(r"l2_flow_mse float64, 5 times: .* predict alone [0-9.]+ s", output), output


def test_transform_overhead_script_prints_ratio():
    output = run_script("transform_overhead.py", "--width=32", "--rounds=2", "--steps=2")
    assert ratio(output, "autol2 / add_decayed_weights step time") > 0


@pytest.mark.parametrize(
    ("script", "flag", "message"),
    [
        ("transform_overhead.py", "--rounds=0", "--rounds must be ≥ 1, got 0"),
        ("batch_norm.py", "--shape=4,x", "--shape must be two or more positive ints"),
        ("batch_norm.py", "--shape=4,0,2", "got 4,0,2"),
    ],
)
def test_benchmark_scripts_reject_bad_sizes(script, flag, message):
    result = subprocess.run(
        [sys.executable, str(ROOT / "benchmarks" / script), flag],
        capture_output=True,
        text=True,
        cwd=ROOT,
    )
    assert result.returncode == 2
    assert message in result.stderr


def test_relation1_grid_maps_c_over_learning_rates_and_l2_lr(tmp_path):
    # 2 draws × 2 seeds × 2 η × 2 λη: the pooled analysis, one per η, and c per (η, λη) cell.
    output = run_script(
        "relation1_grid.py",
        f"--out={tmp_path}",
        "--draws=2",
        "--seeds=2",
        "--lrs=0.5,2",
        "--l2_lrs=2e-3,6e-3",
        "--run_length=3",
    )
    assert "8 runs per draw (2 seeds × 2 η × 2 λη)" in output
    assert re.search(r"draw 1: [0-9]+ s; pooled over 2 draw\(s\)", output), output
    results = json.loads((tmp_path / "results.json").read_text())
    assert results["draws_done"] == 2 and len(results["draw_seconds"]) == 2
    pooled = results["relation_1"]
    assert len(pooled["replicas"]) == 4 and len(pooled["points"]) == 16
    assert sorted(results["by_lr"]) == ["0.5", "2.0"]
    for lr, result in results["by_lr"].items():
        assert {point["lr"] for point in result["points"]} == {float(lr)}
    # Each cell's c is the median over its kept runs of the pooled analysis, over all replicas.
    assert len(results["cells"]) == 4
    for cell in results["cells"]:
        mine = [p for p in pooled["points"] if (p["lr"], p["l2_lr"]) == (cell["lr"], cell["l2_lr"])]
        kept = [p["c"] for p in mine if p["excluded"] is None and p["c"] is not None]
        assert cell["runs"] == 4 and cell["kept"] == len(kept)
        assert cell["c_median"] == (pytest.approx(np.median(kept)) if kept else None)
        assert cell["l2"] == pytest.approx(cell["l2_lr"] / cell["lr"])
    assert {path.name for path in tmp_path.iterdir()} == {
        "results.json",
        "relation1.png",
        "c_heatmap.png",
    }


@pytest.mark.parametrize(
    ("flags", "message"),
    [
        (["--seeds=0"], "--seeds must be ≥ 1, got 0"),
        (["--lrs=0.5,x"], "expected numbers separated by commas, got '0.5,x'"),
        (["--l2_lrs=1e-3,-1"], "expected finite numbers > 0, got '1e-3,-1'"),
        (["--run_length=nan"], "--run_length must be finite and > 0, got nan"),
        (["--l2_lrs=1e-3"], "l2_lrs must hold 2 or more distinct values"),
    ],
)
def test_relation1_grid_rejects_bad_flags_in_one_line(tmp_path, flags, message):
    assert_refused_in_one_line("relation1_grid.py", tmp_path, flags, message)


def assert_refused_in_one_line(script, tmp_path, flags, message):
    """`script` with `flags` exits with an error whose last line holds `message` and is short,
    before it creates its --out folder."""
    result = subprocess.run(
        [sys.executable, str(ROOT / "benchmarks" / script), f"--out={tmp_path}/o", *flags],
        capture_output=True,
        text=True,
        cwd=ROOT,
    )
    assert result.returncode != 0
    assert message in result.stderr
    assert len(result.stderr.strip().splitlines()[-1]) < 300
    assert not (tmp_path / "o").exists()


def test_relation1_grid_refuses_an_out_that_is_a_file(tmp_path):
    (tmp_path / "file").write_text("kept")
    result = subprocess.run(
        [sys.executable, str(ROOT / "benchmarks" / "relation1_grid.py"), f"--out={tmp_path}/file"],
        capture_output=True,
        text=True,
        cwd=ROOT,
    )
    assert result.returncode == 1
    assert result.stderr.strip() == (
        f"relation1_grid: --out '{tmp_path}/file' is a file: it must be a folder, new or existing"
    )
    assert (tmp_path / "file").read_text() == "kept"


def write_trace(path, events):
    with gzip.open(path, "wt") as file:
        json.dump({"traceEvents": events}, file)


def test_profile_summary_reads_the_device_streams_of_a_trace(tmp_path):
    # Two steps on a GPU's compute stream: a convolution overlapping a fusion, a gap, a copy;
    # host events and the device's non-stream lines are left out.
    def span(tid, name, ts, dur, **args):
        return {"ph": "X", "pid": 1, "tid": tid, "ts": ts, "dur": dur, "name": name, "args": args}

    events = [
        {"ph": "M", "pid": 1, "name": "process_name", "args": {"name": "/device:GPU:0"}},
        {"ph": "M", "pid": 2, "name": "process_name", "args": {"name": "/host:CPU"}},
        {"ph": "M", "pid": 1, "tid": 7, "name": "thread_name", "args": {"name": "Stream #7"}},
        {"ph": "M", "pid": 1, "tid": 8, "name": "thread_name", "args": {"name": "XLA Ops"}},
        span(7, "sm90_xmma_fprop_implicit_gemm", 0, 600, hlo_op="cudnn-conv.1"),
        span(7, "loop_add_fusion_2", 400, 200, hlo_op="command_buffer_3"),
        span(7, "loop_add_fusion_5", 600, 200, hlo_op="command_buffer_3"),
        span(7, "MemcpyD2D", 1800, 200),
        span(7, "loop_convert_fusion", 1900, 50, hlo_op="convert.4"),  # a fusion, no conv
        span(8, "cudnn-conv.1", 0, 5000),
        {"ph": "X", "pid": 2, "tid": 1, "ts": 0, "dur": 9000, "name": "python"},
    ]
    trace = tmp_path / "plugins" / "profile" / "run" / "perfetto_trace.json.gz"
    trace.parent.mkdir(parents=True)
    write_trace(trace, events)
    output = run_script(
        "profile_summary.py", str(tmp_path), "--steps=2", f"--json={tmp_path / 's.json'}"
    )
    assert "kernels on: /device:GPU:0 (5 events)" in output
    summary = json.loads((tmp_path / "s.json").read_text())
    # Span 0…2000 µs, busy 800 + 200 µs (the overlap counted once), kernels 1250 µs; per step;
    # the two numbered copies of the fusion merged.
    assert summary["span_ms"] == pytest.approx(1.0)
    assert summary["busy_ms"] == pytest.approx(0.5)
    assert summary["kernel_ms"] == pytest.approx(0.625)
    assert summary["by_kind_ms"] == pytest.approx(
        {"convolution/matmul": 0.3, "fusion": 0.225, "copy": 0.1, "other": 0.0}
    )
    top = summary["top_kernels"]
    assert [row["kernel"] for row in top] == [
        "sm90_xmma_fprop_implicit_gemm",
        "loop_add_fusion",
        "MemcpyD2D",
        "loop_convert_fusion",
    ]
    assert [row["ms"] for row in top] == pytest.approx([0.3, 0.2, 0.1, 0.025])
    assert [row["per_step"] for row in top] == [0.5, 1.0, 0.5, 0.5]


def test_profile_summary_splits_convolutions_by_pass_and_layer(tmp_path):
    # One step of two layers as a GPU trace names them: the JAX op behind each kernel in
    # `name`, the pass in cuDNN's op; a 1×1 input gradient XLA ran as a GEMM; a fusion and an
    # unnamed GEMM stay out of the layers.
    def span(kernel, ts, dur, **args):
        return {"ph": "X", "pid": 1, "tid": 7, "ts": ts, "dur": dur, "name": kernel, "args": args}

    block = "jit(sharded_train_step)/jvp(WideResNet)/WideBlock_9/Conv_0/conv_general_dilated"
    back = block.replace("jvp(WideResNet)", "transpose(jvp(WideResNet))")
    shortcut = back.replace("WideBlock_9/Conv_0", "WideBlock_10/Conv_0")
    events = [
        {"ph": "M", "pid": 1, "name": "process_name", "args": {"name": "/device:GPU:0"}},
        {"ph": "M", "pid": 1, "tid": 7, "name": "thread_name", "args": {"name": "Stream #7"}},
        span("sm90_xmma_fprop", 0, 1000, hlo_op="cudnn-conv.3", name=block),
        span("Memset 3", 1000, 100, hlo_op="cudnn-conv-bw-input.4", name=back),
        span("sm90_xmma_dgrad", 1100, 900, hlo_op="cudnn-conv-bw-input.4", name=back),
        span("sm90_xmma_wgrad", 2000, 1500, hlo_op="cudnn-conv-bw-filter.5", name=back),
        span("nvjet_tst", 3500, 500, hlo_op="cudnn-conv-bias-activation.6", name=shortcut),
        span("loop_add_fusion", 4000, 300, hlo_op="add_fusion.7", name=back),
        span("gemm_fusion_dot", 4300, 200, hlo_op="command_buffer_8"),
    ]
    trace = tmp_path / "perfetto_trace.json.gz"
    write_trace(trace, events)
    flops = tmp_path / "batch_8.json"
    flops.write_text(json.dumps({"gflop_by_layer": {"WideResNet/WideBlock_9/Conv_0": 1.75}}))
    output = run_script(
        "profile_summary.py",
        str(trace),
        "--steps=1",
        f"--flops={flops}",
        f"--json={tmp_path / 's.json'}",
    )
    summary = json.loads((tmp_path / "s.json").read_text())
    assert summary["conv_by_pass_ms"] == pytest.approx(
        {"forward": 1.0, "input gradient": 1.0, "filter gradient": 1.5, "backward, other": 0.5}
    )
    # In the model's order: WideBlock_9 before WideBlock_10.
    block_row, shortcut_row = summary["conv_by_layer"]
    assert shortcut_row["layer"] == "WideResNet/WideBlock_10/Conv_0"
    assert shortcut_row["ms"]["backward, other"] == pytest.approx(0.5)
    assert shortcut_row["tflop_per_sec"] is None  # no FLOPs given for it
    assert block_row["layer"] == "WideResNet/WideBlock_9/Conv_0"
    assert block_row["ms"] == pytest.approx(
        {"forward": 1.0, "input gradient": 1.0, "filter gradient": 1.5, "backward, other": 0.0}
    )
    # 1.75 GFLOP in 3.5 ms.
    assert block_row["total_ms"] == pytest.approx(3.5)
    assert block_row["tflop_per_sec"] == pytest.approx(0.5)
    assert re.search(r"WideResNet/WideBlock_9/Conv_0 .* 3\.500 +0\.5 TFLOP/s", output), output


def test_profile_summary_rejects_flops_without_layers(tmp_path):
    write_trace(tmp_path / "perfetto_trace.json.gz", [])
    (tmp_path / "f.json").write_text(json.dumps({"gflop_per_image": 1.0}))
    result = subprocess.run(
        [
            sys.executable,
            str(ROOT / "benchmarks" / "profile_summary.py"),
            str(tmp_path),
            f"--flops={tmp_path / 'f.json'}",
        ],
        capture_output=True,
        text=True,
        cwd=ROOT,
    )
    assert result.returncode == 2
    assert "has no readable 'gflop_by_layer'" in result.stderr


def test_profile_summary_rejects_a_folder_without_a_trace(tmp_path):
    result = subprocess.run(
        [sys.executable, str(ROOT / "benchmarks" / "profile_summary.py"), str(tmp_path)],
        capture_output=True,
        text=True,
        cwd=ROOT,
    )
    assert result.returncode == 2
    assert f"no perfetto_trace.json.gz under '{tmp_path}'" in result.stderr


TINY_PRESET = """
from ml_collections import config_dict

from experiments.configs import reproduce_quick


def get_config():
    config = reproduce_quick.get_config()
    # Runs long enough that relation 1 keeps some (at 2.0 × 3e-3 the quick preset's do).
    config.t_star.lrs, config.t_star.l2_lrs, config.t_star.run_length = (2.0,), (3e-3, 1e-2), 6.0
    digits = config.setups.digits_mse
    digits.budgets, digits.probe_length = (100, 300), 1.0
    config.setups = config_dict.ConfigDict({"digits_mse": digits})
    config.seeds = 1
    return config
"""


@pytest.mark.slow
def test_reproduce_cost_script_times_each_runner_call_against_the_matmul_rate(tmp_path):
    (tmp_path / "tiny.py").write_text(TINY_PRESET)
    output = run_script(
        "reproduce_cost.py", f"--config={tmp_path / 'tiny.py'}", f"--json={tmp_path / 'cost.json'}"
    )
    assert re.search(r"matmul rate: [0-9.]+ GFLOP/s", output), output
    results = json.loads((tmp_path / "cost.json").read_text())
    # One call per part (one data draw), with the member-steps of the reproduction's plan:
    # the t* grid's 6/(λη) steps at λη = 0.003 and 0.01, five λ for T_max = 300 steps, a probe
    # of 1/(0.01 · 0.5) steps, λ_pred and κ·λ_pred at each budget, five schedules.
    assert results["member_steps"] == {
        "relation 1: t* grid (draw 0)": 2_000 + 600,
        "digits_mse: λ grid (draw 0)": 5 * 300,
        "digits_mse: probe (draw 0)": 200,
        "digits_mse: predicted λ (draw 0)": 2 * (100 + 300),
        "digits_mse: schedules (draw 0)": 5 * 300,
    }
    assert list(results["seconds"]) == list(results["member_steps"])
    assert results["runs"] == dict(zip(results["member_steps"], [2, 5, 1, 4, 5], strict=True))
    assert all(value > 0 for value in results["gflop"].values())
    assert set(results["gflop"]) == set(results["member_steps"])
    assert results["preset"] == "tiny"
    assert 0 < results["fraction_of_matmul_rate"] < 1
    assert results["total_seconds"] >= sum(results["seconds"].values())
    assert "digits_mse: λ grid (draw 0)" in output and "total: " in output


@pytest.mark.slow
def test_probe_fit_applies_rule_a_to_the_probe_of_each_setup_and_draw(tmp_path):
    output = run_script(
        "probe_fit.py", f"--out={tmp_path}", "--preset=default", "--setups=digits_mse"
    )
    results = json.loads((tmp_path / "results.json").read_text())
    rows = results["rows"]
    assert [(row["setup"], row["draw"]) for row in rows] == [("digits_mse", d) for d in range(3)]
    for row in rows:
        # 20% label noise: the bound is 1 − 0.2 − 0.1, and fitting is reaching it.
        assert row["fit_threshold"] == pytest.approx(0.7)
        assert row["fits_training_labels"] == (row["highest_train_accuracy"] >= 0.7)
        # Each row is the probe suggest_l2 writes, reused from its folder.
        stored = json.loads(
            (tmp_path / "probes" / "digits_mse" / str(row["draw"]) / "suggestion.json").read_text()
        )
        assert stored["highest_train_accuracy"] == row["highest_train_accuracy"]
        assert stored["suggested_l2"] == row["suggested_l2"]
        assert f"{100 * row['highest_train_accuracy']:.1f}%" in output
    highest = [row["highest_train_accuracy"] for row in rows]
    summary = results["by_setup"]["digits_mse"]
    assert summary["highest_train_accuracy"] == [min(highest), max(highest)]
    assert summary["fits"] == sum(row["fits_training_labels"] for row in rows)
    assert "3 probes in" in output


@pytest.mark.parametrize(
    ("flags", "message"),
    [
        (["--draws=0"], "--draws must be ≥ 1, got 0"),
        (["--preset=nope"], "--preset 'nope' has no experiments/configs/reproduce_*.py"),
        (["--setups=digits_mse,nope"], "--setups ['nope'] are not setups of 'regimes'"),
    ],
)
def test_probe_fit_rejects_bad_flags_in_one_line(tmp_path, flags, message):
    assert_refused_in_one_line("probe_fit.py", tmp_path, flags, message)
