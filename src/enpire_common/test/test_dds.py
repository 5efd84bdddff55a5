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


def test_a_camera_publisher_gets_the_camera_profile_unless_the_user_chose_one(
        tmp_path, monkeypatch) -> None:
    from enpire_common.dds import use_camera_profile

    (tmp_path / 'fastdds.xml').write_text('<profiles/>')
    (tmp_path / 'fastdds_cameras.xml').write_text('<profiles/>')
    for var in ('FASTRTPS_DEFAULT_PROFILES_FILE', 'FASTDDS_DEFAULT_PROFILES_FILE'):
        monkeypatch.setenv(var, str(tmp_path / 'fastdds.xml'))
    assert use_camera_profile()
    assert os.environ['FASTRTPS_DEFAULT_PROFILES_FILE'] == str(tmp_path / 'fastdds_cameras.xml')
    assert os.environ['FASTDDS_DEFAULT_PROFILES_FILE'] == str(tmp_path / 'fastdds_cameras.xml')
    mine = tmp_path / 'my_profiles.xml'
    for var in ('FASTRTPS_DEFAULT_PROFILES_FILE', 'FASTDDS_DEFAULT_PROFILES_FILE'):
        monkeypatch.setenv(var, str(mine))
    assert not use_camera_profile()
    assert os.environ['FASTRTPS_DEFAULT_PROFILES_FILE'] == str(mine)


def test_the_shipped_camera_profile_is_the_default_with_a_larger_segment() -> None:
    import re
    from pathlib import Path

    dds = Path(__file__).resolve().parents[3] / 'config' / 'dds'
    default, camera = ((dds / n).read_text() for n in ('fastdds.xml', 'fastdds_cameras.xml'))
    size = lambda s: int(re.search(r'<segment_size>(\d+)</segment_size>', s).group(1))  # noqa: E731
    assert size(camera) >= 4 * size(default)
    strip = lambda s: re.sub(r'<!--.*?-->|<segment_size>\d+</segment_size>', '', s, flags=re.S)  # noqa: E731
    assert strip(camera) == strip(default)
