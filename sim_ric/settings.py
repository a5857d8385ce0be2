"""Settings of the ``sim-ric run`` service, read once at the edge (pydantic-settings).

Every field can be set from the environment with the prefix ``SIM_`` (``SIM_BROKER``,
``SIM_RATE``, ``SIM_ELAMS='{"minilm": 22.7e6}'``, ...); command-line flags of
``sim-ric run`` override the environment. Nothing below the service reads
``os.environ``: the settings are turned into an :class:`~sim_ric.emulator.EmulatorConfig`
and plain arguments.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any, ClassVar, Literal

from pydantic import Field, SecretStr, field_validator
from pydantic_settings import NoDecode, SettingsConfigDict

from agentnet.config import DEFAULT
from agentnet.intents import project_intent_files
from servicekit.mqtt import parse_broker_url
from servicekit.settings import MqttSettings
from sim_ric.emulator import EmulatorConfig
from sim_ric.env import DEFAULT_ELAMS

COMPONENT = "sim-ric"
"""Component name: status topic, default client id, log source."""


class SimSettings(MqttSettings):
    """Settings of the emulator service (env prefix ``SIM_``)."""

    model_config = SettingsConfigDict(env_prefix="SIM_", extra="ignore", validate_default=True)
    component: ClassVar[str] = COMPONENT

    broker: str = Field(
        "embedded", description="mqtt://[user:pass@]host:port, mqtts://..., or 'embedded'"
    )
    seed: int = Field(0, ge=0, description="master seed (network, users, dynamics)")
    agents: int | None = Field(None, ge=4, description="N (default: MODEL.md's 81)")
    intents: Annotated[list[Path] | None, NoDecode] = Field(
        None, description="labelled intents, JSON Lines, comma-separated (default: project's)"
    )
    intents_split: str = Field(
        "heldout", description='split of the intents to draw users from ("all": every split)'
    )
    rate: float = Field(1.0, ge=0, description="requests published per second (Poisson)")
    state_period: float = Field(1.0, gt=0, description="seconds between state messages")
    state_format: Literal["auto", "full", "keyframe"] = Field(
        "auto",
        description="state messages: one NetworkState each ('full'), or a retained keyframe "
        "of the fixed part in chunks plus a delta per tick ('keyframe'; what large networks "
        "need under a broker's message size limit); 'auto': full up to "
        "state_full_max_agents agents",
    )
    state_full_max_agents: int = Field(
        5000, ge=1, description="'auto' sends whole states up to this many agents"
    )
    state_chunk_bytes: int = Field(
        3 * 1024 * 1024,
        ge=1024,
        description="largest keyframe chunk (compressed bytes; below the broker's "
        "message_size_limit, Mosquitto's deploy/ config: 4 MiB)",
    )
    pending_timeout: float = Field(30.0, gt=0, description="a request expires after this (s)")
    reannounce_after: float | None = Field(
        5.0,
        gt=0,
        description="announce a request again when it is still unsettled this many seconds "
        "after its last announcement: covers a decider that missed the announcement made "
        "right after a reconnect (its own subscription not yet back) and, with xApp "
        "replicas, a killed replica's share; unset: only after a reconnect or a restart",
    )
    duration: float | None = Field(None, gt=0, description="stop after this many seconds")
    requests: int | None = Field(
        None, ge=0, description="stop after this many requests (once all are settled)"
    )
    elams: dict[str, float] = Field(
        default_factory=lambda: dict(DEFAULT_ELAMS),
        description="E-LAM id -> parameter count (fee per MODEL.md)",
    )
    objective: Literal["weighted", "paper"] = Field("weighted", description="MODEL.md objective")
    metrics_port: int = Field(0, ge=0, le=65535, description="Prometheus port (0: off)")
    metrics_host: str = Field(
        "127.0.0.1", description="Prometheus bind address (containers set 0.0.0.0)"
    )
    embedded_host: str = Field("127.0.0.1", description="embedded broker bind address")
    embedded_port: int = Field(0, ge=0, le=65535, description="embedded broker port (0: free)")
    embedded_username: str = Field("sim-ric", description="embedded broker user")
    embedded_password: SecretStr | None = Field(
        None, description="embedded broker password (default: generated at start)"
    )
    embedded_url_file: Path | None = Field(
        None, description="write the embedded broker URL with credentials here (mode 0600)"
    )
    inbound_queue: int = Field(100_000, ge=1, description="control messages buffered")
    journal: Path | None = Field(
        None,
        description="SQLite journal of issued and settled requests: a restarted emulator "
        "takes up its run and re-announces what is pending (default: none)",
    )

    @field_validator("intents", mode="before")
    @classmethod
    def _split_paths(cls, value: Any) -> Any:
        if isinstance(value, str):
            return [p.strip() for p in value.split(",") if p.strip()] or None
        return value

    @field_validator("broker")
    @classmethod
    def _broker(cls, value: str) -> str:
        if value != "embedded":
            parse_broker_url(value)
        return value

    @field_validator("elams")
    @classmethod
    def _elams(cls, value: dict[str, float]) -> dict[str, float]:
        for k, v in value.items():
            if not k:
                raise ValueError('E-LAM ids must be non-empty ("" means no E-LAM, fee 0)')
            if not v >= 0:
                raise ValueError(f"E-LAM {k!r}: parameter count must be >= 0, got {v}")
        return value

    # ---- derived values -----------------------------------------------------------------
    def intent_files(self) -> list[Path]:
        """The intents files to read (the configured ones, else the project's)."""
        if self.intents:
            missing = [str(p) for p in self.intents if not p.is_file()]
            if missing:
                raise FileNotFoundError(f"intents file(s) not found: {missing}")
            return list(self.intents)
        return project_intent_files()

    @property
    def split(self) -> str | None:
        """The split filter for :func:`~agentnet.intents.load_intents`."""
        return None if self.intents_split in ("", "all") else self.intents_split

    def emulator_config(self, run_id: str = "") -> EmulatorConfig:
        """The emulator core's configuration."""
        return EmulatorConfig(
            network=self.network,
            seed=self.seed,
            n_agents=self.agents,
            pending_timeout_s=self.pending_timeout,
            elams=dict(self.elams),
            objective=self.objective,
            model=DEFAULT,
            run_id=run_id,
        )
