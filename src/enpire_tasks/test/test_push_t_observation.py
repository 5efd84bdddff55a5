"""Push-T's observation builder (from the contract's ``source`` fields) and hold action."""

from __future__ import annotations

import numpy as np
import pytest

from enpire_common.errors import CellError
from enpire_tasks import registry
from enpire_tasks.observation import camera_sources, check_observation, source_view
from enpire_tasks.plugin import CellReading

TOPIC = 'camera/top/image_raw'


@pytest.fixture(scope='module')
def plugin():
    return registry.get('push_t')


def _reading(**kw):
    image = np.arange(480 * 480 * 3, dtype=np.uint8).reshape(480, 480, 3)
    values = dict(images={TOPIC: image}, state={'x': 10.5, 'y': 600.0, 'vx': -3.0, 'vy': 4.0},
                  tick=7, rollout={'retry_index': 2})
    values.update(kw)
    return CellReading(**values)


def test_the_observation_is_what_the_hosts_built_by_hand(task, plugin):
    reading = _reading()
    obs = plugin.build_observation(task, reading)
    # What policy_host / the bridge built from camera/top/image_raw and the state vector.
    assert list(obs) == ['image_top', 'agent_pos', 'agent_vel', 'step', 'retry_index']
    assert obs['image_top'] is reading.images[TOPIC]  # the frame as is, no copy
    np.testing.assert_array_equal(obs['agent_pos'], np.array([10.5, 600.0]))
    assert obs['agent_pos'].dtype == np.float64 and obs['agent_vel'].dtype == np.float64
    np.testing.assert_array_equal(obs['agent_vel'], np.array([-3.0, 4.0]))
    assert obs['step'] == 7 and type(obs['step']) is int
    assert obs['retry_index'] == 2 and type(obs['retry_index']) is int
    check_observation(task, obs)


def test_the_contract_sources_name_the_camera_topics(task):
    assert camera_sources(task) == {'image_top': TOPIC}
    assert source_view(TOPIC) == 'top'


def test_a_missing_frame_or_state_value_is_a_cell_error_naming_it(task, plugin):
    with pytest.raises(CellError, match="'image_top' needs a frame from 'camera/top/image_raw'"):
        plugin.build_observation(task, _reading(images={}))
    with pytest.raises(CellError, match=r"lack vx, vy \(observation 'agent_vel'\)"):
        plugin.build_observation(task, _reading(state={'x': 1.0, 'y': 2.0}))


def test_hold_commands_the_pushers_position_within_the_action_bounds(task, plugin):
    hold = plugin.hold_action(task, {'x': 100.0, 'y': 200.0, 'vx': 5.0, 'vy': 0.0})
    np.testing.assert_array_equal(hold, np.array([100.0, 200.0]))
    assert hold.dtype == np.float64 and hold.shape == (2,)
    clipped = plugin.hold_action(task, _reading().state)
    np.testing.assert_array_equal(clipped, np.array([10.5, 512.0]))


def test_validation_scenes_are_seeded_rendered_frames(task, plugin):
    a = plugin.sample_readings(task, 3, 5)
    b = plugin.sample_readings(task, 3, 5)
    for ra, rb in zip(a, b, strict=True):
        np.testing.assert_array_equal(ra.images[TOPIC], rb.images[TOPIC])
        assert ra.state == rb.state
        assert ra.images[TOPIC].shape == (480, 480, 3) and ra.images[TOPIC].std() > 0
    assert len({(r.state['x'], r.state['y']) for r in a}) == 3
    assert a[0].state['vx'] == 0.0 and a[1].state['vx'] != 0.0
