"""Settings of the negotiation service, read once at the edge (pydantic-settings).

Every field of :class:`NegoSettings` reads ``NEGO_<NAME>`` from the environment
(``NEGO_BROKER``, ``NEGO_DESIGN``, ...), and the flags of ``rapp-negotiation run``
override them. The broker block (URL with credentials, ``NEGO_TLS_*``, session,
reconnects) comes from :class:`~servicekit.settings.MqttSettings`. The chat model's
endpoint is :class:`NegoLLMSettings` (``NEGO_LLM_BASE_URL``, ``NEGO_LLM_MODEL``,
``NEGO_LLM_API_KEY``, ...); ``NEGO_LLM`` (``--llm``) picks the backend.
"""

from __future__ import annotations

from pathlib import Path
from typing import ClassVar, Literal

from pydantic import Field
from pydantic_settings import SettingsConfigDict

from llmkit.chat import ChatSettings
from rapp_negotiation.arbitral import CLASSIFIER_DIR
from servicekit.settings import MqttSettings

COMPONENT = "rapp-negotiation"
"""Component name: status topic, default client id, log source."""


class NegoLLMSettings(ChatSettings):
    """The negotiating agents' chat model (environment prefix ``NEGO_LLM_``)."""

    model_config = SettingsConfigDict(env_prefix="NEGO_LLM_", env_file=".env", extra="ignore")


class NegoSettings(MqttSettings):
    """Settings of ``rapp-negotiation run`` (environment prefix ``NEGO_``)."""

    model_config = SettingsConfigDict(env_prefix="NEGO_", extra="ignore", validate_default=True)
    component: ClassVar[str] = COMPONENT

    intents: Path | None = Field(
        None, description="tenants' business intents, JSON or YAML (default: the four apps)"
    )
    intents_poll: float = Field(
        2.0, gt=0, description="seconds between checks of the intents file for changes"
    )
    design: Literal["none", "soft", "hard"] = Field(
        "soft", description="optimizer design: none, soft (advice) or hard (imposed)"
    )
    llm: Literal["local", "openai", "scripted"] = Field(
        "local",
        description="LLM unit: local SmolLM2, an OpenAI-compatible endpoint (NEGO_LLM_*), or "
        "the scripted negotiator (tests)",
    )
    rounds: int = Field(4, ge=1, description="round cap of a negotiation")
    tolerance: float = Field(
        0.03, gt=0, description="consensus when every proposal is within this share of λ_cap"
    )
    retrigger: float = Field(
        0.1, gt=0, description="renegotiate when λ_cap moves by more than this share"
    )
    arbitral: Literal["classifier", "llm", "off"] = Field(
        "classifier", description="arbitral unit: the MiniLM classifier, the LLM, or off"
    )
    arbitral_dir: Path = Field(CLASSIFIER_DIR, description="folder of the trained classifier")
    policy_ttl: float = Field(
        0.0, ge=0, description="seconds a published policy stays valid (0: until replaced)"
    )
    max_tokens: int = Field(64, ge=8, description="tokens per LLM message")
    temperature: float = Field(0.5, ge=0, description="LLM sampling temperature")
    health_host: str = Field(
        "127.0.0.1", description="bind address of health and /metrics (containers: 0.0.0.0)"
    )
    health_port: int = Field(
        0, ge=0, le=65535, description="port of /ric/v1/health/* and /metrics (0: off)"
    )

    def llm_settings(self) -> NegoLLMSettings:
        """The chat model's settings (``NEGO_LLM_*``) with the backend ``llm`` names."""
        backend = "openai" if self.llm == "openai" else "local"
        return NegoLLMSettings(backend=backend)
