"""Chat models: the OpenAI-compatible client against a local HTTP server that speaks
the chat-completions protocol, the completion cache, and the local SmolLM2 backend."""

from __future__ import annotations

import subprocess
import sys

import pytest
from support.openai import ChatServer, completion

from llmkit import chat as llmkit_chat
from llmkit.chat import CachedChat, ChatSettings, OpenAIChat, make_chat
from llmkit.local import LocalChat


@pytest.fixture
def server():
    srv = ChatServer()
    yield srv
    srv.close()


def _settings(server: ChatServer, **kw) -> ChatSettings:
    values = {"base_url": server.url, "model": "big-model", "backoff_s": 0.0, "concurrency": 2}
    return ChatSettings(_env_file=None, **(values | kw))


CONV = [{"role": "system", "content": "be brief"}, {"role": "user", "content": "hello"}]


def test_openai_backend_speaks_chat_completions(server) -> None:
    clam = OpenAIChat(_settings(server, api_key="sk-test"))
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
            (200, completion("<think>hmm, let me see</think>\nRequest: fine"), {}),
        ]
    )
    (out,) = OpenAIChat(_settings(server)).chat([CONV], max_tokens=8, temperature=0)
    assert out.ok and out.text == "Request: fine"
    assert len(server.requests) == 3


def test_openai_backend_reports_errors_instead_of_raising(server) -> None:
    server.script.extend([(500, {"error": "down"}, {})] * 3)
    (out,) = OpenAIChat(_settings(server, max_retries=2)).chat([CONV], max_tokens=8, temperature=0)
    assert not out.ok and "gave up after 3 attempts" in out.error and "HTTP 500" in out.error
    server.script.append((401, {"error": "bad key"}, {}))
    (out,) = OpenAIChat(_settings(server)).chat([CONV], max_tokens=8, temperature=0)
    assert not out.ok and "HTTP 401" in out.error  # not retried
    server.script.append((200, b"not json", {}))
    (out,) = OpenAIChat(_settings(server)).chat([CONV], max_tokens=8, temperature=0)
    assert not out.ok and "malformed" in out.error
    server.script.append((200, {"choices": []}, {}))
    (out,) = OpenAIChat(_settings(server)).chat([CONV], max_tokens=8, temperature=0)
    assert not out.ok and "malformed" in out.error
    dead = ChatSettings(_env_file=None, base_url="http://127.0.0.1:9/v1", model="m", max_retries=0)
    (out,) = OpenAIChat(dead).chat([CONV], max_tokens=8, temperature=0)
    assert not out.ok and "transport error" in out.error


def test_openai_backend_refuses_malformed_input(server) -> None:
    clam = OpenAIChat(_settings(server))
    with pytest.raises(ValueError, match="malformed"):
        clam.chat([[{"role": "tool", "content": "x"}]], max_tokens=8, temperature=0)
    with pytest.raises(ValueError, match="model name"):
        OpenAIChat(_settings(server, model=""))


def test_settings_come_from_the_environment(monkeypatch, server, tmp_path) -> None:
    monkeypatch.setenv("LLM_BACKEND", "openai")
    monkeypatch.setenv("LLM_BASE_URL", server.url)
    monkeypatch.setenv("LLM_MODEL", "deepseek-r1")
    monkeypatch.setenv("LLM_API_KEY", "secret")
    settings = ChatSettings(_env_file=None)
    assert "secret" not in repr(settings)
    clam = make_chat(settings, tmp_path)
    assert isinstance(clam, OpenAIChat) and clam.name == "openai:deepseek-r1"
    (out,) = clam.chat([CONV], max_tokens=4, temperature=0)
    assert out.text == "echo: hello"


def test_cached_clam_answers_repeats_from_its_file(server, tmp_path) -> None:
    path = tmp_path / "cache.jsonl"
    clam = CachedChat(OpenAIChat(_settings(server)), path)
    first = clam.chat([CONV], max_tokens=8, temperature=0.7)
    assert len(server.requests) == 1 and clam.misses == 1
    again = CachedChat(OpenAIChat(_settings(server)), path)  # a new process
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
    clam = LocalChat(cache, batch_size=4)
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


def test_the_openai_backend_loads_no_model_framework() -> None:
    """Users of the openai backend (the LLM baseline, the negotiators) need no torch."""
    code = "import sys, llmkit.chat; print('torch' in sys.modules, 'transformers' in sys.modules)"
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert done.stdout.split() == ["False", "False"]
    assert llmkit_chat.LocalChat is LocalChat  # reachable from llmkit.chat, loaded on first use
