"""Message <-> core conversions of the agent bridge (the only place that knows both)."""

from __future__ import annotations

import json
from collections.abc import Sequence
from typing import Any

from builtin_interfaces.msg import Time
from std_msgs.msg import String

from enpire_interfaces.msg import Command


def stamp_s(stamp: Time) -> float:
    return stamp.sec + stamp.nanosec * 1e-9


def command_msg(tick: int, revision_id: str, action: Sequence[float], stamp: Time) -> Command:
    msg = Command()
    msg.header.stamp = stamp
    msg.tick = int(tick)
    msg.revision_id = revision_id
    msg.action = [float(a) for a in action]
    return msg


def status_msg(state: str, reason: str, revision_id: str, **extra: Any) -> String:
    """``policy/status`` payload: JSON ``{state, reason, revision_id, ...}``."""
    return String(data=json.dumps({'state': state, 'reason': reason,
                                   'revision_id': revision_id, **extra}))
