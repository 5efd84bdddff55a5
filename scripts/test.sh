#!/usr/bin/env bash
# README command 2: set up (idempotent) and run the whole test suite (all tiers but gpu).
# Extra arguments go to one pytest run instead, e.g. scripts/test.sh -m "not system" -x
# (a -m of yours replaces the default "not gpu and not nightly": scripts/test.sh -m nightly).
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
bash "$ROOT/scripts/setup.sh"
# shellcheck disable=SC1091
. "$ROOT/scripts/env.sh"
cd "$ROOT"
python -m ruff check src tests benchmarks scripts examples
# The layer rules (pyproject.toml [tool.importlinter]): a broken contract fails the run and
# names itself. A contract that cannot be kept yet is listed in the config but left out here
# with --contract selections, never enforced while broken.
lint-imports
MARKS="not gpu and not nightly"
SOAK=tests/system/test_soak.py::test_a_six_minute_soak_with_faults_needs_no_intervention
# pytest exits 5 when it collected no tests: that is a failure here, never a green build.
check() { [ "$1" = 5 ] && echo "no tests were collected ($2)" >&2; return 0; }
set +e
if [ "$#" -gt 0 ]; then
  python -m pytest -m "$MARKS" "$@"
  rc=$?
  check "$rc" "$*"
  exit "$rc"
fi
# The whole suite. The soak's 6 minutes are wall time of one lockstep cell, about one of the
# two cores: the unit tests under src/ run beside it (each pytest on a ROS domain of its
# own, 50 apart: the two-hosts test also takes the next two), then the system and fault
# tests under tests/ run alone, as their budgets assume.
base="${ENPIRE_TEST_DOMAIN_ID:-$(( RANDOM % 40 + 1 ))}"
soak_log="$(mktemp)"
ENPIRE_TEST_DOMAIN_ID=$(( base + 50 )) python -m pytest -m "$MARKS" "$SOAK" >"$soak_log" 2>&1 &
soak_pid=$!
ENPIRE_TEST_DOMAIN_ID=$base python -m pytest -m "$MARKS" src
rc_src=$?
check "$rc_src" src
wait "$soak_pid"
rc_soak=$?
echo "=== the soak, run beside the unit tests above ==="
cat "$soak_log"
rm -f "$soak_log"
check "$rc_soak" soak
ENPIRE_TEST_DOMAIN_ID=$base python -m pytest -m "$MARKS" tests --deselect "$SOAK"
rc_tests=$?
check "$rc_tests" tests
echo "exit codes: src $rc_src, soak $rc_soak, tests $rc_tests" >&2
for rc in "$rc_src" "$rc_soak" "$rc_tests"; do
  [ "$rc" = 0 ] || exit "$rc"
done
exit 0
