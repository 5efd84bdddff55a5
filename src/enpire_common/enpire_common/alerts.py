"""Alerts: what a cell raises for a person on its ``alerts`` topic (enpire_interfaces/Alert).

One shape for every source: the reset server (a cell that cannot reset itself pauses,
:mod:`enpire_reset.core.pause`) and the rollout node (a cell whose record disk runs low
pauses, :mod:`enpire_rollout.core.disk`). Core code returns or hands over :class:`Alert`
values; the nodes publish them (reliable, transient local: ``enpire_common.ros.ALERT_QOS``).
"""

from __future__ import annotations

from dataclasses import dataclass

#: Alert.msg's SEVERITY_* values: a person acted / handled without one / the cell waits for one.
SEVERITY_INFO, SEVERITY_WARNING, SEVERITY_ERROR = 0, 1, 2


@dataclass(frozen=True)
class Alert:
    """One alert (enpire_interfaces/Alert without the header, cell id and source).

    Attributes:
        kind: what happened (``reset_paused``, ``disk_low``, ...).
        severity: one of the ``SEVERITY_*`` values.
        failures: consecutive failed reset attempts when it was raised (0 where that does
            not apply).
        detail: why, for people.
    """

    kind: str
    severity: int
    failures: int
    detail: str
