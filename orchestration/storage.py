"""Where Dagster keeps its runs, event logs and schedule ticks: in the warehouse's own
PostgreSQL (schema `dagster`) when it is an external one (BILLING_DATABASE_URL), in SQLite
under BILLING_HOME for the embedded default. dagster.yaml names this class as its storage.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any
from urllib.parse import quote, urlencode

import psycopg
import yaml
from dagster._core.storage.base_storage import DagsterStorage
from dagster._serdes import ConfigurableClass, ConfigurableClassData
from psycopg.conninfo import conninfo_to_dict

from warehouse.settings import get_settings

SCHEMA = "dagster"


def _postgres_url(url: str) -> str:
    """The warehouse URL in SQLAlchemy's form, its sessions in the `dagster` schema."""
    params = {key: str(value) for key, value in conninfo_to_dict(url).items()}
    dbname = params.pop("dbname", "postgres")
    user = params.pop("user", "")
    password = params.pop("password", "")
    auth = f"{quote(user)}{':' + quote(password) if password else ''}@" if user else ""
    query = urlencode({"options": f"-csearch_path={SCHEMA}", **params})
    # dagster-postgres speaks psycopg2 (SQLAlchemy 2.1 would pick psycopg 3 for postgresql://)
    return f"postgresql+psycopg2://{auth}/{quote(dbname)}?{query}"


def _create_schema(url: str) -> None:
    with psycopg.connect(url, autocommit=True) as conn:
        conn.execute(f"create schema if not exists {SCHEMA}")


class BillingStorage(DagsterStorage, ConfigurableClass):
    """Chooses the storage when the instance is built (never at import) and is never built
    itself: the chosen class's own configuration is what run workers receive, so they open
    the same storage."""

    @classmethod
    def config_type(cls) -> dict[str, Any]:
        return {}

    @classmethod
    def from_config_value(  # type: ignore[override]  # returns the storage it chose
        cls, inst_data: ConfigurableClassData | None, config_value: Mapping[str, Any]
    ) -> DagsterStorage:
        settings = get_settings()
        # its logs and artifacts (dagster.yaml) live here, whatever keeps the runs
        dagster_dir = settings.private_dir("dagster")
        if settings.database_url:
            _create_schema(settings.database_url)
            config = {"postgres_url": _postgres_url(settings.database_url)}
            data = ConfigurableClassData(
                "dagster_postgres", "DagsterPostgresStorage", yaml.dump(config)
            )
        else:
            base_dir = dagster_dir / "storage"
            config = {"base_dir": str(base_dir)}
            data = ConfigurableClassData(
                "dagster._core.storage.sqlite_storage", "DagsterSqliteStorage", yaml.dump(config)
            )
        return data.rehydrate(as_type=DagsterStorage)  # type: ignore[type-abstract]

    @property
    def inst_data(self) -> ConfigurableClassData | None:  # never built: see from_config_value
        return None
