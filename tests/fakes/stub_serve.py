"""A stand-in for `ganops serve` that a test can hold back: it answers /healthz at once and
/readyz only while no file `hold-<version>` is in the gates folder (the version is the last
path segment of the model URI), so a rollout to that version waits, as it would for a model
that loads slowly. `python tests/fakes/stub_serve.py --model-uri URI --port P --gates DIR`.
"""

from __future__ import annotations

import argparse
import http.server
from pathlib import Path


def main() -> None:
    p = argparse.ArgumentParser()
    p.add_argument("--model-uri", required=True)
    p.add_argument("--port", type=int, required=True)
    p.add_argument("--gates", type=Path, required=True)
    args = p.parse_args()
    hold = args.gates / f"hold-{args.model_uri.rsplit('/', 1)[-1]}"

    class Handler(http.server.BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            ready = not hold.exists()
            code, body = {
                "/healthz": (200, "ok"),
                "/readyz": (200 if ready else 503, "ready" if ready else "loading"),
                "/model": (200, args.model_uri),
            }.get(self.path, (404, "no"))
            self.send_response(code)
            self.end_headers()
            self.wfile.write(body.encode())

        def log_message(self, format: str, *a: object) -> None:
            pass

    print("serving", args.model_uri, "on", args.port, flush=True)
    http.server.HTTPServer(("127.0.0.1", args.port), Handler).serve_forever()


if __name__ == "__main__":
    main()
