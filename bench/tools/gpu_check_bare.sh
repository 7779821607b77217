#!/usr/bin/env bash
# The GPU check on a bare machine: bash bench/tools/gpu_check_bare.sh OUT_DIR [cuda|cpu]
#
# For a lent GPU machine with no venv, no network and no make (README, GPU check): the machine's python3,
# the packages it lacks installed from .whl/ (make gpu-bundle) into a scratch folder, the official UniAD
# from .official/ when it was bundled. Everything goes to OUT_DIR: gpu_check.log (all output),
# pytest.log, environment.txt (GPU, driver, torch, CUDA, cuDNN, timm), perf_gpu.json and perf_gpu.md
# (rewritten after every step, so a step that fails or is cut by the timeout costs only itself).
# The check runs under an overall timeout (GPU_CHECK_BUDGET_S, default 360 s) that leaves the device
# command's limit (450 s, printed by make gpu-bundle) time to install and to copy OUT_DIR back.
# `cpu` is the dry run (smoke sizes) that the rehearsal (bench/tools/gpu_rehearsal.sh) runs.
# Exit status: 0 when every step passed; 3 when the bundle is incomplete (nothing measured); else the
# check's (the last lines name the steps that failed), 124 when the timeout cut it.
set -uo pipefail

OUT=${1:?usage: bash bench/tools/gpu_check_bare.sh OUT_DIR [cuda|cpu]}
DEVICE=${2:-cuda}
case "$DEVICE" in cuda|cpu) ;; *) echo "gpu_check_bare: device must be cuda or cpu, not '$DEVICE'" >&2; exit 2;; esac
ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)
mkdir -p "$OUT" && OUT=$(cd "$OUT" && pwd) || exit 2
PY=${GPU_CHECK_PYTHON:-python3}
WHEELS=${GPU_CHECK_WHEELS:-$ROOT/.whl}
BUDGET=${GPU_CHECK_BUDGET_S:-360}
WORK=$(mktemp -d "${TMPDIR:-/tmp}/uniad-gpu-check.XXXXXX")
T0=$(date +%s)

check() {
echo "gpu_check_bare: $(date -u +%FT%TZ), device $DEVICE, budget ${BUDGET}s, python $($PY -V 2>&1), root $ROOT"

export PYTHONUNBUFFERED=1 HF_HUB_OFFLINE=1 TRANSFORMERS_OFFLINE=1 TQDM_DISABLE=1 PYTHONDONTWRITEBYTECODE=1
export MPLBACKEND=Agg WANDB_MODE=disabled HYDRA_FULL_ERROR=1 PIP_NO_INDEX=1 PIP_DISABLE_PIP_VERSION_CHECK=1
export UNIAD_BENCH_DATA="$WORK/datasets" UNIAD_BENCH_CACHE="$WORK/features" TORCHINDUCTOR_CACHE_DIR="$WORK/inductor"

# the environment file first: it needs only torch, so it is there even when the rest fails
"$PY" "$ROOT/bench/tools/environment.py" "$OUT/environment.txt" || echo "gpu_check_bare: environment.txt incomplete"

shopt -s nullglob
wheels=("$WHEELS"/*.whl)
if [ ${#wheels[@]} -eq 0 ]; then
  echo "gpu_check_bare: no wheels in $WHEELS (run make gpu-bundle here and carry .whl)"; return 3
fi
if ! "$PY" -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --target "$WORK/site" "${wheels[@]}"; then
  echo "gpu_check_bare: installing ${#wheels[@]} wheels from $WHEELS failed"; return 3
fi
export PYTHONPATH="$WORK/site:$ROOT${PYTHONPATH:+:$PYTHONPATH}"
echo "gpu_check_bare: installed $(printf '%s ' "${wheels[@]##*/}")into $WORK/site ($(($(date +%s) - T0)) s)"

# the bundle is complete when the check's modules import and its configs compose and build (nothing measured)
if ! (cd "$ROOT" && "$PY" -m bench.tools.gpu_check --preflight --device "$DEVICE"); then
  echo "gpu_check_bare: preflight failed: a package the check needs is missing (bench/tools/gpu_bundle.txt)"
  return 3
fi

official=()
[ -f "$ROOT/.official/models/reconstructions/uniad.py" ] && official=(--official "$ROOT/.official")
left=$((BUDGET - ($(date +%s) - T0)))
cd "$ROOT" || return 2
timeout -k 10 "$left" "$PY" -m bench.tools.gpu_check --device "$DEVICE" --out "$OUT" --budget-s $((left - 15)) \
  "${official[@]}"
code=$?
[ $code -eq 124 ] && echo "gpu_check_bare: the check ran past ${BUDGET}s and was stopped; perf_gpu.json holds the steps before"
echo "gpu_check_bare: exit $code after $(($(date +%s) - T0)) s; files: $(cd "$OUT" && echo *)"
return $code
}

check 2>&1 | tee -a "$OUT/gpu_check.log"
code=${PIPESTATUS[0]}
rm -rf "$WORK"
exit "$code"
