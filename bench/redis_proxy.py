"""A TCP proxy on 127.0.0.1 that puts a distance between Redis clients and redis-server.

Each chunk read from one side is written to the other ``delay`` seconds later (each way, so a
round trip costs ``2 * delay`` more), in order; the bandwidth is not limited. Threads rather than
asyncio: the event loop's timers have a resolution of 1 ms (epoll), ``time.sleep`` does not.

It counts round trips: per client connection, each time the client sends after having received
(its first send counts too). A command, a pipeline or a script call is one; what a script does
inside Redis is not seen. Replies are "received" when the proxy has handed them to the client,
and a send counts only if it begins a command: the rest of a long pipeline, sent while Redis
already answers its first commands, is not a new round trip. Each round trip is named by the
first command it sends (a script call: EVALSHA and its first key's name; a transaction: WATCH
or MULTI).

    with DelayProxy(redis_port, delay=0.001) as proxy:
        ...  # clients use proxy.url
    proxy.round_trips  # (time, name) of each
"""

from __future__ import annotations

import contextlib
import queue
import socket
import threading
import time
from collections import Counter
from collections.abc import Callable
from types import TracebackType

HOST = "127.0.0.1"  # both sides: the proxy listens and connects only here
CHUNK = 65536


def command_end(data: bytes, start: int = 0) -> int | None:
    """Where the command that begins at ``start`` ends (RESP: an array of bulk strings; or an
    inline command, one line), None if it is not all there yet."""
    line = data.find(b"\r\n", start)
    if line < 0:
        return None
    if data[start : start + 1] != b"*":
        return line + 2
    position = line + 2
    for _ in range(int(data[start + 1 : line])):
        line = data.find(b"\r\n", position)
        if line < 0:
            return None
        position = line + 2 + int(data[position + 1 : line]) + 2  # $LENGTH\r\nBYTES\r\n
        if position > len(data):
            return None
    return position


def unfinished(data: bytes) -> bytes:
    """The bytes of the last command in ``data`` if it is not all there yet."""
    start = 0
    try:
        while start < len(data) and (end := command_end(data, start)) is not None:
            start = end
    except ValueError:  # not RESP: start again at the next chunk
        return b""
    return data[start:]


def command_name(data: bytes) -> str:
    """The first command of a chunk a client sent (RESP); a script call's with its first key's name
    (``note_search:seen_notes:a3f`` -> ``EVALSHA seen_notes``)."""
    parts = data.split(b"\r\n", 9)  # *N $n NAME $n ARG1 $n ARG2 $n ARG3 ...
    if not data.startswith(b"*") or len(parts) < 3:
        return "?"
    name = parts[2].decode("latin-1").upper()
    if name in ("EVALSHA", "EVAL") and len(parts) > 8 and parts[6] != b"0":
        key = parts[8].decode("latin-1").split(":")  # spider:name[:bucket...]
        return f"{name} {key[1] if len(key) > 1 else key[0]}"
    return name


class _Connection:
    """One client connection and its connection to Redis: a reader and a writer thread each way."""

    def __init__(self, proxy: DelayProxy, client: socket.socket) -> None:
        self.proxy = proxy
        self.client = client
        self.server = socket.create_connection((HOST, proxy.target_port))
        for sock in (self.client, self.server):
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        self.answered = True  # the client received since it last sent (nothing sent yet: its first send counts)
        self.pending = b""  # a command the client has begun to send and not finished
        self.lock = threading.Lock()
        for source, sink, upstream in ((client, self.server, True), (self.server, client, False)):
            chunks: queue.Queue[tuple[float, bytes]] = queue.Queue()
            proxy.spawn(self._read, source, chunks, upstream)
            proxy.spawn(self._write, chunks, sink, upstream)

    def _read(self, source: socket.socket, chunks: queue.Queue[tuple[float, bytes]], upstream: bool) -> None:
        while True:
            try:
                data = source.recv(CHUNK)
            except OSError:
                data = b""
            now = time.monotonic()
            if data and upstream:
                with self.lock:
                    if self.answered and not self.pending:
                        self.answered = False
                        self.proxy.count(time.time(), command_name(data))
                    self.pending = unfinished(self.pending + data)
            chunks.put((now + self.proxy.delay, data))
            if not data:
                return

    def _write(self, chunks: queue.Queue[tuple[float, bytes]], sink: socket.socket, upstream: bool) -> None:
        while True:
            due, data = chunks.get()
            if (wait := due - time.monotonic()) > 0:
                self.proxy.sleep(wait)
            if not data:  # the other side closed: close this one
                self.close()
                return
            if not upstream:  # before the client can have it: its next send is after it received
                with self.lock:
                    self.answered = True
            try:
                sink.sendall(data)
            except OSError:
                self.close()
                return
            self.proxy.late(time.monotonic() - due)

    def close(self) -> None:
        for sock in (self.client, self.server):
            with contextlib.suppress(OSError):
                sock.shutdown(socket.SHUT_RDWR)
            sock.close()


class DelayProxy:
    """``delay`` seconds each way between clients on ``url`` and redis-server on 127.0.0.1:``target_port``."""

    def __init__(self, target_port: int, delay: float) -> None:
        self.target_port = target_port
        self.delay = delay
        self.round_trips: list[tuple[float, str]] = []  # time.time() and command_name() of each
        self.connections = 0
        self._wakeup = 0.0  # seconds time.sleep() oversleeps, a moving average
        self._late = [0.0, 0]  # seconds past the due time, chunks: how far the delay overshot
        self._lock = threading.Lock()
        self._open: list[_Connection] = []
        self._stopping = threading.Event()
        self._listener = socket.create_server((HOST, 0))
        self._listener.settimeout(0.1)
        self.port = self._listener.getsockname()[1]
        self.url = f"redis://{HOST}:{self.port}/0"

    def spawn(self, target: Callable[..., None], *args: object) -> None:
        threading.Thread(target=target, args=args, daemon=True).start()

    def sleep(self, seconds: float) -> None:
        """Sleep so as to wake at ``seconds`` from now on average: ``time.sleep`` wakes 0.1 to 0.5 ms
        late here (timer slack, a busy machine), so aim that much early (a moving average)."""
        aim = max(0.0, seconds - self._wakeup)
        began = time.monotonic()
        time.sleep(aim)
        self._wakeup = min(0.9 * self._wakeup + 0.1 * (time.monotonic() - began - aim), 0.001)

    def count(self, at: float, name: str) -> None:
        with self._lock:
            self.round_trips.append((at, name))

    def late(self, seconds: float) -> None:
        with self._lock:
            self._late[0] += seconds
            self._late[1] += 1

    @property
    def mean_overshoot(self) -> float:
        """Seconds a chunk was forwarded after its due time, on average (thread wake-ups, a busy machine)."""
        with self._lock:
            return self._late[0] / self._late[1] if self._late[1] else 0.0

    def between(self, begin: float, end: float, since: int = 0) -> Counter[str]:
        """Round trips that began in [begin, end] (``time.time()``), by name; ``since``: skip the first ones."""
        with self._lock:
            return Counter(name for at, name in self.round_trips[since:] if begin <= at <= end)

    def _accept(self) -> None:
        while not self._stopping.is_set():
            try:
                client, _ = self._listener.accept()
            except TimeoutError:
                continue
            except OSError:
                return
            try:
                connection = _Connection(self, client)
            except OSError:  # Redis is gone
                client.close()
                continue
            with self._lock:
                self.connections += 1
                self._open.append(connection)

    def __enter__(self) -> DelayProxy:
        self.spawn(self._accept)
        return self

    def __exit__(
        self, kind: type[BaseException] | None, exc: BaseException | None, traceback: TracebackType | None
    ) -> None:
        self.close()

    def close(self) -> None:
        """Stop accepting and cut every connection; the threads end on their own."""
        self._stopping.set()
        self._listener.close()
        with self._lock:
            connections, self._open = self._open, []
        for connection in connections:
            connection.close()
