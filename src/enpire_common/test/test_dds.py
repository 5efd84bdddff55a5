from __future__ import annotations

import fcntl
import os

from enpire_common.dds import remove_stale_shm_segments


def _segment(shm, name: str, size: int = 4096) -> None:
    (shm / name).write_bytes(b'\0' * size)
    (shm / f'{name}_el').write_bytes(b'')


def test_only_segments_whose_owner_lock_is_free_are_removed(tmp_path) -> None:
    _segment(tmp_path, 'fastrtps_00112233445566aa', 8192)   # its owner died
    _segment(tmp_path, 'fastrtps_00112233445566bb')         # alive: holds its lock
    (tmp_path / 'fastrtps_port7411').write_bytes(b'\0')     # a port: never touched
    (tmp_path / 'fastrtps_port7411_el').write_bytes(b'')
    (tmp_path / 'fastrtps_00112233445566cc').write_bytes(b'\0')   # no lock file: unknown
    held = os.open(tmp_path / 'fastrtps_00112233445566bb_el', os.O_RDWR)
    fcntl.flock(held, fcntl.LOCK_EX)
    try:
        assert remove_stale_shm_segments(tmp_path) == (1, 8192)
    finally:
        os.close(held)
    assert sorted(p.name for p in tmp_path.iterdir()) == [
        'fastrtps_00112233445566bb', 'fastrtps_00112233445566bb_el',
        'fastrtps_00112233445566cc', 'fastrtps_port7411', 'fastrtps_port7411_el']


def test_a_missing_shm_directory_removes_nothing(tmp_path) -> None:
    assert remove_stale_shm_segments(tmp_path / 'absent') == (0, 0)
