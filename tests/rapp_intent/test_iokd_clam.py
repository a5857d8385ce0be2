"""C-LAM backends: the OpenAI-compatible client against a local HTTP server that speaks
the chat-completions protocol, the completion cache, and the local SmolLM2 backend."""

from __future__ import annotations

import json
import threading
from collections import deque
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

from rapp_intent.iokd.clam import CachedClam, ClamSettings, LocalClam, OpenAIClam, make_clam


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
                return self._send(200, _completion(f"echo: {text}"))

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


def _completion(text: str) -> dict:
    return {
        "id": "chatcmpl-1",
        "object": "chat.completion",
        "choices": [{"index": 0, "message": {"role": "assistant", "content": text}}],
    }


@pytest.fixture
def server():
    srv = ChatServer()
    yield srv
    srv.close()


def _settings(server: ChatServer, **kw) -> ClamSettings:
    values = {"base_url": server.url, "model": "big-model", "backoff_s": 0.0, "concurrency": 2}
    return ClamSettings(_env_file=None, **(values | kw))


CONV = [{"role": "system", "content": "be brief"}, {"role": "user", "content": "hello"}]


def test_openai_backend_speaks_chat_completions(server) -> None:
    clam = OpenAIClam(_settings(server, api_key="sk-test"))
    out = clam.chat([CONV, [{"role": "user", "content": "two"}]], max_tokens=16, temperature=0.5)
    assert [c.text for c in out] == ["echo: hello", "echo: two"]
    body, headers = server.requests[0]
    assert body["model"] == "big-model" and body["max_tokens"] == 16
    assert body["temperature"] == 0.5
    assert sorted(r[0]["messages"][-1]["content"] for r in server.requests) == ["hello", "two"]
    assert headers["Authorization"] == "Bearer sk-test"
    assert clam.name == "openai:big-model"
    clam.close()


def test_openai_backend_retries_transient_errors_and_strips_reasoning(server) -> None:
    server.script.extend(
        [
            (429, {"error": "slow down"}, {"Retry-After": "0"}),
            (503, {"error": "busy"}, {}),
            (200, _completion("<think>hmm, let me see</think>\nRequest: fine"), {}),
        ]
    )
    (out,) = OpenAIClam(_settings(server)).chat([CONV], max_tokens=8, temperature=0)
    assert out.ok and out.text == "Request: fine"
    assert len(server.requests) == 3


def test_openai_backend_reports_errors_instead_of_raising(server) -> None:
    server.script.extend([(500, {"error": "down"}, {})] * 3)
    (out,) = OpenAIClam(_settings(server, max_retries=2)).chat([CONV], max_tokens=8, temperature=0)
    assert not out.ok and "gave up after 3 attempts" in out.error and "HTTP 500" in out.error
    server.script.append((401, {"error": "bad key"}, {}))
    (out,) = OpenAIClam(_settings(server)).chat([CONV], max_tokens=8, temperature=0)
    assert not out.ok and "HTTP 401" in out.error  # not retried
    server.script.append((200, b"not json", {}))
    (out,) = OpenAIClam(_settings(server)).chat([CONV], max_tokens=8, temperature=0)
    assert not out.ok and "malformed" in out.error
    server.script.append((200, {"choices": []}, {}))
    (out,) = OpenAIClam(_settings(server)).chat([CONV], max_tokens=8, temperature=0)
    assert not out.ok and "malformed" in out.error
    dead = ClamSettings(_env_file=None, base_url="http://127.0.0.1:9/v1", model="m", max_retries=0)
    (out,) = OpenAIClam(dead).chat([CONV], max_tokens=8, temperature=0)
    assert not out.ok and "transport error" in out.error


def test_openai_backend_refuses_malformed_input(server) -> None:
    clam = OpenAIClam(_settings(server))
    with pytest.raises(ValueError, match="malformed"):
        clam.chat([[{"role": "tool", "content": "x"}]], max_tokens=8, temperature=0)
    with pytest.raises(ValueError, match="model name"):
        OpenAIClam(_settings(server, model=""))


def test_settings_come_from_the_environment(monkeypatch, server, tmp_path) -> None:
    monkeypatch.setenv("RAPP_CLAM_BACKEND", "openai")
    monkeypatch.setenv("RAPP_CLAM_BASE_URL", server.url)
    monkeypatch.setenv("RAPP_CLAM_MODEL", "deepseek-r1")
    monkeypatch.setenv("RAPP_CLAM_API_KEY", "secret")
    settings = ClamSettings(_env_file=None)
    assert "secret" not in repr(settings)
    clam = make_clam(settings, tmp_path)
    assert isinstance(clam, OpenAIClam) and clam.name == "openai:deepseek-r1"
    (out,) = clam.chat([CONV], max_tokens=4, temperature=0)
    assert out.text == "echo: hello"


def test_cached_clam_answers_repeats_from_its_file(server, tmp_path) -> None:
    path = tmp_path / "cache.jsonl"
    clam = CachedClam(OpenAIClam(_settings(server)), path)
    first = clam.chat([CONV], max_tokens=8, temperature=0.7)
    assert len(server.requests) == 1 and clam.misses == 1
    again = CachedClam(OpenAIClam(_settings(server)), path)  # a new process
    assert again.chat([CONV], max_tokens=8, temperature=0.7) == first
    assert len(server.requests) == 1 and again.hits == 1
    again.chat([CONV], max_tokens=9, temperature=0.7)  # other parameters: a miss
    assert len(server.requests) == 2
    server.script.append((400, {"error": "no"}, {}))
    (failed,) = again.chat([[{"role": "user", "content": "new"}]], max_tokens=8, temperature=0)
    assert not failed.ok  # failures are not cached: the next run asks again
    (ok,) = again.chat([[{"role": "user", "content": "new"}]], max_tokens=8, temperature=0)
    assert ok.text == "echo: new"


def test_local_backend_shares_the_prompt_prefix_without_changing_answers(tmp_path) -> None:
    """Greedy answers of the prefix-cached batch equal those of transformers' generate()."""
    import torch

    from rapp_intent.settings import RappSettings

    cache = RappSettings(_env_file=None).cache_dir
    clam = LocalClam(cache, batch_size=4)
    system = {"role": "system", "content": "You rewrite requests in other words. " * 4}
    convs = [
        [system, {"role": "user", "content": "Rewrite: quick, what's the capital of Peru"}],
        [system, {"role": "user", "content": "Rewrite: render the scene for my headset"}],
    ]
    answers = clam.chat(convs, max_tokens=12, temperature=0)
    assert all(a.ok and a.text for a in answers)
    tok, model = clam._tokenizer, clam._model
    for conv, answer in zip(convs, answers, strict=True):
        text = tok.apply_chat_template(conv, tokenize=False, add_generation_prompt=True)
        ids = tok(text, return_tensors="pt", add_special_tokens=False)
        with torch.inference_mode():
            ref = model.generate(**ids, max_new_tokens=12, do_sample=False)
        expected = tok.decode(ref[0, ids["input_ids"].shape[1] :], skip_special_tokens=True)
        assert answer.text == expected.strip()
    sampled = clam.chat(convs, max_tokens=8, temperature=0.8)
    assert sampled == clam.chat(convs, max_tokens=8, temperature=0.8)  # seeded
