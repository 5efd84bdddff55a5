"""$(eval): launch's PythonExpression, restricted to counting (no names, calls, attributes)."""

from __future__ import annotations

import pytest

from enpire_bringup.launcher.substitutions import (
    SubstitutionContext,
    SubstitutionError,
    substitute,
)

CTX = SubstitutionContext(configs={'cells': '3'}, env={}, file='/x.launch.yaml',
                          package_prefix=lambda p: p)


@pytest.mark.parametrize('text, want', [
    ("$(eval '$(var cells) - 1')", '2'),
    ("$(eval '$(var cells) > 1')", 'True'),
    ("$(eval '1 <= $(var cells) <= 2')", 'False'),
    ("$(eval '($(var cells) + 1) * 2 // 3')", '2'),
    ("$(eval 'not $(var cells) == 3 or 2 % 2')", '0'),
])
def test_eval_counts(text: str, want: str) -> None:
    assert substitute(text, CTX) == want


@pytest.mark.parametrize('expr', ["__import__('os')", 'open(1)', '(1).real', 'x + 1', '1 +'])
def test_eval_refuses_anything_but_arithmetic(expr: str) -> None:
    with pytest.raises(SubstitutionError, match='eval'):
        substitute(f'$(eval "{expr}")', CTX)
