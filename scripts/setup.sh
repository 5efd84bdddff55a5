#!/usr/bin/env bash
# One idempotent set-up for ENPIRE-ROS: venv, pinned dependencies, ROS 2 (wheels or system),
# colcon build of the workspace. Both README commands call it. A second run is a no-op that
# finishes in seconds (stamps of the inputs decide what must be redone).
#
# Environment knobs:
#   ENPIRE_VENV      venv directory (default: <repo>/.venv)
#   ENPIRE_FORCE=1   redo every step
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
VENV="${ENPIRE_VENV:-$ROOT/.venv}"
STAMPS="$VENV/.enpire-stamps"
FORCE="${ENPIRE_FORCE:-0}"
cd "$ROOT"

log() { printf '[setup] %s\n' "$*" >&2; }
die() { printf '[setup] error: %s\n' "$*" >&2; exit 1; }

# --- python -----------------------------------------------------------------------------------
PY="${PYTHON:-python3}"
command -v "$PY" >/dev/null || die "python3 not found; install Python 3.10+ (apt-get install python3 python3-venv)"
"$PY" -c 'import sys; sys.exit(0 if sys.version_info >= (3, 10) else 1)' \
  || die "Python 3.10+ required, found $("$PY" --version 2>&1)"
for tool in cmake git; do
  command -v "$tool" >/dev/null || die "$tool not found; install it (apt-get install $tool build-essential)"
done

# A sourced system ROS 2 (/opt/ros/<distro>) replaces the PyPI wheels.
SYSTEM_ROS=0
if [ -n "${ROS_DISTRO:-}" ] && [ -d "/opt/ros/${ROS_DISTRO}" ]; then
  SYSTEM_ROS=1
  log "using system ROS 2 ${ROS_DISTRO} from /opt/ros/${ROS_DISTRO}"
fi

if [ ! -x "$VENV/bin/python" ]; then
  log "creating venv $VENV"
  if [ "$SYSTEM_ROS" = 1 ]; then
    "$PY" -m venv --system-site-packages "$VENV"
  else
    "$PY" -m venv "$VENV"
  fi
fi
mkdir -p "$STAMPS"
VPY="$VENV/bin/python"

stamp_ok() {  # stamp_ok NAME HASH -> 0 when the stamp matches
  [ "$FORCE" != 1 ] && [ -f "$STAMPS/$1" ] && [ "$(cat "$STAMPS/$1")" = "$2" ]
}
hash_files() { cat "$@" 2>/dev/null | sha256sum | cut -d' ' -f1; }

# --- dependencies -----------------------------------------------------------------------------
REQS=(requirements.txt requirements-build.txt)
[ "$SYSTEM_ROS" = 1 ] || REQS+=(requirements-ros.txt)
REQ_HASH="$(hash_files "${REQS[@]}" requirements-nodeps.txt)-$SYSTEM_ROS"
if ! stamp_ok deps "$REQ_HASH"; then
  log "installing pinned dependencies (first run: a few minutes)"
  args=()
  for r in "${REQS[@]}"; do args+=(-r "$r"); done
  # torch is pinned to the CPU build; it is installed on its own line so that no other
  # requirement can widen the range and pull a CUDA build.
  "$VPY" -m pip install --disable-pip-version-check -q --upgrade pip 2>&1 | grep -v 'is ignored' || true
  # sam2 is an sdist: build it without its CUDA extension (no CUDA here; its masks run on
  # the CPU or through torch's own CUDA ops elsewhere).
  SAM2_BUILD_CUDA=0 "$VPY" -m pip install --disable-pip-version-check -q "${args[@]}" torch==2.13.0 \
    2>&1 | grep -v 'is ignored' | grep -v '^WARNING: Location' || true
  "$VPY" -m pip install --disable-pip-version-check -q --no-deps -r requirements-nodeps.txt \
    2>&1 | grep -v 'is ignored' | grep -v '^WARNING: Location' || true
  "$VPY" -c 'import rclpy, yaml, numpy, cv2, gym_pusht, rosbags, torch, mujoco, mink
from importlib.util import find_spec
assert find_spec("ultralytics") and find_spec("sam2"), "ultralytics or sam2 missing"' \
    || die "dependency install failed (see pip output above)"
  echo "$REQ_HASH" > "$STAMPS/deps"
fi

# --- bridge the ROS wheels' CMake exports to this venv ------------------------------------------
# The wheels' *Export.cmake files name the wheel build host's Python and numpy include dirs.
if [ "$SYSTEM_ROS" = 0 ]; then
  "$VPY" "$ROOT/scripts/patch_ros_wheels.py" "$VENV"
fi

# --- colcon build -----------------------------------------------------------------------------
SRC_HASH="$( (cd "$ROOT" && find src launch config -type f \
    \( -name package.xml -o -name setup.py -o -name setup.cfg -o -name CMakeLists.txt \
       -o -name '*.msg' -o -name '*.srv' -o -name '*.action' -o -path 'launch/*' \
       -o -path 'config/*' -o -path '*/resource/*' \) -print0 | sort -z | xargs -0 sha256sum \
  ; cat colcon.meta) | sha256sum | cut -d' ' -f1)"
if ! stamp_ok build "$SRC_HASH" || [ ! -d "$ROOT/install" ]; then
  log "building the workspace with colcon"
  (
    # shellcheck disable=SC1091
    . "$VENV/bin/activate"
    if [ "$SYSTEM_ROS" = 1 ]; then
      # shellcheck disable=SC1090
      . "/opt/ros/${ROS_DISTRO}/setup.bash"
    else
      export AMENT_PREFIX_PATH="$VENV${AMENT_PREFIX_PATH:+:$AMENT_PREFIX_PATH}"
      export CMAKE_PREFIX_PATH="$VENV${CMAKE_PREFIX_PATH:+:$CMAKE_PREFIX_PATH}"
    fi
    export COLCON_HOME="$ROOT/.colcon"
    mkdir -p "$ROOT/log"
    # src/vendor/tf2_msgs (TFMessage for the arm cells' TF) only where ROS has none.
    SKIP=()
    if [ -d "$VENV/share/tf2_msgs" ] || { [ "$SYSTEM_ROS" = 1 ] && \
        [ -d "/opt/ros/${ROS_DISTRO}/share/tf2_msgs" ]; }; then
      SKIP=(--packages-skip tf2_msgs)
    fi
    colcon --log-base "$ROOT/log" build --merge-install --symlink-install \
      --base-paths "$ROOT/src" --build-base "$ROOT/build" --install-base "$ROOT/install" \
      --metas "$ROOT/colcon.meta" --event-handlers console_cohesion- summary+ "${SKIP[@]}" \
      --cmake-args -DBUILD_TESTING=OFF -DPython3_EXECUTABLE="$VPY" \
      > "$ROOT/log/colcon-build.txt" 2>&1 || { tail -40 "$ROOT/log/colcon-build.txt"; \
      die "colcon build failed (full log: log/colcon-build.txt)"; }
  )
  echo "$SRC_HASH" > "$STAMPS/build"
fi

# --- the enpire command -----------------------------------------------------------------------
cat > "$VENV/bin/enpire" <<EOF
#!/usr/bin/env bash
# Generated by scripts/setup.sh: runs the enpire CLI with the workspace environment.
. "$ROOT/scripts/env.sh"
exec "$VPY" -m enpire_bringup.cli "\$@"
EOF
chmod +x "$VENV/bin/enpire"

# --- headless Chromium (the HTML reports are checked in it) --------------------------------------
if ! command -v chromium >/dev/null 2>&1 && ! command -v chromium-browser >/dev/null 2>&1; then
  if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then
    log "installing Debian chromium (headless checks of the HTML reports)"
    { timeout 600 apt-get install -y -q chromium >/dev/null 2>&1 \
      || { timeout 300 apt-get update -q >/dev/null 2>&1 \
           && timeout 600 apt-get install -y -q chromium >/dev/null 2>&1; }; } \
      || log "could not install chromium; report checks in a browser are skipped"
  else
    log "no chromium: report checks in a browser are skipped (apt-get install chromium)"
  fi
fi
# --- PostgreSQL server (the experiment store's tests also run on a throwaway local server) ------
if ! compgen -G '/usr/lib/postgresql/*/bin/initdb' >/dev/null && ! command -v pg_ctl >/dev/null 2>&1; then
  if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then
    log "installing Debian postgresql (the store's tests against a real PostgreSQL server)"
    { DEBIAN_FRONTEND=noninteractive timeout 600 apt-get install -y -q postgresql >/dev/null 2>&1 \
      || { timeout 300 apt-get update -q >/dev/null 2>&1 \
           && DEBIAN_FRONTEND=noninteractive timeout 600 apt-get install -y -q postgresql >/dev/null 2>&1; }; } \
      || log "could not install postgresql; the store's PostgreSQL tests are skipped"
  else
    log "no PostgreSQL server: the store's PostgreSQL tests are skipped (apt-get install postgresql)"
  fi
fi
log "ready: . scripts/env.sh  (then: enpire --help)"
