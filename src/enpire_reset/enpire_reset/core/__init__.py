"""Pure logic of enpire_reset (no rclpy imports)."""

from enpire_reset.core.config import ResetConfig, ResetServerConfig
from enpire_reset.core.ports import Placement, PlacePort, ResetVerdict, VerifierPort
from enpire_reset.core.procedure import (
    PHASE_PLACING,
    PHASE_RETRYING,
    PHASE_SETTLING,
    PHASE_VERIFYING,
    ResetNotVerifiedError,
    ResetOutcome,
    ResetProcedure,
    derive_seed,
    pose_error,
)
from enpire_reset.core.strategies import (
    ResetStrategy,
    SimPlaceStrategy,
    available_strategies,
    make_strategy,
    register_strategy,
    resolve_strategy_id,
)

__all__ = ['PHASE_PLACING', 'PHASE_RETRYING', 'PHASE_SETTLING', 'PHASE_VERIFYING', 'Placement',
           'ResetConfig', 'ResetNotVerifiedError', 'ResetOutcome', 'ResetProcedure',
           'ResetServerConfig', 'ResetStrategy', 'ResetVerdict', 'SimPlaceStrategy', 'PlacePort',
           'VerifierPort', 'available_strategies', 'derive_seed', 'make_strategy', 'pose_error',
           'register_strategy', 'resolve_strategy_id']
