"""``enpire up``: validate a launch file, then run it with ros2 launch or the embedded launcher.

Where ``launch`` and ``ros2launch`` are importable and ``ros2`` is on PATH (a real ROS
install), the same file goes to ``ros2 launch`` so behaviour matches upstream exactly;
``embedded=True`` forces ours.
"""

from __future__ import annotations

import importlib.util
import os
import shlex
import shutil
import sys
from collections.abc import Callable, Mapping, Sequence
from typing import IO

from enpire_bringup.launcher.parse import LaunchPlan, PackageIndex, load_plan, parse_cli_args

EMBEDDED, ROS2_LAUNCH = 'embedded', 'ros2 launch'


def choose_runner(embedded: bool, find_spec: Callable[[str], object] | None = None,
                  which: Callable[[str], str | None] | None = None) -> str:
    """``'ros2 launch'`` where upstream launch is installed and not overridden, else embedded."""
    if embedded:
        return EMBEDDED
    find_spec = find_spec or importlib.util.find_spec
    which = which or shutil.which
    try:
        specs = [find_spec(m) for m in ('launch', 'ros2launch')]
    except (ImportError, ValueError):
        specs = [None]
    # The workspace's own launch/ folder imports as a namespace package (origin None): that is
    # not the launch library.
    present = all(s is not None and getattr(s, 'origin', '') not in (None, 'namespace')
                  for s in specs)
    return ROS2_LAUNCH if present and which('ros2') else EMBEDDED


def ros2_launch_argv(file: str, args: Sequence[str]) -> list[str]:
    """The argv that defers to upstream: ``ros2 launch <file> name:=value ...``."""
    return ['ros2', 'launch', file, *args]


def describe(plan: LaunchPlan) -> str:
    """Human-readable dump of the resolved plan (``enpire up --print``)."""
    lines = [f'# {plan.file}']
    for decl in plan.args:
        value = plan.configs.get(decl.name, decl.default)
        lines.append(f'# arg {decl.name}={value}  {decl.description}'.rstrip())
    for n in plan.nodes:
        flags = [f'output={n.output}']
        if n.respawn:
            flags.append(f'respawn_delay={n.respawn_delay_s}')
        if n.required:
            flags.append('required')
        cmd = n.command(lambda block: '<generated:' + ','.join(k for k, _ in block.values)
                        + '>')
        lines.append(f'{n.label}: {" ".join(flags)}\n  {shlex.join(cmd)}')
    return '\n'.join(lines)


def names_taken(plan: LaunchPlan) -> list[str]:
    """One refusal message per node of ``plan`` whose name a live process on this host holds.

    Its nodes inherit this process's environment (plus their own ``env``), so that is where
    their ROS domain comes from.
    """
    from enpire_common.claims import NameTakenError, claimed_by

    base = os.environ
    taken = []
    for node in plan.nodes:
        domain = dict(node.env).get('ROS_DOMAIN_ID', base.get('ROS_DOMAIN_ID', '0')).strip()
        pid = claimed_by(node.fqn, domain or '0')
        if pid is not None:
            taken.append(str(NameTakenError(node.fqn, pid or None, domain or '0')))
    return taken


def up(file: str, args: Sequence[str], *, embedded: bool = False, print_only: bool = False,
       out: IO[str] | None = None, index: PackageIndex | None = None,
       env: Mapping[str, str] | None = None, log_dir: str | None = None,
       exec_fn: Callable[[str, list[str]], object] = os.execvp) -> int:
    """Run ``file`` with ``name:=value`` args; returns the exit code.

    Raises:
        LaunchError: the file is invalid (before anything starts).
    """
    out = out or sys.stdout
    if not print_only and choose_runner(embedded) == ROS2_LAUNCH:
        argv = ros2_launch_argv(file, args)
        print(f'[enpire] deferring to: {shlex.join(argv)} (--embedded to use ours)', file=out,
              flush=True)
        exec_fn(argv[0], argv)
        return 0  # only reached with a fake exec_fn
    plan = load_plan(file, parse_cli_args(args), index=index, env=env)
    if print_only:
        print(describe(plan), file=out)
        return 0
    from enpire_bringup.launcher.supervisor import Supervisor
    from enpire_common.dds import remove_stale_shm_segments

    taken = names_taken(plan)
    if taken:
        # Refuse before anything starts: a half-started second cell would only race the
        # running one's nodes for their names, and which node noticed first would decide
        # the message.
        for message in taken:
            print(f'[enpire] {message}', file=out, flush=True)
        print(f'[enpire] refusing to start {file}: {len(taken)} of its node name(s) are taken',
              file=out, flush=True)
        return 1

    # Every SIGKILLed or crashed DDS process of earlier runs left its shared-memory segment
    # resident in RAM; a cell start is the natural moment to give it back.
    removed, freed = remove_stale_shm_segments()
    if removed:
        print(f'[enpire] removed {removed} stale Fast DDS shared-memory segments of dead '
              f'processes ({freed / 2**20:.0f} MiB)', file=out, flush=True)
    return Supervisor(plan, out=out, log_dir=log_dir).run()
