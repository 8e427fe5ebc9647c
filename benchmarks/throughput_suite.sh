#!/usr/bin/env bash
# The throughput measurements of benchmarks/README.md in one go, for a machine with an
# accelerator. PARTS (all by default) picks among, in this order:
#   step   WRN-28-10 in bf16 at each batch size in BATCHES (figures to OUTDIR/batch_N.json, a
#          profiler trace of the first batch size to OUTDIR/profile), then one batch-norm +
#          ReLU layer of each of its three sizes at the first batch size;
#   loop   the whole training loop, LOOP_STEPS steps with a line every LOOP_EVERY, at the first
#          batch size (OUTDIR/loop.json);
#   input  the input pipeline at the first batch size;
#   sweep  the vmapped sweep of SWEEP_STEPS steps with the costs of its parts and a trace
#          (OUTDIR/sweep_profile), summarized.
# Each command gets at most LIMIT seconds, so one that hangs cannot eat the others' time; the
# whole suite can take (number of commands) × LIMIT, so split it with PARTS where a caller's
# time limit is shorter.
#
#   bash benchmarks/throughput_suite.sh OUTDIR
#   PARTS="step loop" bash benchmarks/throughput_suite.sh OUTDIR
#   PYTHON=.venv/bin/python MODEL=wrn10_1 BATCHES="8" STEPS=1 ROUNDS=1 LOOP_STEPS=6 \
#     LOOP_EVERY=2 SWEEP_STEPS=20 bash benchmarks/throughput_suite.sh OUTDIR
set -uo pipefail

outdir=${1:?usage: throughput_suite.sh OUTDIR}
model=${MODEL:-wrn28_10}
batches=${BATCHES:-1024 2048}
steps=${STEPS:-20}
rounds=${ROUNDS:-3}
sweep_steps=${SWEEP_STEPS:-2000}
loop_steps=${LOOP_STEPS:-400}
loop_every=${LOOP_EVERY:-100}
parts=" ${PARTS:-step loop input sweep} "
limit=${LIMIT:-240}
here=$(dirname "$0")
python=${PYTHON:-python3}
mkdir -p "$outdir"
status=0

first_batch=${batches%% *}
for part in $parts; do
  case $part in step|loop|input|sweep) ;; *)
    echo "unknown part '$part' in PARTS; expected step, loop, input or sweep" >&2; exit 2;;
  esac
done

run() {  # run COMMAND...: under the time limit, noting a failure without stopping the suite
  timeout -k 10 "$limit" "$@" || { echo "exit status $? (124 or 137: over ${limit} s)"; status=1; }
}

if [[ $parts == *" step "* ]]; then
  profile="--profile_dir=$outdir/profile"
  for batch in $batches; do
    echo "== throughput: $model, batch $batch"
    run "$python" "$here/throughput.py" --model="$model" --batch="$batch" --dtype=bfloat16 \
      --steps="$steps" --rounds="$rounds" --json="$outdir/batch_$batch.json" $profile
    profile=""
  done
  echo "== where the step's device time goes (profile of 5 steps at batch $first_batch)"
  run "$python" "$here/profile_summary.py" "$outdir/profile" --steps=5 \
    --flops="$outdir/batch_$first_batch.json" --json="$outdir/profile_summary.json"
  # WRN-28-10's three batch-norm layer sizes at the first batch size.
  for shape in "$first_batch,32,32,160" "$first_batch,16,16,320" "$first_batch,8,8,640"; do
    echo "== one batch-norm + ReLU layer, $shape"
    run "$python" "$here/batch_norm.py" --shape="$shape" --dtype=bfloat16
  done
fi

if [[ $parts == *" loop "* ]]; then
  echo "== training loop: $model, batch $first_batch, $loop_steps steps"
  run "$python" "$here/train_loop.py" --model="$model" --batch="$first_batch" \
    --dtype=bfloat16 --steps="$loop_steps" --eval_every="$loop_every" --json="$outdir/loop.json"
fi

if [[ $parts == *" input "* ]]; then
  echo "== input pipeline, batch $first_batch"
  run "$python" "$here/input_pipeline.py" --model="$model" --batch="$first_batch" \
    --dtype=bfloat16 --steps="$steps"
fi

if [[ $parts == *" sweep "* ]]; then
  echo "== vmapped sweep, $sweep_steps steps"
  chunk=$((sweep_steps < 500 ? sweep_steps : 500))
  run "$python" "$here/sweep_speedup.py" --setup=digits_ntk_mse --steps="$sweep_steps" \
    --chunk_steps="$chunk" --profile_dir="$outdir/sweep_profile"
  echo "== where the vmapped sweep's device time goes (profile of $chunk steps)"
  run "$python" "$here/profile_summary.py" "$outdir/sweep_profile" --steps="$chunk" \
    --json="$outdir/sweep_profile_summary.json"
fi
exit $status
