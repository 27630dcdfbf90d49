"""Bulk cache writes (`write_many`) against a real redis-server: every key lands with its TTL,
per-key errors stay per key, memory stays bounded while Redis is slow, and failures surface."""

import json

import pytest
import redis as redis_lib

from nova_jobs.lib.cache import write_many
from nova_jobs_dev.localstack import free_port

pytestmark = pytest.mark.integration


def test_every_key_lands_with_its_value_and_ttl(redis_client):
    items = [(f"nova:test:{i}", json.dumps([{"user_id": i, "name": "Zoë ✓"}])) for i in range(5003)]
    result = write_many(redis_client, iter(items), ttl_seconds=300, chunk_size=250, queue_batches=2)
    assert (result.written, result.failed) == (5003, 0)
    assert redis_client.dbsize() == 5003
    for key, value in items[::997] + items[-1:]:
        assert redis_client.get(key) == value
        assert 295 <= redis_client.ttl(key) <= 300


def test_error_replies_are_counted_per_key_and_keep_the_old_values(redis_client):
    """Redis refuses `SET ... EX 0` with an error reply per command; each is read and counted
    (a key failing mid-pipeline under an ACL is in test_feeds)."""
    redis_client.set("nova:test:1", "old")
    failed: list[str] = []
    items = [("nova:test:0", "a"), ("nova:test:1", "b"), ("nova:test:2", "c")]
    result = write_many(redis_client, items, ttl_seconds=0, on_failure=lambda key, value: failed.append(key))
    assert (result.written, result.failed) == (0, 3)
    assert failed == ["nova:test:0", "nova:test:1", "nova:test:2"]
    assert "invalid expire time" in result.errors[0]
    assert redis_client.get("nova:test:1") == "old"
    result = write_many(redis_client, items, ttl_seconds=60)
    assert (result.written, result.failed) == (3, 0)


def test_the_producer_stays_a_bounded_distance_ahead_of_a_stalled_redis(redis_client, redis_url):
    chunk, batches = 100, 2
    ahead: list[int] = []

    def items():
        # Redis accepts no writes for a while: the writer blocks, the queue fills, this
        # generator must block too instead of buffering everything.
        redis_client.execute_command("CLIENT", "PAUSE", "400", "WRITE")
        for i in range(20_000):
            if i % 500 == 0:
                ahead.append(i - redis_client.dbsize())
            yield f"nova:test:{i}", "x" * 100

    result = write_many(redis_lib.Redis.from_url(redis_url), items(), ttl_seconds=60, chunk_size=chunk,
                        queue_batches=batches)
    assert result.written == 20_000
    assert max(ahead) <= (batches + 2) * chunk, ahead


def test_a_producer_error_stops_the_writer_and_propagates(redis_client):
    def items():
        for i in range(450):
            yield f"nova:test:{i}", "v"
        raise RuntimeError("stream broke")

    with pytest.raises(RuntimeError, match="stream broke"):
        write_many(redis_client, items(), ttl_seconds=60, chunk_size=100)
    assert redis_client.dbsize() == 400  # the full batches sent before the error


def test_redis_down_raises_instead_of_hanging():
    client = redis_lib.Redis(port=free_port(), socket_connect_timeout=1)
    with pytest.raises(redis_lib.ConnectionError):
        write_many(client, ((f"nova:test:{i}", "v") for i in range(10_000)), ttl_seconds=60, chunk_size=100)
