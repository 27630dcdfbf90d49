"""Which checks a cache job leaves to the freshness sensor (kept apart from `checks` so the
domains' job modules can use it without importing every domain)."""

import dagster as dg

# The name `dg.build_last_update_freshness_checks` gives its checks (checks.py asserts it).
FRESHNESS_CHECK_NAME = "freshness_check"


def without_freshness_checks(asset_key: dg.AssetKey) -> dg.AssetSelection:
    """A cache job's selection: its asset and every check on it but freshness, which only the
    freshness sensor evaluates (in a run of its own, when the answer can change), not a step in
    every refresh."""
    return dg.AssetSelection.assets(asset_key) - dg.AssetSelection.checks(dg.AssetCheckKey(asset_key, FRESHNESS_CHECK_NAME))
