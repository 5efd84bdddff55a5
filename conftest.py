"""Root conftest: applies to tests/ and src/*/test (DDS on loopback, private domain)."""

from __future__ import annotations

import os
import random

# Must happen before any rclpy.init(): discovery on loopback only, and a domain id that no
# other concurrent test session on this machine is likely to use.
os.environ['ROS_AUTOMATIC_DISCOVERY_RANGE'] = 'LOCALHOST'
os.environ['ROS_DOMAIN_ID'] = os.environ.get(
    'ENPIRE_TEST_DOMAIN_ID', str(random.SystemRandom().randint(1, 100)))

import pytest  # noqa: E402


@pytest.fixture
def ros():
    """An in-process ROS harness with a private Context (see enpire_common.testing)."""
    from enpire_common.testing import RosHarness

    harness = RosHarness()
    try:
        yield harness
    finally:
        harness.close()


@pytest.fixture(scope='session')
def postgres_server():
    """A throwaway PostgreSQL server for the whole session (enpire_common.postgres_testing).

    Skips where PostgreSQL is not installed; fails where it is but cannot start.
    """
    from enpire_common.postgres_testing import PostgresServer, PostgresUnavailableError

    try:
        server = PostgresServer()
    except PostgresUnavailableError as exc:
        pytest.skip(f'PostgreSQL tests need a local server: {exc}')
    try:
        server.start()
        yield server
    finally:
        server.close()


@pytest.fixture
def postgres_url(postgres_server, request):
    """A SQLAlchemy URL of a fresh, empty database on ``postgres_server`` (dropped after)."""
    name = postgres_server.create_database(request.node.name)
    try:
        yield postgres_server.url(name)
    finally:
        postgres_server.start()  # a test that stopped the server gets it back for the drop
        postgres_server.drop_database(name)
