"""The tool-calling regime: task tools a sandboxed policy calls during ``act``.

A task's contract lists the tools it offers (``tools:`` in ``task.yaml``; the policy sees the
list as ``spec.task_info['tools']``). Inside the sandbox, ``spec.tools`` is a
:class:`ToolClient`: ``spec.tools.estimate_pose(view='top', image=obs['image_top'])`` sends
one ``tool`` frame up the host's pipe and blocks for the answer. The tool runs in the policy
host (outside the sandbox, with the task's verifier code), inside the same act round trip: its
time counts against the act's wall-clock deadline, not against the policy's CPU time. Each
call is accounted per tool (calls, milliseconds), and the per-episode totals go to
``trial.json`` (``controller``: ``tool_calls``, ``tool_ms`` and ``tool_calls.<name>`` /
``tool_ms.<name>``).

Tools (:class:`TaskTools`, from the task's verifier backend):

- ``estimate_pose(view, image)`` -> ``found``, ``pose`` (the task's ``pose_names``),
  ``confidence``: the verifier's estimate of the task object in one camera image.
- ``verifier_score(view, image)`` -> ``score``, ``success``, ``invalid``, ``confidence``,
  ``pose``: the verifier's per-view judgement of the success goal.

A tool's failure (unknown tool, bad arguments, an image the estimator cannot read) comes back
to the policy as :class:`ToolError` with the reason; the policy may catch it. Arguments and
results are JSON values and numeric arrays only (the pipe carries no pickle).
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable, Mapping, Sequence
from typing import Any

import numpy as np

# Imported now: inside the confined worker no module can be loaded later.
from enpire_agent_bridge.core import ipc
from enpire_common.errors import ConfigError

#: Tools the task contract may list.
KNOWN_TOOLS = ('estimate_pose', 'verifier_score')


class ToolError(RuntimeError):
    """A tool call failed (raised inside the policy; the message says why)."""


# --- the sandbox side ------------------------------------------------------------------------
class ToolClient:
    """``spec.tools`` inside the sandboxed worker: ``spec.tools.<name>(**kwargs)``.

    Array arguments (numpy arrays) travel as arrays; everything else as JSON. The result is a
    dict of the tool's JSON values and arrays.
    """

    def __init__(self, names: Sequence[str], send: Callable[[list[Any]], None],
                 receive: Callable[[], tuple[str, dict[str, Any], dict[str, np.ndarray]]]
                 ) -> None:
        self._names = tuple(names)
        self._send, self._receive = send, receive
        #: Set by the worker while ``act`` runs: the only time the host answers tool calls.
        self.active = False

    @property
    def names(self) -> tuple[str, ...]:
        return self._names

    def __getattr__(self, name: str) -> Callable[..., dict[str, Any]]:
        if name.startswith('_'):
            raise AttributeError(name)
        return lambda **kwargs: self.call(name, **kwargs)

    def call(self, name: str, **kwargs: Any) -> dict[str, Any]:
        if not self.active:
            raise ToolError(f'tool {name!r}: tools answer only during act(), not in '
                            'make_policy or reset')
        if name not in self._names:
            raise ToolError(f"tool {name!r} is not offered by this task (tools: "
                            f"{', '.join(self._names) or 'none'})")
        arrays = {k: v for k, v in kwargs.items() if isinstance(v, np.ndarray)}
        args = {k: v for k, v in kwargs.items() if k not in arrays}
        self._send(ipc.encode('tool', {'name': name, 'args': args}, arrays))
        kind, meta, out = self._receive()
        if kind == 'tool_error':
            raise ToolError(str(meta.get('message', 'tool failed')))
        if kind != 'tool_result':
            raise ToolError(f'unexpected {kind!r} answer to a tool call')
        return {**dict(meta.get('result') or {}), **out}


# --- the host side ---------------------------------------------------------------------------
class ToolStats:
    """Calls and milliseconds per tool since the last :meth:`take`."""

    def __init__(self) -> None:
        self.calls: dict[str, int] = {}
        self.seconds: dict[str, float] = {}

    #: Distinct names kept; further ones (a policy calling made-up names) count as 'other'.
    MAX_NAMES = 16

    def add(self, name: str, seconds: float) -> None:
        if name not in self.calls and len(self.calls) >= self.MAX_NAMES:
            name = 'other'
        self.calls[name] = self.calls.get(name, 0) + 1
        self.seconds[name] = self.seconds.get(name, 0.0) + seconds

    def take(self) -> dict[str, int]:
        """Flat integer counters (trial.json's ``controller``), then forget them."""
        if not self.calls:
            return {}
        out = {'tool_calls': sum(self.calls.values()),
               'tool_ms': int(round(sum(self.seconds.values()) * 1000))}
        for name in sorted(self.calls):
            out[f'tool_calls.{name}'] = self.calls[name]
            out[f'tool_ms.{name}'] = int(round(self.seconds[name] * 1000))
        self.calls, self.seconds = {}, {}
        return out


ToolRunner = Callable[[str, Mapping[str, Any], Mapping[str, np.ndarray]],
                      tuple[dict[str, Any], dict[str, np.ndarray]]]


class TaskTools:
    """The tools of one task, backed by its verifier backend (see the module docstring).

    Args:
        task: the task contract (TaskSpec); its ``tools`` list is what is offered.
        backend: the verifier backend id (default: the task plugin's own first backend).
    """

    def __init__(self, task: Any, backend: str = '') -> None:
        from enpire_reward.core.registry import make_verifier

        self.task = task
        offered = list(task.raw.get('tools') or [])
        unknown = [t for t in offered if t not in KNOWN_TOOLS]
        if unknown:
            raise ConfigError(f'task {task.name}: tools {unknown} unknown (known: '
                              f"{', '.join(KNOWN_TOOLS)})")
        self.names = tuple(offered)
        # Built now, not at the first call: a verifier's first construction (imports, models)
        # would not fit inside an act deadline.
        self.verifier = make_verifier(backend, task)
        self.backend = self.verifier.backend_id
        if 'estimate_pose' in self.names:
            self._warm()

    def _warm(self) -> None:
        """Let the estimator build its per-view caches now (its optional ``prepare(view)``):
        Push-T's goal marking costs ~60 ms on a first estimate, most of an 80 ms act
        deadline, and the first act of a trial must not pay for it."""
        prepare = getattr(self.verifier.estimator, 'prepare', None)
        if callable(prepare):
            for spec in self.task.views.values():
                prepare(spec)

    def __call__(self, name: str, args: Mapping[str, Any], arrays: Mapping[str, np.ndarray]
                 ) -> tuple[dict[str, Any], dict[str, np.ndarray]]:
        if name not in self.names:
            raise ToolError(f"tool {name!r} is not offered by task {self.task.name}")
        view = str(args.get('view') or '')
        if view not in self.task.views:
            raise ToolError(f"{name}: view {view!r} unknown (views: "
                            f"{', '.join(self.task.views)})")
        image = arrays.get('image')
        if image is None:
            raise ToolError(f'{name}: needs image= (an H x W x 3 uint8 array)')
        try:
            if name == 'estimate_pose':
                from enpire_reward.core.images import validate_image

                spec = self.task.views[view]
                est = self.verifier.estimator.estimate(validate_image(image, spec), spec)
                return ({'found': bool(est.found), 'confidence': float(est.confidence),
                         'pose_names': list(self.verifier.plugin.pose_names)},
                        {'pose': np.asarray(est.pose if est.found and est.pose else (),
                                            dtype=np.float64)})
            result = self.verifier.verify({view: image}, views=[view])
            verdict = result.verdicts[0]
            return ({'score': float(verdict.score), 'success': bool(verdict.success),
                     'invalid': bool(verdict.invalid), 'confidence': float(verdict.confidence),
                     'detail': verdict.detail},
                    {'pose': np.asarray(verdict.object_pose, dtype=np.float64)})
        except ToolError:
            raise
        except Exception as exc:  # noqa: BLE001 - the policy gets the reason
            raise ToolError(f'{name} on view {view}: {type(exc).__name__}: {exc}') from None


def run_tool(runner: ToolRunner | None, stats: ToolStats, name: str, args: Any,
             arrays: Mapping[str, np.ndarray]) -> tuple[str, dict[str, Any],
                                                        dict[str, np.ndarray]]:
    """One tool call for the host: ``(kind, meta, arrays)`` of the answer frame."""
    t0 = time.perf_counter()
    try:
        if runner is None:
            raise ToolError('this policy host offers no tools')
        if not isinstance(args, dict):
            raise ToolError('tool arguments must be a mapping')
        meta, out = runner(str(name), args, arrays)
        try:
            json.dumps(meta)
        except (TypeError, ValueError) as exc:
            raise ToolError(f'{name}: its result is not JSON ({exc})') from None
        return 'tool_result', {'result': meta}, out
    except ToolError as exc:
        return 'tool_error', {'message': str(exc)[:2000]}, {}
    finally:
        stats.add(str(name)[:64], time.perf_counter() - t0)


def task_tools(task: Any, backend: str = '') -> TaskTools | None:
    """The task's tools for a policy host, or None when its contract offers none."""
    return TaskTools(task, backend) if task.raw.get('tools') else None
