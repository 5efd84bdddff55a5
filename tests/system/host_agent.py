"""One host's built-in agent in a fleet spread over hosts (run by test_two_hosts.py).

``enpire improve --cells 1`` is always agent ``builtin`` on branch ``agent-0`` driving
``cell_0``, and ``--cells N`` drives ``cell_0..cell_<N-1>``: neither runs the agent of
``cell_1`` on a second host whose launch numbers its cells on (``fleet_sim.launch.yaml
first:=1``), and a second ``enpire improve --cells 1`` on the same experiment would share the
first one's agent id (its ledger: it resumes the other host's unfinished candidates, whose
revisions are on the other host's disk). This runs what ``enpire improve --cells 1`` runs
(``enpire_evolution.cli_improve._improve``) as fleet agent ``i`` instead
(``core.fleet.fleet_agent_config``: agent ``builtin-<i>``, branch ``agent-<i>``, cell
``cell_<i>``) on the RUNNING ``cell_<i>`` (it never starts one), with the store of
``$ENPIRE_STORE_URL``, and prints one JSON object like ``enpire improve --json``.

    python tests/system/host_agent.py --cell-index 1 --experiment E --budget-min 0.75 \\
        --home DIR
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split('\n')[0])
    ap.add_argument('--cell-index', type=int, required=True)
    ap.add_argument('--experiment', required=True)
    ap.add_argument('--budget-min', type=float, required=True)
    ap.add_argument('--home', required=True)
    ap.add_argument('--task', default='push_t')
    ap.add_argument('--url', default=None, help='store URL (default $ENPIRE_STORE_URL)')
    ap.add_argument('--ready-timeout-s', type=float, default=60.0)
    args = ap.parse_args(argv)

    from enpire_agent_bridge.core.revisions import RevisionStore
    from enpire_common.paths import enpire_home, revisions_root
    from enpire_evolution.cli_commands import store_url
    from enpire_evolution.cli_improve import close_ports
    from enpire_evolution.core.agent import BuiltinAgent
    from enpire_evolution.core.agent_config import BuiltinAgentConfig
    from enpire_evolution.core.branches import PolicyWorkspace
    from enpire_evolution.core.fleet import fleet_agent_config
    from enpire_evolution.core.store import ExperimentStore
    from enpire_evolution.ros.trials_port import RosTrialsPort
    from enpire_rollout.client import CellSession

    home = enpire_home(args.home)
    config = fleet_agent_config(BuiltinAgentConfig(
        task=args.task, experiment=args.experiment, budget_min=args.budget_min), args.cell_index)
    prefix = f'[{config.branch}@{config.cell}] '

    def log(line: str) -> None:
        print(prefix + line, file=sys.stderr, flush=True)

    store = ExperimentStore(store_url(args.url, args.home))
    ports: list[RosTrialsPort] = []
    try:
        session = CellSession(home=home, cell=config.cell, start=False,
                              probe_s=args.ready_timeout_s, log=log, task=args.task)
        ports.append(RosTrialsPort(session, home=home, store=store))
        agent = BuiltinAgent(config, store, RevisionStore(revisions_root(home)),
                             PolicyWorkspace(Path(home) / 'workspace' / args.task), ports[0],
                             home=home, log=log,
                             study_name=f'{config.experiment_id}.{config.agent_id}')
        result = agent.run()
    finally:
        close_ports(ports, None, store)
    print(json.dumps({'ok': True, **result.to_dict()}, sort_keys=True), flush=True)
    return 0


if __name__ == '__main__':
    sys.exit(main())
