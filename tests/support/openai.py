"""A small OpenAI-compatible chat-completions server for the tests of every LLM-backed
feature (no real endpoint is reachable here)."""

from __future__ import annotations

import json
import threading
from collections import deque
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer


class ChatServer:
    """A tiny OpenAI-compatible ``/v1/chat/completions`` server with scripted replies.

    Each reply is (status, body, headers); when the script runs out, it echoes the last
    user message. Every request body and its headers are recorded.
    """

    def __init__(self) -> None:
        self.script: deque = deque()
        self.requests: list[tuple[dict, dict]] = []
        outer = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args):  # keep test output clean
                pass

            def do_POST(self):
                length = int(self.headers.get("Content-Length", 0))
                body = json.loads(self.rfile.read(length))
                outer.requests.append((body, dict(self.headers)))
                if self.path != "/v1/chat/completions":
                    return self._send(404, {"error": "not found"})
                if outer.script:
                    status, payload, headers = outer.script.popleft()
                    return self._send(status, payload, headers)
                text = body["messages"][-1]["content"]
                return self._send(200, completion(f"echo: {text}"))

            def _send(self, status, payload, headers=None):
                raw = payload if isinstance(payload, bytes) else json.dumps(payload).encode()
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(raw)))
                for k, v in (headers or {}).items():
                    self.send_header(k, v)
                self.end_headers()
                self.wfile.write(raw)

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.httpd.server_address[1]}/v1"
        self.thread = threading.Thread(target=self.httpd.serve_forever, daemon=True)
        self.thread.start()

    def close(self) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()


def completion(text: str) -> dict:
    """A chat-completions response body with one choice."""
    return {
        "id": "chatcmpl-1",
        "object": "chat.completion",
        "choices": [{"index": 0, "message": {"role": "assistant", "content": text}}],
    }
