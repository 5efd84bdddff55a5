"""``enpire train submit --engine ray``: the same job spec as the local engine runs on a Ray
cluster, here a local Ray instance (``ray start --head``, as a user starts one): a job runs
after the submitting process has gone and records its result; a cancelled job's actor is
gone and it resumes from its checkpoint; a job whose actor is killed is reported dead; an
address where no cluster answers is refused at once."""

from __future__ import annotations

import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import pytest

pytest.importorskip('torch')
ray = pytest.importorskip('ray', reason='the ray package is not installed (requirements.txt)')

from enpire_agent_bridge.learning.jobs import RAY_NAMESPACE, JobQueue, JobSpec  # noqa: E402
from enpire_common.errors import ConfigError  # noqa: E402

TINY = {'epochs': 2, 'batch_size': 32, 'image_size': 16, 'horizon': 1, 'n_action_steps': 1,
        'width': 32, 'channels': 4, 'shift_px': 1}
LONG = 1_000_000


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(('127.0.0.1', 0))
        return s.getsockname()[1]


@pytest.fixture(scope='module')
def ray_cluster():
    """A one-node Ray cluster in its own process group and temp dir (short: Ray's unix
    sockets live under it), stopped by signalling that group, so no other Ray on the machine
    is touched."""
    ray_bin = Path(sys.executable).with_name('ray')
    temp = tempfile.mkdtemp(prefix='enpray-', dir='/tmp')
    port = _free_port()
    log = open(Path(temp) / 'head.log', 'wb')        # noqa: SIM115 - closed at teardown
    head = subprocess.Popen(
        [str(ray_bin), 'start', '--head', '--block', f'--port={port}', '--num-cpus=2',
         '--num-gpus=0', f'--temp-dir={temp}', '--include-dashboard=false',
         '--disable-usage-stats', f'--node-manager-port={_free_port()}',
         f'--object-manager-port={_free_port()}'],
        stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
    try:
        deadline = time.monotonic() + 90
        while b'block forever' not in (Path(temp) / 'head.log').read_bytes():
            assert head.poll() is None, (Path(temp) / 'head.log').read_text(errors='replace')
            assert time.monotonic() < deadline, 'ray start --head did not come up in 90 s'
            time.sleep(0.3)
        yield f'127.0.0.1:{port}'
    finally:
        if head.poll() is None:
            os.killpg(head.pid, signal.SIGTERM)
            try:
                head.wait(30)
            except subprocess.TimeoutExpired:
                os.killpg(head.pid, signal.SIGKILL)
                head.wait(10)
        log.close()
        shutil.rmtree(temp, ignore_errors=True)


def _cli(home: Path, *args: str) -> dict:
    env = {**os.environ, 'ENPIRE_HOME': str(home)}
    env.pop('RAY_ADDRESS', None)
    proc = subprocess.run([sys.executable, '-m', 'enpire_bringup.cli', 'train', *args, '--json'],
                          env=env, capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr[-2000:]
    return json.loads(proc.stdout)


def _actor_alive(address: str, job_id: str) -> bool:
    """Asked from a separate driver process, as `enpire train list` would."""
    code = ('import ray, sys\n'
            f'ray.init(address={address!r}, namespace={RAY_NAMESPACE!r}, '
            "logging_level='ERROR', log_to_driver=False)\n"
            'try:\n'
            f'    ray.get_actor({job_id!r}); print("alive")\n'
            'except ValueError:\n'
            '    print("gone")\n')
    out = subprocess.run([sys.executable, '-c', code], capture_output=True, text=True,
                         timeout=60)
    assert out.returncode == 0, out.stderr[-2000:]
    return out.stdout.strip().endswith('alive')


def test_the_cli_runs_a_job_spec_on_a_ray_cluster(bc_dataset, tmp_path, ray_cluster):
    home = tmp_path / 'home'
    job = _cli(home, 'submit', '--engine', 'ray', '--ray-address', ray_cluster,
               '--dataset', str(bc_dataset), '--out', str(tmp_path / 'pol'), '--epochs', '2',
               '--image-size', '16', '--horizon', '1', '--n-action-steps', '1')
    # The submitting process has exited: the detached actor runs the job on its own.
    assert job['engine'] == 'ray' and job['engine_job_id'] == job['id']
    assert job['ray'] == {'address': ray_cluster}
    spec = json.loads((home / 'jobs' / job['id'] / 'spec.json').read_text())
    local = JobSpec(**{**spec, 'engine': 'local', 'ray': {}})
    assert local.args == spec['args']                   # the same job spec as the local engine
    queue = JobQueue(home)
    done = queue.wait(job['id'], timeout_s=240)
    assert done['state'] == 'done', queue.logs(job['id'])
    assert done['result']['epochs'] == 2 and done['wall_s'] > 0
    assert (tmp_path / 'pol' / 'weights.pt').is_file()
    assert 'epoch 2/2' in _cli(home, 'logs', job['id'])['log']
    assert [(j['id'], j['state']) for j in _cli(home, 'list')['jobs']] == [(job['id'], 'done')]
    deadline = time.monotonic() + 30
    while _actor_alive(ray_cluster, job['id']):         # the actor ends itself with the job
        assert time.monotonic() < deadline, 'the job actor outlived its job'
        time.sleep(1)


def test_a_ray_job_cancels_resumes_and_is_seen_dead_when_killed(bc_dataset, tmp_path,
                                                                ray_cluster):
    queue = JobQueue(tmp_path / 'home')
    out = tmp_path / 'policy'
    spec = JobSpec(kind='bc', engine='ray', ray={'address': ray_cluster}, timeout_min=10,
                   args={'dataset': str(bc_dataset), 'out': str(out),
                         'config': {**TINY, 'epochs': LONG}})
    job = queue.submit(spec)

    def training(s: dict) -> bool:
        return (s.get('progress') or '').startswith('epoch ') \
            or s.get('state') in ('done', 'failed')

    assert queue.wait(job['id'], timeout_s=240, until=training)['state'] == 'running', \
        queue.logs(job['id'])
    assert queue.cancel(job['id'])['state'] == 'cancelled'
    assert not _actor_alive(ray_cluster, job['id'])
    assert queue.get(job['id'])['state'] == 'cancelled' and not out.exists()

    queue.resume(job['id'])
    again = queue.wait(job['id'], timeout_s=120,
                       until=lambda s: 'resuming from epoch' in queue.logs(s['id']))
    assert 'resuming from epoch' in queue.logs(again['id'])
    # Killed from outside (a node lost, an operator's ray kill): the job is seen dead.
    kill = ('import ray\n'
            f'ray.init(address={ray_cluster!r}, namespace={RAY_NAMESPACE!r}, '
            "logging_level='ERROR', log_to_driver=False)\n"
            f'ray.kill(ray.get_actor({job["id"]!r}))\n')
    subprocess.run([sys.executable, '-c', kill], check=True, timeout=60)
    dead = queue.wait(job['id'], timeout_s=30, until=lambda s: s.get('state') != 'running')
    assert dead['state'] == 'failed' and 'died' in dead['error']


def test_a_ray_address_without_a_cluster_is_refused_at_once(tmp_path, monkeypatch):
    monkeypatch.delenv('RAY_ADDRESS', raising=False)
    queue = JobQueue(tmp_path / 'home')
    args = {'dataset': str(tmp_path), 'out': str(tmp_path / 'p'), 'config': TINY}
    with pytest.raises(ConfigError, match='--ray-address HOST:PORT or'):
        queue.submit(JobSpec(kind='bc', engine='ray', args=args))
    with pytest.raises(ConfigError, match='not a Ray Client'):
        queue.submit(JobSpec(kind='bc', engine='ray', args=args,
                             ray={'address': 'ray://head:10001'}))
    t0 = time.monotonic()
    with pytest.raises(ConfigError, match=f'no Ray cluster answers at 127.0.0.1:{_free_port()}'
                       .rsplit(':', 1)[0]):
        queue.submit(JobSpec(kind='bc', engine='ray', args=args,
                             ray={'address': f'127.0.0.1:{_free_port()}'}))
    assert time.monotonic() - t0 < 10
    assert [j['state'] for j in queue.list()] == ['failed']


def test_the_queue_leaves_no_ray_connection_behind(bc_dataset, tmp_path, ray_cluster):
    """A driver still connected when its cluster goes away is terminated by Ray a minute
    later: every queue call disconnects, so `enpire improve` or a test process lives on."""
    queue = JobQueue(tmp_path / 'home')
    job = queue.submit(JobSpec(kind='bc', engine='ray', ray={'address': ray_cluster},
                               args={'dataset': str(bc_dataset), 'out': str(tmp_path / 'p'),
                                     'config': TINY}))
    queue.get(job['id'])
    queue.cancel(job['id'])
    assert not ray.is_initialized()
