"""``fake_verifier``: a TEST DOUBLE of the ``verify_success`` service that CHEATS.

It judges from ``sim/ground_truth`` (simulator state), which a real verifier must never do.
It exists only so the reset server can be tested before / without the camera verifier
(enpire_reward). Never launch it in an experiment.
"""

from __future__ import annotations

import sys

from rclpy.callback_groups import ReentrantCallbackGroup
from rclpy.node import Node

from enpire_common.errors import EnpireError
from enpire_common.ros import call_service, declare_config, run_node
from enpire_interfaces.msg import Verdict
from enpire_interfaces.srv import GetGroundTruth, VerifySuccess
from enpire_reset.core.config import FakeVerifierConfig
from enpire_tasks.reset import pose_error


class FakeVerifierNode(Node):
    """Test double of the verifier (cheats with simulator truth).

    Services: ``verify_success`` (VerifySuccess; goals ``success`` and ``reset``).
    Calls: ``sim/ground_truth`` (GetGroundTruth).
    Parameters (FakeVerifierConfig): ``mode`` (ground_truth | always_solved),
    ``pose_tolerance_px``, ``pose_tolerance_rad``, ``call_timeout_s``.
    """

    def __init__(self, **kwargs) -> None:
        super().__init__('fake_verifier', **kwargs)
        self.config: FakeVerifierConfig = declare_config(self, FakeVerifierConfig)
        group = ReentrantCallbackGroup()
        self._gt = self.create_client(GetGroundTruth, 'sim/ground_truth', callback_group=group)
        self.create_service(VerifySuccess, 'verify_success', self._on_verify,
                            callback_group=group)
        self.calls = 0

    def _on_verify(self, req: VerifySuccess.Request,
                   resp: VerifySuccess.Response) -> VerifySuccess.Response:
        self.calls += 1
        try:
            gt = call_service(self._gt, GetGroundTruth.Request(), self.config.call_timeout_s,
                              'sim/ground_truth')
        # Service boundary: failures become error_code/error_msg.
        except EnpireError as exc:
            resp.error_code, resp.error_msg = exc.code, str(exc)
            return resp
        solved = True if self.config.mode == 'always_solved' else bool(gt.success)
        score = 1.0 if self.config.mode == 'always_solved' else float(gt.coverage)
        pose = [float(v) for v in gt.object_pose]
        if req.goal == VerifySuccess.Request.GOAL_RESET:
            dxy, dth = pose_error(tuple(req.expected_pose), tuple(pose))
            matches = (dxy <= self.config.pose_tolerance_px
                       and dth <= self.config.pose_tolerance_rad)
            ok = matches and not solved
            detail = f'fake (ground truth): off {dxy:.2f} px / {dth:.3f} rad, solved={solved}'
        else:
            ok, detail = solved, f'fake (ground truth): coverage {score:.3f}'
        verdict = Verdict(view='fused', backend='fake-ground-truth', success=ok, score=score,
                          threshold=0.95, confidence=1.0, object_pose=pose, detail=detail)
        resp.success, resp.score, resp.fusion = ok, score, 'all'
        resp.verdicts = [verdict]
        return resp


def main(argv: list[str] | None = None) -> int:
    return run_node('fake_verifier', FakeVerifierNode, argv, executor='multi', num_threads=2)


if __name__ == '__main__':
    sys.exit(main())
