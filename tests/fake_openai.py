"""A small OpenAI-shaped HTTP server on 127.0.0.1 for build tests: each POST's JSON body goes to `answer(body)`,
which returns (status, payload)."""

from __future__ import annotations

import json
import threading
from collections.abc import Callable
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer


def send_json(handler: BaseHTTPRequestHandler, status: int, payload: dict, headers: dict | None = None) -> None:
    """Answer the handler's request with `payload` as JSON."""
    data = json.dumps(payload).encode()
    handler.send_response(status)
    handler.send_header("Content-Type", "application/json")
    handler.send_header("Content-Length", str(len(data)))
    for name, value in (headers or {}).items():
        handler.send_header(name, value)
    handler.end_headers()
    handler.wfile.write(data)


class LocalHTTPServer:
    """A handler class served from a background thread on a free port of 127.0.0.1 (a context manager); `url` is the
    base URL a recipe's `openai.base_url` takes."""

    def serve(self, handler: type[BaseHTTPRequestHandler], server_class=ThreadingHTTPServer) -> None:
        self.httpd = server_class(("127.0.0.1", 0), handler)
        self.url = f"http://127.0.0.1:{self.httpd.server_address[1]}/v1"

    def __enter__(self):
        threading.Thread(target=self.httpd.serve_forever, daemon=True).start()
        return self

    def __exit__(self, *exc):
        self.httpd.shutdown()
        self.httpd.server_close()


class OpenAIShapedServer(LocalHTTPServer):
    """Serves `answer`: each POST's JSON body in, (status, payload) out."""

    def __init__(self, answer: Callable[[dict], tuple[int, dict]]):
        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args):
                pass

            def do_POST(self):
                send_json(self, *answer(json.loads(self.rfile.read(int(self.headers["Content-Length"])))))

        self.serve(Handler)


def chat_completion(texts: list[str], completion_tokens: int = 8) -> dict:
    """A chat-completion payload with one choice per text."""
    return {"choices": [{"index": i, "finish_reason": "stop", "message": {"role": "assistant", "content": text}}
                        for i, text in enumerate(texts)],
            "usage": {"prompt_tokens": 20, "completion_tokens": completion_tokens * len(texts)}}
