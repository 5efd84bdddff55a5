from __future__ import annotations

from dataclasses import dataclass, field

import pytest

from enpire_common.config import from_parameters, load_config, require, to_parameters
from enpire_common.errors import ConfigError, UnknownNameError


@dataclass(frozen=True)
class BudgetConfig:
    max_wall_time_s: float = 600.0
    max_consecutive_faults: int = 3

    def __post_init__(self) -> None:
        require(self.max_wall_time_s > 0, 'budget.max_wall_time_s', self.max_wall_time_s,
                'must be > 0 seconds')


@dataclass(frozen=True)
class RunConfig:
    name: str = 'default'
    seeds: tuple[int, ...] = (1, 2)
    budget: BudgetConfig = field(default_factory=BudgetConfig)


def test_round_trip_through_flat_dotted_parameters():
    cfg = RunConfig(name='x', seeds=(4,), budget=BudgetConfig(12.5, 1))
    params = to_parameters(cfg)
    assert params == {'name': 'x', 'seeds': [4], 'budget.max_wall_time_s': 12.5,
                      'budget.max_consecutive_faults': 1}
    assert from_parameters(RunConfig, params) == cfg


def test_ints_are_accepted_for_float_fields_but_strings_are_not():
    assert from_parameters(RunConfig, {'budget.max_wall_time_s': 5}).budget.max_wall_time_s == 5.0
    with pytest.raises(ConfigError, match=r"'budget.max_wall_time_s' must be a number"):
        from_parameters(RunConfig, {'budget.max_wall_time_s': 'fast'})


def test_validation_names_field_value_and_rule():
    with pytest.raises(ConfigError, match=r'budget.max_wall_time_s=-1.0 is invalid: must be > 0'):
        from_parameters(RunConfig, {'budget.max_wall_time_s': -1.0})


def test_unknown_parameter_gets_a_did_you_mean():
    with pytest.raises(UnknownNameError, match=r"did you mean 'budget.max_wall_time_s'"):
        from_parameters(RunConfig, {'budget.max_wall_time': 3.0})


def test_load_config_reads_ros_parameters_blocks(tmp_path):
    f = tmp_path / 'p.yaml'
    f.write_text('/**:\n  ros__parameters:\n    name: shared\n'
                 'cell_0/runner:\n  ros__parameters:\n'
                 '    budget:\n      max_consecutive_faults: 7\n')
    cfg = load_config(RunConfig, f, node='cell_0/runner')
    assert cfg.name == 'shared' and cfg.budget.max_consecutive_faults == 7


def test_load_config_reports_the_line_of_a_yaml_error(tmp_path):
    f = tmp_path / 'bad.yaml'
    f.write_text('a: 1\nb: [unclosed\n')
    with pytest.raises(ConfigError, match=r'bad.yaml:\d+: invalid YAML'):
        load_config(RunConfig, f)
