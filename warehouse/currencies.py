"""ISO 4217 currencies we bill in and their minor-unit exponents (usd 2, jpy 0, kwd 3).

The one source of these exponents: migrations copy them into ``app.currencies`` for dbt.
"""

from __future__ import annotations

MINOR_UNITS: dict[str, int] = {
    # zero-decimal
    "bif": 0, "clp": 0, "djf": 0, "gnf": 0, "isk": 0, "jpy": 0, "kmf": 0, "krw": 0,
    "pyg": 0, "rwf": 0, "ugx": 0, "vnd": 0, "vuv": 0, "xaf": 0, "xof": 0, "xpf": 0,
    # three-decimal
    "bhd": 3, "iqd": 3, "jod": 3, "kwd": 3, "lyd": 3, "omr": 3, "tnd": 3,
    # two-decimal
    "aed": 2, "ars": 2, "aud": 2, "brl": 2, "cad": 2, "chf": 2, "cny": 2, "cop": 2,
    "czk": 2, "dkk": 2, "egp": 2, "eur": 2, "gbp": 2, "hkd": 2, "huf": 2, "idr": 2,
    "ils": 2, "inr": 2, "mxn": 2, "myr": 2, "ngn": 2, "nok": 2, "nzd": 2, "pen": 2,
    "php": 2, "pkr": 2, "pln": 2, "ron": 2, "sar": 2, "sek": 2, "sgd": 2, "thb": 2,
    "try": 2, "twd": 2, "uah": 2, "usd": 2, "zar": 2,
}  # fmt: skip
