"""Confinement detection and the refusal to run policy code unconfined."""

from __future__ import annotations

import pytest

from enpire_common.confinement import detect, require_confinement, unconfined_allowed
from enpire_common.errors import UnconfinedError


def test_running_unconfined_is_refused_unless_allowed(monkeypatch):
    monkeypatch.delenv('ENPIRE_ALLOW_UNCONFINED', raising=False)
    with pytest.raises(UnconfinedError, match='--allow-unconfined'):
        require_confinement('none')
    assert require_confinement('none', allow_unconfined=True).mode == 'none'
    monkeypatch.setenv('ENPIRE_ALLOW_UNCONFINED', '1')
    assert unconfined_allowed(False)
    assert require_confinement('none').detail == 'disabled by configuration'


def test_an_unknown_mode_is_a_value_error():
    with pytest.raises(ValueError, match="sandbox.confinement='chroot' is invalid"):
        detect('chroot')


def test_the_agent_bridge_reexports_the_same_detection():
    from enpire_agent_bridge.core import confinement

    assert confinement.detect is detect
