"""The built-in agent's regime escalation: when parameter search stalls, try other regimes.

Stalled means: the last ``escalate_after`` finished candidates were all reverted, rejected
or duplicates (no keep). Then, once each and in this order, the agent builds a candidate of
another regime from the best revision and judges it like any other (same tuning seeds, same
keep/revert rule):

- ``idea:<name>``: each structural rewrite of :mod:`enpire_evolution.ideas` whose needs the
  task contract meets (else skipped with the reason). A kept idea's own ``params`` become
  the search space from then on (Proposer.retarget).
- ``tool_calling``: the best policy with its module-level ``estimate_pose(image, ...)``
  answered by the task's pose tool (the base policy's own perception stays the fallback).
  Needs the task to offer ``estimate_pose`` and the policy to have that function.
- ``bc``: behaviour cloning of the best revision's successful tuning trials (their bags, as a
  LeRobot dataset under ``$ENPIRE_HOME/datasets``), trained in the agent's process within
  its budget: nearest-neighbour cloning over the pose tool's reading (``--arch knn``) where
  the task allows it, else the image network. Needs ``bc_min_episodes`` successes.
- ``residual_rl``: ``rl_rounds`` rounds of residual RL (:mod:`core.residual_rl`) over the
  best revision, in their own experiment ``<exp>-rl-<best>`` on seeds at the top of the
  tuning range, the agent's budget checked before each round; the learned residual without
  exploration (regime ``online_rl``) is the candidate.

Every step, built or skipped, is an ``escalation`` event in the experiment store (regime,
reason, revision), and a built candidate's revision carries its regime in the idea tree.
"""

from __future__ import annotations

import re
import shutil
from dataclasses import asdict
from pathlib import Path
from typing import Any

from enpire_evolution.core.candidate_writer import (
    Candidate,
    Rejection,
    read_manifest,
    write_manifest,
)
from enpire_evolution.core.ledger import CANDIDATE_DONE
from enpire_evolution.core.store_schema import Revision
from enpire_evolution.ideas import IDEAS

ESCALATION = 'escalation'
REGIMES = ('tool_calling', 'bc', 'residual_rl')
IDEA_PREFIX = 'idea:'
#: Decisions that count as "no progress" for the stall rule.
NO_PROGRESS = ('revert', 'rejected', 'duplicate', 'inconclusive')
POSE_FN = re.compile(r'^def estimate_pose\(', re.MULTILINE)

TOOL_WRAPPER = '''"""Tool-calling variant of {name}: the task's pose tool answers estimate_pose.

Written by the built-in agent's regime escalation. policy_base.py is the base policy,
unchanged; where the tool errs or is unavailable (make_policy, reset, a blank frame) the
base policy's own estimate_pose answers.
"""

import policy_base as base

_own = base.estimate_pose
_state = {{'tools': None, 'view': {view!r}}}


def _tool_pose(image, *args, **kwargs):
    tools = _state['tools']
    if tools is not None and getattr(tools, 'active', False):
        try:
            est = tools.estimate_pose(view=_state['view'], image=image)
        except Exception:  # noqa: BLE001 - a ToolError: fall back to the base perception
            est = None
        if est is not None:
            pose = est.get('pose')
            if est.get('found') and pose is not None and len(pose) >= 3:
                return tuple(float(v) for v in pose[:3])
            return None
    return _own(image, *args, **kwargs)


base.estimate_pose = _tool_pose


def make_policy(spec):
    _state['tools'] = spec.tools
    return base.make_policy(spec)
'''


def tool_calling_variant(src: Path, dst: Path, view: str) -> None:
    """Write into ``dst`` (an empty or existing tree) the tool-calling variant of the policy
    at ``src``: ``policy.py`` becomes ``policy_base.py`` and a wrapper takes its place.

    Raises:
        ValueError: the policy has no module-level ``estimate_pose`` to answer.
    """
    code = (src / 'policy.py').read_text(encoding='utf-8')
    if not POSE_FN.search(code):
        raise ValueError('its policy.py has no module-level estimate_pose(image, ...)')
    if (src / 'policy_base.py').exists():
        raise ValueError('it is already a variant (policy_base.py exists)')
    manifest = read_manifest(src / 'policy.yaml')
    for child in list(dst.iterdir()) if dst.exists() else []:
        if child.name != '.git':
            shutil.rmtree(child) if child.is_dir() else child.unlink()
    dst.mkdir(parents=True, exist_ok=True)
    for child in src.iterdir():
        if child.name in ('.git', '__pycache__'):
            continue
        target = dst / ('policy_base.py' if child.name == 'policy.py' else child.name)
        if child.is_dir():
            shutil.copytree(child, target)
        else:
            shutil.copyfile(child, target)
    (dst / 'policy.py').write_text(TOOL_WRAPPER.format(name=manifest.get('name', 'policy'),
                                                       view=view), encoding='utf-8')


class Escalation:
    """Decides when the agent escalates and builds each regime's candidate."""

    def __init__(self, agent: Any) -> None:
        self.agent = agent

    @property
    def cfg(self) -> Any:
        return self.agent.config

    def tried(self) -> set[str]:
        return {str(e.data.get('regime')) for e in self.agent.ledger.events(ESCALATION)}

    def stalled(self) -> bool:
        k = int(self.cfg.escalate_after)
        if k <= 0:
            return False
        done = [e.data.get('decision') for e in self.agent.ledger.events(CANDIDATE_DONE)]
        recent = done[-k:]
        return len(recent) == k and all(d in NO_PROGRESS for d in recent)

    @staticmethod
    def steps() -> tuple[str, ...]:
        """The escalation steps in order: the ideas, then the other regimes."""
        return (*(IDEA_PREFIX + idea.name for idea in IDEAS), *REGIMES)

    def next(self, best: Revision | None) -> Candidate | None:
        """The next regime's candidate, or None (every regime tried, or not stalled)."""
        if best is None or not self.stalled():
            return None
        for regime in self.steps():
            if regime in self.tried():
                continue
            try:
                cand = self._build(regime, best)
            except _SkipError as why:
                self._record(regime, 'skipped', str(why), best)
                continue
            if isinstance(cand, Rejection):
                self._record(regime, 'rejected', cand.reason, best, cand.revision)
                self.agent.ledger.candidate_done(f'regime:{regime}', cand.revision, 'rejected',
                                                 0.0, {'reason': cand.reason,
                                                       'regime': regime})
                continue
            self._record(regime, 'built', '', best, cand.revision)
            return cand
        return None

    def _record(self, regime: str, outcome: str, reason: str, best: Revision,
                revision: str = '') -> None:
        self.agent.ledger.add(ESCALATION, {'regime': regime, 'outcome': outcome,
                                           'reason': reason[:500], 'from': best.id,
                                           'revision': revision})
        self.agent.say(f'escalation {regime}: {outcome}'
                       + (f' ({reason[:120]})' if reason else '')
                       + (f' -> {revision[:12]}' if revision else ''))

    def _build(self, regime: str, best: Revision) -> Candidate | Rejection:
        if regime.startswith(IDEA_PREFIX):
            return self._idea(regime[len(IDEA_PREFIX):], best)
        if regime == 'tool_calling':
            return self._tool_calling(best)
        if regime == 'bc':
            return self._bc(best)
        return self._residual_rl(best)

    def _commit(self, regime: str, best: Revision, hypothesis: str,
                extra: dict[str, Any], step: str = '') -> Candidate | Rejection:
        a = self.agent
        wt = a.writer.worktree
        manifest = read_manifest(wt / 'policy.yaml')
        manifest.update(regime=regime, hypothesis=hypothesis, parent=best.id,
                        version=int(manifest.get('version') or 0) + 1)
        write_manifest(wt / 'policy.yaml', manifest)
        sha = a.writer.commit(hypothesis)
        step = step or regime
        return a.writer.store_commit(
            f'regime:{step}', best, sha, hypothesis, regime,
            dict(manifest.get('params') or {}), ahead=False, origin=f'escalation {regime}',
            extra={'regime': regime, **extra},
            revert_note=lambda why: f'revert: {step} variant rejected: {why}')

    def _replace_worktree(self, best: Revision, src: Path) -> None:
        """The worktree (on ``best``'s branch, its git kept) holding exactly ``src``'s files."""
        a = self.agent
        a.writer.restore(best)
        wt = a.writer.worktree
        for child in wt.iterdir():
            if child.name != '.git':
                shutil.rmtree(child) if child.is_dir() else child.unlink()
        for child in src.iterdir():
            (shutil.copytree if child.is_dir() else shutil.copyfile)(child, wt / child.name)

    def _idea(self, name: str, best: Revision) -> Candidate | Rejection:
        a = self.agent
        idea = next((i for i in IDEAS if i.name == name), None)
        if idea is None:
            raise _SkipError(f'no idea named {name}')
        why = idea.unmet(a.task.raw)
        if why:
            raise _SkipError(f'{name} does not apply to {a.task.name}: {why}')
        a.writer.restore(best)
        wt = a.writer.worktree
        manifest = idea.write(wt, read_manifest(wt / 'policy.yaml'))
        write_manifest(wt / 'policy.yaml', manifest)
        return self._commit(idea.regime, best, idea.hypothesis, {'idea': name},
                            step=IDEA_PREFIX + name)

    def _tool_calling(self, best: Revision) -> Candidate | Rejection:
        a = self.agent
        if 'estimate_pose' not in (a.task.raw.get('tools') or []):
            raise _SkipError(f'task {a.task.name} offers no estimate_pose tool')
        src = a.writer.revision_dir(best.id)
        views = a.task.section('success').get('views') or list(a.task.views)
        a.writer.restore(best)
        try:
            tool_calling_variant(src, a.writer.worktree, str(views[0]))
        except ValueError as exc:
            a.writer.restore(best)
            raise _SkipError(str(exc)) from None
        return self._commit('tool_calling', best,
                            f'The best revision {best.id[:12]} with its estimate_pose answered '
                            "by the task's pose tool (the verifier's estimate) sees the object "
                            'better and so acts better.', {})

    def _bc(self, best: Revision) -> Candidate | Rejection:
        from enpire_agent_bridge.learning.bc import BCConfig, knn_layout, train_bc
        from enpire_common.errors import ConfigError, EnpireError
        from enpire_rollout.core.lerobot_export import LeRobotExporter

        a = self.agent
        # A record_dir is absolute, or relative to ENPIRE_HOME.
        dirs = [a.home / t.record_dir for t in a.ledger.tuning(best.id).values()
                if t.success and t.record_dir]
        wins = [d for d in dirs if d.is_dir()]
        if len(wins) < self.cfg.bc_min_episodes:
            raise _SkipError(f'{len(wins)} recorded successes of {best.id[:12]}; BC needs '
                        f'{self.cfg.bc_min_episodes}')
        root = a.home / 'datasets' / f'{a.exp}-{best.id[:12]}'
        out = a.home / 'bc' / f'{a.exp}-{best.id[:12]}'
        try:
            export = LeRobotExporter(root, task=a.task.name, fps=a.task.action.rate_hz,
                                     note=a.say).export(sorted(wins))
            if export.episodes < self.cfg.bc_min_episodes:
                raise _SkipError(f'{export.episodes} episodes exported; BC needs '
                            f'{self.cfg.bc_min_episodes}')
            a.budget.check()
            # Nearest-neighbour cloning over the pose tool's reading where the task allows
            # it (it clones planar pushing far better than a network from 50 episodes);
            # else the image network.
            try:
                knn_layout(a.task)
                arch = 'knn'
            except ConfigError:
                arch = 'mlp'
            cfg = BCConfig(arch=arch, epochs=self.cfg.bc_epochs)
            result = train_bc(root, out, task_name=a.task.name, config=cfg, progress=a.say,
                              force=True)
        except EnpireError as exc:
            raise _SkipError(f'BC failed: {exc}') from None
        self._replace_worktree(best, out)
        return self._commit('bc', best,
                            f'Cloning the {len(wins)} successful tuning episodes of '
                            f'{best.id[:12]} (BC, {cfg.arch}'
                            + (f', {cfg.epochs} epochs, final loss {result.final_loss:.3f}'
                               if result.epochs else '')
                            + ') keeps what made them succeed.',
                            {'bc': {'dataset': str(root), 'episodes': export.episodes,
                                    'config': asdict(cfg)}})


    def _residual_rl(self, best: Revision) -> Candidate | Rejection:
        """Residual RL rounds on the best revision (their own experiment, seeds at the top of
        the tuning range), then the learned residual without exploration as the candidate."""
        from enpire_common.errors import ConfigError
        from enpire_evolution.core.residual_rl import (
            ResidualConfig,
            ResidualRL,
            residual_spec,
            write_actor,
        )

        a = self.agent
        src = a.writer.revision_dir(best.id)
        if (src / 'policy_base.py').exists():
            raise _SkipError(f'{best.id[:12]} already wraps a base policy (policy_base.py); '
                             'the residual needs a plain one')
        cfg = ResidualConfig(rounds=self.cfg.rl_rounds, episodes=self.cfg.rl_episodes)
        n = cfg.rounds * cfg.episodes
        lo, hi = a.task.tuning_seeds
        if hi - lo + 1 < n + a.config.stages[-1]:
            raise _SkipError(f'the tuning range {lo}-{hi} holds no {n} seeds beside the '
                             "search's")
        prefix = f'{a.exp}-rl-{best.id[:12]}'
        # A run cut off before its candidate was built starts afresh under a new name.
        tries = sum(1 for e in a.store.experiments() if e.id.startswith(prefix))
        exp = prefix + (f'-{tries + 1}' if tries else '')
        budget = a.budget

        class Budgeted:
            """The agent's trials port, its budget checked before every round."""

            def run(self, **kwargs: Any) -> Any:
                budget.check()
                return a.trials.run(**kwargs)

        a.say(f'residual RL on {best.id[:12]}: {cfg.rounds} rounds of {cfg.episodes} trials '
              f'(experiment {exp})')
        try:
            rl = ResidualRL(a.task, src, cfg, store=a.store, revisions=a.revisions,
                            trials=Budgeted(), experiment=exp, home=a.home,
                            seed_start=hi - n + 1, log=a.say, wall=a.wall)
            rounds = rl.run()
        except ConfigError as exc:
            raise _SkipError(f'residual RL failed: {exc}') from None
        finally:
            if a.store.experiment(exp).status == 'running':
                a.store.set_experiment_status(exp, 'stopped')
        out = a.home / 'rl' / exp / 'final'
        curve = [f'{r.successes}/{r.n}' for r in rounds]
        hypothesis = (f'The residual learned over {best.id[:12]} in {cfg.rounds} rounds of '
                      f'{cfg.episodes} trials (ES; round successes {", ".join(curve)}), '
                      'without exploration, corrects its actions where they fail.')
        try:
            write_actor(src, out, residual_spec(rl.layout, rl.weights, cfg, cfg.rounds,
                                                explore=False),
                        parent=best.id, hypothesis=hypothesis)
        except ConfigError as exc:
            raise _SkipError(str(exc)) from None
        self._replace_worktree(best, out)
        return self._commit('online_rl', best, hypothesis,
                            {'residual_rl': {'experiment': exp, 'rounds': curve,
                                             'config': asdict(cfg)}},
                            step='residual_rl')


class _SkipError(Exception):
    """A regime cannot be tried here (the reason is recorded)."""
