#!/usr/bin/env bash
# The GPU check on a bare machine: bash ops/gpu/check_bare.sh OUT_DIR [cuda|cpu]
#
# For a lent GPU machine with no venv, no network and no make (ops/gpu/README.md): the machine's python3,
# the packages it lacks installed from .whl/ (make gpu-bundle) into a scratch folder, the official UniAD
# from .official/ when it was bundled. Everything goes to OUT_DIR: gpu_check.log (all output),
# pytest.log, environment.txt (GPU, driver, torch, CUDA, cuDNN, timm), perf_gpu.json and perf_gpu.md
# (rewritten after every step, so a step that fails or is cut by the timeout costs only itself).
# The check runs under an overall timeout (GPU_CHECK_BUDGET_S, default 360 s) that leaves the device
# command's limit (450 s, printed by make gpu-bundle) time to install and to copy OUT_DIR back.
# `cpu` is the dry run (smoke sizes) that the rehearsal (ops/gpu/rehearsal.sh) runs.
# Exit status: 0 when every step passed; 2 for a bad argument or no scratch folder (nothing run); 3 when
# the bundle is incomplete (nothing measured); else the check's (the last lines name the steps that
# failed), 124 when the timeout cut it.
set -euo pipefail

OUT=${1:?usage: bash ops/gpu/check_bare.sh OUT_DIR [cuda|cpu]}
DEVICE=${2:-cuda}
case "$DEVICE" in cuda|cpu) ;; *) echo "check_bare: device must be cuda or cpu, not '$DEVICE'" >&2; exit 2;; esac
ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)
mkdir -p "$OUT" && OUT=$(cd "$OUT" && pwd) || { echo "check_bare: cannot create OUT_DIR '$OUT'" >&2; exit 2; }
PY=${GPU_CHECK_PYTHON:-python3}
WHEELS=${GPU_CHECK_WHEELS:-$ROOT/.whl}
BUDGET=${GPU_CHECK_BUDGET_S:-360}
# the scratch folder holds the installed packages, the generated data and the feature cache: without one,
# stop here (an empty name would put them under /site, /datasets and /features)
WORK=$(mktemp -d "${TMPDIR:-/tmp}/uniad-gpu-check.XXXXXX") && [ -n "$WORK" ] && [ -d "$WORK" ] || {
  echo "check_bare: cannot create a scratch folder under ${TMPDIR:-/tmp} (set TMPDIR to a writable folder)" >&2
  exit 2
}
trap 'rm -rf "$WORK"' EXIT
T0=$(date +%s)

check() {
echo "check_bare: $(date -u +%FT%TZ), device $DEVICE, budget ${BUDGET}s, python $($PY -V 2>&1), root $ROOT"

export PYTHONUNBUFFERED=1 HF_HUB_OFFLINE=1 TRANSFORMERS_OFFLINE=1 TQDM_DISABLE=1 PYTHONDONTWRITEBYTECODE=1
export MPLBACKEND=Agg WANDB_MODE=disabled HYDRA_FULL_ERROR=1 PIP_NO_INDEX=1 PIP_DISABLE_PIP_VERSION_CHECK=1
export UNIAD_BENCH_DATA="$WORK/datasets" UNIAD_BENCH_CACHE="$WORK/features" TORCHINDUCTOR_CACHE_DIR="$WORK/inductor"

# the environment file first: it needs only torch, so it is there even when the rest fails
"$PY" "$ROOT/ops/gpu/environment.py" "$OUT/environment.txt" || echo "check_bare: environment.txt incomplete"

shopt -s nullglob
wheels=("$WHEELS"/*.whl)
if [ ${#wheels[@]} -eq 0 ]; then
  echo "check_bare: no wheels in $WHEELS (run make gpu-bundle here and carry .whl)"; return 3
fi
if ! "$PY" -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --target "$WORK/site" "${wheels[@]}"; then
  echo "check_bare: installing ${#wheels[@]} wheels from $WHEELS failed"; return 3
fi
export PYTHONPATH="$WORK/site:$ROOT${PYTHONPATH:+:$PYTHONPATH}"
echo "check_bare: installed $(printf '%s ' "${wheels[@]##*/}")into $WORK/site ($(($(date +%s) - T0)) s)"

# the bundle is complete when the check's modules import and its configs compose and build (nothing measured)
if ! (cd "$ROOT" && "$PY" -m bench.tools.gpu_check --preflight --device "$DEVICE"); then
  echo "check_bare: preflight failed: a package the check needs is missing (ops/gpu/bundle.txt)"
  return 3
fi

official=()
if [ -f "$ROOT/.official/models/reconstructions/uniad.py" ]; then official=(--official "$ROOT/.official"); fi
left=$((BUDGET - ($(date +%s) - T0)))
cd "$ROOT" || return 2
code=0
timeout -k 10 "$left" "$PY" -m bench.tools.gpu_check --device "$DEVICE" --out "$OUT" --budget-s $((left - 15)) \
  ${official[@]+"${official[@]}"} || code=$?
if [ $code -eq 124 ]; then
  echo "check_bare: the check ran past ${BUDGET}s and was stopped; perf_gpu.json holds the steps before"
fi
echo "check_bare: exit $code after $(($(date +%s) - T0)) s; files: $(cd "$OUT" && echo *)"
return $code
}

# the script's status is check's (pipefail; tee's is 0); the EXIT trap removes the scratch folder
check 2>&1 | tee -a "$OUT/gpu_check.log"
