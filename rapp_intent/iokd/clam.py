"""The C-LAM of IoKD: the large model that explains (eq. 22) and augments (eq. 23).

Any :class:`llmkit.chat.ChatModel` serves: ``openai`` (an OpenAI-compatible endpoint:
OpenAI, vLLM serving DeepSeek-R1 or Qwen, Ollama, a llama.cpp server) or ``local``
(SmolLM2-135M-Instruct, offline). Be clear about what the local one is: a 135 M-parameter
model cannot label intents. Offline, the labels of synthetic samples come from the
labelled data they are made from (``labels="source"`` in :mod:`.augment`); the local
model only rewrites requests and explains labels, and the quality loop throws away what
it gets wrong. The same pipeline runs unchanged with a large model through ``openai``,
which can also label (``labels="clam"``).
"""

from __future__ import annotations

from pydantic_settings import SettingsConfigDict

from llmkit.chat import ChatSettings


class ClamSettings(ChatSettings):
    """Settings of the C-LAM (environment prefix ``RAPP_CLAM_``)."""

    model_config = SettingsConfigDict(env_prefix="RAPP_CLAM_", env_file=".env", extra="ignore")
