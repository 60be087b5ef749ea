"""A stand-in for `ganops serve` that a test can hold back: it answers /healthz at once and
/readyz only while no file `hold-<version>` is in the gates folder (the version is the last
path segment of the model URI), so a rollout to that version waits, as it would for a model
that loads slowly. `python tests/fakes/stub_serve.py --model-uri URI --port P --gates DIR`.

For the split in front of it: HTTP/1.1 keep-alive, every answer names the server in
`X-Served-By` (its model URI), `POST /echo` answers the request's body unchanged with its
`X-*` and `Inference-*` headers echoed as `X-Echo-<name>`, and `GET /status/NNN` answers NNN.
"""

from __future__ import annotations

import argparse
import http.server
import socket
from pathlib import Path


def main() -> None:
    p = argparse.ArgumentParser()
    p.add_argument("--model-uri", required=True)
    p.add_argument("--port", type=int, required=True)
    p.add_argument("--gates", type=Path, required=True)
    args = p.parse_args()
    hold = args.gates / f"hold-{args.model_uri.rsplit('/', 1)[-1]}"

    class Handler(http.server.BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def setup(self) -> None:
            super().setup()
            # Head and body are two writes: without this the body waits for a delayed ACK.
            self.connection.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)

        def do_GET(self) -> None:
            ready = not hold.exists()
            code, body = {
                "/healthz": (200, "ok"),
                "/readyz": (200 if ready else 503, "ready" if ready else "loading"),
                "/model": (200, args.model_uri),
            }.get(self.path, (404, "no"))
            if self.path.startswith("/status/"):
                code, body = int(self.path.rsplit("/", 1)[1]), "as asked"
            self._answer(code, body.encode(), {})

        def do_POST(self) -> None:
            data = self.rfile.read(int(self.headers.get("Content-Length") or 0))
            if self.path != "/echo":
                self._answer(404, b"no", {})
                return
            echoed = {
                f"X-Echo-{name}": value
                for name, value in self.headers.items()
                if name.lower().startswith(("x-", "inference-"))
            }
            self._answer(200, data, {"Content-Type": "application/octet-stream", **echoed})

        def _answer(self, code: int, body: bytes, headers: dict[str, str]) -> None:
            self.send_response(code)
            self.send_header("X-Served-By", args.model_uri)
            self.send_header("Content-Length", str(len(body)))
            for name, value in headers.items():
                self.send_header(name, value)
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, format: str, *a: object) -> None:
            pass

    print("serving", args.model_uri, "on", args.port, flush=True)
    http.server.ThreadingHTTPServer(("127.0.0.1", args.port), Handler).serve_forever()


if __name__ == "__main__":
    main()
