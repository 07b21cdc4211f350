"""Workers that (re)start while the database is down still boot, and Steward recovers when it comes back.

`serve` checks the database once, in the master, before gunicorn starts; a worker builds the app without
touching it. PostgreSQL is reached through a TCP proxy the test can switch off, so "the database is down"
is real for every worker: connections are cut and new ones reset.
"""

from __future__ import annotations

import os
import signal
import socket
import struct
import subprocess
import threading
import time
from pathlib import Path

import pytest
from sqlalchemy.engine import make_url

from storage.db import Database, normalize_url
from storage.migrate import upgrade
from tests.support.data import PROCESS
from tests.support.harness import Steward, http

pytestmark = pytest.mark.skipif(not os.environ.get("TEST_DATABASE_URL"), reason="needs TEST_DATABASE_URL (PostgreSQL)")


class Proxy:
    """127.0.0.1:port → (host, port), one pair of pump threads per connection. `down()` cuts every
    forwarded connection and resets new ones at once; `up()` forwards again."""

    def __init__(self, host: str, port: int):
        self.target = (host, port)
        self.server = socket.create_server(("127.0.0.1", 0))
        self.port = self.server.getsockname()[1]
        self.forwarding = True
        self.open: set[socket.socket] = set()
        self.lock = threading.Lock()
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self) -> None:
        while True:
            try:
                client, _ = self.server.accept()
            except OSError:
                return  # closed
            if not self.forwarding:
                self._reset(client)
                continue
            try:
                upstream = socket.create_connection(self.target, timeout=5)
                upstream.settimeout(None)
            except OSError:
                self._reset(client)
                continue
            with self.lock:
                self.open.update((client, upstream))
            threading.Thread(target=self._pump, args=(client, upstream), daemon=True).start()
            threading.Thread(target=self._pump, args=(upstream, client), daemon=True).start()

    @staticmethod
    def _reset(sock: socket.socket) -> None:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))  # close with RST
        sock.close()

    def _pump(self, src: socket.socket, dst: socket.socket) -> None:
        try:
            while data := src.recv(65536):
                dst.sendall(data)
        except OSError:
            pass
        for sock in (src, dst):
            self._cut(sock)

    def _cut(self, sock: socket.socket) -> None:
        with self.lock:
            self.open.discard(sock)
        try:
            sock.shutdown(socket.SHUT_RDWR)  # wakes the pump blocked in recv() on it
        except OSError:
            pass
        sock.close()

    def down(self) -> None:
        self.forwarding = False
        with self.lock:
            cut = list(self.open)
        for sock in cut:
            self._cut(sock)

    def up(self) -> None:
        self.forwarding = True

    def close(self) -> None:
        self.down()
        self.server.close()


def workers_of(pid: int) -> set[int]:
    """The live child processes of `pid` (gunicorn's workers of its master)."""
    try:
        children = set()
        for task in Path(f"/proc/{pid}/task").iterdir():
            children.update(int(c) for c in (task / "children").read_text().split())
    except OSError:
        out = subprocess.run(["ps", "--ppid", str(pid), "-o", "pid="], capture_output=True, text=True).stdout
        children = {int(c) for c in out.split()}
    return {c for c in children if _alive(c)}


def _alive(pid: int) -> bool:
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0] != "Z"
    except (OSError, IndexError):
        return False


def wait_for(predicate, timeout: float, what: str, server: Steward):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        assert server.proc.poll() is None, (
            f"serve exited {server.proc.returncode} while waiting for {what}:\n{server.output()}"
        )
        value = predicate()
        if value:
            return value
        time.sleep(0.1)
    raise AssertionError(f"no {what} within {timeout}s:\n{server.output()}")


def healthz(server: Steward):
    try:
        return http(server.url + "/healthz", timeout=2)
    except OSError:
        return None


def test_workers_boot_while_the_database_is_down_and_recover_without_a_restart(fake):
    url = make_url(normalize_url(os.environ["TEST_DATABASE_URL"]))
    db = Database(os.environ["TEST_DATABASE_URL"])
    upgrade(db.engine)  # no-op when the session's fixtures have migrated it already
    db.dispose()
    proxy = Proxy(url.host or "127.0.0.1", url.port or 5432)
    proxied = url.set(host="127.0.0.1", port=proxy.port).render_as_string(hide_password=False)
    server = Steward(proxied, fake.url, PROCESS, workers=2)
    try:
        server.start()  # the master's start-up checks pass through the proxy
        first = workers_of(server.proc.pid)
        assert len(first) == 2, first

        proxy.down()
        r = wait_for(lambda: (h := healthz(server)) and h.status == 503 and h, 10, "503 from /healthz", server)
        assert r.json() == {"ok": False, "database": "down"}

        # Every worker dies while the database is down; the master must replace them, and they must boot.
        for pid in first:
            os.kill(pid, signal.SIGKILL)
        wait_for(
            lambda: (w := workers_of(server.proc.pid)) and len(w) == 2 and not w & first, 20, "two new workers", server
        )
        r = wait_for(lambda: healthz(server), 20, "an answer from a new worker", server)
        assert server.proc.poll() is None
        assert r.status == 503 and r.json() == {"ok": False, "database": "down"}, (r.status, r.raw)

        # A command that needs the database gets a private error, not a 5xx.
        r = server.command("U0ALICE", "list")
        assert r.status == 200, (r.status, r.raw)
        assert r.json()["response_type"] == "ephemeral" and "went wrong" in r.json()["text"], r.raw

        proxy.up()
        wait_for(
            lambda: (h := healthz(server)) and h.status == 200, 5, "200 from /healthz once the database is back", server
        )
        assert healthz(server).json() == {"ok": True, "database": "up"}
        r = server.command("U0ALICE", "help")
        assert r.status == 200 and "/handoff" in r.raw.decode(), (r.status, r.raw)
        r = server.command("U0ALICE", "list")
        assert r.status == 200 and "went wrong" not in r.raw.decode(), (r.status, r.raw)
        assert server.proc.poll() is None
    finally:
        server.stop()
        proxy.close()
