#!/usr/bin/env bash
# Finding 14: what each real-sound change gives on its own, at the demo budget (docs/experiments/README.md).
#   bash docs/experiments/real_sound_ladder.sh RUNS_FOLDER [STEP ...]
# Steps (cumulative, each one change on the previous): A_base (the demo as it was), B_floor
# (+ a 60 dB level-relative floor on the front end's log energies), C_floor_noise (+ a noise
# floor on every training crop, SNR 40-70 dB), D_floor_noise_fx (+ audio effects on half the
# batches). Each is trained from scratch on the default corpus, then scored on the real samples
# (benchmarks/real_samples.py) and the copies no listener tells apart (benchmarks/robustness.py),
# then calibration.py compares thresholds and s-norm cohorts. Runs two at a time on 2 cores.
set -euo pipefail
RUNS=${1:?usage: real_sound_ladder.sh RUNS_FOLDER [STEP ...]}
shift
STEPS=${*:-A_base B_floor C_floor_noise D_floor_noise_fx}
BASE=$(python benchmarks/budget.py benchmarks/cpu_budget.yaml transMel --demo)
declare -A CHANGE=(
  [A_base]=""
  [B_floor]="--dynamic_range_db=60"
  [C_floor_noise]="--dynamic_range_db=60 --noise_floor_prob=1.0"
  [D_floor_noise_fx]="--dynamic_range_db=60 --noise_floor_prob=1.0 --effects_prob=0.5"
)
for step in $STEPS; do
  out="$RUNS/$step"
  # shellcheck disable=SC2086
  OMP_NUM_THREADS=1 python recipes/NSynth/train.py hparams/transMel.yaml $BASE ${CHANGE[$step]} \
    --output_folder="$out" > "$RUNS/$step.log" 2>&1
  python benchmarks/real_samples.py --model "$out/model" --output "$out/real_samples"
  python benchmarks/robustness.py --model "$out/model" --notes corpora/soundfont-default/nsynth-test \
    --notes ../shared/data/nsynth-test-dev --per-folder 11 --output "$out/robustness"
  python docs/experiments/calibration.py "$out/model" --corpus corpora/soundfont-default \
    --real ../shared/data/nsynth-test-dev --hparams hparams/transMel.yaml --output "$out/calibration"
done
