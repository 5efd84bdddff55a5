"""Config dataclasses of the agent bridge: sandbox, policy host node, bridge node."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np

from enpire_common.config import require
from enpire_common.tasks import DEFAULT_TASK


@dataclass(frozen=True)
class SandboxConfig:
    """Resource limits and identity of a policy host process.

    Attributes:
        memory_limit_mb: RLIMIT_AS of the host (address space, MiB).
        cpu_limit_s: RLIMIT_CPU (CPU seconds over the host's whole life; 0 = unlimited).
        max_open_files: RLIMIT_NOFILE.
        max_processes: RLIMIT_NPROC; 0 makes fork/subprocess/threads fail.
        max_file_size_mb: RLIMIT_FSIZE for files the policy writes.
        sandbox_uid: Unprivileged user the host runs as when started by root.
        sandbox_gid: Its group.
        drop_privileges: Switch to sandbox_uid/gid when running as root and the interpreter
            is readable by that user (it is not when Python lives under /root; then the host
            stays root and only the seccomp filter blocks fork, since root ignores
            RLIMIT_NPROC).
        block_process_creation: Install a seccomp filter that makes fork/exec/posix_spawn
            fail (threads stay allowed).
        block_network: The same filter refuses socket() (the worker needs none).
        confinement: File-system confinement of the worker: auto (Landlock, else bubblewrap),
            landlock, bwrap, or none (see core/confinement.py).
        allow_unconfined: Run policy code even when no confinement is available (or
            ``confinement`` is none); otherwise the host refuses to start.
        startup_timeout_s: Time for import + make_policy.
        reset_timeout_s: Time for reset(seed).
        close_timeout_s: Grace time for a clean exit before the process group is killed.
        work_root: Parent of the private work directories ('' = the system temp dir).
        max_policy_mb: Size limit of the policy directory.
        max_policy_files: File-count limit of the policy directory.
    """

    memory_limit_mb: int = 2048
    cpu_limit_s: int = 3600
    max_open_files: int = 64
    max_processes: int = 0
    max_file_size_mb: int = 256
    sandbox_uid: int = 65534
    sandbox_gid: int = 65534
    drop_privileges: bool = True
    block_process_creation: bool = True
    block_network: bool = True
    confinement: str = 'auto'
    allow_unconfined: bool = False
    startup_timeout_s: float = 30.0
    reset_timeout_s: float = 5.0
    close_timeout_s: float = 1.0
    work_root: str = ''
    max_policy_mb: float = 50.0
    max_policy_files: int = 200

    def __post_init__(self) -> None:
        require(self.memory_limit_mb >= 256, 'sandbox.memory_limit_mb', self.memory_limit_mb,
                'must be >= 256 MiB (the interpreter and numpy need ~150 MiB of address space)')
        require(self.cpu_limit_s >= 0, 'sandbox.cpu_limit_s', self.cpu_limit_s,
                'must be >= 0 (0 = unlimited)')
        require(self.max_open_files >= 16, 'sandbox.max_open_files', self.max_open_files,
                'must be >= 16')
        require(self.max_processes >= 0, 'sandbox.max_processes', self.max_processes,
                'must be >= 0')
        require(self.max_file_size_mb > 0, 'sandbox.max_file_size_mb', self.max_file_size_mb,
                'must be > 0')
        for name in ('startup_timeout_s', 'reset_timeout_s', 'close_timeout_s'):
            value = getattr(self, name)
            require(value > 0, f'sandbox.{name}', value, 'must be > 0 seconds')
        require(self.max_policy_mb > 0, 'sandbox.max_policy_mb', self.max_policy_mb,
                'must be > 0')
        require(self.max_policy_files > 0, 'sandbox.max_policy_files', self.max_policy_files,
                'must be > 0')
        require(self.confinement in ('auto', 'landlock', 'bwrap', 'none'),
                'sandbox.confinement', self.confinement,
                'must be one of auto, landlock, bwrap, none')


@dataclass(frozen=True)
class HostingConfig:
    """What every node that hosts policy revisions needs (policy host, agent bridge).

    Attributes:
        task: Task name for the contract lookup when ``task_file`` is empty.
        task_file: Path of the task contract (``task.yaml``); '' = look up
            ``config/tasks/<task>/task.yaml`` under $ENPIRE_ROOT or the working directory.
        deadline_margin_s: Per-act deadline is ``1 / rate_hz - deadline_margin_s``
            (negative = use the task contract's margin).
        deadline_override_s: If > 0, the per-act deadline in seconds regardless of the rate
            (tests, slow debugging sessions).
        hard_deadline_factor: An act is killed as hung once its round trip exceeds this many
            per-act deadlines (wall clock); within that, only its CPU time must fit the
            deadline (see PolicyHost.act): on a busy machine the scheduler, not the policy,
            decides one act's wall time. >= 1.
        hard_deadline_min_s: ...but never sooner than this (s); the cell holds (keeps its last
            target) meanwhile.
        max_image_age_s: Act on a state only with an image at most this much older (stamps);
            otherwise wait for the next image (0 = the image of the same tick).
        log_dir: Where the hosts' stdout/stderr go ('' = ``$ENPIRE_HOME/logs/<node>``).
        sandbox: The host process limits.
    """

    task: str = DEFAULT_TASK
    task_file: str = ''
    deadline_margin_s: float = -1.0
    deadline_override_s: float = 0.0
    hard_deadline_factor: float = 4.0
    hard_deadline_min_s: float = 1.0
    max_image_age_s: float = 0.0
    log_dir: str = ''
    sandbox: SandboxConfig = field(default_factory=SandboxConfig)

    def __post_init__(self) -> None:
        require(self.hard_deadline_factor >= 1.0, 'hard_deadline_factor',
                self.hard_deadline_factor, 'must be >= 1')
        require(self.hard_deadline_min_s >= 0, 'hard_deadline_min_s', self.hard_deadline_min_s,
                'must be >= 0 seconds')
        require(self.max_image_age_s >= 0, 'max_image_age_s', self.max_image_age_s,
                'must be >= 0 seconds')


@dataclass(frozen=True)
class PolicyHostNodeConfig(HostingConfig):
    """Parameters of the ``policy_host`` node (and those of :class:`HostingConfig`).

    Attributes:
        revision_dir: The policy (revision) directory to host.
        revision_id: Its id, stamped on every command ('' = the directory name).
        warmup_timeout_s: Deadline of the first act (lazy imports, JIT, caches).
        subscriber_wait_s: A gated host reports ready only once its policy/command has a
            subscriber (the safety supervisor), waiting at most this long.
        discovery_grace_s: ...plus this long, for the subscriber's side of the match.
        gated: Act only inside an episode opened on ``policy/control`` (the rollout's
            start/stop); False = act on every new state tick (bench / manual driving).
        resend_after_s: No new state tick this long (wall clock) after a command: publish
            it again. A lockstep cell steps on it if the first was lost, or publishes its
            newest tick again if that never reached us (0 = never).
    """

    revision_dir: str = ''
    revision_id: str = ''
    warmup_timeout_s: float = 5.0
    subscriber_wait_s: float = 10.0
    discovery_grace_s: float = 0.5
    gated: bool = True
    resend_after_s: float = 1.0

    def __post_init__(self) -> None:
        super().__post_init__()
        require(self.warmup_timeout_s > 0, 'warmup_timeout_s', self.warmup_timeout_s,
                'must be > 0 seconds')
        require(self.resend_after_s >= 0, 'resend_after_s', self.resend_after_s,
                'must be >= 0 seconds (0 = never)')


@dataclass(frozen=True)
class BridgeNodeConfig(HostingConfig):
    """Parameters of the ``agent_bridge`` node (and those of :class:`HostingConfig`).

    Attributes:
        revisions_dir: Revision store root ('' = ``$ENPIRE_HOME/revisions``).
        switch_timeout_s: Budget of one switch (start + warm-up + first command) when the
            request's ``timeout_s`` is <= 0.
        first_act_timeout_s: Deadline of the first act of a freshly started host.
        hard_deadline_min_s: As in HostingConfig, but 0.25 s: a switch must not wait long.
        warmup_ticks: Ticks a staged revision gets to produce a valid warm-up action.
        standby_max: Retired, healthy hosts kept running for instant switch-back / restore.
        switch_within_tick: Switch at the current tick by replacing its command (for cells
            that apply the latest command at their next step: real time). Ignored (next-tick
            switches) when ``use_sim_time`` is set: a lockstep cell steps once per command.
        home_position: ``"x,y"`` home target in task units ('' = the contract's ``home``, else
            the agent position when ``home_cell`` is called).
    """

    hard_deadline_min_s: float = 0.25
    revisions_dir: str = ''
    switch_timeout_s: float = 20.0
    first_act_timeout_s: float = 5.0
    warmup_ticks: int = 10
    standby_max: int = 2
    switch_within_tick: bool = True
    home_position: str = ''

    def __post_init__(self) -> None:
        super().__post_init__()
        require(self.switch_timeout_s > 0, 'switch_timeout_s', self.switch_timeout_s,
                'must be > 0 seconds')
        require(self.first_act_timeout_s > 0, 'first_act_timeout_s', self.first_act_timeout_s,
                'must be > 0 seconds')
        require(self.warmup_ticks >= 1, 'warmup_ticks', self.warmup_ticks, 'must be >= 1')
        require(self.standby_max >= 0, 'standby_max', self.standby_max, 'must be >= 0')
        if self.home_position:
            try:
                [float(v) for v in self.home_position.split(',')]
            except ValueError:
                require(False, 'home_position', self.home_position,
                        'must be comma-separated numbers in task units, e.g. "256,256"')


def home_target(home_position: str, contract_home: Any, low: np.ndarray,
                high: np.ndarray) -> np.ndarray | None:
    """The bridge's home target: ``home_position`` ("x,y"), else the contract's ``home``.

    None when neither is set (homing then holds the agent position). Raises ConfigError when
    the target does not have the action's shape within its bounds.
    """
    if home_position:
        values = [float(v) for v in home_position.split(',')]
    elif isinstance(contract_home, (list, tuple)):
        values = [float(v) for v in contract_home]
    else:
        return None
    home = np.asarray(values, dtype=np.float64)
    require(home.shape == low.shape and not np.any(home < low) and not np.any(home > high),
            'home_position', values, f'must have shape {list(low.shape)} within the action '
            f'bounds {low.tolist()}..{high.tolist()}')
    return home
