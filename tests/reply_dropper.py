"""A TCP proxy in front of a real server that, when armed, closes the client's connection at
the first bytes of the next reply: the server ran the command, the client never hears back.
Used to check that a store does not send a command again after its reply was lost."""

from __future__ import annotations

import contextlib
import socket
import threading


class ReplyDropper:
    def __init__(self, host: str, port: int) -> None:
        self.target = (host, port)
        self.listener = socket.create_server(("127.0.0.1", 0))
        self.port: int = self.listener.getsockname()[1]
        self.lock = threading.Lock()
        self.skip: int | None = None  # armed: replies to let through before the one cut
        self.dropped = 0
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self) -> None:
        while True:
            try:
                client, _ = self.listener.accept()
            except OSError:  # closed
                return
            server = socket.create_connection(self.target)
            for src, dst, replies in ((client, server, False), (server, client, True)):
                threading.Thread(target=self._pipe, args=(src, dst, replies), daemon=True).start()

    def _pipe(self, src: socket.socket, dst: socket.socket, replies: bool) -> None:
        try:
            while data := src.recv(65536):
                if replies and self._cut():
                    break
                dst.sendall(data)
        except OSError:
            pass
        finally:
            for sock in (src, dst):
                with contextlib.suppress(OSError):
                    sock.shutdown(socket.SHUT_RDWR)
                sock.close()

    def arm(self, skip: int = 0) -> None:
        """Cut the connection at the reply after the next ``skip`` (one reply per read: the
        clients here wait for each reply before sending on)."""
        with self.lock:
            self.skip = skip

    def _cut(self) -> bool:
        with self.lock:
            if self.skip is None:
                return False
            if self.skip > 0:
                self.skip -= 1
                return False
            self.skip = None
            self.dropped += 1
            return True

    def close(self) -> None:
        self.listener.close()
