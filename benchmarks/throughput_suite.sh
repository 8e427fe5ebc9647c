#!/usr/bin/env bash
# The throughput measurements of benchmarks/README.md in one go, for a machine with an
# accelerator: WRN-28-10 in bf16 at each batch size in BATCHES (figures to OUTDIR/batch_N.json,
# a profiler trace of the first batch size to OUTDIR/profile), the input pipeline, then the
# vmapped sweep of SWEEP_STEPS steps with the costs of its parts and a trace (OUTDIR/sweep_profile).
# Each command gets at most LIMIT seconds, so one that hangs cannot eat the others' time.
#
#   bash benchmarks/throughput_suite.sh OUTDIR
#   PYTHON=.venv/bin/python MODEL=wrn10_1 BATCHES="8" STEPS=1 ROUNDS=1 SWEEP_STEPS=20 \
#     bash benchmarks/throughput_suite.sh OUTDIR
set -uo pipefail

outdir=${1:?usage: throughput_suite.sh OUTDIR}
model=${MODEL:-wrn28_10}
batches=${BATCHES:-1024 2048}
steps=${STEPS:-20}
rounds=${ROUNDS:-3}
sweep_steps=${SWEEP_STEPS:-2000}
limit=${LIMIT:-240}
here=$(dirname "$0")
python=${PYTHON:-python3}
mkdir -p "$outdir"
status=0

profile="--profile_dir=$outdir/profile"
for batch in $batches; do
  echo "== throughput: $model, batch $batch"
  timeout "$limit" "$python" "$here/throughput.py" --model="$model" --batch="$batch" \
    --dtype=bfloat16 --steps="$steps" --rounds="$rounds" --json="$outdir/batch_$batch.json" \
    $profile || { echo "exit status $? (124: over ${limit} s)"; status=1; }
  profile=""
done

echo "== input pipeline, batch ${batches%% *}"
timeout "$limit" "$python" "$here/input_pipeline.py" --model="$model" --batch="${batches%% *}" \
  --dtype=bfloat16 --steps="$steps" || { echo "exit status $? (124: over ${limit} s)"; status=1; }

echo "== vmapped sweep, $sweep_steps steps"
timeout "$limit" "$python" "$here/sweep_speedup.py" --setup=digits_ntk_mse \
  --steps="$sweep_steps" --chunk_steps=$((sweep_steps < 500 ? sweep_steps : 500)) \
  --profile_dir="$outdir/sweep_profile" || { echo "exit status $? (124: over ${limit} s)"; status=1; }
exit $status
