"""Settings of ``xapp-composer run``, read once at the edge (pydantic-settings).

Every field can be set from the environment with the prefix ``XAPP_`` (``XAPP_BROKER``,
``XAPP_RAPP``, ``XAPP_POLICY``, ``XAPP_RAPP_DEADLINE_MS``, ...); the flags of
``xapp-composer run`` override the environment. In a near-RT RIC the O-RAN SC xApp
descriptor's ``controls`` section (``deploy/xapp/config-file.json``, mounted by the
platform, its path in ``CONFIG_FILE``; or ``XAPP_CONFIG_FILE``) gives the lowest-priority
values: flags > environment > descriptor controls > defaults. Nothing below the service
reads ``os.environ``: the loop, the rApp client and the health server get plain values.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any, ClassVar

from pydantic import Field, field_validator, model_validator
from pydantic_settings import BaseSettings, PydanticBaseSettingsSource, SettingsConfigDict

from servicekit.mqtt import check_topic_level
from servicekit.settings import MqttSettings
from xapp_composer.artefacts import SHIPPED_POLICY
from xapp_composer.tree import DEFAULT_MAX_ROWS

COMPONENT = "xapp-composer"


CONFIG_FILE_VARS = ("XAPP_CONFIG_FILE", "CONFIG_FILE")
"""Environment variables naming the xApp descriptor (the second is O-RAN SC appmgr's)."""


class DescriptorControls(PydanticBaseSettingsSource):
    """Settings from the ``controls`` section of the O-RAN SC xApp descriptor."""

    def __init__(self, settings_cls: type[BaseSettings], path: Path | None):
        super().__init__(settings_cls)
        self.path = path

    def get_field_value(self, field: Any, field_name: str) -> tuple[Any, str, bool]:
        return None, field_name, False  # everything is read at once in __call__

    def __call__(self) -> dict[str, Any]:
        if self.path is None:
            return {}
        try:
            controls = json.loads(self.path.read_text()).get("controls", {})
        except (OSError, ValueError, AttributeError) as exc:
            raise ValueError(f"xApp descriptor {self.path}: {exc}") from None
        if not isinstance(controls, dict):
            raise ValueError(f"xApp descriptor {self.path}: controls must be an object")
        unknown = sorted(set(controls) - set(self.settings_cls.model_fields))
        if unknown:
            raise ValueError(f"xApp descriptor {self.path}: unknown controls {unknown}")
        return controls


def descriptor_path() -> Path | None:
    """The descriptor named by ``XAPP_CONFIG_FILE`` or ``CONFIG_FILE``, if any."""
    for var in CONFIG_FILE_VARS:
        value = os.environ.get(var)
        if value:
            return Path(value)
    return None


class XappSettings(MqttSettings):
    """Settings of the xApp control loop (env prefix ``XAPP_``)."""

    model_config = SettingsConfigDict(env_prefix="XAPP_", extra="ignore", validate_default=True)
    component: ClassVar[str] = COMPONENT

    # ---- rApp (gRPC IntentService) ------------------------------------------------------
    rapp: str = Field("127.0.0.1:50051", description="host:port of the intent rApp")
    rapp_deadline_ms: float = Field(
        250.0, gt=0, description="deadline of one Translate call; past it: fallback vector"
    )
    rapp_report_deadline_ms: float = Field(
        1000.0, gt=0, description="deadline of one ReportOutcome call"
    )
    rapp_health_period: float = Field(
        2.0, gt=0, description="seconds between gRPC health checks of the rApp"
    )
    rapp_retry_after: float = Field(
        1.0,
        ge=0,
        description="after a failed Translate, skip the rApp (fallback at once) this long (s)",
    )
    rapp_tls_ca: Path | None = Field(None, description="CA bundle of the rApp's certificate")
    rapp_tls_cert: Path | None = Field(None, description="client certificate (mutual TLS)")
    rapp_tls_key: Path | None = Field(None, description="client key (mutual TLS)")
    rapp_max_prompt_bytes: int | None = Field(
        4096,
        ge=1,
        description="longer prompts are rejected (malformed_request) before any rApp call: "
        "the rApp's RAPP_MAX_PROMPT_BYTES (null: no limit)",
    )

    # ---- policy -------------------------------------------------------------------------
    policy: Path = Field(SHIPPED_POLICY, description="the ONNX policy (card and encoder beside)")
    policy_public_key: Path | None = Field(
        None,
        description="Ed25519 public key (PEM) the policy must be signed with "
        "(<stem>.signature.json beside it), at start and on every reload; unset: the "
        "card's hashes only",
    )
    policy_reload_period: float = Field(
        1.0, ge=0, description="seconds between checks of the policy file (0: no hot reload)"
    )
    prefer_gpu: bool = Field(True, description="CUDA when onnxruntime really has it")
    onnx_threads: int = Field(1, ge=1, description="intra-op threads of the ONNX sessions")
    tabulate: bool = Field(
        True,
        description="decide with the policy's tabulated graphs (one call per chain) when its "
        "card has them; false: one step graph call per agent (same chains, slower)",
    )
    tabulate_max_rows: int = Field(
        DEFAULT_MAX_ROWS,
        ge=1,
        description="largest per-step table (prefixes x candidates) to tabulate",
    )
    srl_starts: int = Field(
        4,
        ge=1,
        le=128,
        description="multi-start decoding: the policy completes greedily its m most likely "
        "first picks and serves the chain with the highest Q*_s under the request's "
        "predicted vector (one step-graph call per later step for the extra starts); "
        "1: the greedy chain only. The default is the smallest m within 0.02 of the exact "
        "optimum at 300 and 600 agents on the training's validation pairs "
        "(bench/srl_starts.py)",
    )
    srl_starts_min_agents: int = Field(
        300,
        ge=1,
        description="multi-start decoding (srl_starts > 1) runs on networks of at least this "
        "many agents only; smaller ones get the greedy chain at its latency (about a "
        "fifth of 4 starts' at 300 agents)",
    )

    # ---- the loop -----------------------------------------------------------------------
    max_state_age: float = Field(
        5.0, gt=0, description="reject requests when the latest state is older than this (s)"
    )
    fallback_window: int = Field(
        32, ge=1, description="successful translations per app averaged for the fallback"
    )
    dedup_capacity: int = Field(
        100_000, ge=1, description="decided request ids remembered to recognise redeliveries"
    )
    inbound_queue: int = Field(10_000, ge=1, description="requests buffered for the deciders")
    deciders: int = Field(
        4, ge=1, le=64, description="threads deciding requests concurrently (overlap rApp calls)"
    )
    outcome_queue: int = Field(
        10_000, ge=1, description="outcomes buffered for the rApp; beyond: counted drops"
    )
    outcome_retry_max: float = Field(
        10.0, gt=0, description="longest wait between retries of ReportOutcome (s)"
    )
    repair_infeasible: bool = Field(
        True,
        description="when the policy's chain breaks a constraint, serve a feasible chain "
        "instead: the best for the predicted vector by exhaustive search on networks of at "
        "most 200,000 chains, else the greedy baseline's (else reject: no feasible chain)",
    )
    proposer_k: int = Field(
        0,
        ge=0,
        description="intent-conditioned action-space reduction on large networks: keep the "
        "top k agents of each chain position for the request's predicted vector "
        "(xapp_composer.proposer; always a feasible chain among them when the network has "
        "one) and decide on that reduced graph, repairing inside it; 0: off, the policy "
        "decides on the whole graph",
    )
    proposer_min_agents: int = Field(
        2000,
        ge=1,
        description="the proposer (proposer_k > 0) reduces only networks of at least this "
        "many agents; smaller ones are decided on the whole graph",
    )
    shutdown_grace: float = Field(
        10.0, ge=0, description="seconds in-flight requests get to finish on SIGTERM"
    )

    # ---- observability ------------------------------------------------------------------
    health_host: str = Field(
        "127.0.0.1", description="bind address of health and metrics (containers: 0.0.0.0)"
    )
    health_port: int = Field(
        8080, ge=0, le=65535, description="port of /ric/v1/health/* and /metrics (0: any)"
    )

    @field_validator("rapp")
    @classmethod
    def _rapp(cls, value: str) -> str:
        host, sep, port = value.rpartition(":")
        if not sep or not host or not port.isdigit() or not 0 < int(port) < 65536:
            raise ValueError(f"rapp must be host:port, got {value!r}")
        return value

    share_group: str = Field(
        "",
        description="replicas: subscribe to the requests as the MQTT shared subscription "
        "$share/<group>/lameta/v1/<network>/requests, so that the broker hands each request "
        "to one replica of the group; needs a client id per replica and a clean session "
        "(mqtt_persistent_session false: a broker keeps a dead persistent session's share "
        "of the requests); the emulator re-announces what a killed replica left unsettled "
        "(SIM_REANNOUNCE_AFTER). Empty: a plain subscription",
    )

    @model_validator(mode="after")
    def _pairs(self) -> XappSettings:
        if (self.rapp_tls_cert is None) != (self.rapp_tls_key is None):
            raise ValueError("rapp_tls_cert and rapp_tls_key go together")
        if self.rapp_tls_cert is not None and self.rapp_tls_ca is None:
            raise ValueError("mutual TLS to the rApp (rapp_tls_cert) needs rapp_tls_ca")
        if self.share_group:
            check_topic_level(self.share_group, "share_group")
            if self.mqtt_persistent_session:
                raise ValueError(
                    "share_group needs mqtt_persistent_session false (XAPP_MQTT_PERSISTENT_"
                    "SESSION=false): Mosquitto keeps handing requests to a dead replica's "
                    "persistent session"
                )
        return self

    @classmethod
    def settings_customise_sources(
        cls,
        settings_cls: type[BaseSettings],
        init_settings: PydanticBaseSettingsSource,
        env_settings: PydanticBaseSettingsSource,
        dotenv_settings: PydanticBaseSettingsSource,
        file_secret_settings: PydanticBaseSettingsSource,
    ) -> tuple[PydanticBaseSettingsSource, ...]:
        """Flags (init) > environment > secrets > descriptor controls > defaults."""
        return (
            init_settings,
            env_settings,
            dotenv_settings,
            file_secret_settings,
            DescriptorControls(settings_cls, descriptor_path()),
        )
