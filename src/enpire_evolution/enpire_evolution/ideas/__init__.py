"""The built-in agent's ideas: structural rewrites of a policy, not just new numbers.

An LLM agent writes a new controller when tuning stalls; the built-in agent, which has no
LLM, carries a small library of control ideas instead. Each idea is a policy written against
the task contract only (its ``parts``, ``goal_pose``, action and tools), so it applies to
every task whose contract offers what it needs, and says why not otherwise. The agent tries
an applicable idea once when its parameter search stalls (core.escalation), judges it like
any candidate, and, if it is kept, searches the idea's own ``params`` from then on
(Proposer.retarget). The seed policy is never edited.

- ``planar_push`` (planar_push_policy.py): a round pusher moves one rigid object on a table
  to a goal pose. A free-body contact model scores each reachable contact and push
  direction by how well the twist it produces points towards the goal; the object's pose
  comes from the task's ``estimate_pose`` tool. Needs ``parts.block.outline_px``,
  ``parts.pusher.radius_px``, a 3-number ``goal_pose``, a 2-number position action, an
  ``agent_pos`` observation and the ``estimate_pose`` tool.
"""

from __future__ import annotations

import shutil
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent


@dataclass(frozen=True)
class Idea:
    """One structural rewrite the built-in agent may try.

    Attributes:
        name: its id (the escalation step is ``idea:<name>``).
        regime: the manifest regime of the policy it writes.
        source: the policy module in this package, copied as ``policy.py``.
        hypothesis: why it should beat a stalled parameter search.
        unmet: ``unmet(task contract mapping)`` -> why the idea does not apply ('' = it does).
    """

    name: str
    regime: str
    source: str
    hypothesis: str
    unmet: Callable[[Mapping[str, Any]], str]

    def defaults(self) -> dict[str, Any]:
        """The policy's own ``DEFAULTS`` (its ``params`` before any search)."""
        import importlib

        module = importlib.import_module(f'{__name__}.{Path(self.source).stem}')
        return dict(module.DEFAULTS)

    def write(self, dst: Path, base_manifest: Mapping[str, Any]) -> dict[str, Any]:
        """Replace the policy files in ``dst`` (its ``.git`` kept) with this idea's; returns
        the manifest to write (version, parent and hypothesis are the caller's)."""
        for child in list(dst.iterdir()) if dst.exists() else []:
            if child.name != '.git':
                shutil.rmtree(child) if child.is_dir() else child.unlink()
        dst.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(HERE / self.source, dst / 'policy.py')
        return {'name': self.name, 'task': base_manifest.get('task', ''),
                'version': int(base_manifest.get('version') or 0), 'regime': self.regime,
                'hypothesis': self.hypothesis, 'parent': '', 'params': self.defaults()}


def _numbers(value: Any, n: int) -> bool:
    try:
        return len(value) == n and all(float(v) == float(v) for v in value)
    except TypeError:
        return False


def _planar_push_unmet(task: Mapping[str, Any]) -> str:
    parts = task.get('parts') or {}
    block = parts.get('block') if isinstance(parts, Mapping) else None
    pusher = parts.get('pusher') if isinstance(parts, Mapping) else None
    outline = block.get('outline_px') if isinstance(block, Mapping) else None
    if 'estimate_pose' not in (task.get('tools') or []):
        return 'the task offers no estimate_pose tool'
    if not (isinstance(outline, list) and len(outline) >= 3
            and all(_numbers(p, 2) for p in outline)):
        return 'the contract has no parts.block.outline_px (a polygon of [x, y] points)'
    if not (isinstance(pusher, Mapping) and float(pusher.get('radius_px') or 0) > 0):
        return 'the contract has no parts.pusher.radius_px'
    if not _numbers(task.get('goal_pose'), 3):
        return 'the goal_pose is not 3 numbers (x, y, theta)'
    action = task.get('action') or {}
    if list(action.get('shape') or []) != [2]:
        return f"the action is not a 2-d position (shape {action.get('shape')})"
    obs = task.get('observation') or {}
    if list((obs.get('agent_pos') or {}).get('shape') or []) != [2]:
        return 'the observation has no 2-d agent_pos'
    views = (task.get('success') or {}).get('views') or list(task.get('views') or {})
    if not views or f'image_{views[0]}' not in obs:
        return 'the observation has no image of the success view'
    return ''


PLANAR_PUSH = Idea(
    name='planar_push', regime='tool_calling', source='planar_push_policy.py',
    hypothesis=('A controller built on a push model (a free body pushed at one contact '
                'moves with the twist (J, r x J / I)) picks the contact and direction whose '
                'twist points towards the goal pose, with the pose from the task tool, and so '
                'solves starts that tuning the seed heuristic cannot.'),
    unmet=_planar_push_unmet)

IDEAS: tuple[Idea, ...] = (PLANAR_PUSH,)
