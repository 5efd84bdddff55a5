#!/usr/bin/env bash
# README command 2: set up (idempotent) and run the whole test suite (all tiers but gpu).
# Extra arguments go to pytest, e.g. scripts/test.sh -m "not system" -x
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
set +e
python -m pytest -m "not gpu and not nightly" "$@"
rc=$?
set -e
# pytest exits 5 when it collected no tests: that is a failure here, never a green build.
[ "$rc" = 5 ] && echo "no tests were collected" >&2
exit "$rc"
