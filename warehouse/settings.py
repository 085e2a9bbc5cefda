"""Settings read from the environment with the ``BILLING_`` prefix."""

from __future__ import annotations

from functools import lru_cache
from pathlib import Path
from typing import Literal

from pydantic import Field, SecretStr
from pydantic_settings import BaseSettings, SettingsConfigDict

STRIPE_DEFAULT_API_BASE = "https://api.stripe.com"
# the dbt project: the models, profiles.yml (its connections) and its artifacts
DBT_PROJECT_DIR = Path(__file__).resolve().parent.parent / "dbt_project"


class Settings(BaseSettings):
    """Everything the project reads from its environment, in one place."""

    model_config = SettingsConfigDict(env_prefix="BILLING_", extra="ignore")

    home: Path = Field(default=Path(".billing"), description="Local state: pgdata, dagster.")
    database_url: str | None = Field(
        default=None, description="postgresql:// URL of an external warehouse."
    )
    api_database_url: str | None = Field(
        default=None,
        description="The URL the API connects with, as the role billing_api (or one in it); "
        "unset: the embedded server's billing_api, or database_url.",
    )
    admin_key: SecretStr | None = None
    stripe_api_key: SecretStr | None = None
    stripe_api_base: str = STRIPE_DEFAULT_API_BASE
    stripe_webhook_secret: SecretStr | None = None
    stripe_max_network_retries: int = Field(default=2, ge=0, le=10)
    stripe_timeout_seconds: float = Field(default=30.0, gt=0)
    dbt_target: Literal["postgres", "spark"] = Field(
        default="postgres", description="Where dbt builds the models (profiles.yml's outputs)."
    )
    spark_master: str = Field(default="local[2]", description="The `spark` target's master.")
    spark_driver_memory: str = "4g"
    spark_shuffle_partitions: int = Field(default=8, ge=1)
    spark_jvm_options: str = Field(
        default="",
        description="More options of the local Spark session's JVM. Small runs spend most "
        "of their CPU compiling Spark's code: `-XX:TieredStopAtLevel=1` (the quick compiler "
        "alone) then takes about 40% less, and a large run longer (bench/README.md).",
    )
    spark_copy_sources: bool = Field(
        default=True,
        description="Copy the PostgreSQL sources into Spark before each run (false: the "
        "sources are Spark tables already, e.g. events landing as Parquet files).",
    )

    def as_env(self) -> dict[str, str]:
        """These settings as the environment of a child process (which reads them back)."""
        found: dict[str, str] = {}
        for name, value in self.model_dump().items():
            if value is None:
                continue
            if isinstance(value, SecretStr):
                value = value.get_secret_value()
            found[f"BILLING_{name.upper()}"] = (
                str(value).lower() if isinstance(value, bool) else str(value)
            )
        return found

    @property
    def home_dir(self) -> Path:
        return self.home.expanduser().resolve()

    def private_dir(self, name: str) -> Path:
        """``$BILLING_HOME/name``, created if missing, readable by this user alone (0700):
        Spark's and Dagster's directories hold copies of raw events."""
        path = self.home_dir / name
        path.mkdir(mode=0o700, parents=True, exist_ok=True)
        path.chmod(0o700)  # made before with a looser mode
        return path

    @property
    def pgdata(self) -> Path:
        return self.home_dir / "pgdata"

    @property
    def spark_dir(self) -> Path:
        """The local Spark warehouse and metastore of the `spark` target."""
        return self.home_dir / "spark"

    @property
    def embedded(self) -> bool:
        return not self.database_url


@lru_cache(maxsize=1)
def get_settings() -> Settings:
    """The process's settings, read once on first use (never at import time)."""
    return Settings()
