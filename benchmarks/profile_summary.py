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
  and `loop_add_fusion_7` count as `loop_add_fusion`), with how many ran per step.

Times are in milliseconds per step, which assumes the trace holds `--steps` steps.
"""

import argparse
import collections
import glob
import gzip
import json
import os
import re

KINDS = ("convolution/matmul", "fusion", "copy", "other")
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


def summarize(events: list[dict], steps: int, top: int = 15) -> dict:
    """Per-step span, busy time and kernel time by kind and by kernel, in milliseconds."""
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
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("path", help="a profile folder or a perfetto_trace.json.gz")
    parser.add_argument("--steps", type=int, default=5, help="steps the trace holds")
    parser.add_argument("--top", type=int, default=15, help="kernels listed")
    parser.add_argument("--json", default=None, help="also write the summary to this JSON file")
    args = parser.parse_args()
    if args.steps < 1 or args.top < 1:
        parser.error(f"--steps and --top must be ≥ 1, got {args.steps} and {args.top}")
    try:
        trace = find_trace(args.path)
    except FileNotFoundError as error:
        parser.error(str(error))
    with gzip.open(trace, "rt") as file:
        summary = summarize(json.load(file)["traceEvents"], args.steps, args.top)

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
    if args.json:
        # Imported here so that the script reads a trace without the l2reg package installed.
        from l2reg import files

        files.write_atomic(args.json, json.dumps(summary, indent=2) + "\n")


if __name__ == "__main__":
    main()
