"""Where a profiled program's device time goes, read from a `jax.profiler` trace.

    python benchmarks/profile_summary.py PROFILE_DIR --steps=5

Reads `perfetto_trace.json.gz` (the newest one under PROFILE_DIR, or the file itself), keeps the
kernels of the accelerator (the `Stream` threads of the `/device:...` processes; a trace without
an accelerator falls back to the ops on XLA's CPU threads) and prints, per profiled step:

- the span from the first kernel's start to the last one's end, and the time some kernel was
  running (the union of their intervals); the rest of the span is the device waiting on the host
  or on launches;
- the kernel time by kind: convolutions and matrix products (cuDNN, cuBLAS, Triton GEMMs),
  other fusions (the elementwise and reduction passes: batch norm, ReLU, residual adds, the
  optimizer), copies, and the rest;
- the kernels that took most time, numbered copies of one kernel merged (`loop_add_fusion_3`
  and `loop_add_fusion_7` count as `loop_add_fusion`), with how many ran per step;
- where a GPU trace names the JAX op behind each kernel: the convolution time by pass (forward,
  input gradient, filter gradient, as cuDNN's `bw-input` and `bw-filter` ops say; "backward,
  other" for products XLA rewrote, such as a 1×1 convolution's input gradient run as a GEMM)
  and by layer (the Flax module: `WideResNet/WideBlock_2/Conv_1`). With `--flops=FILE`, the
  JSON that `throughput.py --json` writes, each layer also gets its TFLOP/s: its FLOPs
  (forward and both gradients, `l2reg.flops.matmul_flops_by_layer`) over its kernel time.

Times are in milliseconds per step, which assumes the trace holds `--steps` steps.
"""

import argparse
import collections
import glob
import gzip
import json
import os
import re

from l2reg import files
from l2reg.flops import layer_name

KINDS = ("convolution/matmul", "fusion", "copy", "other")
PASSES = ("forward", "input gradient", "filter gradient", "backward, other")
# Convolutions and matrix products, by XLA op or library kernel name ("convert" is no conv).
_MATMUL = re.compile(r"conv(?!ert)|gemm|dot|xmma|cudnn|cublas|cutlass|wgmma")
_CPU_THREADS = ("tf_XLAEigen", "tf_XLAPjRtCpuClient")
_CPU_WRAPPERS = ("ThunkExecutor", "ThreadpoolListener")


def find_trace(path: str) -> str:
    """`path` if it is a file, else the newest `perfetto_trace.json.gz` under it."""
    if os.path.isfile(path):
        return path
    traces = glob.glob(os.path.join(path, "**", "perfetto_trace.json.gz"), recursive=True)
    if not traces:
        raise FileNotFoundError(f"no perfetto_trace.json.gz under {path!r}")
    return max(traces, key=os.path.getmtime)


def kind(name: str) -> str:
    """The kind of a kernel or XLA op, from its names (lower-cased, joined)."""
    if _MATMUL.search(name):
        return "convolution/matmul"
    if "memcpy" in name or "memset" in name or name.startswith("copy"):
        return "copy"
    if "fusion" in name:
        return "fusion"
    return "other"


def device_kernels(events: list[dict]) -> tuple[str, list[dict]]:
    """(where they ran, the kernel events): the accelerator's stream threads, else XLA's CPU
    threads with their executor wrappers left out."""
    process = {e["pid"]: e["args"]["name"] for e in events if e.get("name") == "process_name"}
    thread = {
        (e["pid"], e["tid"]): e["args"]["name"] for e in events if e.get("name") == "thread_name"
    }
    spans = [e for e in events if e.get("ph") == "X" and e.get("dur", 0) > 0]
    devices = {pid for pid, name in process.items() if name.startswith("/device:")}
    on_device = [e for e in spans if e["pid"] in devices]
    streams = [e for e in on_device if thread.get((e["pid"], e["tid"]), "").startswith("Stream")]
    if streams or on_device:
        names = sorted({process[e["pid"]] for e in on_device})
        return ", ".join(names), streams or on_device
    cpu = [
        e
        for e in spans
        if thread.get((e["pid"], e["tid"]), "").startswith(_CPU_THREADS)
        and not e["name"].startswith(_CPU_WRAPPERS)
    ]
    return "no accelerator in the trace: XLA's CPU threads", cpu


def busy_time(kernels: list[dict]) -> float:
    """Microseconds during which at least one kernel ran (the union of their intervals)."""
    total, end = 0.0, float("-inf")
    for start, stop in sorted((e["ts"], e["ts"] + e["dur"]) for e in kernels):
        if stop > end:
            total += stop - max(start, end)
            end = stop
    return total


def conv_pass(op: str, op_name: str) -> str:
    """Which pass of a product an XLA op (`cudnn-conv-bw-filter.41`) with this JAX op name
    (`jit(step)/transpose(jvp(WideResNet))/...`) computes: one of `PASSES`."""
    if "bw-filter" in op:
        return "filter gradient"
    if "bw-input" in op:
        return "input gradient"
    return "backward, other" if "transpose(" in op_name else "forward"


def natural_key(text: str) -> list:
    """Sorts `WideBlock_10` after `WideBlock_9`."""
    return [int(part) if part.isdigit() else part for part in re.split(r"(\d+)", text)]


def conv_layers(kernels: list[dict], per_step: float, gflop_by_layer: dict | None) -> list[dict]:
    """Per layer, in model order: the products' kernel time by pass and in all, in ms per step,
    and with `gflop_by_layer` (GFLOP per step) the layer's TFLOP/s."""
    by_layer = collections.defaultdict(collections.Counter)
    for event in kernels:
        args = event.get("args", {})
        op, op_name = args.get("hlo_op", ""), args.get("name")
        if op_name and kind(f"{op} {event['name']}".lower()) == "convolution/matmul":
            layer = layer_name(op_name.rpartition("/")[0])  # the op's own name dropped
            by_layer[layer][conv_pass(op, op_name)] += event["dur"] * per_step
    rows = []
    for layer in sorted(by_layer, key=natural_key):
        total = sum(by_layer[layer].values())
        gflop = (gflop_by_layer or {}).get(layer)
        rows.append(
            {
                "layer": layer,
                "ms": {name: by_layer[layer][name] for name in PASSES},
                "total_ms": total,
                "tflop_per_sec": gflop / total if gflop else None,  # GFLOP / ms = TFLOP/s
            }
        )
    return rows


def summarize(
    events: list[dict], steps: int, top: int = 15, gflop_by_layer: dict | None = None
) -> dict:
    """Per-step span, busy time and kernel time by kind, by kernel and (where the trace names
    the JAX ops) by convolution layer and pass, in milliseconds."""
    where, kernels = device_kernels(events)
    if not kernels:
        raise ValueError("the trace holds no kernel or XLA op events")
    by_kind = collections.Counter()
    by_kernel = collections.Counter()
    launches = collections.Counter()
    for event in kernels:
        op = event.get("args", {}).get("hlo_op", "")
        by_kind[kind(f"{op} {event['name']}".lower())] += event["dur"]
        kernel = re.sub(r"[._]\d+$", "", event["name"])
        by_kernel[kernel] += event["dur"]
        launches[kernel] += 1
    span = max(e["ts"] + e["dur"] for e in kernels) - min(e["ts"] for e in kernels)
    per_step = 1e-3 / steps  # µs in the trace → ms per step
    layers = conv_layers(kernels, per_step, gflop_by_layer)
    return {
        "where": where,
        "kernels": len(kernels),
        "span_ms": span * per_step,
        "busy_ms": busy_time(kernels) * per_step,
        "kernel_ms": sum(by_kind.values()) * per_step,
        "by_kind_ms": {name: by_kind[name] * per_step for name in KINDS},
        "top_kernels": [
            {"kernel": kernel, "ms": dur * per_step, "per_step": launches[kernel] / steps}
            for kernel, dur in by_kernel.most_common(top)
        ],
        "conv_by_pass_ms": {name: sum(row["ms"][name] for row in layers) for name in PASSES},
        "conv_by_layer": layers,
    }


def print_conv_layers(summary: dict, kernel_ms: float) -> None:
    passes = [name for name in PASSES if summary["conv_by_pass_ms"][name] > 0]
    print("convolutions and matmuls by pass:")
    for name in passes:
        ms = summary["conv_by_pass_ms"][name]
        print(f"  {name:>20}: {ms:9.3f} ms/step ({ms / kernel_ms:6.1%})")
    print(f"by layer, ms/step ({', '.join(passes)}; all), TFLOP/s where FLOPs are given:")
    for row in summary["conv_by_layer"]:
        times = " ".join(f"{row['ms'][name]:7.3f}" for name in passes)
        rate = f" {row['tflop_per_sec']:7.1f} TFLOP/s" if row["tflop_per_sec"] else ""
        print(f"  {row['layer'][:48]:<48} {times}  {row['total_ms']:7.3f}{rate}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("path", help="a profile folder or a perfetto_trace.json.gz")
    parser.add_argument("--steps", type=int, default=5, help="steps the trace holds")
    parser.add_argument("--top", type=int, default=15, help="kernels listed")
    parser.add_argument("--json", default=None, help="also write the summary to this JSON file")
    parser.add_argument(
        "--flops", default=None, help="throughput.py's JSON, for the layers' TFLOP/s"
    )
    args = parser.parse_args()
    if args.steps < 1 or args.top < 1:
        parser.error(f"--steps and --top must be ≥ 1, got {args.steps} and {args.top}")
    gflop_by_layer = None
    if args.flops:
        try:
            with open(args.flops) as file:
                gflop_by_layer = json.load(file)["gflop_by_layer"]
        except (OSError, ValueError, KeyError) as error:
            parser.error(f"--flops={args.flops} has no readable 'gflop_by_layer': {error!r}")
    try:
        trace = find_trace(args.path)
    except FileNotFoundError as error:
        parser.error(str(error))
    with gzip.open(trace, "rt") as file:
        summary = summarize(json.load(file)["traceEvents"], args.steps, args.top, gflop_by_layer)

    kernel_ms = summary["kernel_ms"]
    print(f"trace: {trace}")
    print(f"kernels on: {summary['where']} ({summary['kernels']} events)")
    print(
        f"per step: span {summary['span_ms']:.3f} ms, busy {summary['busy_ms']:.3f} ms "
        f"({summary['busy_ms'] / summary['span_ms']:.1%} of the span), "
        f"kernel time {kernel_ms:.3f} ms"
    )
    for name, ms in summary["by_kind_ms"].items():
        print(f"  {name:>20}: {ms:9.3f} ms/step ({ms / kernel_ms:6.1%})")
    print(f"top {len(summary['top_kernels'])} kernels by time (launches per step):")
    for row in summary["top_kernels"]:
        print(
            f"  {row['ms']:9.3f} ms/step ({row['ms'] / kernel_ms:6.1%}) "
            f"{row['per_step']:6.1f}×  {row['kernel'][:100]}"
        )
    if summary["conv_by_layer"]:
        print_conv_layers(summary, kernel_ms)
    if args.json:
        files.write_atomic(args.json, json.dumps(summary, indent=2) + "\n")


if __name__ == "__main__":
    main()
