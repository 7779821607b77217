#!/usr/bin/env bash
# The GPU check rehearsed here as the lent machine runs it (ops/gpu/README.md): make gpu-rehearsal (in CI).
#
# 1. an interpreter environment like the machine's (ops/gpu/rehearsal_env.py: the venv's torch, timm
#    and scientific stack, not this project's install, no package of the bundle), plus pytest-timeout,
#    which the machine has and the venv lacks, fetched while the network is still there;
# 2. the network cut (unshare -n, as root) for everything after;
# 3. a bundle with one wheel left out must fail before measuring anything (the check is not vacuous);
# 4. the one device command, `bash ops/gpu/check_bare.sh OUT cpu`, with packages from .whl only;
#    it must pass and leave every file the device run returns.
# Needs .whl/ (make gpu-bundle). Under 2 minutes on a quiet 2-core CPU.
set -euo pipefail
ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)
cd "$ROOT"
VENV_PY=${VENV_PY:-$ROOT/.venv/bin/python}
WORK=${GPU_REHEARSAL_DIR:-${TMPDIR:-/tmp}/uniad-gpu-rehearsal}  # a fixed folder: its output stays to be read
T0=$(date +%s)
fail() { echo "gpu-rehearsal: FAILED: $*"; exit 1; }

ls .whl/*.whl >/dev/null 2>&1 || fail "no .whl/ (run make gpu-bundle)"
rm -rf "$WORK" && mkdir -p "$WORK" && [ -w "$WORK" ] || fail "cannot create the scratch folder $WORK (set TMPDIR)"
"$VENV_PY" -m ops.gpu.rehearsal_env "$WORK/env" | cut -c1-300
ENV_PY="$WORK/env/bin/python"
"$ENV_PY" -m pip download -q --no-deps --only-binary=:all: -d "$WORK/machine" pytest-timeout 2>&1 | grep -v "is ignored" || true
"$ENV_PY" -m pip install -q --no-index --no-deps --no-compile "$WORK"/machine/pytest_timeout-*.whl
if "$ENV_PY" -c "import hydra" 2>/dev/null || "$ENV_PY" -c "import bench" 2>/dev/null; then
  fail "the rehearsal environment already holds hydra or this project: it would prove nothing"
fi

if unshare -n true 2>/dev/null; then
  NET=(unshare -n)
else
  fail "unshare -n is refused (it needs root): the network cannot be cut"
fi
BARE=(env "PATH=$WORK/env/bin:$PATH" bash ops/gpu/check_bare.sh)

mkdir -p "$WORK/partial"
cp .whl/*.whl "$WORK/partial/"
left_out=$(ls "$WORK"/partial/hydra_core-*.whl)
rm "$left_out"
echo "gpu-rehearsal: a bundle without ${left_out##*/} must fail"
if "${NET[@]}" env GPU_CHECK_WHEELS="$WORK/partial" "${BARE[@]}" "$WORK/out-partial" cpu >/dev/null 2>&1; then
  fail "the check passed without ${left_out##*/}"
fi
grep -q "preflight failed" "$WORK/out-partial/gpu_check.log" || fail "the incomplete bundle failed, but not at the preflight"
grep "No module named" "$WORK/out-partial/gpu_check.log" | tail -1

echo "gpu-rehearsal: the device command with cpu, network cut, packages from .whl only"
"${NET[@]}" "${BARE[@]}" "$WORK/out" cpu || fail "the bare check failed (see $WORK/out/gpu_check.log)"
for f in perf_gpu.json perf_gpu.md gpu_check.log pytest.log environment.txt; do
  [ -s "$WORK/out/$f" ] || fail "$f is missing from the check's output"
done
grep -q "pytest-timeout: 2" "$WORK/out/environment.txt" || fail "pytest-timeout is not in the rehearsal environment"
grep -q "per-test timeout 60 s" "$WORK/out/perf_gpu.md" || fail "the gpu tests ran without a per-test timeout"
echo "gpu-rehearsal: ok in $(($(date +%s) - T0)) s; output in $WORK/out"
