"""FleetSession's discovery of a running fleet, with scripted clients on a virtual clock."""

from __future__ import annotations

from pathlib import Path

import pytest

from enpire_common.errors import CellUnavailableError
from enpire_rollout import client as client_mod


def _fake_clients(appears: dict[str, float]) -> type:
    class FakeClient:
        t = 0.0  # virtual seconds since the session started looking

        def __init__(self, cell: str) -> None:
            self.cell = cell

        def wait_ready(self, timeout_s: float) -> bool:
            at = appears[self.cell]
            if FakeClient.t + timeout_s >= at:
                FakeClient.t = max(FakeClient.t, at)
                return True
            FakeClient.t += timeout_s
            return False

        def close(self) -> None:
            pass

    return FakeClient


def test_a_running_fleet_is_used_when_its_first_cell_is_discovered_late(
        monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    # cell_0 is found only after the 3 s probe, cell_1 at once (a loaded host): both run.
    monkeypatch.setattr(client_mod, 'RolloutClient', _fake_clients({'cell_0': 4.0,
                                                                    'cell_1': 0.0}))
    lines: list[str] = []
    session = client_mod.FleetSession(home=tmp_path, cells=['cell_0', 'cell_1'],
                                      log=lines.append)
    assert session.stack is None and lines == ['using the running cells cell_0, cell_1']


def test_a_cell_missing_from_a_running_fleet_is_named(monkeypatch: pytest.MonkeyPatch,
                                                      tmp_path: Path) -> None:
    monkeypatch.setattr(client_mod, 'RolloutClient', _fake_clients({'cell_0': 0.0,
                                                                    'cell_1': float('inf')}))
    with pytest.raises(CellUnavailableError, match='/cell_1 while other cells run'):
        client_mod.FleetSession(home=tmp_path, cells=['cell_0', 'cell_1'])
