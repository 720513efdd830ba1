"""Servers a fault test starts for itself on 127.0.0.1 (never the shared Redis or Stripe).

SilentServer accepts connections, reads what it is sent and never answers: a paused Redis
(SIGSTOP) or a provider that hangs. FakeStripe answers Stripe-shaped JSON over HTTP and can
hold its answers back until the test lets them go.
"""

import json
import socket
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer


class SilentServer:
    def __init__(self) -> None:
        self._sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        self._sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self._sock.bind(("127.0.0.1", 0))
        self._sock.listen(64)
        self.port = self._sock.getsockname()[1]
        self.connections: list[socket.socket] = []
        self.received = bytearray()
        self.got_data = threading.Event()
        self._stop = threading.Event()
        self._threads: list[threading.Thread] = []

    def __enter__(self) -> "SilentServer":
        thread = threading.Thread(target=self._accept, daemon=True)
        thread.start()
        self._threads.append(thread)
        return self

    def __exit__(self, *exc) -> None:
        self._stop.set()
        self._sock.close()
        for conn in self.connections:
            conn.close()

    def _accept(self) -> None:
        self._sock.settimeout(0.1)
        while not self._stop.is_set():
            try:
                conn, _ = self._sock.accept()
            except OSError:
                continue
            self.connections.append(conn)
            reader = threading.Thread(target=self._read, args=(conn,), daemon=True)
            reader.start()

    def _read(self, conn: socket.socket) -> None:
        conn.settimeout(0.1)
        while not self._stop.is_set():
            try:
                data = conn.recv(65536)
            except TimeoutError:
                continue
            except OSError:
                return
            if not data:
                return
            self.received += data
            self.got_data.set()


class FakeStripe:
    """POST /v1/checkout/sessions and /v1/customers answered like Stripe, one session per
    idempotency key; `hold` keeps every answer back until `release()`."""

    def __init__(self, *, hold: bool = False) -> None:
        self.requests: list[tuple[str, str, str]] = []  # (method, path, idempotency key)
        self.sessions: dict[str, dict] = {}
        self.released = threading.Event()
        if not hold:
            self.released.set()
        self.request_arrived = threading.Event()
        fake = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args) -> None:
                pass

            def do_POST(self) -> None:
                self.rfile.read(int(self.headers.get("Content-Length") or 0))
                key = self.headers.get("Idempotency-Key", "")
                fake.requests.append(("POST", self.path, key))
                fake.request_arrived.set()
                fake.released.wait(30)
                if self.path == "/v1/customers":
                    self._answer(200, {"id": "cus_fake", "object": "customer"})
                elif self.path == "/v1/checkout/sessions":
                    n = len(fake.sessions) + 1
                    session = fake.sessions.setdefault(
                        key,
                        {
                            "id": f"cs_test_fake{n}",
                            "object": "checkout.session",
                            "url": f"https://checkout.stripe.com/c/pay/fake{n}",
                            "status": "open",
                        },
                    )
                    self._answer(200, session)
                else:
                    self._answer(404, {"error": {"type": "invalid_request_error"}})

            def _answer(self, status: int, body: dict) -> None:
                data = json.dumps(body).encode()
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                self.send_header("Request-Id", "req_fake")
                self.end_headers()
                self.wfile.write(data)

        self._server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self._server.daemon_threads = True
        self.url = f"http://127.0.0.1:{self._server.server_address[1]}"

    def release(self) -> None:
        self.released.set()

    def posts(self, path: str) -> list[str]:
        return [key for method, p, key in self.requests if method == "POST" and p == path]

    def __enter__(self) -> "FakeStripe":
        threading.Thread(target=self._server.serve_forever, daemon=True).start()
        return self

    def __exit__(self, *exc) -> None:
        self.released.set()
        self._server.shutdown()
        self._server.server_close()
