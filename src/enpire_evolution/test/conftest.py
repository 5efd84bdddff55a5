"""Store fixtures of the evolution tests: each store-level test runs on every backend."""

from __future__ import annotations

import pytest

STORE_BACKENDS = ['sqlite', 'postgresql']


@pytest.fixture(params=STORE_BACKENDS)
def store_url(request, tmp_path):
    """The URL of an empty experiment store: a SQLite file, or a fresh PostgreSQL database on
    the session's throwaway server (root conftest ``postgres_url``; skipped where PostgreSQL
    is not installed)."""
    if request.param == 'sqlite':
        return f'sqlite:///{tmp_path / "enpire.db"}'
    return request.getfixturevalue('postgres_url')
