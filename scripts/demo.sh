#!/usr/bin/env bash
# README command 1: set up (idempotent), then the built-in agent improves the Push-T policy on
# the embedded simulated cell (started on demand), printing progress, and writes a report.
# Extra arguments go to `enpire improve`, e.g. scripts/demo.sh --budget-min 5
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
bash "$ROOT/scripts/setup.sh"
# shellcheck disable=SC1091
. "$ROOT/scripts/env.sh"
cd "$ROOT"
export ENPIRE_HOME="${ENPIRE_HOME:-$ROOT/runs}"
exec enpire improve --task push_t --agent builtin --budget-min "${ENPIRE_DEMO_BUDGET_MIN:-30}" "$@"
