#!/usr/bin/env bash
# The benchmark in one command: supervised only, mean teacher, U2PL and RML
# (stage 1) on CamVid 1/8 and 1/4 and on CCP 1/8 (Clothing Co-Parsing, a
# background-dominated dataset), one recipe, 1k iterations each, then
# results.md (test mIoU mean +- std over runs, delta vs supervised, training
# wall time, classes that fell below half of their supervised IoU) and
# results.png in BENCH_DIR.
#
# Usage: tools/benchmark/camvid_benchmark.sh [BENCH_DIR] [extra train args]
#   BENCH_DIR            default work_dirs/camvid_benchmark; one work dir per
#                        run, <method>_<split> (sup_1-8, mt_1-4, ...)
# Environment:
#   MMSEG_SEMI_CAMVID_ROOT  CamVid root (default ../shared/data/camvid)
#   MMSEG_SEMI_CCP_ROOT     CCP root (default ../shared/data/ccp)
#   PYTHON                  interpreter (default python)
#   METHODS, SPLITS         subsets, e.g. METHODS="sup u2pl" SPLITS="1-8";
#                           splits: 1-8, 1-4 (CamVid), ccp-1-8 (CCP);
#                           the compositions of configs/composition/ (1/8
#                           only): METHODS="sup rml-u2pl u2pl-rect
#                           mt-segformer mt-pspnet" SPLITS=1-8
#   RML_PREDICT_ON          RML network to test (default teacher1; or
#                           teacher2, ensemble)
#   RUNS                    runs per config (default 1): run k > 1 goes to
#                           <method>_<split>_run<k> with its own random seed
#                           (mmengine logs it); the summary reports the
#                           mean and every run (a 1000-iteration run of these
#                           configs varies by 1-3 test mIoU from run to run)
#
# Resumable: a run whose WORK_DIR/test/<timestamp>/<timestamp>.json exists
# is skipped; a run with a checkpoint but no test result is resumed with
# --resume. Each run's console output is appended to
# WORK_DIR/train_and_test.log. About 6 hours a run of every config on 2 CPU
# cores.
set -euo pipefail
cd "$(dirname "$0")/../.."

bench_dir=${1:-work_dirs/camvid_benchmark}
if [ $# -gt 0 ]; then shift; fi
py=${PYTHON:-python}
export PYTHON=$py
export MMSEG_SEMI_CAMVID_ROOT=${MMSEG_SEMI_CAMVID_ROOT:-../shared/data/camvid}
export MMSEG_SEMI_CCP_ROOT=${MMSEG_SEMI_CCP_ROOT:-../shared/data/ccp}
methods=${METHODS:-sup mt u2pl rml}
splits=${SPLITS:-1-8 1-4 ccp-1-8}
for split in $splits; do
  case $split in
    ccp-*)
      if [ ! -d "$MMSEG_SEMI_CCP_ROOT/img_dir/train" ]; then
        echo "CCP not found at MMSEG_SEMI_CCP_ROOT=$MMSEG_SEMI_CCP_ROOT" \
          "(expected img_dir/, ann_dir/, splits/)" >&2
        exit 1
      fi ;;
    *)
      if [ ! -d "$MMSEG_SEMI_CAMVID_ROOT/train" ]; then
        echo "CamVid not found at MMSEG_SEMI_CAMVID_ROOT=$MMSEG_SEMI_CAMVID_ROOT" \
          "(expected train/, trainannot/, test/, testannot/)" >&2
        exit 1
      fi ;;
  esac
done
runs=${RUNS:-1}
if ! [[ $runs =~ ^[1-9][0-9]*$ ]]; then
  echo "RUNS must be a positive integer, got RUNS=$runs" >&2; exit 1
fi

config_of() {  # method split -> config path
  local name
  case $2 in
    ccp-*) name=effnetlite0-d16_1xb4-1k_ccp-${2#ccp-}-320x256.py ;;
    *) name=effnetlite0-d16_1xb4-1k_camvid-$2-256x320.py ;;
  esac
  case $1 in
    sup) echo "configs/supervised/deeplabv3plus_$name" ;;
    mt) echo "configs/mean_teacher/mean-teacher_deeplabv3plus_$name" ;;
    u2pl) echo "configs/u2pl/u2pl_deeplabv3plus_$name" ;;
    rml) echo "configs/rml/rml_deeplabv3plus_$name" ;;
    # Compositions (configs/composition/, 1/8 split only).
    rml-u2pl) echo "configs/composition/rml_u2pl-contrast_deeplabv3plus_$name" ;;
    u2pl-rect)
      echo "configs/composition/u2pl_prototype-rectifier_deeplabv3plus_$name" ;;
    mt-segformer) echo "configs/composition/mean-teacher_segformer_mit-b0_${name#effnetlite0-d16_}" ;;
    mt-pspnet) echo "configs/composition/semi-from-mmseg_pspnet_r18-d8_${name#effnetlite0-d16_}" ;;
    *) echo "unknown method '$1' (sup, mt, u2pl, rml, rml-u2pl, u2pl-rect," \
         "mt-segformer, mt-pspnet)" >&2; return 1 ;;
  esac
}

predict_of() {  # method -> test.py arguments
  case $1 in
    sup) ;;
    rml | rml-u2pl) echo "--predict-on ${RML_PREDICT_ON:-teacher1}" ;;
    *) echo "--predict-on teacher" ;;
  esac
}

for run in $(seq 1 "$runs"); do
for method in $methods; do
  for split in $splits; do
    config=$(config_of "$method" "$split")
    work_dir=$bench_dir/${method}_$split
    if [ "$run" -gt 1 ]; then work_dir=${work_dir}_run$run; fi
    if [ ! -f "$config" ]; then
      echo "missing config $config" >&2; exit 1
    fi
    if compgen -G "$work_dir/test/*/*.json" >/dev/null; then
      echo "[camvid_benchmark] $work_dir has test results, skipping"
      continue
    fi
    resume=()
    if [ -f "$work_dir/last_checkpoint" ]; then resume=(--resume); fi
    echo "[camvid_benchmark] $method $split run $run: $config -> $work_dir ${resume[*]}"
    mkdir -p "$work_dir"
    # shellcheck disable=SC2046  # predict_of's words are separate args
    bash tools/benchmark/train_and_test.sh "$config" "$work_dir" \
      $(predict_of "$method") "${resume[@]}" "$@" \
      2>&1 | tee -a "$work_dir/train_and_test.log"
  done
done
done

"$py" tools/benchmark/summarize_camvid_benchmark.py "$bench_dir"
