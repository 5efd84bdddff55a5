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
