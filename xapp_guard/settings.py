"""Settings of ``xapp-guard run``, read once at the edge (environment prefix ``GUARD_``).

The guard's MQTT identity is read-only on the network's requests, control and outcomes
topics and may publish only ``lameta/v1/<network>/alerts`` (and its status topic).
"""

from __future__ import annotations

from pathlib import Path
from typing import ClassVar

from pydantic import Field
from pydantic_settings import SettingsConfigDict

from servicekit.settings import MqttSettings

COMPONENT = "xapp-guard"
DEFAULT_MODEL = Path(__file__).resolve().parent.parent / "models" / "guard" / "guard.onnx"


class GuardSettings(MqttSettings):
    """Settings of the guard service (env prefix ``GUARD_``)."""

    model_config = SettingsConfigDict(env_prefix="GUARD_", extra="ignore", validate_default=True)
    component: ClassVar[str] = COMPONENT

    broker_log: Path = Field(
        Path("/var/log/mosquitto/mosquitto.log"),
        description="Mosquitto's log file (log_type all, log_dest file)",
    )
    access_log: Path | None = Field(None, description="the rApp's access log (RAPP_ACCESS_LOG)")
    model: Path = Field(DEFAULT_MODEL, description="the detector (ONNX, with its .card.json)")
    threshold: float | None = Field(
        None, gt=0, lt=1, description="alert when P(benign) < this (default: the card's)"
    )
    window: float = Field(1.0, gt=0, description="window length (s); the model's is 1 s")
    lag: float = Field(1.5, ge=0, description="seconds events wait for slower sources")
    join_timeout: float = Field(
        1.0, gt=0, description="seconds a broker line waits for its payload"
    )
    from_start: bool = Field(False, description="read the logs from their start")
    metrics_port: int = Field(0, ge=0, le=65535, description="Prometheus port (0: off)")
    metrics_host: str = Field("127.0.0.1", description="Prometheus bind address")
    threads: int = Field(1, ge=1, description="onnxruntime threads")

    @property
    def alerts_topic(self) -> str:
        return f"lameta/v1/{self.network}/alerts"
