"""Every setting, read once from RAPPORT_* environment variables.

The defaults give the embedded mode: SQLite under ./.rapport/ and the embedded log.
"""
from __future__ import annotations

from functools import lru_cache
from pathlib import Path
from typing import Literal

from pydantic import Field, field_validator, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict


class Settings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="RAPPORT_", extra="ignore")

    data_dir: Path = Path(".rapport")
    database_url: str = Field("", description="SQLAlchemy URL; empty means SQLite in data_dir")

    log_backend: Literal["embedded", "kafka"] = "embedded"
    embedded_log_url: str = Field("", description="SQLite URL of the embedded log; empty means data_dir")
    kafka_bootstrap_servers: str = "127.0.0.1:9092"
    kafka_request_timeout_ms: int = Field(10_000, ge=1_000)
    kafka_session_timeout_ms: int = Field(10_000, ge=1_000,
                                          description="group membership; a join takes about half")
    topic_prefix: str = Field("rapport.", pattern=r"^[A-Za-z0-9._-]*$")
    default_partitions: int = Field(4, ge=1, le=1024)
    topic_partitions: dict[str, int] = Field(default_factory=dict)
    replication_factor: int = Field(1, ge=1)

    batch_size: int | None = Field(None, ge=1, le=100_000, description=(
        "records a projector applies at once at most (it takes what has come, up to this); "
        "default 2,000 on PostgreSQL, 500 on SQLite, whose one writer ingest shares"))
    replay_batch_size: int = Field(50_000, ge=1, le=1_000_000, description=(
        "records a replay applies at once: a profile's computed traits are recomputed once per "
        "batch that touches it, so larger batches do less work, for memory (each replay process "
        "peaked at 0.5-0.8 GB with 50,000, 0.7-1.2 GB with 100,000 on 1M events; README, Replay)"))
    replay_latest_only: bool = Field(True, description=(
        "rebuild segments from each profile's last snapshot only (records superseded by a later "
        "one of the same profile are skipped); false applies every record"))
    poll_timeout_ms: int = Field(200, ge=1)

    reporting_currency: str = Field("USD", pattern=r"^[A-Z]{3}$")
    exchange_rates: dict[str, float] = Field(default_factory=lambda: {"USD": 1.0, "EUR": 1.08, "GBP": 1.27},
                                             description="reporting-currency units per unit")
    expected_lifetime_years: float = Field(3.0, gt=0)
    computed_traits_file: Path | None = Field(None, description="JSON list of computed traits")
    rfm_refresh_s: float = Field(600, gt=0, description="how often RFM quintiles are recomputed")
    raw_retention_days: int = Field(0, ge=0, description="embedded log: drop events.raw records older "
                                                          "than this (0 keeps them; replay needs them)")
    timeline_retention_days: int = Field(0, ge=0, description="drop timeline events older than this (0 keeps)")
    lifecycle_rules: dict[str, int] = Field(default_factory=dict, description=(
        "overrides of the lifecycle thresholds: loyal_orders, advocacy_engagements, at_risk_days, churned_days"))

    embedded_log_write_timeout_ms: int = Field(10_000, ge=1, description="a commit's wait for a lock held elsewhere; then 503")

    # ingest
    ingest_dedupe_window_s: float = Field(86_400, ge=0, description="messageId dedupe window per source")
    ingest_rate_per_key: float = Field(20_000, gt=0, description="events/s a write key may send (per process)")
    ingest_burst_per_key: int = Field(40_000, ge=1, description="events a write key may send at once")
    ingest_key_cache_s: float = Field(2.0, ge=0, description="how long a write key lookup is cached; a disabled key stops within it")
    ingest_webhook_mappings_dir: Path | None = Field(None, description="extra webhook mappings (*.json)")

    identity_rules_path: str = Field("", description="JSON file of identity rules; empty: defaults")
    erasure_mode: Literal["delete_and_suppress", "suppress"] = Field(
        "delete_and_suppress", description="what a deletion request does by default: erase the "
        "person and drop their new events, or only drop their new events")

    http_host: str = "127.0.0.1"
    http_port: int = Field(8000, ge=0, le=65535)
    shutdown_grace_s: int = Field(20, ge=1, description="SIGTERM: time for in-flight requests")

    log_level: Literal["DEBUG", "INFO", "WARNING", "ERROR"] = "INFO"
    log_format: Literal["json", "text"] = "json"

    @field_validator("database_url", "embedded_log_url")
    @classmethod
    def _known_database(cls, url: str) -> str:
        if url.startswith("postgresql://") or url.startswith("postgres://"):
            return "postgresql+psycopg://" + url.split("://", 1)[1]
        if url and not url.startswith(("sqlite", "postgresql+")):
            raise ValueError("must be a sqlite:// or postgresql:// URL")
        return url

    @field_validator("topic_partitions")
    @classmethod
    def _positive_partitions(cls, counts: dict[str, int]) -> dict[str, int]:
        bad = [topic for topic, n in counts.items() if n < 1]
        if bad:
            raise ValueError(f"partition counts must be >= 1 (topics: {', '.join(bad)})")
        return counts

    @model_validator(mode="after")
    def _fill_embedded_defaults(self) -> "Settings":
        if not self.database_url:
            self.database_url = f"sqlite:///{self.data_dir / 'rapport.db'}"
        if not self.embedded_log_url:
            self.embedded_log_url = f"sqlite:///{self.data_dir / 'log.db'}"
        if self.batch_size is None:  # a batch's statements cost the same for 500 rows or 2,000
            self.batch_size = 500 if self.database_url.startswith("sqlite") else 2_000
        return self

    def partitions_for(self, topic: str) -> int:
        return self.topic_partitions.get(topic, self.default_partitions)


@lru_cache
def get_settings() -> Settings:
    return Settings()
