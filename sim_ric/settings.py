"""Settings of the ``sim-ric run`` service, read once at the edge (pydantic-settings).

Every field can be set from the environment with the prefix ``SIM_`` (``SIM_BROKER``,
``SIM_RATE``, ``SIM_ELAMS='{"minilm": 22.7e6}'``, ...); command-line flags of
``sim-ric run`` override the environment. Nothing below the service reads
``os.environ``: the settings are turned into an :class:`~sim_ric.emulator.EmulatorConfig`
and plain arguments.
"""

from __future__ import annotations

import argparse
import importlib.util
import logging
from pathlib import Path
from typing import Annotated, Any, Literal

from pydantic import Field, SecretStr, field_validator, model_validator
from pydantic_settings import BaseSettings, NoDecode, SettingsConfigDict

from sim_ric.config import DEFAULT
from sim_ric.emulator import EmulatorConfig
from sim_ric.env import DEFAULT_ELAMS
from sim_ric.mqtt import TlsOptions, check_topic_level, parse_broker_url

INTENTS_SUBDIR = Path("data") / "intents"


def default_intents_dirs() -> list[Path]:
    """Where the project's labelled intents may live, most specific first.

    The installed ``rapp_intent`` package's ``data/intents`` (its package data), then the
    source tree beside ``sim_ric`` (editable installs, a checkout on ``PYTHONPATH``).
    """
    dirs: list[Path] = []
    try:
        spec = importlib.util.find_spec("rapp_intent")
    except (ImportError, ValueError):
        spec = None
    if spec is not None and spec.submodule_search_locations:
        dirs += [Path(p) / INTENTS_SUBDIR for p in spec.submodule_search_locations]
    dirs.append(Path(__file__).resolve().parent.parent / "rapp_intent" / INTENTS_SUBDIR)
    unique: list[Path] = []
    for d in dirs:
        if d not in unique:
            unique.append(d)
    return unique


def default_intent_files() -> list[Path]:
    """The project's labelled intents (``rapp_intent/data/intents/*.jsonl``).

    Raises:
        FileNotFoundError: none found; the message lists where it looked.
    """
    dirs = default_intents_dirs()
    for d in dirs:
        files = sorted(d.glob("*.jsonl"))
        if files:
            return files
    raise FileNotFoundError(
        "no labelled intents found (looked for *.jsonl in "
        + ", ".join(str(d) for d in dirs)
        + "); pass --intents PATH[,PATH...] or set SIM_INTENTS"
    )


class SimSettings(BaseSettings):
    """Settings of the emulator service (env prefix ``SIM_``)."""

    model_config = SettingsConfigDict(env_prefix="SIM_", extra="ignore", validate_default=True)

    broker: str = Field(
        "embedded", description="mqtt://[user:pass@]host:port, mqtts://..., or 'embedded'"
    )
    network: str = Field("default", description="network name in the topics")
    seed: int = Field(0, description="master seed (network, users, dynamics)")
    agents: int | None = Field(None, ge=4, description="N (default: MODEL.md's 81)")
    intents: Annotated[list[Path] | None, NoDecode] = Field(
        None, description="labelled intents, JSON Lines, comma-separated (default: project's)"
    )
    intents_split: str = Field(
        "heldout", description='split of the intents to draw users from ("all": every split)'
    )
    rate: float = Field(1.0, ge=0, description="requests published per second (Poisson)")
    state_period: float = Field(1.0, gt=0, description="seconds between state messages")
    pending_timeout: float = Field(30.0, gt=0, description="a request expires after this (s)")
    duration: float | None = Field(None, gt=0, description="stop after this many seconds")
    requests: int | None = Field(
        None, ge=0, description="stop after this many requests (once all are settled)"
    )
    elams: dict[str, float] = Field(
        default_factory=lambda: dict(DEFAULT_ELAMS),
        description="E-LAM id -> parameter count (fee per MODEL.md)",
    )
    objective: Literal["weighted", "paper"] = Field("weighted", description="MODEL.md objective")
    log_level: str = Field("INFO", description="log level")
    log_format: Literal["auto", "json", "console"] = Field("auto", description="log format")
    metrics_port: int = Field(0, ge=0, le=65535, description="Prometheus port (0: off)")
    metrics_host: str = Field("0.0.0.0", description="Prometheus bind address")
    mqtt_protocol: Literal["3.1.1", "5"] = Field("3.1.1", description="MQTT protocol version")
    mqtt_client_id: str | None = Field(None, description="client id (default sim-ric-<network>)")
    mqtt_persistent_session: bool = Field(
        True, description="keep the session so control messages wait across reconnects"
    )
    mqtt_session_expiry: int = Field(3600, ge=0, description="MQTT 5 session expiry (s)")
    mqtt_keepalive: int = Field(30, ge=5, description="MQTT keep-alive (s)")
    reconnect_min_delay: float = Field(0.5, gt=0, description="first reconnect delay (s)")
    reconnect_max_delay: float = Field(30.0, gt=0, description="reconnect delay cap (s)")
    connect_timeout: float = Field(
        10.0, gt=0, description="wait this long for the first connection before going on"
    )
    tls_ca: Path | None = Field(None, description="CA bundle for mqtts (default: system)")
    tls_cert: Path | None = Field(None, description="client certificate for mqtts")
    tls_key: Path | None = Field(None, description="client key for mqtts")
    tls_insecure: bool = Field(False, description="skip the broker host name check")
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

    @field_validator("intents", mode="before")
    @classmethod
    def _split_paths(cls, value: Any) -> Any:
        if isinstance(value, str):
            return [p.strip() for p in value.split(",") if p.strip()] or None
        return value

    @field_validator("network")
    @classmethod
    def _network(cls, value: str) -> str:
        return check_topic_level(value)

    @field_validator("broker")
    @classmethod
    def _broker(cls, value: str) -> str:
        if value != "embedded":
            parse_broker_url(value)
        return value

    @field_validator("log_level")
    @classmethod
    def _level(cls, value: str) -> str:
        if value.upper() not in logging.getLevelNamesMapping():
            raise ValueError(f"unknown log level {value!r}")
        return value.upper()

    @field_validator("elams")
    @classmethod
    def _elams(cls, value: dict[str, float]) -> dict[str, float]:
        for k, v in value.items():
            if not k:
                raise ValueError('E-LAM ids must be non-empty ("" means no E-LAM, fee 0)')
            if not v >= 0:
                raise ValueError(f"E-LAM {k!r}: parameter count must be >= 0, got {v}")
        return value

    @model_validator(mode="after")
    def _delays(self) -> SimSettings:
        if self.reconnect_min_delay > self.reconnect_max_delay:
            raise ValueError("reconnect_min_delay must not exceed reconnect_max_delay")
        if (self.tls_cert is None) != (self.tls_key is None):
            raise ValueError("tls_cert and tls_key go together")
        return self

    # ---- derived values -----------------------------------------------------------------
    @classmethod
    def from_cli(cls, args: argparse.Namespace) -> SimSettings:
        """Settings from the environment, overridden by the flags that were given."""
        overrides = {
            name: getattr(args, name)
            for name in cls.model_fields
            if getattr(args, name, None) is not None
        }
        return cls(**overrides)

    def intent_files(self) -> list[Path]:
        """The intents files to read (the configured ones, else the project's)."""
        if self.intents:
            missing = [str(p) for p in self.intents if not p.is_file()]
            if missing:
                raise FileNotFoundError(f"intents file(s) not found: {missing}")
            return list(self.intents)
        return default_intent_files()

    @property
    def split(self) -> str | None:
        """The split filter for :func:`~sim_ric.emulator.load_user_intents`."""
        return None if self.intents_split in ("", "all") else self.intents_split

    @property
    def client_id(self) -> str:
        """MQTT client id of the service."""
        return self.mqtt_client_id or f"sim-ric-{self.network}"

    def tls_options(self) -> TlsOptions:
        """TLS options for ``mqtts://`` brokers."""
        return TlsOptions(
            ca_certs=None if self.tls_ca is None else str(self.tls_ca),
            certfile=None if self.tls_cert is None else str(self.tls_cert),
            keyfile=None if self.tls_key is None else str(self.tls_key),
            insecure=self.tls_insecure,
        )

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
