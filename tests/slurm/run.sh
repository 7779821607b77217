#!/usr/bin/env bash
# make test-slurm: start a throwaway one-node SLURM cluster with accounting (tests/slurm/cluster.py,
# root only; installs Debian's slurm/munge/mariadb packages when absent), run the tests marked
# `slurm` against it with SLURM_CONF exported, stop exactly the daemons it started.
# Prints "slurm tests: SKIPPED (reason)" and exits 0 when no cluster can be started here.
# Extra arguments go to pytest, e.g. `bash tests/slurm/run.sh -k requeue`.
set -euo pipefail
cd "$(dirname "$0")/../.."
PY="${PY:-.venv/bin/python}"
[ -x "$PY" ] || PY=python3
start=$(date +%s)
# our own pytest basetemp: a pytest run elsewhere prunes old /tmp/pytest-of-$USER dirs mid-sweep
tmp=$(mktemp -d "${TMPDIR:-/tmp}/uniad-slurm-tests.XXXXXX") && [ -d "$tmp" ] || {
  echo "slurm tests: cannot create a temp folder under ${TMPDIR:-/tmp} (set TMPDIR to a writable folder)" >&2; exit 2; }
rc=0
"$PY" tests/slurm/cluster.py -- "$PY" -m pytest -m slurm -p no:cacheprovider -v --basetemp="$tmp/pytest" \
    tests/slurm/test_slurm.py "$@" || rc=$?
if [ "$rc" -eq 0 ]; then rm -rf "$tmp"; else echo "slurm tests: sweep dirs and job logs kept in $tmp/pytest"; fi
echo "slurm tests: run.sh finished in $(( $(date +%s) - start )) s (exit $rc)"
exit $rc
