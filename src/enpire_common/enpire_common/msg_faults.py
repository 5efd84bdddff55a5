"""A message fault layer for testing: drop and delay what a node's subscriptions receive.

A node started by :func:`enpire_common.ros.run_node` with ``ENPIRE_MSG_FAULTS`` set loses or
delays messages the way a lossy, slow network does, so the fault suite can check that a cell
loses at most a trial to it and never hangs. It works at the node's subscriptions (every
message a callback would get passes through it), so it needs no privileges and no kernel
queueing discipline (``tc netem`` is not available on every machine), and it is exact: the
counts it logs are the messages the node's code never saw.

``ENPIRE_MSG_FAULTS`` is one or more rules separated by ``;``::

    [NODE@]TOPIC:drop=P[,delay=S][,jitter=S][,resend=S]

- ``NODE``: a glob on the node's name (default ``*``), e.g. ``policy_host``.
- ``TOPIC``: a glob on the fully resolved topic, e.g. ``/cell_0/state`` or ``*/camera/*``.
- ``drop``: the probability that a message's packet is lost (0-1). On a best-effort
  subscription the message is gone. On a reliable one DDS sends it again: it arrives
  ``resend`` seconds late (default 0.2 s), holding back the ones after it, and a keep-last
  history of depth N keeps only the newest N of those held back (a newer sample replaces an
  older one that never got through). ``resend=0`` loses it even on a reliable subscription,
  as a broken reliability would, to exercise the nodes' own resend logic.
- ``delay``, ``jitter``: each message kept arrives ``delay + U(0, jitter)`` seconds late, in
  the order it was sent (DDS never reorders one writer's samples; a late one holds back the
  ones after it).

The first rule that matches a subscription applies to it. ``ENPIRE_MSG_FAULTS_SEED`` (an
int) makes the losses reproducible per node and topic. Services and actions are not
affected. Every node that applies a rule logs it at start, and its counts at the first
loss and every 10 s after.
"""

from __future__ import annotations

import fnmatch
import heapq
import itertools
import os
import random
import threading
import time
import zlib
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

ENV = 'ENPIRE_MSG_FAULTS'
SEED_ENV = 'ENPIRE_MSG_FAULTS_SEED'
LOG_EVERY_S = 10.0


@dataclass(frozen=True)
class Rule:
    node: str
    topic: str
    drop: float = 0.0
    delay_s: float = 0.0
    jitter_s: float = 0.0
    resend_s: float = 0.2

    @property
    def delays(self) -> bool:
        """Whether some message may arrive late (on a reliable subscription, a resend)."""
        return self.delay_s > 0.0 or self.jitter_s > 0.0 or (self.drop > 0.0
                                                              and self.resend_s > 0.0)

    def matches(self, node: str, topic: str) -> bool:
        return fnmatch.fnmatchcase(node, self.node) and fnmatch.fnmatchcase(topic, self.topic)

    def __str__(self) -> str:
        return (f'drop {self.drop:g} (reliable: '
                + (f'resent after {self.resend_s:g} s' if self.resend_s else 'lost')
                + f'), delay {self.delay_s:g} s'
                + (f' + U(0, {self.jitter_s:g}) s' if self.jitter_s else ''))


def parse(spec: str) -> list[Rule]:
    """The rules of an ``ENPIRE_MSG_FAULTS`` value; ValueError names what is wrong."""
    rules = []
    for part in (p.strip() for p in spec.split(';')):
        if not part:
            continue
        where, sep, opts = part.rpartition(':')
        if not sep or not where:
            raise ValueError(f'{ENV} rule {part!r}: expected [NODE@]TOPIC:drop=P[,delay=S]'
                             '[,jitter=S]')
        node, _, topic = where.rpartition('@')
        values: dict[str, float] = {}
        for opt in opts.split(','):
            key, eq, value = opt.partition('=')
            key = key.strip()
            if key not in ('drop', 'delay', 'jitter', 'resend') or not eq:
                raise ValueError(f'{ENV} rule {part!r}: unknown option {opt!r} (drop, delay, '
                                 'jitter, resend)')
            try:
                values[key] = float(value)
            except ValueError:
                raise ValueError(f'{ENV} rule {part!r}: {key} must be a number, got '
                                 f'{value!r}') from None
        drop = values.get('drop', 0.0)
        delay, jitter = values.get('delay', 0.0), values.get('jitter', 0.0)
        if not 0.0 <= drop <= 1.0:
            raise ValueError(f'{ENV} rule {part!r}: drop must be in [0, 1], got {drop:g}')
        resend = values.get('resend', 0.2)
        if delay < 0.0 or jitter < 0.0 or resend < 0.0:
            raise ValueError(f'{ENV} rule {part!r}: delay, jitter and resend must be >= 0 s')
        rules.append(Rule(node=node or '*', topic=topic, drop=drop, delay_s=delay,
                          jitter_s=jitter, resend_s=resend))
    return rules


class FaultyCallback:
    """Wraps one subscription's callback: drops, then delays (in order) what it receives.

    Delayed messages wait in a queue; a thread hands each back to the node's executor
    through a guard condition when it is due, so the original callback still runs in the
    executor, in its callback group, never on that thread. (The events executor has no
    guard conditions: make_fast_executor gives the single-threaded one while delays are on.)
    """

    def __init__(self, node: Any, topic: str, rule: Rule, callback: Callable[[Any], None],
                 callback_group: Any = None, seed: int | None = None,
                 clock: Callable[[], float] = time.monotonic, *, reliable: bool = False,
                 depth: int = 0) -> None:
        self.topic, self.rule, self._callback, self._clock = topic, rule, callback, clock
        # what a lost packet costs: a resend on a reliable subscription, the message otherwise
        self._resend = rule.resend_s if reliable else 0.0
        self._depth = depth         # keep-last depth (0: keep all)
        self._log = node.get_logger()
        key = zlib.crc32(f'{node.get_name()}@{topic}'.encode())
        self._rng = random.Random(None if seed is None else seed * 1_000_003 + key)
        self.received = self.dropped = self.delayed = self.resent = self.superseded = 0
        self._last_log = clock()
        self._lock = threading.Lock()
        self._due: list[tuple[float, int, Any]] = []     # heap of (due, seq, msg)
        self._seq = itertools.count()
        self._last_due = 0.0
        self._ready: list[Any] = []
        self._wake = threading.Condition(self._lock)
        self._guard = None
        if rule.delay_s > 0.0 or rule.jitter_s > 0.0 or (rule.drop > 0.0 and self._resend):
            self._guard = node.create_guard_condition(self._deliver, callback_group)
            threading.Thread(target=self._hold, name=f'msg-delay {topic}', daemon=True).start()
        self._log.warning(f'message faults on {topic}: {rule} (testing only; {ENV})')

    def __call__(self, msg: Any) -> None:
        with self._lock:
            self.received += 1
            hit = self._rng.random() < self.rule.drop
            lost = hit and not self._resend
            if lost:
                self.dropped += 1
            elif self._guard is not None:
                late = self.rule.delay_s + self._rng.uniform(0.0, self.rule.jitter_s)
                if hit:
                    self.resent += 1
                    late += self._resend
                if late > 0.0:
                    self.delayed += 1
                due = max(self._clock() + late, self._last_due)
                self._last_due = due
                heapq.heappush(self._due, (due, next(self._seq), msg))
                self._wake.notify()
            self._maybe_log(first_drop=hit and self.dropped + self.resent == 1)
        if not lost and self._guard is None:
            self._callback(msg)

    def _maybe_log(self, first_drop: bool = False) -> None:
        now = self._clock()
        if first_drop or now - self._last_log >= LOG_EVERY_S:
            self._last_log = now
            self._log.info(f'message faults on {self.topic}: dropped {self.dropped}, delayed '
                           f'{self.delayed} of {self.received} (resent {self.resent}, '
                           f'superseded {self.superseded})')

    def _hold(self) -> None:
        with self._lock:
            while True:
                while not self._due:
                    self._wake.wait()
                wait = self._due[0][0] - self._clock()
                if wait > 0:
                    self._wake.wait(wait)
                    continue
                self._ready.append(heapq.heappop(self._due)[2])
                if self._depth and len(self._ready) > self._depth:
                    # keep-last: the executor has not taken them yet; the newest N remain
                    self.superseded += len(self._ready) - self._depth
                    del self._ready[:-self._depth]
                self._guard.trigger()

    def _deliver(self) -> None:
        with self._lock:
            ready, self._ready = self._ready, []
        for msg in ready:
            self._callback(msg)


_installed: list[Rule] | None = None


def delays_installed() -> bool:
    """Whether this process's subscriptions may hand messages back late (by guard
    condition: an executor must wait on those)."""
    return any(r.delays for r in _installed or ())


def _reliability(qos: Any) -> tuple[bool, int]:
    """(reliable, keep-last depth or 0) of a subscription's QoS (an int is a reliable
    keep-last depth, as rclpy reads it)."""
    from rclpy.qos import HistoryPolicy, QoSProfile, ReliabilityPolicy

    if isinstance(qos, int):
        return True, qos
    if isinstance(qos, QoSProfile):
        keep_last = qos.history != HistoryPolicy.KEEP_ALL
        return (qos.reliability != ReliabilityPolicy.BEST_EFFORT,
                qos.depth if keep_last else 0)
    return True, 0


def install_from_env(environ: dict[str, str] | None = None) -> list[Rule]:
    """Apply ``ENPIRE_MSG_FAULTS`` to every subscription this process creates from now on.

    Returns the rules (empty: nothing installed). Raises ValueError on a malformed value.
    """
    global _installed
    env = os.environ if environ is None else environ
    spec = env.get(ENV, '').strip()
    if not spec:
        return []
    rules = parse(spec)
    raw_seed = env.get(SEED_ENV, '').strip()
    try:
        seed = int(raw_seed) if raw_seed else None
    except ValueError:
        raise ValueError(f'{SEED_ENV} must be an integer, got {raw_seed!r}') from None
    if _installed is not None:
        return _installed
    from rclpy.node import Node

    original = Node.create_subscription

    def create_subscription(self: Any, msg_type: Any, topic: str, callback: Any,
                            qos_profile: Any, **kwargs: Any) -> Any:
        resolved = self.resolve_topic_name(topic)
        rule = next((r for r in rules if r.matches(self.get_name(), resolved)), None)
        if rule is not None:
            reliable, depth = _reliability(qos_profile)
            callback = FaultyCallback(self, resolved, rule, callback,
                                      kwargs.get('callback_group'), seed, reliable=reliable,
                                      depth=depth)
        return original(self, msg_type, topic, callback, qos_profile, **kwargs)

    Node.create_subscription = create_subscription
    create_subscription.original = original       # type: ignore[attr-defined]
    _installed = rules
    return rules


def uninstall() -> None:
    """Undo :func:`install_from_env` for subscriptions created from now on (tests)."""
    global _installed
    from rclpy.node import Node

    original = getattr(Node.create_subscription, 'original', None)
    if original is not None:
        Node.create_subscription = original
    _installed = None
