"""A hub address for tests that counts the connections made to it: what "fails fast" and "no retry loop"
mean, checked without a wall-clock bound."""

from __future__ import annotations

import socket
import threading


class Hub:
    """A hub address that counts the connections made to it: `reset` closes each at once (a hub that is
    down), `silent` holds each open and never answers (a black hole, a dead proxy)."""

    def __init__(self, answer: str):
        self.sock = socket.socket()
        self.sock.bind(("127.0.0.1", 0))
        self.sock.listen(64)
        self.url = f"http://127.0.0.1:{self.sock.getsockname()[1]}"
        self.answer, self.connections, self.held = answer, 0, []
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self) -> None:
        while True:
            try:
                conn, _ = self.sock.accept()
            except OSError:  # closed
                return
            self.connections += 1
            conn.close() if self.answer == "reset" else self.held.append(conn)

    def close(self) -> None:
        for conn in self.held:
            conn.close()
        self.sock.close()


def refused_url() -> str:
    """A hub address that refuses connections (nothing listens there; none can be counted)."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return f"http://127.0.0.1:{s.getsockname()[1]}"  # closed again on return
