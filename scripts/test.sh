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
# The whole suite, in two streams that run side by side, each pytest on a ROS domain of
# its own (50 apart; the two-hosts test also takes the next two):
#   A: the unit tests under src/, then the system tests of one cell at a time and two of
#      the fault tests (GROUP_A);
#   B: the 6-minute soak (one lockstep cell), then the fleet, agent and node-fault tests.
# Balanced on a calm run (e29d0c7): A 21.4 min, B 25.1 min before the two fault files moved.
# A lockstep cell is one serial loop: one stream alone used 1.05 of the 2 cores. Each
# stream's tests must hold on a loaded machine anyway (issue 15: the suite passes with two
# busy loops on both cores). Stream A prints as it goes; B's output follows it.
GROUP_A=(tests/system/test_trials.py tests/system/test_sandbox.py
         tests/system/test_pin_insertion.py tests/system/test_gpu_insertion.py
         tests/system/test_zip_tie.py tests/system/test_launcher.py
         tests/system/test_launch_lifetime.py tests/system/test_push_t_cell.py
         tests/system/test_hot_swap.py tests/system/test_two_hosts.py
         tests/system/test_view.py tests/faults/test_message_faults.py
         tests/faults/test_disk_and_store_faults.py)
deselect_a=()
for f in "${GROUP_A[@]}"; do deselect_a+=(--ignore "$f"); done
base="${ENPIRE_TEST_DOMAIN_ID:-$(( RANDOM % 40 + 1 ))}"
log_b="$(mktemp)"
(
  ENPIRE_TEST_DOMAIN_ID=$(( base + 50 )) python -m pytest -m "$MARKS" "$SOAK"
  rc=$?
  ENPIRE_TEST_DOMAIN_ID=$(( base + 50 )) python -m pytest -m "$MARKS" tests \
    --deselect "$SOAK" "${deselect_a[@]}"
  rc2=$?
  echo "exit codes of stream B: soak $rc, tests $rc2"
  [ "$rc" = 0 ] && exit "$rc2"
  exit "$rc"
) >"$log_b" 2>&1 &
pid_b=$!
ENPIRE_TEST_DOMAIN_ID=$base python -m pytest -m "$MARKS" src
rc_src=$?
check "$rc_src" src
ENPIRE_TEST_DOMAIN_ID=$base python -m pytest -m "$MARKS" "${GROUP_A[@]}"
rc_a=$?
check "$rc_a" "stream A system tests"
wait "$pid_b"
rc_b=$?
echo "=== stream B (the soak, then the fleet, agent and fault tests), run beside the above ==="
cat "$log_b"
rm -f "$log_b"
check "$rc_b" "stream B"
echo "exit codes: src $rc_src, stream A system tests $rc_a, stream B $rc_b" >&2
for rc in "$rc_src" "$rc_a" "$rc_b"; do
  [ "$rc" = 0 ] || exit "$rc"
done
exit 0
