"""The human labeller of ``enpire verify label``: a person says what each frame shows.

Frames come from any iterable of :class:`~enpire_reward.core.labelled_set.FrameToLabel`
(``enpire_rollout.core.frames.TrialFrames``: the final frame of each view of recorded
trials); labels go into a :class:`~enpire_reward.core.labelled_set.LabelledSet`. A frame
already in the set (same trial, view, source and stamp) is not asked again, so a session
resumes where the last one stopped.

Two front ends over the same set:

- :func:`label_in_terminal`: writes the frame to the set's ``pending.png``, prints its path,
  the trial, the view and what the trial's own verifier said (shown, not pre-selected), and
  reads one answer a line: ``s`` success, ``f`` failure, ``i`` invalid (the view cannot
  tell: occluded, unreadable), ``k`` skip, ``q`` quit. A pipe works as well as a terminal.
- :class:`WebLabeller`: a page on 127.0.0.1 with the image and the buttons; a POST stores
  the label. Requests must carry the page's token and a local Host header, so another web
  page cannot label through the browser.
"""

from __future__ import annotations

import html
import secrets
import threading
import time
import urllib.parse
from collections.abc import Callable, Iterable, Iterator, Sized
from http import HTTPStatus
from http.server import BaseHTTPRequestHandler, HTTPServer
from typing import Any, TextIO

from enpire_common.errors import ConfigError
from enpire_reward.core.labelled_set import (
    LABELS,
    FrameToLabel,
    LabelledSet,
    encode_png,
)

#: One answer a line in the terminal: its first letter, or the whole word.
KEYS = {'s': 'success', 'f': 'failure', 'i': 'invalid', 'k': 'skip', 'q': 'quit'}
PROMPT = 'label [s]uccess [f]ailure [i]nvalid s[k]ip [q]uit > '


def describe_recorded(recorded: Any) -> str:
    """One line: what the trial's verifier said (trial.json's outcome, score, verdicts)."""
    if not isinstance(recorded, dict) or not recorded:
        return 'nothing recorded'
    parts = [f"outcome {recorded.get('outcome')}"]
    if isinstance(recorded.get('score'), (int, float)):
        parts.append(f"score {float(recorded['score']):.3f}")
    verdicts = [v for v in recorded.get('verdicts') or () if isinstance(v, dict)]
    if verdicts:
        def one(v: dict[str, Any]) -> str:
            said = 'invalid' if v.get('invalid') else (
                'success' if v.get('success') else 'failure')
            score = v.get('score')
            return f"{v.get('view', '?')} {said}" + (
                f' {float(score):.3f}' if isinstance(score, (int, float)) else '')
        parts.append('verdicts: ' + ', '.join(one(v) for v in verdicts))
    return '; '.join(parts)


class _Progress:
    """What a session has seen and done; ``total`` is the frame source's own count when it
    keeps one (TrialFrames: it drops as unreadable trials are skipped), else its length."""

    def __init__(self, frames: Iterable[FrameToLabel], lset: LabelledSet) -> None:
        self.frames, self.lset = frames, lset
        self.done = self.labelled = self.skipped = 0
        self._known = lset.keys()

    @property
    def total(self) -> int | None:
        total = getattr(self.frames, 'total', None)
        if total is None and isinstance(self.frames, Sized):
            total = len(self.frames)
        return int(total) if total is not None else None

    def line(self) -> str:
        total = self.total
        return f"{self.done}/{total if total is not None else '?'} labelled"

    def unlabelled(self) -> Iterator[FrameToLabel]:
        """The frames not in the set yet (those in it count as done)."""
        for frame in self.frames:
            if frame.key in self._known:
                self.done += 1
                continue
            yield frame

    def stored(self, frame: FrameToLabel) -> None:
        self._known.add(frame.key)
        self.done += 1
        self.labelled += 1

    def result(self, **extra: Any) -> dict[str, Any]:
        return {'ok': True, 'out': str(self.lset.path), 'labelled': self.labelled,
                'skipped': self.skipped, 'done': self.done, 'total': self.total,
                'counts': self.lset.counts(), **extra}


def label_in_terminal(lset: LabelledSet, frames: Iterable[FrameToLabel], *, labeller: str,
                      stdin: TextIO, out: TextIO,
                      wall_s: Callable[[], float] = time.time) -> dict[str, Any]:
    """Ask for a label of every unlabelled frame, one answer a line (see the module doc).

    End of input is ``q``. Returns ``{'ok', 'out', 'labelled', 'skipped', 'done', 'total',
    'counts', 'quit'}`` (``quit``: stopped before the last frame).
    """
    progress = _Progress(frames, lset)
    for frame in progress.unlabelled():
        png = encode_png(frame.image)
        pending = lset.write_pending(png)
        h, w = frame.image.shape[:2]
        print(f'[{progress.line()}] trial {frame.trial_id}  view {frame.view}  '
              f'({frame.source} frame, stamp {frame.stamp_ns}, {w}x{h})', file=out)
        print(f'  image:    {pending}', file=out)
        print(f'  recorded: {describe_recorded(frame.recorded)}', file=out)
        while True:
            print(PROMPT, end='', file=out, flush=True)
            line = stdin.readline()
            answer = line.strip().lower()
            if not _isatty(stdin):
                print(answer, file=out)     # a piped answer: shown where a person's echo is
            choice = 'quit' if not line else KEYS.get(answer) or (
                answer if answer in KEYS.values() else None)
            if choice is not None:
                break
            print(f'  ? {answer!r}: answer s, f, i, k or q', file=out)
        if choice == 'quit':
            print(f'stopped: {progress.line()}', file=out)
            return progress.result(quit=True)
        if choice == 'skip':
            progress.skipped += 1
            continue
        lset.append(frame, choice, labeller=labeller, labelled_at_s=wall_s(), png=png)
        progress.stored(frame)
    lset.pending_path.unlink(missing_ok=True)
    print(f'finished: {progress.line()}', file=out)
    return progress.result(quit=False)


def _isatty(stream: TextIO) -> bool:
    isatty = getattr(stream, 'isatty', None)
    return bool(isatty and isatty())


_PAGE = """<!doctype html>
<html><head><meta charset="utf-8"><title>enpire verify label</title>
<style>body{{font-family:sans-serif;margin:1.5em}} img{{max-width:90vw;max-height:70vh;
image-rendering:pixelated;border:1px solid #888}} button{{font-size:1.2em;margin:.3em}}
</style></head><body>
<p><b>{progress}</b></p>{body}
</body></html>
"""
_FORM = """<p>trial <b>{trial}</b> &nbsp; view <b>{view}</b> &nbsp; ({source} frame, stamp
{stamp})</p>
<p><img src="/frame.png?seq={seq}" alt="frame"></p>
<p>recorded verifier: {recorded}</p>
<form method="post" action="/label">
<input type="hidden" name="token" value="{token}">
<input type="hidden" name="seq" value="{seq}">
<button name="label" value="success" accesskey="s">success (s)</button>
<button name="label" value="failure" accesskey="f">failure (f)</button>
<button name="label" value="invalid" accesskey="i">invalid (i)</button>
<button name="label" value="skip" accesskey="k">skip (k)</button>
</form>
"""
_MAX_BODY = 4096


class WebLabeller:
    """The labeller as a small web page on 127.0.0.1 (see the module doc).

    ``start()`` serves in a thread and returns the page's URL; ``finished`` is set when no
    frame is left; ``stop()`` shuts the server down. ``POST /label`` takes the form fields
    ``token`` and ``seq`` (from the page) and ``label`` (success, failure, invalid or skip)
    and answers 303 to the page.
    """

    def __init__(self, lset: LabelledSet, frames: Iterable[FrameToLabel], *, labeller: str,
                 port: int = 0, wall_s: Callable[[], float] = time.time) -> None:
        self.lset, self.labeller, self.port = lset, labeller, int(port)
        self.token = secrets.token_urlsafe(16)
        self.finished = threading.Event()
        self._wall_s = wall_s
        self._progress = _Progress(frames, lset)
        self._pending = self._progress.unlabelled()
        self._lock = threading.Lock()
        self._frame: FrameToLabel | None = None
        self._png = b''
        self._seq = 0
        self._server: HTTPServer | None = None
        self._thread: threading.Thread | None = None

    @property
    def url(self) -> str:
        return f'http://127.0.0.1:{self.port}/'

    def start(self) -> str:
        """Bind 127.0.0.1:``port`` (0: any free port) and serve; returns the URL.

        Raises:
            ConfigError: the port cannot be bound.
        """
        try:
            self._server = HTTPServer(('127.0.0.1', self.port), self._handler())
        except OSError as exc:
            raise ConfigError(f'cannot serve the labeller on 127.0.0.1:{self.port} ({exc}); '
                              'pass another --port, or 0 for any free one') from None
        self.port = self._server.server_address[1]
        with self._lock:
            self._next()
        self._thread = threading.Thread(target=self._server.serve_forever,
                                        name='enpire-labeller', daemon=True)
        self._thread.start()
        return self.url

    def stop(self) -> dict[str, Any]:
        """Stop serving; returns the session's result (as :func:`label_in_terminal`'s)."""
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
            self._server = None
        if self._thread is not None:
            self._thread.join(timeout=5.0)
        return self._progress.result(quit=not self.finished.is_set())

    def _next(self) -> None:
        self._frame = next(self._pending, None)
        self._seq += 1
        if self._frame is None:
            self._png = b''
            self.lset.pending_path.unlink(missing_ok=True)
            self.finished.set()
        else:
            self._png = encode_png(self._frame.image)
            self.lset.write_pending(self._png)

    def _page(self) -> str:
        frame = self._frame
        if frame is None:
            body = '<p>Every frame is labelled. Close this page; the labeller has stopped.</p>'
        else:
            body = _FORM.format(trial=html.escape(frame.trial_id), view=html.escape(frame.view),
                                source=html.escape(frame.source), stamp=int(frame.stamp_ns),
                                seq=self._seq, token=html.escape(self.token),
                                recorded=html.escape(describe_recorded(frame.recorded)))
        return _PAGE.format(progress=html.escape(self._progress.line()), body=body)

    def _post(self, fields: dict[str, list[str]]) -> tuple[HTTPStatus, str]:
        def one(name: str) -> str:
            values = fields.get(name) or ['']
            return values[0]

        if not secrets.compare_digest(one('token'), self.token):
            return HTTPStatus.FORBIDDEN, 'wrong or missing token: reload the page'
        label = one('label')
        if label not in (*LABELS, 'skip'):
            return HTTPStatus.BAD_REQUEST, f'label must be one of {", ".join(LABELS)} or skip'
        if self._frame is None:
            return HTTPStatus.CONFLICT, 'every frame is labelled already'
        if one('seq') != str(self._seq):
            return HTTPStatus.CONFLICT, 'that frame was answered already: reload the page'
        if label == 'skip':
            self._progress.skipped += 1
        else:
            self.lset.append(self._frame, label, labeller=self.labeller,
                             labelled_at_s=self._wall_s(), png=self._png)
            self._progress.stored(self._frame)
        self._next()
        return HTTPStatus.SEE_OTHER, ''

    def _handler(self) -> type[BaseHTTPRequestHandler]:
        web = self

        class Handler(BaseHTTPRequestHandler):
            server_version = 'enpire-labeller'

            def log_message(self, format: str, *args: Any) -> None:  # noqa: A002
                pass        # the terminal shows the session's progress, not each request

            def _local(self) -> bool:
                # a page of another site that resolves to 127.0.0.1 (DNS rebinding) sends
                # its own name as Host
                host = (self.headers.get('Host') or '').strip().lower()
                return host in (f'127.0.0.1:{web.port}', f'localhost:{web.port}')

            def _send(self, status: HTTPStatus, body: bytes, ctype: str,
                      location: str = '') -> None:
                self.send_response(status)
                self.send_header('Content-Type', ctype)
                self.send_header('Content-Length', str(len(body)))
                self.send_header('Cache-Control', 'no-store')
                if location:
                    self.send_header('Location', location)
                self.end_headers()
                self.wfile.write(body)

            def _text(self, status: HTTPStatus, text: str) -> None:
                self._send(status, (text + '\n').encode(), 'text/plain; charset=utf-8')

            def do_GET(self) -> None:  # noqa: N802 - http.server's name
                if not self._local():
                    return self._text(HTTPStatus.FORBIDDEN, 'not a local request')
                path = urllib.parse.urlsplit(self.path).path
                with web._lock:
                    if path == '/':
                        return self._send(HTTPStatus.OK, web._page().encode(),
                                          'text/html; charset=utf-8')
                    if path == '/frame.png' and web._png:
                        return self._send(HTTPStatus.OK, web._png, 'image/png')
                return self._text(HTTPStatus.NOT_FOUND, 'not found')

            def do_POST(self) -> None:  # noqa: N802 - http.server's name
                if not self._local():
                    return self._text(HTTPStatus.FORBIDDEN, 'not a local request')
                if urllib.parse.urlsplit(self.path).path != '/label':
                    return self._text(HTTPStatus.NOT_FOUND, 'not found')
                try:
                    length = int(self.headers.get('Content-Length') or 0)
                except ValueError:
                    length = -1
                if not 0 <= length <= _MAX_BODY:
                    return self._text(HTTPStatus.BAD_REQUEST, 'bad Content-Length')
                fields = urllib.parse.parse_qs(self.rfile.read(length).decode('utf-8', 'replace'))
                with web._lock:
                    status, text = web._post(fields)
                if status == HTTPStatus.SEE_OTHER:
                    return self._send(status, b'', 'text/plain', location='/')
                return self._text(status, text)

        return Handler


__all__ = ['KEYS', 'WebLabeller', 'describe_recorded', 'label_in_terminal']
