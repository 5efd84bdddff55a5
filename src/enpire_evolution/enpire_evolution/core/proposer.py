"""The built-in agent's proposer: optuna's TPE over the seed policy's params, and the hypothesis.

The search space comes from the seed policy (:mod:`core.search_space`). The study lives in
``ENPIRE_HOME/optuna/<study>.journal`` (or an RDB URL); its first trial is the seed policy
itself (the baseline every candidate must beat). The sampler is seeded
(``config.sampler_seed``), so a run proposes the same params for the same trial outcomes.

Resume: an optuna trial asked but never started as a candidate is handed out again, with its
params; one whose candidate is done in the store but was never told is told now.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from enpire_evolution.core.agent_config import BuiltinAgentConfig
from enpire_evolution.core.ledger import CANDIDATE_DONE, CANDIDATE_STARTED, Ledger
from enpire_evolution.core.recipes import param_diff
from enpire_evolution.core.search_space import SearchSpace, derive_search_space
from enpire_evolution.core.store import Revision


class Proposer:
    """Asks optuna for params, tells it results, and says why each proposal is worth a try.

    Args:
        config: the agent's config (sampler, space overrides, study storage).
        ledger: the agent's view of the store (done candidates, the best's trials).
        home: runtime directory (the optuna journal lives under ``optuna/``).
        study_name: the optuna study (one per agent: a fleet's agents do not share a sampler).
    """

    def __init__(self, config: BuiltinAgentConfig, ledger: Ledger, home: Path,
                 study_name: str) -> None:
        self.config = config
        self.ledger = ledger
        self.home = home
        self.study_name = study_name
        self.space: SearchSpace | None = None
        self.study: Any = None

    def open(self, seed_params: Mapping[str, Any]) -> None:
        """Derive the search space from the seed policy's params and open (or create) the
        study, its first trial the seed's values."""
        cfg = self.config
        self.space = derive_search_space(seed_params, cfg.search_overrides,
                                         sig_digits=cfg.sig_digits)
        self.study = self._open_study(self.space)

    def retarget(self, params: Mapping[str, Any]) -> bool:
        """Search around ``params`` from now on when their names differ from the space's (a
        kept structural rewrite, whose params are its own); returns whether it did.

        The study stays (trial numbers keep counting; TPE models each param from the trials
        that have it). Proposals asked in the old space but never started are failed, and
        the rewrite's own values are enqueued first, as the seed's were.
        """
        from optuna.trial import TrialState

        assert self.space is not None and self.study is not None, 'open() first'
        if set(params) == set(self.space.defaults):
            return False
        overrides = {k: v for k, v in (self.config.search_overrides or {}).items()
                     if k in params}
        self.space = derive_search_space(params, overrides, sig_digits=self.config.sig_digits)
        started = {e.data['optuna_trial'] for e in self.ledger.events(CANDIDATE_STARTED)}
        for ft in self.study.get_trials(deepcopy=False, states=(TrialState.RUNNING,)):
            if ft.number not in started:
                self.study.tell(ft.number, state=TrialState.FAIL, skip_if_finished=True)
        self.study.enqueue_trial(self.space.searched_defaults(), skip_if_exists=True)
        return True

    def _open_study(self, space: SearchSpace) -> Any:
        import optuna

        optuna.logging.set_verbosity(optuna.logging.WARNING)
        if self.config.study_url:
            storage: Any = optuna.storages.RDBStorage(self.config.study_url)
        else:
            from optuna.storages.journal import JournalFileBackend

            path = self.home / 'optuna' / f'{self.study_name}.journal'
            path.parent.mkdir(parents=True, exist_ok=True)
            storage = optuna.storages.JournalStorage(JournalFileBackend(str(path)))
        sampler = optuna.samplers.TPESampler(seed=self.config.sampler_seed,
                                             n_startup_trials=self.config.n_startup_trials)
        study = optuna.create_study(study_name=self.study_name, storage=storage, sampler=sampler,
                                    direction='maximize', load_if_exists=True)
        if not study.get_trials(deepcopy=False):
            # The seed policy is the first trial: the baseline every candidate must beat.
            study.enqueue_trial(space.searched_defaults(), skip_if_exists=True)
        return study

    def next(self) -> tuple[int, dict[str, Any]]:
        """An optuna trial to work on: one asked earlier but never started, else a new one;
        returns its number and sampled values."""
        from optuna.trial import TrialState

        assert self.space is not None, 'open() first'
        done = {e.data['optuna_trial']: e.data for e in self.ledger.events(CANDIDATE_DONE)}
        started = {e.data['optuna_trial'] for e in self.ledger.events(CANDIDATE_STARTED)}
        for ft in self.study.get_trials(deepcopy=False, states=(TrialState.RUNNING,)):
            if ft.number in done:  # killed between the done event and tell
                self.study.tell(ft.number, float(done[ft.number].get('value', 0.0)),
                                skip_if_finished=True)
                continue
            if ft.number in started:  # the candidate on the cell right now (pipelining)
                continue
            return ft.number, dict(ft.params)
        trial = self.study.ask(dict(self.space.distributions))
        return trial.number, dict(trial.params)

    def params(self, sampled: Mapping[str, Any], best: Revision | None) -> dict[str, Any]:
        """The full ``params:`` of a proposal (the seed's own for the baseline)."""
        assert self.space is not None, 'open() first'
        return dict(self.space.defaults) if best is None else self.space.materialise(sampled)

    def tell(self, number: int | str, value: float) -> None:
        """Report a candidate's objective (a borrowed idea, numbered by a string, has no
        optuna trial)."""
        if isinstance(number, int):
            self.study.tell(number, value, skip_if_finished=True)

    def n_trials(self) -> int:
        return len(self.study.get_trials(deepcopy=False)) if self.study else 0

    def hypothesis(self, number: int, best: Revision, params: Mapping[str, Any],
                   tally: tuple[int, int]) -> str:
        """What trial ``number`` changes against ``best`` and why optuna proposes it;
        ``tally`` is the best's (successes, tuning trials) when the proposal was made."""
        diff = param_diff(best.params, params)
        diff.sort(key=lambda d: -abs(_log_ratio(d[1], d[2])))
        shown = [f'{k} {_fmt(old)} -> {_fmt(new)}' for k, old, new in diff[:4]]
        more = f' and {len(diff) - 4} more' if len(diff) > 4 else ''
        b_ok, b_n = tally
        finished = len(self.ledger.events(CANDIDATE_DONE))
        why = (f"optuna's TPE model of {finished} finished candidate(s) expects a higher "
               'tuning success rate here' if number >= self.config.n_startup_trials else
               f'random start-up sample {number}/{self.config.n_startup_trials - 1} (TPE '
               'needs a spread of results before it models the space)')
        return (f"trial {number}: {', '.join(shown) or 'no change'}{more}. Why: {why}, "
                f'against the best {best.id[:12]} ({b_ok}/{b_n} tuning successes).')


def _fmt(x: Any) -> str:
    return f'{x:g}' if isinstance(x, float) else repr(x)


def _log_ratio(old: Any, new: Any) -> float:
    try:
        if float(old) > 0 and float(new) > 0:
            return math.log(float(new) / float(old))
    except (TypeError, ValueError):
        pass
    return 1.0 if old != new else 0.0
