"""Settings of the intent rApp, read once at the edge (environment prefix ``RAPP_``).

Every field can be set by an environment variable ``RAPP_<NAME>`` (case-insensitive) or a
``.env`` file; ``rapp-intent``'s flags, generated from these fields, override them.
Nothing below the CLI/server edge reads the environment: the objects built from these
settings receive plain values.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Literal

from pydantic import Field, field_validator, model_validator
from pydantic_settings import NoDecode, SettingsConfigDict

from agentnet.intents import APPS
from servicekit.settings import ServiceSettings

PACKAGE_DIR = Path(__file__).resolve().parent
REPO_MODELS_DIR = PACKAGE_DIR.parent / "models" / "elam"
KNOWN_MODELS = ("minilm", "smollm2")


def _default_cache_dir() -> Path:
    return Path.home() / ".cache" / "lameta-ric"


def _default_state_dir() -> Path:
    return Path.home() / ".local" / "state" / "lameta-ric"


class RappSettings(ServiceSettings):
    """Configuration of the intent rApp (service, E-LAMs, memory, security)."""

    model_config = SettingsConfigDict(
        env_prefix="RAPP_", env_file=".env", extra="ignore", validate_default=True
    )

    # --- service ---------------------------------------------------------------------
    host: str = Field("127.0.0.1", description="address the gRPC server binds")
    port: int = Field(50051, ge=0, le=65535, description="gRPC port (0: any free port)")
    metrics_port: int = Field(
        9464, ge=0, le=65535, description="Prometheus /metrics port (0 disables it)"
    )
    metrics_host: str = Field("127.0.0.1", description="address of the metrics endpoint")
    max_concurrent_rpcs: int = Field(
        16, ge=1, description="IntentService calls served at once; more get RESOURCE_EXHAUSTED"
    )
    grace_s: float = Field(
        25.0,
        ge=0,
        description="seconds in-flight calls get to finish on shutdown (below Kubernetes' "
        "default 30 s termination grace period)",
    )
    access_log: Path | None = Field(
        None, description="append one JSON line per gRPC call here (peer, method, status)"
    )
    max_prompt_bytes: int = Field(4096, ge=1, description="largest prompt accepted (UTF-8 bytes)")
    max_batch: int = Field(256, ge=1, description="largest TranslateBatch accepted")
    batch_window_ms: float = Field(
        0.0,
        ge=0,
        le=100,
        description="dynamic micro-batching: Translate calls arriving within this many ms "
        "of the first queued one share one E-LAM pass; 0: only calls that queued while the "
        "previous batch ran are grouped (no added wait; measured best here: bench_rapp.py "
        "--batching)",
    )
    batch_max: int = Field(
        16,
        ge=1,
        description="most Translate calls in one micro-batch (1: no micro-batching, each "
        "call runs on its own)",
    )
    batch_new_apart: bool = Field(
        False,
        description="with micro-batching, embed prompts the MiniLM cache lacks in a second "
        "thread while calls with cached prompts are answered (measured, bench_rapp.py "
        "--cold: a cached call beside new ones p50 6.2 -> 0.9 ms); off by default: in two "
        "interleaved pairs of 100 requests/s loop runs the p99, which the new prompts set, "
        "did not improve (docs/results.md)",
    )
    apps: Annotated[list[str], NoDecode] = Field(
        default_factory=lambda: list(APPS),
        description="application ids accepted in requests (comma-separated in env)",
    )

    # --- E-LAMs ----------------------------------------------------------------------
    models: Annotated[list[str], NoDecode] = Field(
        default_factory=lambda: list(KNOWN_MODELS),
        description="E-LAMs to load (comma-separated in env): minilm, smollm2",
    )
    default_model: str = Field(
        "",
        description="E-LAM used when a request names none; empty: the best distilled one, "
        "else minilm, else the first loaded",
    )
    models_dir: Path = Field(
        REPO_MODELS_DIR, description="directory of distilled artefacts (<id>/card.json)"
    )
    distilled: bool = Field(
        True,
        description="load the distilled artefacts of models_dir when they exist; false: "
        "serve the raw E-LAMs (zero-shot minilm, few-shot smollm2) whatever models_dir holds",
    )
    cache_dir: Path = Field(
        default_factory=_default_cache_dir,
        description="derived model files (dequantised SmolLM2, ONNX encoder)",
    )
    torch_threads: int = Field(0, ge=0, description="torch intra-op threads (0: torch default)")
    minilm_backend: Literal["auto", "onnx", "torch", "torch-bf16"] = Field(
        "auto",
        description="MiniLM encoder runtime: onnx (onnxruntime, fp32), torch (fp32), "
        "torch-bf16; auto: onnx for batches of up to 8 prompts and, on CPUs with native "
        "bfloat16 (AMX, AVX512-BF16), torch-bf16 for larger ones, else onnx",
    )
    minilm_warm_lengths: int = Field(
        64,
        ge=0,
        le=256,
        description="before the service reports ready, run the MiniLM encoder once on "
        "every shape of up to this many tokens: for bfloat16 every sub-batch shape (oneDNN "
        "builds its kernels per shape; a first-seen shape costs 30-50% more), for onnx one "
        "prompt of each token count (onnxruntime plans its memory per shape; about 2% more "
        "on a first-seen one); 0: none. No effect on the torch fp32 runtime",
    )
    smollm2_max_new_tokens: int = Field(
        28, ge=4, le=256, description="generation budget of a SmolLM2 answer (free decoding)"
    )
    smollm2_decoding: Literal["constrained", "expected", "free"] = Field(
        "expected",
        description="expected: the probability-weighted mean vector of the constrained "
        "beams (the estimate a squared error rewards; measured best on the held-out split); "
        "constrained: only well-formed vectors of multiples of 0.05 summing to 1 can be "
        "generated (beam search), the most likely wins; free: plain greedy decoding, "
        "answer parsed",
    )
    smollm2_beams: int = Field(
        4,
        ge=1,
        le=32,
        description="beam width of constrained and expected decoding (1: greedy, fastest)",
    )

    # --- in-context memory (paper eqs. 44-46) ----------------------------------------
    memory_path: Path = Field(
        default_factory=lambda: _default_state_dir() / "rapp-memory.sqlite3",
        description="SQLite file of the in-context memory",
    )
    memory_k: int = Field(8, ge=1, description="k most recent records used per application")
    memory_max_records: int = Field(
        1000, ge=1, description="records kept per application (oldest dropped first)"
    )
    memory_min_records: int = Field(
        3, ge=1, description="records needed before calibration (eq. 46) applies"
    )
    calib_low: float = Field(
        0.08, ge=0, le=0.5, description="divergence (eq. 24) up to which iota = 1"
    )
    calib_high: float = Field(
        0.25, ge=0, le=0.5, description="divergence (eq. 24) from which iota = calib_iota_min"
    )
    calib_iota_min: float = Field(0.3, ge=0, le=1, description="smallest calibration factor")
    calib_spread_max: float = Field(
        0.15,
        ge=0,
        le=0.5,
        description="history counts as consistent when its mean divergence from its own "
        "mean is at most this; an inconsistent history calibrates nothing",
    )

    # --- transport security ----------------------------------------------------------
    tls_cert: Path | None = Field(None, description="server certificate chain (PEM): enables TLS")
    tls_key: Path | None = Field(None, description="server private key (PEM)")
    tls_client_ca: Path | None = Field(
        None, description="CA bundle (PEM) of client certificates: enables mutual TLS"
    )
    report_identities: Annotated[list[str], NoDecode] = Field(
        default_factory=lambda: ["xapp-composer"],
        description="client certificate names (CN, mutual TLS) allowed to call "
        "ReportOutcome, i.e. to write the in-context memory (comma-separated in env); '*': "
        "any caller, unauthenticated ones included (development only)",
    )
    report_rate: float = Field(
        50.0,
        gt=0,
        description="ReportOutcome records accepted per second and application (token "
        "bucket refilled at this rate); more get RESOURCE_EXHAUSTED",
    )
    report_burst: int = Field(
        500, ge=1, description="ReportOutcome records an application may send at once"
    )

    @field_validator("models", "apps", "report_identities", mode="before")
    @classmethod
    def _split_csv(cls, value: object) -> object:
        if isinstance(value, str):
            return [part.strip() for part in value.split(",") if part.strip()]
        return value

    @field_validator("models")
    @classmethod
    def _known_models(cls, value: list[str]) -> list[str]:
        unknown = [m for m in value if m not in KNOWN_MODELS]
        if unknown:
            raise ValueError(f"unknown model ids {unknown}; known: {', '.join(KNOWN_MODELS)}")
        if not value:
            raise ValueError("at least one E-LAM must be loaded")
        return list(dict.fromkeys(value))

    @model_validator(mode="after")
    def _consistent(self) -> RappSettings:
        if self.calib_high <= self.calib_low:
            raise ValueError("calib_high must be larger than calib_low")
        if (self.tls_cert is None) != (self.tls_key is None):
            raise ValueError("tls_cert and tls_key must be given together")
        if self.tls_client_ca is not None and self.tls_cert is None:
            raise ValueError("mutual TLS (tls_client_ca) needs tls_cert and tls_key")
        if self.default_model and self.default_model not in self.models:
            raise ValueError(
                f"default_model {self.default_model!r} is not among the loaded models {self.models}"
            )
        return self
