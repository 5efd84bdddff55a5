"""Training jobs in the background: ``enpire train submit|list|logs|cancel|resume``.

Three engines run the same job spec, so a user who outgrows one machine changes ``--engine``,
not the job:

- ``local`` (the embedded default): submitit's local executor, a detached controller process
  per job on this machine;
- ``ray``: a detached Ray actor per job on a Ray cluster (``--ray-address HOST:PORT`` or
  ``RAY_ADDRESS``; ``ray start --head`` prints it). The actor starts the job in its
  constructor, so the job runs once the cluster places it, whether or not the submitting
  process is still there, and it ends itself when the job ends. The cluster's workers need
  ENPIRE importable and ``$ENPIRE_HOME`` on a shared file system, as for Slurm;
- ``slurm``: submitit's Slurm executor.

ENPIRE keeps, per job, a directory under ``$ENPIRE_HOME/jobs/<job_id>/``:

- ``spec.json``: what to run (kind ``bc`` and its arguments) and the resource limits;
- ``job.json``: the state (``queued``, ``running``, ``done``, ``failed``, ``cancelled``), the
  engine and its job id, the worker's pid, progress (the last line), the result or the
  error, wall and GPU seconds;
- ``log.txt``: the job's progress lines; submitit's own stdout/stderr sit beside it.

Limits are applied by the job itself, on every engine: ``cpus`` (CPU affinity and torch
threads), ``mem_gb`` (an address-space limit; on Ray the cluster's ``memory`` resource
instead, as a Ray worker maps far more address space than it uses), ``nice`` (so a robot
cell on the same machine keeps priority), and the engine's ``timeout_min``. A cancelled or
killed job keeps its checkpoints: ``resume`` submits the same spec again and training
continues from its last finished epoch (:mod:`enpire_agent_bridge.learning.bc`).
"""

from __future__ import annotations

import contextlib
import json
import os
import secrets
import signal
import socket
import threading
import time
from collections.abc import Callable, Iterator, Mapping
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from enpire_common.errors import ConfigError, UnknownNameError
from enpire_common.files import atomic_write_bytes

ENGINES = ('local', 'ray', 'slurm')
RAY_NAMESPACE = 'enpire-jobs'
KINDS = ('bc', 'iql')
STATES = ('queued', 'running', 'done', 'failed', 'cancelled')
SPEC_JSON = 'spec.json'
JOB_JSON = 'job.json'
LOG = 'log.txt'


@dataclass
class JobSpec:
    """What a job runs and within which limits."""

    kind: str
    args: dict[str, Any]
    engine: str = 'local'
    cpus: int = 1
    mem_gb: float = 0.0             # 0: no limit
    nice: int = 10
    timeout_min: float = 24 * 60.0
    device: str = 'cpu'
    slurm: dict[str, Any] = field(default_factory=dict)    # extra slurm_* parameters
    ray: dict[str, Any] = field(default_factory=dict)      # address (HOST:PORT)

    def check(self) -> None:
        if self.kind not in KINDS:
            raise ConfigError(f'job kind {self.kind!r}: known kinds are {", ".join(KINDS)}')
        if self.engine not in ENGINES:
            raise ConfigError(f'--engine {self.engine}: use one of {", ".join(ENGINES)}')
        if self.cpus < 1 or self.timeout_min <= 0 or self.mem_gb < 0:
            raise ConfigError('--cpus must be >= 1, --timeout-min > 0 and --mem-gb >= 0')
        if self.engine == 'ray':
            self.ray = {**self.ray, 'address': ray_address(self.ray.get('address'))}


def jobs_root(home: Path) -> Path:
    return Path(home) / 'jobs'


def _write_json(path: Path, data: Mapping[str, Any]) -> None:
    atomic_write_bytes(path, (json.dumps(data, indent=1, sort_keys=True) + '\n').encode())


def _read_json(path: Path) -> dict[str, Any]:
    try:
        data = json.loads(path.read_text(encoding='utf-8'))
    except FileNotFoundError:
        raise ConfigError(f'{path}: missing') from None
    except (OSError, json.JSONDecodeError) as exc:
        raise ConfigError(f'{path}: unreadable ({exc})') from None
    if not isinstance(data, dict):
        raise ConfigError(f'{path}: not a JSON object')
    return data


def _update(job_dir: Path, **changes: Any) -> dict[str, Any]:
    state = _read_json(job_dir / JOB_JSON) if (job_dir / JOB_JSON).is_file() else {}
    state.update(changes)
    _write_json(job_dir / JOB_JSON, state)
    return state


# --- inside the job ---------------------------------------------------------------------------
def _apply_limits(spec: JobSpec) -> None:
    import resource

    cpus = sorted(os.sched_getaffinity(0))
    os.sched_setaffinity(0, cpus[:max(1, spec.cpus)])
    for var in ('OMP_NUM_THREADS', 'MKL_NUM_THREADS', 'OPENBLAS_NUM_THREADS'):
        os.environ[var] = str(spec.cpus)
    if spec.nice:
        os.nice(spec.nice)
    if spec.mem_gb > 0 and spec.engine != 'ray':
        limit = int(spec.mem_gb * (1 << 30))
        resource.setrlimit(resource.RLIMIT_AS, (limit, limit))


def run_job(job_dir: str) -> dict[str, Any]:
    """The job's entry point (what the engine runs): apply the limits, run, record."""
    job_dir_p = Path(job_dir)
    spec = JobSpec(**_read_json(job_dir_p / SPEC_JSON))
    t0 = time.monotonic()
    _update(job_dir_p, state='running', pid=os.getpid(), started_unix_s=time.time(),
            host=os.uname().nodename)
    log = (job_dir_p / LOG).open('a', encoding='utf-8')

    def progress(line: str) -> None:
        log.write(f'{time.strftime("%H:%M:%S")} {line}\n')
        log.flush()
        _update(job_dir_p, progress=line[:300])

    try:
        _apply_limits(spec)
        import torch

        torch.set_num_threads(spec.cpus)
        if spec.kind in ('bc', 'iql'):
            from enpire_agent_bridge.learning.bc import BCConfig, train_bc

            args = dict(spec.args)
            cfg = BCConfig(**{**args.pop('config', {}), 'device': spec.device,
                              'objective': spec.kind})
            result = train_bc(config=cfg, progress=progress, **args).to_dict()
        else:                                                   # checked at submit
            raise ConfigError(f'job kind {spec.kind!r}')
    except BaseException as exc:
        wall = time.monotonic() - t0
        progress(f'FAILED: {type(exc).__name__}: {exc}')
        _update(job_dir_p, state='failed', error=f'{type(exc).__name__}: {exc}'[:2000],
                wall_s=round(wall, 1), gpu_s=round(wall, 1) if spec.device != 'cpu' else 0.0,
                ended_unix_s=time.time())
        log.close()
        raise
    wall = time.monotonic() - t0
    progress(f'done in {wall:.0f} s')
    _update(job_dir_p, state='done', result=result, wall_s=round(wall, 1),
            gpu_s=round(wall, 1) if spec.device != 'cpu' else 0.0, ended_unix_s=time.time())
    log.close()
    return result


# --- the Ray engine ---------------------------------------------------------------------------
def ray_address(address: str | None = None) -> str:
    """The Ray cluster's GCS address: ``address``, else ``$RAY_ADDRESS``; a clear error if none."""
    address = (address or os.environ.get('RAY_ADDRESS') or '').strip()
    if address.startswith('ray://'):
        raise ConfigError(f'--ray-address {address}: give the GCS address HOST:PORT that '
                          '`ray start --head` prints, not a Ray Client ray:// address')
    host, _, port = address.rpartition(':')
    if not host or not port.isdigit():
        raise ConfigError('--engine ray needs the cluster address: --ray-address HOST:PORT or '
                          '$RAY_ADDRESS (`ray start --head` prints it)'
                          + (f'; got {address!r}' if address else ''))
    return address


@contextlib.contextmanager
def _ray_connect(address: str, timeout_s: float = 3.0) -> Iterator[Any]:
    """``ray`` connected to the cluster at ``address`` for the ``with`` block, then
    disconnected: a driver that stays connected is terminated by Ray when the cluster goes
    away. ray.init waits minutes on an address where nothing listens, so reach the GCS port
    first and say so at once when it is down."""
    try:
        import ray
    except ImportError:
        raise ConfigError('--engine ray needs the ray package (pip install ray)') from None
    host, _, port = address.rpartition(':')
    try:
        socket.create_connection((host, int(port)), timeout=timeout_s).close()
    except OSError as exc:
        raise ConfigError(f'no Ray cluster answers at {address} ({exc}); start one with '
                          f'`ray start --head` or fix --ray-address') from None
    ours = not ray.is_initialized()
    if ours:
        ray.init(address=address, namespace=RAY_NAMESPACE, logging_level='ERROR',
                 log_to_driver=False, configure_logging=False)
    try:
        yield ray
    finally:
        if ours:
            ray.shutdown()


def _ray_job_class(ray: Any) -> Any:
    """A detached Ray actor that runs one job: its constructor starts the job in a thread (so
    the job needs nothing more from the submitting process), and the actor kills itself when
    the job ends or overruns ``timeout_min``."""

    class EnpireTrainingJob:
        def __init__(self, job_dir: str, timeout_min: float) -> None:
            ended = threading.Event()

            def end_actor() -> None:
                ray.kill(ray.get_runtime_context().current_actor)

            def work() -> None:
                try:
                    run_job(job_dir)
                except BaseException:       # noqa: BLE001 - run_job recorded it in job.json
                    pass
                finally:
                    ended.set()
                    end_actor()

            def watchdog() -> None:
                if not ended.wait(timeout_min * 60.0):
                    _update(Path(job_dir), state='failed', ended_unix_s=time.time(),
                            error=f'timed out after {timeout_min:g} min (--timeout-min)')
                    end_actor()

            threading.Thread(target=work, name='enpire-job', daemon=True).start()
            threading.Thread(target=watchdog, name='enpire-job-timeout', daemon=True).start()

    return ray.remote(EnpireTrainingJob)


def _submit_ray(spec: JobSpec, job_id: str, job_dir: Path) -> str:
    with _ray_connect(spec.ray['address']) as ray:
        _ray_job_class(ray).options(
            name=job_id, lifetime='detached', max_restarts=0, num_cpus=spec.cpus,
            num_gpus=1 if spec.device != 'cpu' else 0,
            memory=int(spec.mem_gb * (1 << 30)) or None,
        ).remote(str(job_dir), spec.timeout_min)
        ray.get_actor(job_id, namespace=RAY_NAMESPACE)     # registered with the cluster
    return job_id


def _ray_actor(state: Mapping[str, Any], kill: bool = False) -> bool:
    """Whether the job's actor is alive (and kill it when asked); ConfigError when the
    cluster is down."""
    with _ray_connect(str((state.get('ray') or {}).get('address', ''))) as ray:
        try:
            actor = ray.get_actor(str(state['engine_job_id']), namespace=RAY_NAMESPACE)
        except ValueError:
            return False
        if kill:
            ray.kill(actor, no_restart=True)
        return True


# --- the queue --------------------------------------------------------------------------------
def _executor(spec: JobSpec, job_dir: Path) -> Any:
    import submitit

    folder = job_dir / 'engine'
    if spec.engine == 'local':
        executor = submitit.LocalExecutor(folder=folder)
        executor.update_parameters(timeout_min=spec.timeout_min,
                                   gpus_per_node=1 if spec.device != 'cpu' else 0)
    else:
        executor = submitit.SlurmExecutor(folder=folder)
        executor.update_parameters(time=int(spec.timeout_min), cpus_per_task=spec.cpus,
                                   mem=f'{int(spec.mem_gb)}G' if spec.mem_gb else None,
                                   gres='gpu:1' if spec.device != 'cpu' else None,
                                   **spec.slurm)
    return executor


class JobQueue:
    """Submit, list, follow and cancel training jobs under ``$ENPIRE_HOME/jobs``."""

    def __init__(self, home: str | Path) -> None:
        self.root = jobs_root(Path(home))

    def submit(self, spec: JobSpec) -> dict[str, Any]:
        spec.check()
        self.root.mkdir(parents=True, exist_ok=True)
        job_id = f'{time.strftime("%Y%m%dT%H%M%S")}-{spec.kind}-{secrets.token_hex(3)}'
        job_dir = self.root / job_id
        job_dir.mkdir()
        _write_json(job_dir / SPEC_JSON, asdict(spec))
        return self._start(job_id, spec)

    def _start(self, job_id: str, spec: JobSpec) -> dict[str, Any]:
        job_dir = self.root / job_id
        _update(job_dir, id=job_id, kind=spec.kind, state='queued', engine=spec.engine,
                submitted_unix_s=time.time(), device=spec.device, error=None, result=None,
                progress='')
        if spec.engine == 'ray':
            _update(job_dir, ray={'address': spec.ray['address']})
        try:
            if spec.engine == 'ray':
                engine_job_id = _submit_ray(spec, job_id, job_dir)
            else:
                engine_job_id = str(_executor(spec, job_dir).submit(run_job,
                                                                    str(job_dir)).job_id)
        except Exception as exc:  # noqa: BLE001 - the engine's reason is reported
            _update(job_dir, state='failed', error=f'submit failed: {exc}')
            if isinstance(exc, ConfigError):
                raise
            raise ConfigError(f'{spec.engine} engine refused the job: {exc}') from None
        return _update(job_dir, engine_job_id=engine_job_id)

    def get(self, job_id: str) -> dict[str, Any]:
        job_dir = self._dir(job_id)
        state = _read_json(job_dir / JOB_JSON)
        if state.get('state') in ('queued', 'running') and not self._alive(state) \
                and _read_json(job_dir / JOB_JSON).get('state') in ('queued', 'running'):
            # The job's processes are gone without it recording an end (killed, machine
            # restart; read again, as a job that ended just now has recorded it): it can be
            # resumed from its checkpoints.
            state = _update(job_dir, state='failed',
                            error=state.get('error') or 'the job process died (killed?); '
                                                        'resume it with enpire train resume')
        return state

    def list(self) -> list[dict[str, Any]]:
        if not self.root.is_dir():
            return []
        out = []
        for child in sorted(self.root.iterdir()):
            if (child / JOB_JSON).is_file():
                try:
                    out.append(self.get(child.name))
                except ConfigError as exc:
                    out.append({'id': child.name, 'state': 'unreadable', 'error': str(exc)})
        return out

    def logs(self, job_id: str, tail: int = 50) -> str:
        job_dir = self._dir(job_id)
        lines: list[str] = []
        if (job_dir / LOG).is_file():
            lines = (job_dir / LOG).read_text(encoding='utf-8', errors='replace').splitlines()
        for err in sorted((job_dir / 'engine').glob('*.err')) if tail else []:
            text = err.read_text(encoding='utf-8', errors='replace').strip().splitlines()
            if text and any('Error' in t or 'Traceback' in t for t in text):
                lines += [f'--- {err.name}'] + text[-20:]
        return '\n'.join(lines[-tail:] if tail else lines)

    def cancel(self, job_id: str) -> dict[str, Any]:
        state = self.get(job_id)
        if state.get('state') not in ('queued', 'running'):
            return state
        if state.get('engine') == 'slurm':
            import submitit

            submitit.SlurmJob(self._dir(job_id) / 'engine', str(state['engine_job_id'])).cancel()
        elif state.get('engine') == 'ray':
            _ray_actor(state, kill=True)
        else:
            for key in ('pid', 'engine_job_id'):
                _terminate(state.get(key))
        return _update(self._dir(job_id), state='cancelled', ended_unix_s=time.time(),
                       error='cancelled')

    def resume(self, job_id: str) -> dict[str, Any]:
        state = self.get(job_id)
        if state.get('state') in ('queued', 'running'):
            raise ConfigError(f'job {job_id} is {state["state"]}; cancel it first')
        if state.get('state') == 'done':
            raise ConfigError(f'job {job_id} is done; nothing to resume')
        spec = JobSpec(**_read_json(self._dir(job_id) / SPEC_JSON))
        return self._start(job_id, spec)

    def wait(self, job_id: str, timeout_s: float, poll_s: float = 0.5,
             until: Callable[[dict[str, Any]], bool] | None = None) -> dict[str, Any]:
        """Poll until the job ends (or ``until`` holds); returns its state."""
        end = time.monotonic() + timeout_s
        while True:
            state = self.get(job_id)
            if (until(state) if until else state.get('state') in ('done', 'failed',
                                                                  'cancelled')):
                return state
            if time.monotonic() > end:
                return state
            time.sleep(poll_s)

    def _dir(self, job_id: str) -> Path:
        if not job_id or '/' in job_id or job_id.startswith('.'):
            raise ConfigError(f'job id {job_id!r} is not a job id')
        job_dir = self.root / job_id
        if not (job_dir / JOB_JSON).is_file():
            known = [p.name for p in self.root.iterdir()] if self.root.is_dir() else []
            raise UnknownNameError('training job', job_id, known)
        return job_dir

    @staticmethod
    def _alive(state: Mapping[str, Any]) -> bool:
        """Whether the job's process may still be there: checked for the local and Ray
        engines; a Slurm job is taken on its word, as is a Ray job whose cluster is down."""
        if state.get('engine') == 'ray':
            if not state.get('engine_job_id'):
                return True                         # being submitted
            try:
                return _ray_actor(state)
            except ConfigError:
                return True
        if state.get('engine') == 'local':
            return any(_is_ours(state.get(key)) for key in ('pid', 'engine_job_id'))
        return True


def _is_ours(pid: Any) -> bool:
    """Whether ``pid`` is a live Python process of a submitit job (not a reused pid)."""
    try:
        pid = int(pid)
        cmd = Path(f'/proc/{pid}/cmdline').read_bytes()
        status = Path(f'/proc/{pid}/stat').read_text().split()[2]
    except (TypeError, ValueError, OSError):
        return False
    return status != 'Z' and b'submitit' in cmd


def _terminate(pid: Any, grace_s: float = 5.0) -> None:
    if not _is_ours(pid):
        return
    pid = int(pid)
    try:
        os.kill(pid, signal.SIGTERM)
    except OSError:
        return
    end = time.monotonic() + grace_s
    while time.monotonic() < end and _is_ours(pid):
        time.sleep(0.1)
    if _is_ours(pid):
        with contextlib.suppress(OSError):
            os.kill(pid, signal.SIGKILL)
