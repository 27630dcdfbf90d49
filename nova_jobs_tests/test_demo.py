"""The demo data set looks like a social app, and the same seed gives the same data."""

from datetime import UTC, datetime

import pytest

from nova_jobs_dev.demo.generate import generate_demo

pytestmark = pytest.mark.integration

NOW = datetime(2026, 11, 29, 12, 0, tzinfo=UTC)


def scalar(client, sql, database):
    return client.query(sql.replace("{db}", database)).result_rows[0][0]


def test_demo_data_has_the_shape_of_a_social_app(clickhouse):
    db = clickhouse.database_name
    with clickhouse.get_client() as client:
        stats = generate_demo(client, db, users=3000, seed=11, now=NOW)
        assert stats.follows == scalar(client, "SELECT count() FROM {db}.follows", db) > 3000 * 10
        # Power law: the most-followed 1% of accounts hold a large share of all follows.
        top_share = scalar(client, """
            SELECT sum(c) / (SELECT count() FROM {db}.follows) FROM (
                SELECT count() AS c FROM {db}.follows GROUP BY followee_id ORDER BY c DESC LIMIT 30)""", db)
        assert top_share > 0.15
        # Triangles: many follows u->w are also reachable as u->v->w.
        closed = scalar(client, """
            SELECT count() FROM (SELECT DISTINCT a.follower_id AS u, b.followee_id AS w
                                 FROM {db}.follows a JOIN {db}.follows b ON a.followee_id = b.follower_id) t
            JOIN {db}.follows f ON f.follower_id = t.u AND f.followee_id = t.w""", db)
        assert closed / stats.follows > 0.2
        assert scalar(client, "SELECT countIf(follower_id = followee_id) FROM {db}.follows", db) == 0
        assert scalar(client, "SELECT count() - uniqExact(follower_id, followee_id) FROM {db}.follows", db) == 0
        # Bursty engagement: the hottest post of the last hour outdraws the median post by far.
        hottest, median = client.query(f"""
            SELECT max(c), quantileExact(0.5)(c) FROM (
                SELECT post_id, count() AS c FROM {db}.post_events
                WHERE event_time > toDateTime('{NOW:%Y-%m-%d %H:%M:%S}', 'UTC') - INTERVAL 1 DAY GROUP BY post_id)""").result_rows[0]
        assert hottest > 20 * median
        # Authors engage with their own posts; viewers come back; some types are unknown.
        assert scalar(client, """SELECT count() FROM {db}.post_events e JOIN {db}.posts p ON p.post_id = e.post_id
                                 WHERE e.user_id = p.author_id""", db) > 0
        assert scalar(client, """SELECT count() FROM (SELECT post_id, user_id FROM {db}.post_events
                                 WHERE event_type = 'view' GROUP BY post_id, user_id HAVING count() > 1)""", db) > 0
        assert scalar(client, """SELECT countIf(event_type NOT IN ('view','like','comment','share'))
                                 FROM {db}.post_events""", db) > 0
        # Blocks, some of them between people who follow each other; no event in the future.
        assert scalar(client, """SELECT count() FROM {db}.user_blocks b JOIN {db}.follows f
                                 ON f.follower_id = b.blocker_id AND f.followee_id = b.blocked_id""", db) > 0
        assert scalar(client, "SELECT max(event_time) FROM {db}.post_events", db).replace(tzinfo=UTC) <= NOW
        assert scalar(client, "SELECT countIf(created_at >= toDateTime('"
                      f"{NOW:%Y-%m-%d %H:%M:%S}', 'UTC') - INTERVAL 48 HOUR) FROM {{db}}.posts", db) > 0


def test_same_seed_same_data(clickhouse):
    db = clickhouse.database_name
    digest = "SELECT groupBitXor(cityHash64(*)) FROM {db}.{table}"
    with clickhouse.get_client() as client:
        generate_demo(client, db, users=500, seed=3, now=NOW)
        first = [scalar(client, digest.replace("{table}", t), db) for t in ("follows", "posts", "post_events")]
        for table in ("follows", "posts", "post_events", "user_blocks"):
            client.command(f"TRUNCATE TABLE {db}.{table}")
        generate_demo(client, db, users=500, seed=3, now=NOW)
        again = [scalar(client, digest.replace("{table}", t), db) for t in ("follows", "posts", "post_events")]
        for table in ("follows", "posts", "post_events", "user_blocks"):
            client.command(f"TRUNCATE TABLE {db}.{table}")
        generate_demo(client, db, users=500, seed=4, now=NOW)
        other = [scalar(client, digest.replace("{table}", t), db) for t in ("follows", "posts", "post_events")]
    assert first == again
    assert first != other
