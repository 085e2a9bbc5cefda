"""Prepaid credit balances as the mart has them (marts.fct_credit_balances): the API's
GET /v1/credits and `billing credits list` read them from here."""

from __future__ import annotations

from typing import Any

import psycopg

CREDIT_BALANCES = "marts.fct_credit_balances"
GRANT_COLUMNS = (
    "grant_id",
    "tenant_id",
    "currency",
    "granted_minor",
    "used_minor",
    "expired_minor",
    "voided_minor",
    "balance_minor",
    "status",
    "priority",
    "granted_at",
    "expires_at",
    "voided_at",
    "description",
)


def credit_grants(conn: psycopg.Connection, tenant: str | None) -> list[dict[str, Any]]:
    """Every grant (of one tenant, or all), in the order invoices use them."""
    cur = conn.execute(
        f"""select {", ".join(GRANT_COLUMNS)} from {CREDIT_BALANCES}
            where %(tenant)s::text is null or tenant_id = %(tenant)s::text
            order by tenant_id, currency, priority, expires_at nulls last, granted_at,
                     grant_id""",
        {"tenant": tenant},
    )
    return [dict(zip(GRANT_COLUMNS, row, strict=True)) for row in cur]


def balances(grants: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """The balance per tenant and currency: the sum of its grants'."""
    totals: dict[tuple[str, str], int] = {}
    for grant in grants:
        key = (grant["tenant_id"], grant["currency"])
        totals[key] = totals.get(key, 0) + int(grant["balance_minor"])
    return [
        {"tenant_id": tenant, "currency": currency, "balance_minor": balance}
        for (tenant, currency), balance in totals.items()
    ]
