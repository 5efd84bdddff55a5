# Source this file (". scripts/env.sh") to use ENPIRE-ROS from any shell after scripts/setup.sh.
# It activates the venv, puts the colcon install space on the paths (the generated interfaces
# included) and keeps DDS on this machine unless told otherwise.
_enpire_root="$(cd "$(dirname "${BASH_SOURCE[0]:-$0}")/.." && pwd)"
_enpire_venv="${ENPIRE_VENV:-$_enpire_root/.venv}"
if [ -n "${ROS_DISTRO:-}" ] && [ -f "/opt/ros/${ROS_DISTRO}/setup.bash" ] && [ -z "${AMENT_PREFIX_PATH:-}" ]; then
  # shellcheck disable=SC1090
  . "/opt/ros/${ROS_DISTRO}/setup.bash"
fi
export VIRTUAL_ENV="$_enpire_venv"
case ":$PATH:" in *":$_enpire_venv/bin:"*) ;; *) export PATH="$_enpire_venv/bin:$PATH" ;; esac
_enpire_pyver="$("$_enpire_venv/bin/python" -c 'import sys; print(f"python{sys.version_info[0]}.{sys.version_info[1]}")' 2>/dev/null || echo python3)"
_enpire_inst="$_enpire_root/install"
case ":${PYTHONPATH:-}:" in *":$_enpire_inst/lib/$_enpire_pyver/site-packages:"*) ;;
  *) export PYTHONPATH="$_enpire_inst/lib/$_enpire_pyver/site-packages${PYTHONPATH:+:$PYTHONPATH}" ;; esac
# colcon --symlink-install develops ament_python packages in build/<pkg> (egg-links).
for _enpire_link in "$_enpire_inst/lib/$_enpire_pyver/site-packages/"*.egg-link; do
  [ -f "$_enpire_link" ] || continue
  read -r _enpire_dev < "$_enpire_link"
  case ":$PYTHONPATH:" in *":$_enpire_dev:"*) ;; *) export PYTHONPATH="$_enpire_dev:$PYTHONPATH" ;; esac
done
case ":${LD_LIBRARY_PATH:-}:" in *":$_enpire_inst/lib:"*) ;;
  *) export LD_LIBRARY_PATH="$_enpire_inst/lib${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}" ;; esac
case ":${AMENT_PREFIX_PATH:-}:" in *":$_enpire_inst:"*) ;;
  *) export AMENT_PREFIX_PATH="$_enpire_inst:$_enpire_venv${AMENT_PREFIX_PATH:+:$AMENT_PREFIX_PATH}" ;; esac
export ENPIRE_ROOT="$_enpire_root"
# DDS discovery stays on loopback; set both explicitly for a multi-host fleet.
export ROS_AUTOMATIC_DISCOVERY_RANGE="${ROS_AUTOMATIC_DISCOVERY_RANGE:-LOCALHOST}"
export ROS_DOMAIN_ID="${ROS_DOMAIN_ID:-42}"
# Fast DDS defaults sized for camera frames (why: config/dds/fastdds.xml). Fast DDS 2.x
# reads the first name, 3.x the second; a profile file of your own wins.
export FASTRTPS_DEFAULT_PROFILES_FILE="${FASTRTPS_DEFAULT_PROFILES_FILE:-$_enpire_root/config/dds/fastdds.xml}"
export FASTDDS_DEFAULT_PROFILES_FILE="${FASTDDS_DEFAULT_PROFILES_FILE:-$FASTRTPS_DEFAULT_PROFILES_FILE}"
unset _enpire_link _enpire_dev _enpire_root _enpire_venv _enpire_pyver _enpire_inst
