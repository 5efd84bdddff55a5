"""The fault-injection suite's cell: one Push-T sim cell per module (lockstep,
``on_cell_exit:=respawn``: every node comes back after it dies) in a private ENPIRE_HOME."""

from __future__ import annotations

import os
from typing import Any

import pytest


@pytest.fixture(scope='module')
def fault_cell(tmp_path_factory: pytest.TempPathFactory) -> Any:
    """A TrialsSession on ``cell_0`` with a ``home`` attribute; torn down after the module."""
    from enpire_evolution.ros.trials_port import TrialsSession

    home = tmp_path_factory.mktemp('enpire_home')
    old = os.environ.get('ENPIRE_HOME')
    os.environ['ENPIRE_HOME'] = str(home)
    session = None
    try:
        session = TrialsSession(home=home, cell='cell_0', probe_s=1.0, ready_timeout_s=120.0,
                                launch_args={'on_cell_exit': 'respawn'})
        session.home = home
        yield session
    finally:
        if session is not None:
            session.close()
        if old is None:
            os.environ.pop('ENPIRE_HOME', None)
        else:
            os.environ['ENPIRE_HOME'] = old
