"""enpire_reward core: camera-only verification (no rclpy, no simulator imports)."""

from enpire_reward.core.fusion import FUSION_RULES, fuse
from enpire_reward.core.ports import (
    FUSED_VIEW,
    GOAL_RESET,
    GOAL_SUCCESS,
    Estimate,
    PoseEstimator,
    Segmentation,
    Segmenter,
    Verdict,
    Verifier,
    VerifyResult,
)
from enpire_reward.core.registry import (
    available_backends,
    make_estimator,
    make_verifier,
    register_backend,
)
from enpire_reward.core.verifier import VisionVerifier

__all__ = [
    'FUSED_VIEW', 'FUSION_RULES', 'GOAL_RESET', 'GOAL_SUCCESS', 'Estimate', 'PoseEstimator',
    'Segmentation', 'Segmenter', 'Verdict', 'Verifier', 'VerifyResult', 'VisionVerifier',
    'available_backends', 'fuse', 'make_estimator', 'make_verifier', 'register_backend',
]
