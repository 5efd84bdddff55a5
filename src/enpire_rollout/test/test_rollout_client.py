"""RolloutClient refuses a run that two run_trials servers (two cells of one name) would both
run, instead of sending it."""

from __future__ import annotations

import time
from typing import Any

import pytest
from rclpy.action import ActionServer

from enpire_common.errors import CellUnavailableError
from enpire_interfaces.action import RunTrials
from enpire_rollout.client import RolloutClient


@pytest.mark.ros
def test_two_servers_of_one_cell_name_refuse_the_run(ros, monkeypatch) -> None:
    ran: list[str] = []

    def execute(handle: Any) -> RunTrials.Result:
        ran.append(handle.request.revision_id)
        handle.succeed()
        return RunTrials.Result()

    servers = []
    for i in range(2):
        node = ros.node(f'rollout_{i}', namespace='/twin_cell')
        servers.append(ActionServer(node, RunTrials, 'run_trials', execute))
    monkeypatch.setattr(RolloutClient, 'SERVER_SETTLE_S', 0.5)
    client = RolloutClient('twin_cell')
    try:
        assert client.wait_ready(10.0)
        deadline = time.monotonic() + 10.0
        while client._client.servers_answering() < 2 and time.monotonic() < deadline:
            time.sleep(0.1)
        with pytest.raises(CellUnavailableError, match=r'2 servers answer /twin_cell/run_trials'
                           r'.*two cells are named twin_cell'):
            client.run_trials(count=1, revision_id='r' * 64)
        assert ran == []
        # One server left: runs go through.
        servers.pop().destroy()
        deadline = time.monotonic() + 10.0
        while client._client.servers_answering() > 1 and time.monotonic() < deadline:
            time.sleep(0.1)
        client.run_trials(count=1, revision_id='r' * 64, timeout_s=20.0)
        assert ran == ['r' * 64]
    finally:
        client.close()
