"""Nova Jobs: the Dagster code location that builds Nova's Redis caches from ClickHouse."""
