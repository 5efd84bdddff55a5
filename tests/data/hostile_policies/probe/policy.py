"""A hostile policy for the sandbox tests: tries the operations listed in its params.

``params.ops`` is a list of ``[op, argument, expected]``; ``expected`` is ``denied`` or
``allowed``. Every operation runs on the first ``act`` (the sandbox must hold while a cell is
live). An outcome other than the expected one raises, so an escape ends the trial as a
``policy_fault`` whose reason names it; a read that succeeds also prints what it read.
"""

import os
import socket
import sys

import numpy as np


def _try(op, arg, port):
    if op == 'read':
        with open(arg) as f:
            data = f.read(200)
        sys.stderr.write(f'LEAK {arg}: {data}\n')
    elif op == 'write':
        with open(arg, 'a') as f:
            f.write('tampered by a policy\n')
    elif op == 'create':
        with open(arg, 'x') as f:
            f.write('planted by a policy\n')
    elif op == 'list':
        sys.stderr.write(f'LEAK {arg}: {os.listdir(arg)[:5]}\n')
    elif op == 'socket':
        s = socket.socket(getattr(socket, arg), socket.SOCK_STREAM)
        s.connect(('127.0.0.1', port))
    elif op == 'import':
        # Rewrite sys.path towards the workspace, import its package, then edit its source.
        sys.path.insert(0, arg)
        import enpire_common

        with open(enpire_common.__file__, 'a') as f:
            f.write('# tampered\n')
    elif op == 'scratch':
        with open('note.txt', 'w') as f:
            f.write('mine')
        os.remove('note.txt')
    else:
        raise ValueError(f'unknown op {op}')


class Probe:
    def __init__(self, spec):
        self.spec = spec
        self.ops = spec.params['ops']
        self.port = int(spec.params.get('port', 9))
        self.done = False

    def reset(self, seed):
        pass

    def act(self, obs):
        if not self.done:
            self.done = True
            for op, arg, expected in self.ops:
                try:
                    _try(op, arg, self.port)
                    outcome = 'allowed'
                except (OSError, ImportError):
                    outcome = 'denied'
                if outcome != expected:
                    raise RuntimeError(f'ESCAPED: {op} {arg} was {outcome}')
        return np.clip(np.asarray(obs['agent_pos'], dtype=float), self.spec.low, self.spec.high)


def make_policy(spec):
    return Probe(spec)
