"""A fake Socket Mode server on loopback: the WebSocket end of Slack's Socket Mode, for one app.

`apps.connections.open` on the fake Web API answers `url` (set `FakeSlack.socket_url`). Each connection
gets Slack's `hello` as soon as the WebSocket handshake is done; the test can then send envelopes (a
slash command, an interaction) and read what the app sends back (the acks), or `drop()` a connection the
way a network does: the TCP connection closes with no WebSocket close frame.

Only what Socket Mode uses is spoken: the RFC 6455 handshake, unfragmented text frames, ping/pong and
close; frames from the client are masked, frames to it are not.
"""

from __future__ import annotations

import base64
import hashlib
import json
import queue
import socket
import struct
import threading
import time

GUID = "258EAFA5-E914-47DA-95CA-C5AB0DC85B11"
TEXT, CLOSE, PING, PONG = 0x1, 0x8, 0x9, 0xA


class Connection:
    def __init__(self, sock: socket.socket, number: int):
        self.sock, self.number = sock, number
        self.opened_at = time.monotonic()
        self.received: queue.Queue[dict] = queue.Queue()  # the app's text frames, parsed
        self.closed = threading.Event()
        self._send_lock = threading.Lock()

    def send(self, message: dict) -> None:
        self._frame(TEXT, json.dumps(message).encode())

    def _frame(self, opcode: int, payload: bytes) -> None:
        n = len(payload)
        head = bytes([0x80 | opcode]) + (
            bytes([n])
            if n < 126
            else bytes([126]) + struct.pack("!H", n)
            if n < 65536
            else bytes([127]) + struct.pack("!Q", n)
        )
        with self._send_lock:
            self.sock.sendall(head + payload)

    def drop(self) -> None:
        """Close the TCP connection without a WebSocket close frame (a FIN, as when a proxy or NAT gives up)."""
        try:
            self.sock.shutdown(socket.SHUT_RDWR)
        except OSError:
            pass
        self.sock.close()
        self.closed.set()

    def next_message(self, timeout: float = 10) -> dict:
        return self.received.get(timeout=timeout)


class FakeSocketMode:
    def __init__(self, app_id: str = "A0STEWARD"):
        self.app_id = app_id
        self.server = socket.create_server(("127.0.0.1", 0))
        self.url = f"ws://127.0.0.1:{self.server.getsockname()[1]}/link/?ticket=fake"
        self.connections: list[Connection] = []
        self._lock = threading.Lock()
        self._new = threading.Condition(self._lock)
        threading.Thread(target=self._accept, daemon=True).start()

    def close(self) -> None:
        self.server.close()
        for conn in list(self.connections):
            conn.drop()

    def wait_for_connection(self, number: int, timeout: float) -> Connection | None:
        """The `number`th connection (1 for the first), once its hello is sent; None if none within `timeout`."""
        deadline = time.monotonic() + timeout
        with self._new:
            while len(self.connections) < number:
                left = deadline - time.monotonic()
                if left <= 0 or not self._new.wait(left):
                    if len(self.connections) < number:
                        return None
            return self.connections[number - 1]

    # -- the server side ---------------------------------------------------------------------------
    def _accept(self) -> None:
        while True:
            try:
                sock, _ = self.server.accept()
            except OSError:
                return  # closed
            threading.Thread(target=self._serve, args=(sock,), daemon=True).start()

    def _serve(self, sock: socket.socket) -> None:
        try:
            request = b""
            while b"\r\n\r\n" not in request:
                chunk = sock.recv(4096)
                if not chunk:
                    return
                request += chunk
            headers = {}
            for line in request.split(b"\r\n\r\n")[0].decode("latin-1").split("\r\n")[1:]:
                name, _, value = line.partition(":")
                headers[name.strip().lower()] = value.strip()
            accept = base64.b64encode(hashlib.sha1((headers["sec-websocket-key"] + GUID).encode()).digest()).decode()
            sock.sendall(
                (
                    "HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
                    f"Sec-WebSocket-Accept: {accept}\r\n\r\n"
                ).encode()
            )
            with self._new:
                conn = Connection(sock, len(self.connections) + 1)
            conn.send(
                {
                    "type": "hello",
                    "num_connections": 1,
                    "debug_info": {"host": "fake", "approximate_connection_time": 3600},
                    "connection_info": {"app_id": self.app_id},
                }
            )
            with self._new:
                self.connections.append(conn)
                self._new.notify_all()
            self._read(conn)
        except (OSError, KeyError, ValueError):
            pass
        finally:
            try:
                sock.close()
            except OSError:
                pass

    @staticmethod
    def _exactly(sock: socket.socket, n: int) -> bytes:
        data = b""
        while len(data) < n:
            chunk = sock.recv(n - len(data))
            if not chunk:
                raise ConnectionError("closed")
            data += chunk
        return data

    def _read(self, conn: Connection) -> None:
        sock = conn.sock
        try:
            while True:
                b0, b1 = self._exactly(sock, 2)
                opcode, n = b0 & 0x0F, b1 & 0x7F
                if n == 126:
                    (n,) = struct.unpack("!H", self._exactly(sock, 2))
                elif n == 127:
                    (n,) = struct.unpack("!Q", self._exactly(sock, 8))
                mask = self._exactly(sock, 4) if b1 & 0x80 else b"\0\0\0\0"
                payload = bytes(byte ^ mask[i % 4] for i, byte in enumerate(self._exactly(sock, n)))
                if opcode == TEXT:
                    conn.received.put(json.loads(payload))
                elif opcode == PING:
                    conn._frame(PONG, payload)
                elif opcode == CLOSE:
                    conn._frame(CLOSE, payload[:2])
                    return
        except (OSError, ConnectionError, ValueError):
            return
        finally:
            conn.closed.set()
