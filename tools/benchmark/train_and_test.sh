#!/usr/bin/env bash
# Train one config, then evaluate its final checkpoint on the test split.
# Usage: tools/benchmark/train_and_test.sh CONFIG WORK_DIR [--predict-on NAME] [extra train args]
# Prints the wall time of training and the test metrics; the test metrics
# are also saved by mmengine under WORK_DIR/test/.
set -euo pipefail
config=$1; work_dir=$2; shift 2
predict=()
if [ "${1:-}" = "--predict-on" ]; then predict=(--predict-on "$2"); shift 2; fi
py=${PYTHON:-python}
start=$(date +%s)
$py tools/train.py "$config" --work-dir "$work_dir" "$@"
end=$(date +%s)
echo "TRAIN_WALL_SECONDS $((end - start)) $config"
ckpt=$(cat "$work_dir/last_checkpoint")
$py tools/test.py "$config" "$ckpt" --work-dir "$work_dir/test" "${predict[@]}"
