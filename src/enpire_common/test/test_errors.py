from __future__ import annotations

import re
from pathlib import Path

import pytest

from enpire_common import errors
from enpire_common.errors import (
    ERROR_CODES,
    EnpireError,
    ResetFailedError,
    UnknownNameError,
    error_from_code,
)

MSG = Path(__file__).resolve().parents[2] / 'enpire_interfaces' / 'msg' / 'ErrorCode.msg'


def test_error_codes_match_the_interface_constants_exactly():
    constants = dict(re.findall(r'^int32 ([A-Z_]+) = (\d+)$', MSG.read_text(), re.M))
    assert {k: int(v) for k, v in constants.items()} == ERROR_CODES


def test_codes_are_unique_and_in_their_ranges():
    codes = list(ERROR_CODES.values())
    assert len(codes) == len(set(codes))
    assert errors.ConfigError.code // 100 == 1
    assert errors.CellError.code // 100 == 2
    assert errors.BudgetExhaustedError.code // 100 == 3
    assert errors.PolicyError.code // 100 == 4
    assert errors.VerificationError.code // 100 == 5
    assert errors.RecordError.code // 100 == 6


def test_error_from_code_rebuilds_the_matching_exception_type():
    err = error_from_code(202, 'no verified start after 3 attempts')
    assert isinstance(err, ResetFailedError)
    assert str(err) == 'no verified start after 3 attempts'
    assert type(error_from_code(999, 'x')) is EnpireError


def test_unknown_name_suggests_the_closest_choice():
    with pytest.raises(UnknownNameError,
                       match=r"unknown strategy 'sim_plce'; did you mean 'sim_place'"):
        raise UnknownNameError('strategy', 'sim_plce', ['sim_place', 'manual'])
