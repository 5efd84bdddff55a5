"""Fast DDS housekeeping that the middleware leaves to its users."""

from __future__ import annotations

import fcntl
import os
import re
from pathlib import Path

#: The profile every ENPIRE process gets (scripts/env.sh) and the one of camera publishers.
DEFAULT_PROFILE = 'fastdds.xml'
CAMERA_PROFILE = 'fastdds_cameras.xml'
_PROFILE_VARS = ('FASTRTPS_DEFAULT_PROFILES_FILE', 'FASTDDS_DEFAULT_PROFILES_FILE')


def use_camera_profile() -> bool:
    """Give this process the camera publishers' Fast DDS profile (a larger shared-memory
    segment; why: config/dds/fastdds_cameras.xml). Call before the process's first ROS
    context exists. A profile file of the user's own (not ENPIRE's default) is kept.

    Returns:
        True when the profile was switched.
    """
    current = os.environ.get(_PROFILE_VARS[0], '')
    if not current or Path(current).name != DEFAULT_PROFILE:
        return False
    camera = Path(current).with_name(CAMERA_PROFILE)
    if not camera.is_file():
        return False
    for var in _PROFILE_VARS:
        os.environ[var] = str(camera)
    return True

#: A participant's shared-memory segment: ``fastrtps_<16 hex>``, with a ``_el`` lock file its
#: owner holds (flock) while alive. Ports (``fastrtps_port<N>``) are shared, never removed.
_SEGMENT = re.compile(r'^fastrtps_[0-9a-f]{16}$')


def remove_stale_shm_segments(shm_dir: str | Path = '/dev/shm') -> tuple[int, int]:
    """Delete the shared-memory segments of Fast DDS participants whose process is gone.

    A SIGKILLed (or crashed) process leaves its segment behind, resident in RAM (each is
    ``segment_size`` of config/dds/fastdds.xml). Its owner holds an flock on
    ``<segment>_el`` while alive, the test Fast DDS's own ``fastdds shm clean`` uses; a
    segment whose lock can be taken has no owner and no reader needs it.

    Returns:
        (segments removed, bytes freed).
    """
    removed = freed = 0
    try:
        names = os.listdir(shm_dir)
    except OSError:
        return 0, 0
    for name in names:
        if not _SEGMENT.match(name):
            continue
        segment = Path(shm_dir) / name
        lock = Path(shm_dir) / f'{name}_el'
        try:
            fd = os.open(lock, os.O_RDWR)
        except OSError:
            continue   # no lock file: not a segment layout we know, leave it
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:
            continue   # held: its process is alive
        else:
            try:
                size = segment.stat().st_size
                segment.unlink()
                lock.unlink()
            except OSError:
                continue
            removed, freed = removed + 1, freed + size
        finally:
            os.close(fd)
    return removed, freed
