"""The embedded launcher: runs ros2 launch YAML files where ``ros2 launch`` is absent.

``parse`` and ``substitutions`` are pure (read + validate into a :class:`LaunchPlan`);
``supervisor`` runs the plan as supervised OS processes; ``runner`` picks embedded vs
``ros2 launch`` and is what ``enpire up`` calls.
"""

from __future__ import annotations

from enpire_bringup.launcher.parse import (
    AmentIndex,
    InlineParams,
    LaunchParser,
    LaunchPlan,
    NodeSpec,
    PackageIndex,
    ParamFile,
    load_plan,
    parse_cli_args,
)

__all__ = ['AmentIndex', 'InlineParams', 'LaunchParser', 'LaunchPlan', 'NodeSpec',
           'PackageIndex', 'ParamFile', 'load_plan', 'parse_cli_args']
