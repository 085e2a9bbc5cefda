"""Subscription history: starts, plan changes and cancellations, appended to
``raw.subscription_events`` where the dbt engine reads them."""

from __future__ import annotations

import secrets
from dataclasses import dataclass
from datetime import MAXYEAR, UTC, datetime, timedelta
from typing import Any, Literal

import psycopg

Action = Literal["start", "change_plan", "cancel"]


def record_subscription_event(
    conn: psycopg.Connection,
    subscription_id: str,
    tenant_id: str,
    action: Action,
    effective_at: datetime,
    *,
    plan_key: str | None = None,
    at_period_end: bool = False,
    source: str = "api",
) -> int:
    """Append one change to the history; return its sequence number (in commit order: the
    history is locked until the transaction ends)."""
    lock_history(conn)
    row = conn.execute(
        """insert into raw.subscription_events
               (subscription_id, tenant_id, action, plan_key, effective_at, at_period_end,
                source)
           values (%s, %s, %s, %s, %s, %s, %s)
           returning event_seq""",
        (subscription_id, tenant_id, action, plan_key, effective_at, at_period_end, source),
    ).fetchone()
    assert row is not None
    return int(row[0])


class SubscriptionError(ValueError):
    """A change that cannot be made; names the field. ``kind``: the request is ``invalid``,
    names what is ``not_found``, is in ``conflict`` with the subscription's state, or is
    ``forbidden`` to the caller (a tenant key backdating)."""

    def __init__(
        self,
        field: str,
        message: str,
        kind: Literal["invalid", "not_found", "conflict", "forbidden"] = "invalid",
    ):
        super().__init__(message)
        self.field = field
        self.kind = kind


@dataclass(frozen=True)
class SubscriptionState:
    subscription_id: str
    tenant_id: str
    ends_at: datetime | None
    history: list[dict[str, Any]]
    # the end of the trial its first plan gave it (null: no trial)
    trial_ends_at: datetime | None = None

    @property
    def starts_at(self) -> datetime:
        return self.history[0]["effective_at"]

    @property
    def plan(self) -> str | None:
        """The last plan of the history that stands, a move scheduled later included."""
        return self.plan_at(None)

    def plan_at(self, moment: datetime | None) -> str | None:
        """The plan in effect at ``moment`` (the last start or change at or before it that
        stands; None before the start), or at the end of the history (None)."""
        plan = None
        for entry in self.history:
            if moment is not None and entry["effective_at"] > moment:
                break
            if entry["action"] != "cancel" and not entry["dropped"]:
                plan = entry["plan"]
        return plan

    def next_change(self, moment: datetime) -> dict[str, Any] | None:
        """The first move scheduled after ``moment`` that stands and changes the plan in
        effect: ``{"plan", "effective_at"}``, the plan in effect from then (a move and a
        move back at the same time move nothing), or None."""
        current = self.plan_at(moment)
        for entry in self.history:
            if (
                entry["effective_at"] > moment
                and entry["action"] == "change_plan"
                and not entry["dropped"]
            ):
                then = self.plan_at(entry["effective_at"])
                if then != current:
                    return {"plan": then, "effective_at": entry["effective_at"]}
        return None

    def as_json(self, now: datetime) -> dict[str, Any]:
        """The API's answer: ``plan`` the last plan that stands (a move scheduled later
        included), ``current_plan`` the one in effect ``now`` (None before the start and
        from the end on), ``next_change`` the move scheduled next after ``now``."""
        runs = self.starts_at <= now and (self.ends_at is None or now < self.ends_at)
        upcoming = self.next_change(now)
        return {
            "id": self.subscription_id,
            "tenant_id": self.tenant_id,
            "plan": self.plan,
            "current_plan": self.plan_at(now) if runs else None,
            "next_change": None
            if upcoming is None
            else {"plan": upcoming["plan"], "at": upcoming["effective_at"]},
            "status": "canceled" if self.ends_at is not None else "active",
            "ends_at": self.ends_at,
            "trial_ends_at": self.trial_ends_at,
            "history": self.history,
        }


def lock_history(conn: psycopg.Connection) -> None:
    """Serialize the changes of every subscription until the transaction ends: each change
    sees every one before it, and the history's event_seq follows commit order, so a monthly
    run's watermark (the highest event_seq when it began) misses nothing below it."""
    conn.execute("lock table raw.subscription_events in share row exclusive mode")


def _plan_for_tenant(conn: psycopg.Connection, plan: str, tenant_id: str, field: str) -> None:
    row = conn.execute(
        """select v.currency, t.currency
           from app.tenants t
           left join lateral (select currency from app.plan_versions
                              where plan_key = %s order by version desc limit 1) v on true
           where t.tenant_id = %s""",
        (plan, tenant_id),
    ).fetchone()
    if row is None:
        raise SubscriptionError("tenant_id", f"unknown tenant {tenant_id!r}")
    plan_currency, tenant_currency = row
    if plan_currency is None:
        raise SubscriptionError(field, f"unknown plan {plan!r}")
    if plan_currency != tenant_currency:
        raise SubscriptionError(
            field,
            f"currency mismatch: plan {plan!r} bills in {plan_currency}, "
            f"tenant {tenant_id!r} pays in {tenant_currency}",
        )


def subscription_state(conn: psycopg.Connection, subscription_id: str) -> SubscriptionState:
    rows = conn.execute(
        """select tenant_id, action, plan_key, effective_at, at_period_end
           from raw.subscription_events where subscription_id = %s
           order by effective_at, event_seq""",
        (subscription_id,),
    ).fetchall()
    if not rows:
        raise SubscriptionError("id", f"no subscription {subscription_id!r}", kind="not_found")
    # the first cancel ends the subscription; a change scheduled at or after its end is
    # dropped (dbt's int_subscription_intervals reads the history by the same rule)
    ends_at: datetime | None = None
    for _, action, _, effective_at, at_period_end in rows:
        if action == "cancel":
            end = _month_end(effective_at) if at_period_end else effective_at
            ends_at = end if ends_at is None else min(ends_at, end)
    history = []
    for _, action, plan_key, effective_at, at_period_end in rows:
        dropped = action != "cancel" and ends_at is not None and effective_at >= ends_at
        history.append(
            {
                "action": action,
                "plan": plan_key,
                "effective_at": effective_at,
                "at_period_end": at_period_end,
                "dropped": dropped,
            }
        )
    return SubscriptionState(subscription_id, rows[0][0], ends_at, history, _trial_end(conn, rows))


def tenant_subscriptions(conn: psycopg.Connection, tenant_id: str) -> list[SubscriptionState]:
    """Every subscription of the tenant, ended and scheduled ones included, by their start."""
    ids = conn.execute(
        """select subscription_id from raw.subscription_events where tenant_id = %s
           group by subscription_id order by min(effective_at), subscription_id""",
        (tenant_id,),
    ).fetchall()
    return [subscription_state(conn, subscription_id) for (subscription_id,) in ids]


def _trial_end(conn: psycopg.Connection, rows: list[Any]) -> datetime | None:
    """The trial's end: its start plus the trial_days of the plan version in effect then
    (as int_subscription_intervals reads them)."""
    starts = [(at, plan) for _, action, plan, at, _ in rows if action == "start"]
    if not starts:
        return None
    started_at, plan = min(starts)
    found = conn.execute(
        """select trial_days from app.plan_versions
           where plan_key = %s and effective_from <= %s order by version desc limit 1""",
        (plan, started_at),
    ).fetchone()
    return started_at + timedelta(days=found[0]) if found and found[0] else None


def _month_end(moment: datetime) -> datetime:
    first = moment.astimezone(UTC).replace(day=1, hour=0, minute=0, second=0, microsecond=0)
    return (first + timedelta(days=32)).replace(day=1)


# A subscription's times lie before the calendar's last two years, so that what follows from
# them is a time too: the end of their month (a cancel at period end), a trial's end (at
# most catalog.MAX_TRIAL_DAYS, a year). A cancel at period end in December 9999 was a 500.
LAST_TIME = datetime(MAXYEAR - 1, 1, 1, tzinfo=UTC)


def _check_time(at: datetime, earliest: datetime | None, field: str) -> None:
    """A time of a change is before LAST_TIME; a caller limited to ``earliest`` (a tenant
    key: now) cannot backdate a change."""
    if at >= LAST_TIME:
        raise SubscriptionError(field, f"{at.isoformat()} is not before {LAST_TIME.isoformat()}")
    if earliest is not None and at < earliest:
        raise SubscriptionError(
            field,
            f"{at.isoformat()} is in the past: a tenant key changes subscriptions from now on; "
            "backdating is for the admin key",
            kind="forbidden",
        )


def running(conn: psycopg.Connection, tenant_id: str, at: datetime) -> SubscriptionState | None:
    """The tenant's subscription that runs at or after ``at`` (its end is later), if any."""
    ids = conn.execute(
        "select distinct subscription_id from raw.subscription_events where tenant_id = %s",
        (tenant_id,),
    ).fetchall()
    for (subscription_id,) in ids:
        state = subscription_state(conn, subscription_id)
        if state.ends_at is None or state.ends_at > max(at, state.starts_at):
            return state
    return None


def start(
    conn: psycopg.Connection,
    tenant_id: str,
    plan: str,
    at: datetime,
    subscription_id: str | None = None,
    *,
    earliest: datetime | None = None,
    source: str = "api",
) -> SubscriptionState:
    """Start a subscription of ``tenant_id`` to ``plan`` at ``at``: a tenant has at most one
    subscription at a time, so the one it has must end by ``at``."""
    _check_time(at, earliest, "start")
    subscription_id = subscription_id or f"sub_{secrets.token_hex(8)}"
    with conn.transaction():
        lock_history(conn)
        if conn.execute(
            "select 1 from raw.subscription_events where subscription_id = %s", (subscription_id,)
        ).fetchone():
            raise SubscriptionError(
                "id", f"subscription {subscription_id!r} exists", kind="conflict"
            )
        _plan_for_tenant(conn, plan, tenant_id, "plan")
        other = running(conn, tenant_id, at)
        if other is not None:
            until = "" if other.ends_at is None else f" until {other.ends_at.isoformat()}"
            raise SubscriptionError(
                "tenant_id",
                f"tenant {tenant_id!r} has an active subscription {other.subscription_id!r}"
                f" (plan {other.plan!r}{until}): change its plan, or cancel it first",
                kind="conflict",
            )
        record_subscription_event(
            conn, subscription_id, tenant_id, "start", at, plan_key=plan, source=source
        )
        return subscription_state(conn, subscription_id)


def _active_at(state: SubscriptionState, at: datetime) -> datetime:
    """When a change asked for at ``at`` takes effect: then, or at the subscription's start
    if it has not started by then (a subscription scheduled to start later can be moved to
    another plan or cancelled before it runs: it starts on that plan, or never runs)."""
    if state.ends_at is not None:
        raise SubscriptionError(
            "id",
            f"subscription {state.subscription_id!r} is cancelled (ends {state.ends_at})",
            kind="conflict",
        )
    return max(at, state.starts_at)


def change_plan(
    conn: psycopg.Connection,
    subscription_id: str,
    plan: str,
    at: datetime,
    *,
    earliest: datetime | None = None,
) -> SubscriptionState:
    """Move the subscription to ``plan`` from ``at``; the month is split there."""
    _check_time(at, earliest, "at")
    with conn.transaction():
        lock_history(conn)
        state = subscription_state(conn, subscription_id)
        at = _active_at(state, at)
        if plan == state.plan_at(at):
            # a move to the plan it is on would split the month (each part priced on its
            # own) and change nothing else: a change scheduled later stands
            scheduled = state.next_change(at)
            then = (
                ""
                if scheduled is None
                else f"; the move to {scheduled['plan']!r} scheduled at "
                f"{scheduled['effective_at'].isoformat()} stands: to keep {plan!r}, "
                "change the plan at that time"
            )
            raise SubscriptionError(
                "plan", f"the subscription is on {plan!r} at {at.isoformat()} already{then}"
            )
        _plan_for_tenant(conn, plan, state.tenant_id, "plan")
        record_subscription_event(
            conn, subscription_id, state.tenant_id, "change_plan", at, plan_key=plan
        )
        return subscription_state(conn, subscription_id)


def cancel(
    conn: psycopg.Connection,
    subscription_id: str,
    at: datetime,
    at_period_end: bool,
    *,
    earliest: datetime | None = None,
) -> SubscriptionState:
    """End the subscription at ``at``, or at the end of ``at``'s month; a plan change
    scheduled after the end is dropped. One that has not started by then ends at its
    start (it never runs), or at the end of that month if it starts in it."""
    _check_time(at, earliest, "at")
    with conn.transaction():
        lock_history(conn)
        state = subscription_state(conn, subscription_id)
        if at_period_end and _month_end(at) <= state.starts_at:
            at_period_end = False
        at = _active_at(state, at)
        record_subscription_event(
            conn, subscription_id, state.tenant_id, "cancel", at, at_period_end=at_period_end
        )
        return subscription_state(conn, subscription_id)
