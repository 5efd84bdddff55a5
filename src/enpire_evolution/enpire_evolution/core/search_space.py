"""The built-in agent's search space, derived from a seed policy's ``params:``.

Rules (one row per kind of default value; ``x`` is the seed policy's value):

=====================  =====================================================================
default value           searched as
=====================  =====================================================================
float ``x > 0``         ``[x / 2, 2 x]``, log scale (a multiplicative range: a gain of 0.3
                        and a distance of 60 px both get "half to double")
float ``x < 0``         ``[2 x, x / 2]``, uniform (optuna's log scale needs x > 0)
int ``n >= 1``          ``[max(1, floor(n / 2)), max(n + 1, ceil(2 n))]``, uniform integers
bool                    categorical ``{False, True}`` (a structural switch)
str, 0, 0.0, lists,     held fixed (no scale to search around; give an explicit override)
nested mappings
=====================  =====================================================================

``overrides`` replace a row per name: ``(low, high)`` (float or int by the default's type),
``{'choices': [...]}`` (categorical), or ``None`` to hold the param fixed. Sampled floats are
rounded to ``sig_digits`` significant digits before they are written to ``policy.yaml``, so
revisions stay readable and two proposals that round alike are the same revision.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from optuna.distributions import (
    BaseDistribution,
    CategoricalDistribution,
    FloatDistribution,
    IntDistribution,
)

from enpire_common.errors import ConfigError


def round_sig(x: float, digits: int) -> float:
    """``x`` rounded to ``digits`` significant digits (0.0 stays 0.0)."""
    if x == 0 or not math.isfinite(x):
        return float(x)
    return float(round(x, digits - 1 - int(math.floor(math.log10(abs(x))))))


@dataclass(frozen=True)
class SearchSpace:
    """Optuna distributions per searched param, plus the fixed ones.

    Attributes:
        distributions: param name -> optuna distribution (sorted by name).
        fixed: params copied unchanged from the seed policy.
        defaults: the seed policy's params (all of them).
        sig_digits: significant digits kept of sampled floats.
    """

    distributions: Mapping[str, BaseDistribution]
    fixed: Mapping[str, Any]
    defaults: Mapping[str, Any]
    sig_digits: int = 3

    def materialise(self, sampled: Mapping[str, Any]) -> dict[str, Any]:
        """The full ``params:`` of a candidate: defaults, then ``sampled`` (floats rounded),
        in the seed policy's key order."""
        out: dict[str, Any] = {}
        for key, default in self.defaults.items():
            if key in self.distributions and key in sampled:
                value = sampled[key]
                if isinstance(self.distributions[key], FloatDistribution):
                    value = round_sig(float(value), self.sig_digits)
                elif isinstance(self.distributions[key], IntDistribution):
                    value = int(value)
                out[key] = value
            else:
                out[key] = default
        return out

    def searched_defaults(self) -> dict[str, Any]:
        """The seed values of the searched params (enqueued as the study's first trial)."""
        return {k: self.defaults[k] for k in self.distributions}

    def table(self) -> list[dict[str, Any]]:
        """One row per param: name, default, kind and range/choices (for logs and reports)."""
        rows = []
        for key, default in self.defaults.items():
            dist = self.distributions.get(key)
            if dist is None:
                rows.append({'name': key, 'default': default, 'kind': 'fixed'})
            elif isinstance(dist, CategoricalDistribution):
                rows.append({'name': key, 'default': default, 'kind': 'categorical',
                             'choices': list(dist.choices)})
            else:
                rows.append({'name': key, 'default': default,
                             'kind': 'int' if isinstance(dist, IntDistribution) else 'float',
                             'low': dist.low, 'high': dist.high,
                             'log': bool(getattr(dist, 'log', False))})
        return rows


def _distribution(name: str, default: Any, override: Any) -> BaseDistribution | None:
    if override is not _UNSET:
        if override is None:
            return None
        if isinstance(override, Sequence) and not isinstance(override, str) \
                and len(override) == 2 and all(isinstance(v, (int, float))
                                               and not isinstance(v, bool) for v in override):
            low, high = override
            if not low < high:
                raise ConfigError(f"search space override of '{name}'={list(override)!r} is "
                                  'invalid: low must be < high')
            if isinstance(default, int) and not isinstance(default, bool):
                return IntDistribution(int(low), int(high))
            return FloatDistribution(float(low), float(high))
        if isinstance(override, Mapping) and set(override) == {'choices'} \
                and isinstance(override['choices'], Sequence) and override['choices']:
            return CategoricalDistribution(list(override['choices']))
        raise ConfigError(f"search space override of '{name}'={override!r} is invalid: give "
                          "[low, high], {'choices': [...]}, or null to hold it fixed")
    if isinstance(default, bool):
        return CategoricalDistribution([False, True])
    if isinstance(default, int):
        if default < 1:
            return None
        return IntDistribution(max(1, default // 2), max(default + 1, math.ceil(2 * default)))
    if isinstance(default, float) and math.isfinite(default) and default != 0.0:
        if default > 0:
            return FloatDistribution(default / 2, default * 2, log=True)
        # Negative values: optuna's log scale needs positive bounds, so search uniformly.
        return FloatDistribution(default * 2, default / 2)
    return None


_UNSET = object()


def derive_search_space(params: Mapping[str, Any],
                        overrides: Mapping[str, Any] | None = None, *,
                        sig_digits: int = 3) -> SearchSpace:
    """The search space of a seed policy's ``params:`` (rules in the module docstring).

    Raises:
        ConfigError: an override names an unknown param or has a bad shape.
    """
    overrides = dict(overrides or {})
    unknown = sorted(set(overrides) - set(params))
    if unknown:
        raise ConfigError(f"search space overrides name unknown param(s) {unknown}; the seed "
                          f"policy's params are {sorted(params)}")
    dists: dict[str, BaseDistribution] = {}
    fixed: dict[str, Any] = {}
    for key in sorted(params):
        dist = _distribution(key, params[key], overrides.get(key, _UNSET))
        if dist is None:
            fixed[key] = params[key]
        else:
            dists[key] = dist
    if not dists:
        raise ConfigError('the seed policy exposes no searchable params (numbers or bools '
                          "under 'params:' in policy.yaml); add some or give overrides")
    return SearchSpace(dists, fixed, dict(params), sig_digits)
