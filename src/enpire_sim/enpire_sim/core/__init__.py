"""Pure logic of enpire_sim (no rclpy imports)."""

from enpire_sim.core.check_cell import CellContractError, check_cell
from enpire_sim.core.config import CameraConfig, ClockConfig, PushTCellConfig
from enpire_sim.core.ports import CellPort
from enpire_sim.core.push_t import (
    STATE_NAMES,
    GroundTruth,
    InvalidCommandError,
    PushTSim,
    validate_action,
)

__all__ = ['STATE_NAMES', 'CameraConfig', 'CellContractError', 'CellPort', 'ClockConfig',
           'GroundTruth', 'InvalidCommandError', 'PushTCellConfig', 'PushTSim', 'check_cell',
           'validate_action']
