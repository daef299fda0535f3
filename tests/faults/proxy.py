"""A TCP proxy in front of redis-server that can stall a bulk transaction mid-way.

The CLI connects through it. When a connection sends a large read (a bulk chunk) that
starts a MULTI, the proxy forwards the MULTI and holds the rest: the server is left with
an open transaction, the client believes it sent everything (EXEC included). The test then
injects its fault (kill -9 the server, cut memory, signal the CLI) and releases or drops
what is held. Replies can be held too, so the client learns nothing until released.
"""

from __future__ import annotations

import contextlib
import socket
import threading

from echoes_ops.local.redis_server import free_port

MULTI = b"*1\r\n$5\r\nMULTI\r\n"
BULK = 4096  # a read this large that starts a MULTI is a bulk transaction


class StallProxy:
    def __init__(self, target_port: int) -> None:
        self.target_port = target_port
        self.port = free_port()
        self.held = threading.Event()  # a transaction is being held
        self._release = threading.Event()
        self._replies_open = threading.Event()
        self._replies_open.set()
        self._pending = b""
        self._listener = socket.create_server(("127.0.0.1", self.port))
        self._closed = False
        threading.Thread(target=self._accept, daemon=True).start()

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    def release(self, *, hold_replies: bool = False) -> None:
        """Forward what is held; with ``hold_replies``, keep the server's answers back
        until :meth:`release_replies`."""
        if hold_replies:
            self._replies_open.clear()
        self._release.set()

    def release_replies(self) -> None:
        self._replies_open.set()

    def close(self) -> None:
        self._closed = True
        self._release.set()
        self._replies_open.set()
        self._listener.close()

    def _accept(self) -> None:
        while not self._closed:
            try:
                client, _ = self._listener.accept()
            except OSError:
                return
            try:
                server = socket.create_connection(("127.0.0.1", self.target_port))
            except OSError:
                client.close()  # the server is down: the client sees the connection fail
                continue
            threading.Thread(target=self._up, args=(client, server), daemon=True).start()
            threading.Thread(target=self._down, args=(server, client), daemon=True).start()

    def _up(self, client: socket.socket, server: socket.socket) -> None:
        holding_this = False
        try:
            while data := client.recv(65536):
                if not self.held.is_set() and len(data) >= BULK and data.startswith(MULTI):
                    holding_this = True
                    server.sendall(data[: len(MULTI) + 256])
                    self._pending = data[len(MULTI) + 256 :]
                    self.held.set()
                    self._release.wait()
                    server.sendall(self._pending)
                    continue
                if holding_this and not self._release.is_set():
                    self._release.wait()
                server.sendall(data)
        except OSError:
            pass
        finally:
            _close(client, server)

    def _down(self, server: socket.socket, client: socket.socket) -> None:
        try:
            while data := server.recv(65536):
                self._replies_open.wait()
                client.sendall(data)
        except OSError:
            pass
        finally:
            _close(client, server)


def _close(*socks: socket.socket) -> None:
    for sock in socks:
        with contextlib.suppress(OSError):
            sock.shutdown(socket.SHUT_RDWR)
        sock.close()
