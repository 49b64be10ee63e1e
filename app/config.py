"""Tollgate's one typed settings object.

Each group reads its own environment prefix, so the variables a user types are the
conventional ones (``DATABASE_URL``, ``OPENAI_API_KEY``, ``TOLLGATE_ADMIN_KEY``) while the
code still gets nested, typed groups.
"""

from __future__ import annotations

import json
from decimal import Decimal
from functools import lru_cache
from pathlib import Path
from typing import Annotated, Literal

from pydantic import BaseModel, Field, SecretStr, ValidationInfo, field_validator, model_validator
from pydantic_settings import BaseSettings, NoDecode, SettingsConfigDict

_BASE = SettingsConfigDict(env_file=".env", env_file_encoding="utf-8", extra="ignore")


class ModelPriceOverride(BaseModel):
    """Prices for a model the public price table does not know (fine-tunes, private models).

    Dollars per million tokens, as OpenAI's price page states them.
    """

    input_per_mtok: Decimal = Field(ge=0)
    cached_input_per_mtok: Decimal | None = Field(default=None, ge=0)
    output_per_mtok: Decimal = Field(default=Decimal(0), ge=0)


class UpstreamTarget(BaseModel):
    """One more OpenAI-compatible upstream: another OpenAI key (organization or project) sharing the
    load, or a server for particular models (vLLM, llama.cpp, Azure OpenAI's v1 API)."""

    name: str = Field(pattern=r"^[a-z0-9][a-z0-9_.-]{0,62}$")
    base_url: str = Field(pattern=r"^https?://")
    api_key: SecretStr = SecretStr("")
    # Share of the traffic among the upstreams that serve a model; 0 takes it out of rotation.
    weight: int = Field(default=1, ge=0, le=1000)
    # Models this upstream serves exclusively; empty: any model no other upstream claims.
    models: list[str] = Field(default_factory=list, max_length=1000)

    @field_validator("base_url")
    @classmethod
    def _strip_slash(cls, v: str) -> str:
        return v.rstrip("/")


class DatabaseSettings(BaseSettings):
    model_config = SettingsConfigDict(**_BASE, env_prefix="DATABASE_")

    url: str = "sqlite+aiosqlite:///./.tollgate/tollgate.db"
    pool_size: int = Field(default=10, ge=1)
    max_overflow: int = Field(default=10, ge=0)
    pool_timeout_s: float = Field(default=5.0, gt=0)
    statement_timeout_s: float = Field(default=10.0, gt=0)
    echo: bool = False

    @property
    def is_sqlite(self) -> bool:
        return self.url.startswith("sqlite")


class UpstreamSettings(BaseSettings):
    model_config = SettingsConfigDict(**_BASE, env_prefix="OPENAI_")

    api_key: SecretStr = SecretStr("")
    base_url: str = "https://api.openai.com/v1"
    connect_timeout_s: float = Field(default=5.0, gt=0)
    read_timeout_s: float = Field(default=600.0, gt=0)
    max_connections: int = Field(default=200, ge=1)
    # A JSON answer larger than this is not read into memory (a large embeddings batch is ~100 MiB).
    max_response_bytes: int = Field(default=256 * 1024 * 1024, ge=1024)

    @field_validator("base_url")
    @classmethod
    def _strip_slash(cls, v: str) -> str:
        return v.rstrip("/")


class KeySettings(BaseSettings):
    model_config = SettingsConfigDict(**_BASE, env_prefix="TOLLGATE_")

    admin_key: SecretStr | None = None
    # The HMAC key for API key digests. Zero-config SQLite installs get one generated into
    # data_dir; a Postgres deployment must set it so every replica computes the same digest.
    secret_key: SecretStr | None = None
    # Revocation reaches every replica within this many seconds (the auth cache TTL).
    auth_cache_ttl_s: float = Field(default=1.0, ge=0, le=2.0)


class GatewaySettings(BaseSettings):
    model_config = SettingsConfigDict(**_BASE, env_prefix="TOLLGATE_")

    host: str = "127.0.0.1"
    port: int = 8000
    # None: one per CPU on PostgreSQL with Redis (state is shared), else one (SQLite, or
    # in-process rate-limit counters, which are exact only within one process).
    workers: int | None = Field(default=None, ge=1)
    data_dir: Path = Path(".tollgate")
    max_body_bytes: int = Field(default=10 * 1024 * 1024, ge=1024)
    log_level: Literal["DEBUG", "INFO", "WARNING", "ERROR"] = "INFO"
    log_json: bool = True
    models_cache_ttl_s: float = Field(default=300.0, ge=0)
    # Comma-separated origins allowed to call from a browser; empty disables CORS.
    cors_origins: Annotated[list[str], NoDecode] = Field(default_factory=list)
    # JSON object: {"ft:gpt-4o-mini:acme::x": {"input_per_mtok": "0.3", "output_per_mtok": "1.2"}}
    price_overrides: Annotated[dict[str, ModelPriceOverride], NoDecode] = Field(default_factory=dict)
    # JSON list of upstreams besides OPENAI_BASE_URL/OPENAI_API_KEY (which is named "default"):
    # [{"name": "org-b", "base_url": "https://api.openai.com/v1", "api_key": "sk-...", "weight": 2},
    #  {"name": "vllm", "base_url": "http://10.0.0.5:8000/v1", "models": ["llama-3.1-70b"]}]
    upstreams: Annotated[list[UpstreamTarget], NoDecode] = Field(default_factory=list)
    # How soon an admin's change to the upstreams reaches the other replicas.
    upstreams_refresh_s: float = Field(default=5.0, gt=0)
    # Dollars per image for models priced by the image, which the public price table lacks:
    # {"dall-e-3": {"standard/1024x1024": "0.04", "hd/1024x1792": "0.12"}}. A model listed here
    # replaces the built-in prices of that model (app/media/pricing.py) as a whole.
    image_prices: Annotated[dict[str, dict[str, Decimal]], NoDecode] = Field(default_factory=dict)
    # Multipart uploads (image edits and variations, audio transcriptions and translations) may
    # be this large; they are spooled to a temporary file, never held in memory whole.
    max_upload_bytes: int = Field(default=25 * 1024 * 1024, ge=1024)
    # `tollgate serve` starts one token server (app/kit/token_server.py) that holds tiktoken's
    # tables for all of its workers, 63 MB that each worker then does not hold; false, each
    # worker loads its own.
    shared_tokenizer: bool = True
    # That server's socket, which `tollgate serve` sets for its workers; unset, a worker counts
    # tokens in process.
    tokenizer_socket: str | None = None

    @field_validator("cors_origins", mode="before")
    @classmethod
    def _split_origins(cls, v: object) -> object:
        if isinstance(v, str):
            return [o.strip() for o in v.split(",") if o.strip()]
        return v

    @field_validator("price_overrides", "upstreams", "image_prices", mode="before")
    @classmethod
    def _parse_json(cls, v: object, info: ValidationInfo) -> object:
        if isinstance(v, str):
            return json.loads(v) if v.strip() else ([] if info.field_name == "upstreams" else {})
        return v


class SpendSettings(BaseSettings):
    model_config = SettingsConfigDict(**_BASE, env_prefix="TOLLGATE_")

    # A lease outlives its process by at most this long before the reaper charges it; live
    # requests keep theirs fresh with a heartbeat every third of it.
    lease_ttl_s: float = Field(default=60.0, ge=1)
    reaper_interval_s: float = Field(default=5.0, gt=0)
    # Settlements are written in batches after the answer is sent; a batch waits this long for
    # company. Budgets stay exact meanwhile (the reservation holds the money).
    settle_linger_s: float = Field(default=0.01, ge=0, le=1)
    budget_timezone: str = "UTC"
    # The output cap injected when a budget applies and the client set none.
    default_max_output_tokens: int = Field(default=4096, ge=1)
    # A request is refused only when not even this many output tokens are affordable.
    min_output_tokens: int = Field(default=1, ge=1)
    # JSON: {"gpt-4o-mini": 16384}; models not listed are capped by default_max_output_tokens.
    model_max_output_tokens: Annotated[dict[str, int], NoDecode] = Field(default_factory=dict)
    redis_url: str | None = Field(default=None, validation_alias="REDIS_URL")
    # Past this, a Redis call counts as failed and rate limiting fails open for that request.
    redis_timeout_s: float = Field(default=1.0, gt=0)

    @field_validator("model_max_output_tokens", mode="before")
    @classmethod
    def _parse_max(cls, v: object) -> object:
        if isinstance(v, str):
            return json.loads(v) if v.strip() else {}
        return v


class FileSettings(BaseSettings):
    model_config = SettingsConfigDict(**_BASE, env_prefix="TOLLGATE_FILES_")

    # OpenAI's own limits: 512 MB per file, 64 MB per part of an Upload. Counted while the
    # body streams through, so a larger one is cut off without being held anywhere.
    max_upload_bytes: int = Field(default=512 * 1024 * 1024, ge=1)
    max_part_bytes: int = Field(default=64 * 1024 * 1024, ge=1)


class BatchSettings(BaseSettings):
    model_config = SettingsConfigDict(**_BASE, env_prefix="TOLLGATE_BATCHES_")

    # OpenAI's Batch API costs this much less than the same calls made one by one.
    discount_percent: int = Field(default=50, ge=0, le=100)
    # How often unfinished batches are looked up upstream (on every replica; settling is idempotent).
    poll_interval_s: float = Field(default=60.0, gt=0)
    # A batch's reservation is held until its own deadline plus this long (upstream finishes an
    # expiring batch after its deadline); only then may the reaper charge it at the estimate.
    settle_grace_s: float = Field(default=24 * 3600.0, ge=0)
    # Input files are read line by line; one line (one request) may be this large.
    max_line_bytes: int = Field(default=10 * 1024 * 1024, ge=1024)


class VectorStoreSettings(BaseSettings):
    model_config = SettingsConfigDict(**_BASE, env_prefix="TOLLGATE_VECTOR_STORES_")

    # Dollars per GB (10^9 bytes) per day of storage: OpenAI's list price, which an admin can change.
    storage_price_per_gb_day: Decimal = Field(default=Decimal("0.10"), ge=0)
    # How often the storage meter looks for stores not yet charged today.
    storage_meter_interval_s: float = Field(default=3600.0, gt=0)


class MetricsSettings(BaseSettings):
    model_config = SettingsConfigDict(**_BASE, env_prefix="TOLLGATE_METRICS_")

    # A bearer token that can read /metrics and nothing else, for Prometheus; admin keys work too.
    token: SecretStr | None = None


class FineTunableModel(BaseModel):
    """A base model that can be fine-tuned: what training costs (dollars per million training
    tokens, which the public price table lacks), the longest training example it takes, and what
    its fine-tuned models cost to use when the price table has no ``ft:`` price for them."""

    training_per_mtok: Decimal = Field(ge=0)
    max_example_tokens: int = Field(default=65_536, ge=1)
    input_per_mtok: Decimal | None = Field(default=None, ge=0)
    cached_input_per_mtok: Decimal | None = Field(default=None, ge=0)
    output_per_mtok: Decimal | None = Field(default=None, ge=0)


def _tunable(training: str, tokens: int, inp: str, cached: str | None, out: str) -> FineTunableModel:
    return FineTunableModel(
        training_per_mtok=Decimal(training),
        max_example_tokens=tokens,
        input_per_mtok=Decimal(inp),
        cached_input_per_mtok=Decimal(cached) if cached is not None else None,
        output_per_mtok=Decimal(out),
    )


# OpenAI's published prices for supervised fine-tuning (training per million tokens, then the
# fine-tuned model's input, cached input and output per million tokens).
DEFAULT_FINE_TUNABLE: dict[str, FineTunableModel] = {
    "gpt-4.1": _tunable("25", 65_536, "3", "0.75", "12"),
    "gpt-4.1-mini": _tunable("5", 65_536, "0.8", "0.2", "3.2"),
    "gpt-4.1-nano": _tunable("1.5", 65_536, "0.2", "0.05", "0.8"),
    "gpt-4o": _tunable("25", 65_536, "3.75", "1.875", "15"),
    "gpt-4o-mini": _tunable("3", 65_536, "0.3", "0.15", "1.2"),
    "gpt-3.5-turbo": _tunable("8", 16_385, "3", None, "6"),
}


class FineTuningSettings(BaseSettings):
    model_config = SettingsConfigDict(**_BASE, env_prefix="TOLLGATE_FINE_TUNING_")

    # JSON {"gpt-4o-mini": {"training_per_mtok": "3", "max_example_tokens": 65536, ...}}: a model
    # listed replaces its built-in entry; models in neither cannot be fine-tuned through Tollgate.
    models: Annotated[dict[str, FineTunableModel], NoDecode] = Field(default_factory=dict)
    # How often a replica asks upstream about unfinished jobs (each job is claimed by one replica).
    poll_interval_s: float = Field(default=30.0, gt=0)
    # A job's reservation is held this long past each poll; only if no poll happens for this
    # long (Tollgate stopped) does the reaper charge it at the estimate.
    hold_s: float = Field(default=7 * 24 * 3600.0, ge=60)
    # How soon a fine-tuned model or an admin's grant made on one replica reaches the others.
    refresh_s: float = Field(default=5.0, gt=0)
    min_examples: int = Field(default=10, ge=1)

    @field_validator("models", mode="before")
    @classmethod
    def _parse_models(cls, v: object) -> object:
        if isinstance(v, str):
            return json.loads(v) if v.strip() else {}
        return v

    @property
    def tunable(self) -> dict[str, FineTunableModel]:
        return {**DEFAULT_FINE_TUNABLE, **self.models}


class UsageSettings(BaseSettings):
    model_config = SettingsConfigDict(**_BASE, env_prefix="TOLLGATE_USAGE_")

    # PostgreSQL: keep this many whole months of ledger before the current one; older monthly
    # partitions are dropped (never DELETEd). None keeps everything.
    retention_months: int | None = Field(default=None, ge=1)
    # Monthly partitions created ahead of time, so inserts never land in the default partition.
    partitions_ahead: int = Field(default=2, ge=1, le=24)
    maintenance_interval_s: float = Field(default=3600.0, gt=0)


class Settings(BaseModel):
    database: DatabaseSettings = Field(default_factory=DatabaseSettings)
    upstream: UpstreamSettings = Field(default_factory=UpstreamSettings)
    keys: KeySettings = Field(default_factory=KeySettings)
    gateway: GatewaySettings = Field(default_factory=GatewaySettings)
    spend: SpendSettings = Field(default_factory=SpendSettings)
    files: FileSettings = Field(default_factory=FileSettings)
    batches: BatchSettings = Field(default_factory=BatchSettings)
    vector_stores: VectorStoreSettings = Field(default_factory=VectorStoreSettings)
    metrics: MetricsSettings = Field(default_factory=MetricsSettings)
    fine_tuning: FineTuningSettings = Field(default_factory=FineTuningSettings)

    usage: UsageSettings = Field(default_factory=UsageSettings)

    @model_validator(mode="after")
    def _refuse_weak_secrets(self) -> Settings:
        for name, secret in (
            ("TOLLGATE_SECRET_KEY", self.keys.secret_key),
            ("TOLLGATE_METRICS_TOKEN", self.metrics.token),
        ):
            if secret is not None and len(secret.get_secret_value()) < 32:
                raise ValueError(f"{name} must be at least 32 characters of random data")
        if self.keys.secret_key is None and not self.database.is_sqlite:
            raise ValueError("TOLLGATE_SECRET_KEY is required with PostgreSQL: every replica must hash keys alike")
        return self


@lru_cache
def get_settings() -> Settings:
    return Settings()
