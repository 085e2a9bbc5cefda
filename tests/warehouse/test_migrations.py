"""Migrations apply once, in order, and raw tables are append-only."""

from __future__ import annotations

import psycopg
import pytest

from warehouse.migrate import apply_migrations, available


def test_migrations_are_idempotent(empty_database: str) -> None:
    with psycopg.connect(empty_database) as conn:
        first = apply_migrations(conn)
        second = apply_migrations(conn)
        recorded = [r[0] for r in conn.execute("select version from app.schema_migrations")]
    assert first == [m.version for m in available()]
    assert second == []
    assert recorded == first


@pytest.mark.parametrize("table", ["raw.events", "raw.subscription_events"])
@pytest.mark.parametrize(
    "statement", ["update {t} set received_at = now()", "delete from {t}", "truncate {t}"]
)
def test_raw_tables_are_append_only(warehouse: str, table: str, statement: str) -> None:
    with psycopg.connect(warehouse) as conn:
        apply_migrations(conn)
        conn.commit()
        with pytest.raises(psycopg.errors.InsufficientPrivilege, match="append-only"):
            conn.execute(statement.format(t=table))  # type: ignore[arg-type]


def test_raw_events_have_received_at(warehouse: str) -> None:
    with psycopg.connect(warehouse) as conn:
        apply_migrations(conn)
        columns = {
            r[0]
            for r in conn.execute(
                "select column_name from information_schema.columns "
                "where table_schema = 'raw' and table_name = 'events'"
            )
        }
    assert {"received_at", "event_seq", "idempotency_key"} <= columns


def test_the_api_role_appends_usage_and_changes_nothing_else(warehouse: str) -> None:
    """The API's own URL (BILLING_API_DATABASE_URL, as every test's API uses it): no
    superuser, insert into raw and read it, no update, delete or DDL, no model it does not
    serve."""
    from warehouse.db import database_url

    with psycopg.connect(database_url(api=True), autocommit=True) as conn:
        role = conn.execute(
            "select current_user, rolsuper, rolcreaterole, rolcreatedb from pg_roles "
            "where rolname = current_user"
        ).fetchone()
        assert role == ("billing_api", False, False, False)
        conn.execute(
            """insert into raw.events (tenant_id, metric, amount, event_ts, idempotency_key)
               values ('acme', 'api_calls', 1, now(), 'k1')"""
        )
        assert conn.execute("select count(*) from raw.events").fetchone() == (1,)
        assert conn.execute("select count(*) from intermediate.int_usage_live").fetchone()
        for statement in [
            "update raw.events set amount = 2",
            "delete from raw.events",
            "truncate raw.events",
            "delete from raw.subscription_events",
            "update app.tenants set name = 'x'",
            "delete from app.api_keys",
            "insert into app.api_keys (key_id, key_sha256, tenant_id) values ('k', 'h', 'acme')",
            "create table app.mine (a int)",
            "create table raw.mine (a int)",
            "drop table raw.events",
            "select count(*) from intermediate.int_events_arrivals",
            "select count(*) from staging.stg_raw__events",
        ]:
            with pytest.raises(psycopg.errors.InsufficientPrivilege):
                conn.execute(statement)  # type: ignore[arg-type]
        with conn.transaction():  # the subscription history's writers' lock
            conn.execute("lock table raw.subscription_events in share row exclusive mode")


def test_the_quota_plans_stamp_never_makes_catalog_and_subscriptions_wait_in_a_cycle(
    warehouse: str,
) -> None:
    """A catalog apply changes plans, then takes the subscription history's lock; a
    subscription change holds that lock when its events move the quota plans' stamp
    (migration 0019). Each moves a stamp row of its own, so the change goes through while
    the apply waits for it, instead of the two waiting for each other."""
    with psycopg.connect(warehouse, autocommit=True) as setup:
        apply_migrations(setup)
    with psycopg.connect(warehouse) as catalog, psycopg.connect(warehouse) as change:
        # a statement's trigger fires with no row changed
        catalog.execute("update app.plan_charges set quota_limit = quota_limit where false")
        change.execute("set lock_timeout = '5s'")
        change.execute("lock table raw.subscription_events in share row exclusive mode")
        change.execute(
            "insert into raw.subscription_events overriding system value"
            " select * from raw.subscription_events where false"
        )
        change.commit()  # not waiting for the catalog's transaction
        catalog.execute("lock table raw.subscription_events in share row exclusive mode")
        catalog.commit()
        stamps = dict(catalog.execute("select source, stamp from app.quota_plans_stamp").fetchall())
    assert stamps == {"subscriptions": 1, "catalog": 1}


def test_the_closed_months_keep_each_months_lowest_watermark_before_and_after_0023(
    empty_database: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Migration 0023 copies in the months closed before it; from then on each freeze of
    invoices lowers its month's watermark and first close time, never raises them, whatever
    the order and however many invoices a statement freezes; no month is removed."""
    from warehouse import migrate

    every = migrate.available()

    def freeze(conn: psycopg.Connection, *invoices: tuple[str, str, str, int | None, int]) -> None:
        """(invoice, month, finalized at, arrivals through, subscriptions through), in one
        statement, as the close freezes a month's invoices."""
        conn.execute(
            """insert into app.finalized_invoices
                   (invoice_id, tenant_id, currency, period_start, period_end, subtotal_minor,
                    tax_minor, total_minor, finalized_at, arrivals_through,
                    subscription_events_through)
               select i, 't_' || i, 'usd', m::timestamptz, m::timestamptz + interval '1 month',
                      0, 0, 0, f::timestamptz, a, s
               from unnest(%s::text[], %s::text[], %s::text[], %s::bigint[], %s::bigint[])
                   as v (i, m, f, a, s)""",
            [list(column) for column in zip(*invoices, strict=True)],
        )

    def closed(conn: psycopg.Connection) -> list[tuple[str, str, int | None, int]]:
        return [
            (f"{start:%Y-%m}", f"{at:%m-%d %H}", arrivals, subscriptions)
            for start, at, arrivals, subscriptions in conn.execute(
                """select period_start at time zone 'UTC', finalized_at at time zone 'UTC',
                          arrivals_through, subscription_events_through
                   from app.closed_months order by period_start"""
            )
        ]

    with psycopg.connect(empty_database) as conn:
        with monkeypatch.context() as before:
            before.setattr(migrate, "available", lambda: [m for m in every if m.version < "0023"])
            apply_migrations(conn)
        # September closed twice before 0023; an invoice of August without a watermark (0010)
        freeze(conn, ("a9", "2026-09-01Z", "2026-10-01 02:00Z", 7, 3))
        freeze(conn, ("b9", "2026-09-01Z", "2026-10-04 02:00Z", 9, 2))
        freeze(conn, ("a8", "2026-08-01Z", "2026-09-01 02:00Z", None, 1))
        conn.commit()
        with monkeypatch.context() as until:
            until.setattr(migrate, "available", lambda: [m for m in every if m.version <= "0023"])
            assert apply_migrations(conn) == ["0023"]
        assert closed(conn) == [("2026-08", "09-01 02", None, 1), ("2026-09", "10-01 02", 7, 2)]

        # two months in one statement; September again, later and with a lower watermark
        freeze(
            conn,
            ("a10", "2026-10-01Z", "2026-11-01 02:00Z", 12, 6),
            ("b10", "2026-10-01Z", "2026-11-01 02:00Z", 11, 6),
            ("c9", "2026-09-01Z", "2026-11-01 02:00Z", 5, 4),
            ("b8", "2026-08-01Z", "2026-11-01 02:00Z", 4, 5),
        )
        assert closed(conn) == [
            ("2026-08", "09-01 02", 4, 1),
            ("2026-09", "10-01 02", 5, 2),
            ("2026-10", "11-01 02", 11, 6),
        ]
        # what dbt's int_closed_months grouped from the invoices before 0023
        assert closed(conn) == [
            (f"{start:%Y-%m}", f"{at:%m-%d %H}", arrivals, subscriptions)
            for start, at, arrivals, subscriptions in conn.execute(
                """select period_start at time zone 'UTC', min(finalized_at) at time zone 'UTC',
                          min(arrivals_through), min(subscription_events_through)
                   from app.finalized_invoices group by period_start order by period_start"""
            )
        ]
        conn.commit()
        for statement in ("delete from app.closed_months", "truncate app.closed_months"):
            with pytest.raises(psycopg.errors.InsufficientPrivilege, match="append-only"):
                conn.execute(statement)  # type: ignore[arg-type]
            conn.rollback()


def test_0025_takes_the_invoices_held_in_closed_months_from_the_marts(
    empty_database: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Invoices held by closes before migration 0025 are those of a closed month that the
    marts still show held; a held draft of a month not closed is no close's."""
    from warehouse import migrate

    every = migrate.available()
    with psycopg.connect(empty_database) as conn:
        with monkeypatch.context() as before:
            before.setattr(migrate, "available", lambda: [m for m in every if m.version < "0025"])
            apply_migrations(conn)
        conn.execute(
            """insert into app.finalized_invoices
                   (invoice_id, tenant_id, currency, period_start, period_end, subtotal_minor,
                    tax_minor, total_minor)
               values ('inv_a', 't_a', 'usd', '2026-10-01Z', '2026-11-01Z', 0, 0, 0)"""
        )
        conn.execute(  # what the marts' view shows: only the columns 0025 reads
            """create table marts.fct_invoices as
               select * from (values
                   ('t_a', '2026-10-01Z'::timestamptz, 'finalized', null),
                   ('t_b', '2026-10-01Z'::timestamptz, 'held', 'overlapping_subscriptions'),
                   ('t_b', '2026-11-01Z'::timestamptz, 'held', 'overlapping_subscriptions'),
                   ('t_c', '2026-11-01Z'::timestamptz, 'draft', null)
               ) as v (tenant_id, period_start, status, hold_reason)"""
        )
        conn.commit()
        assert apply_migrations(conn) == ["0025"]
        held = conn.execute(
            "select tenant_id, period_start, hold_reason from app.held_invoices"
        ).fetchall()
    assert [(t, f"{p:%Y-%m}", r) for t, p, r in held] == [
        ("t_b", "2026-10", "overlapping_subscriptions")
    ]
