"""A seeded, realistic social data set for the four source tables.

What makes it look like Nova: a power-law follow graph (a few accounts followed by many) with
triangles (people follow friends of friends), posts from a skewed set of authors, bursty
engagement concentrated on a few hot posts, authors engaging with their own posts, repeat
viewers, blocks (some between people who follow each other) and a trickle of event types the
jobs must ignore. The same `seed`, size and `now` give the same rows.
"""

from __future__ import annotations

import logging
import time
from dataclasses import asdict, dataclass
from datetime import datetime

import numpy as np
import pyarrow as pa
from clickhouse_connect.driver.client import Client

from nova_jobs.lib.timing import utc_now
from nova_jobs.warehouse.schema import create_source_tables

log = logging.getLogger(__name__)

EVENT_TYPES = np.array(["view", "like", "comment", "share", "impression", "click", "bookmark"])
EVENT_TYPE_SHARES = np.array([0.78, 0.12, 0.05, 0.03, 0.01, 0.006, 0.004])
DAY = 86_400


@dataclass(frozen=True)
class DemoSize:
    users: int
    follows_per_user: float = 20.0
    posts: int | None = None  # default: one per user
    events: int | None = None  # default: 20 per user
    blocks: int | None = None  # default: one per 50 users
    # Out-degree is log-normal with this sigma (1.0: median ~12, a few follow a few hundred);
    # popularity (who gets followed, who posts) is Zipf-like with this exponent.
    out_degree_sigma: float = 1.0
    popularity_exponent: float = 1.05

    @property
    def post_count(self) -> int:
        return self.posts if self.posts is not None else self.users

    @property
    def event_count(self) -> int:
        return self.events if self.events is not None else 20 * self.users

    @property
    def block_count(self) -> int:
        return self.blocks if self.blocks is not None else max(1, self.users // 50)


@dataclass
class DemoStats:
    users: int
    follows: int
    posts: int
    events: int
    blocks: int
    seconds: float


def heavy_tailed(users: int) -> DemoSize:
    """A second shape for benchmarks: a heavier-tailed out-degree (many users follow hundreds,
    a few thousands) and a steeper popularity law (a few accounts followed by a large share of
    everyone), with the same mean follows per user."""
    return DemoSize(users=users, out_degree_sigma=1.6, popularity_exponent=1.3)


# Named data shapes (`make bench --shapes`): a DemoSize for a number of users.
SHAPES = {"demo": lambda users: DemoSize(users=users), "heavy": heavy_tailed}


def _power_weights(n: int, exponent: float, rng: np.random.Generator) -> np.ndarray:
    """Zipf-like weights over n items in random order: a few items get most of the mass."""
    weights = 1.0 / np.power(np.arange(1, n + 1, dtype=np.float64) + 5.0, exponent)
    rng.shuffle(weights)
    return weights / weights.sum()


def _sample(rng: np.random.Generator, weights_cdf: np.ndarray, size: int) -> np.ndarray:
    """Indices drawn from a distribution given as a cumulative sum (cheaper than rng.choice)."""
    picks = np.searchsorted(weights_cdf, rng.random(size) * weights_cdf[-1], side="right")
    return np.minimum(picks, len(weights_cdf) - 1)


def _follow_graph(size: DemoSize, rng: np.random.Generator, now: int) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    users = size.users
    popularity_cdf = np.cumsum(_power_weights(users, size.popularity_exponent, rng))
    sigma = size.out_degree_sigma
    out_degree = rng.lognormal(np.log(size.follows_per_user) - sigma**2 / 2, sigma, users)
    out_degree = np.clip(np.rint(out_degree), 1, max(1, users - 1)).astype(np.int64)
    followers = np.repeat(np.arange(1, users + 1, dtype=np.int64), out_degree)
    n = len(followers)

    # Most follows go to popular accounts; about a quarter close a triangle through a followee.
    followees = _sample(rng, popularity_cdf, n).astype(np.int64) + 1
    order = np.argsort(followers, kind="stable")
    followers, followees = followers[order], followees[order]
    starts = np.zeros(users + 2, dtype=np.int64)
    np.add.at(starts, followers + 1, 1)
    starts = np.cumsum(starts)
    degree = starts[1:] - starts[:-1]

    closing = rng.random(n) < 0.25
    via_index = starts[followers[closing]] + (rng.integers(0, 1 << 62, closing.sum()) % degree[followers[closing]])
    via = followees[via_index]
    has_followees = degree[via] > 0
    friend_index = starts[via] + (rng.integers(0, 1 << 62, len(via)) % np.maximum(degree[via], 1))
    closed = np.where(has_followees, followees[np.minimum(friend_index, n - 1)], followees[closing])
    followees[closing] = closed

    keep = followers != followees
    followers, followees = followers[keep], followees[keep]
    pair = followers * (users + 1) + followees
    _, unique_index = np.unique(pair, return_index=True)
    followers, followees = followers[unique_index], followees[unique_index]
    created = now - rng.integers(60, 365 * DAY, len(followers))
    return followers, followees, created, popularity_cdf


def _posts(size: DemoSize, rng: np.random.Generator, now: int, popularity_cdf: np.ndarray):
    count = size.post_count
    # Popular accounts post more, but everybody posts sometimes.
    authors = np.where(
        rng.random(count) < 0.6,
        _sample(rng, popularity_cdf, count) + 1,
        rng.integers(1, size.users + 1, count),
    ).astype(np.int64)
    created = np.sort(now - rng.integers(0, 10 * DAY, count))  # ids grow with time
    post_ids = np.arange(1, count + 1, dtype=np.int64)
    return post_ids, authors, created


def _events(size: DemoSize, rng: np.random.Generator, now: int, authors: np.ndarray, post_created: np.ndarray,
            activity_cdf: np.ndarray, count: int):
    posts = len(authors)
    post_cdf = np.cumsum(_power_weights(posts, 0.9, rng))
    recent = np.flatnonzero(post_created >= now - DAY)
    hot_pool = recent if len(recent) else np.arange(posts)
    hot = rng.choice(hot_pool, size=min(len(hot_pool), max(5, posts // 2000)), replace=False)

    is_hot = rng.random(count) < 0.15
    post_index = np.where(is_hot, hot[rng.integers(0, len(hot), count)], _sample(rng, post_cdf, count))
    created = post_created[post_index]
    lifetime = np.maximum(now - created, 1)
    # Ordinary posts: engagement fades after publication. Hot posts: a burst some hours in.
    ordinary_time = created + (rng.beta(1.0, 3.0, count) * lifetime).astype(np.int64)
    burst_center = created + rng.exponential(2 * 3600, count).astype(np.int64)
    burst_time = burst_center + rng.normal(0, 1800, count).astype(np.int64)
    event_time = np.clip(np.where(is_hot, burst_time, ordinary_time), created, now)

    users = _sample(rng, activity_cdf, count).astype(np.int64) + 1
    own = rng.random(count) < 0.03
    users[own] = authors[post_index[own]]
    types = _sample(rng, np.cumsum(EVENT_TYPE_SHARES), count)

    # Repeat viewers: a tenth of the events are a second view by someone who saw it before.
    repeat = np.flatnonzero(rng.random(count) < 0.10)
    source = rng.integers(0, count, len(repeat))
    post_index[repeat] = post_index[source]
    users[repeat] = users[source]
    types[repeat] = 0
    event_time[repeat] = np.minimum(event_time[source] + rng.integers(60, 6 * 3600, len(repeat)), now)
    return event_time, post_index + 1, users, EVENT_TYPES[types]


def _timestamps(seconds: np.ndarray) -> pa.Array:
    return pa.array(seconds.astype("int64"), type=pa.timestamp("s"))


def generate_demo(
    client: Client,
    database: str,
    users: int = 20_000,
    seed: int = 7,
    now: datetime | None = None,
    size: DemoSize | None = None,
    chunk_rows: int = 2_000_000,
) -> DemoStats:
    """Create the source tables (if missing) and append a generated data set to them."""
    started = time.perf_counter()
    size = size or DemoSize(users=users)
    if size.users < 10:
        raise ValueError("the demo data set needs at least 10 users")
    now_epoch = int((now or utc_now()).timestamp())
    rng = np.random.default_rng(seed)
    create_source_tables(client, database)

    followers, followees, follow_created, popularity_cdf = _follow_graph(size, rng, now_epoch)
    for begin in range(0, len(followers), chunk_rows):
        end = begin + chunk_rows
        client.insert_arrow(f"{database}.follows", pa.table({
            "follower_id": pa.array(followers[begin:end], type=pa.uint64()),
            "followee_id": pa.array(followees[begin:end], type=pa.uint64()),
            "created_at": _timestamps(follow_created[begin:end]),
        }))
    follow_count = len(followers)
    log.info("demo: %s follows", follow_count)

    post_ids, authors, post_created = _posts(size, rng, now_epoch, popularity_cdf)
    client.insert_arrow(f"{database}.posts", pa.table({
        "post_id": pa.array(post_ids, type=pa.uint64()),
        "author_id": pa.array(authors, type=pa.uint64()),
        "created_at": _timestamps(post_created),
    }))

    activity_cdf = np.cumsum(_power_weights(size.users, 0.8, rng))
    remaining = size.event_count
    while remaining > 0:
        count = min(chunk_rows, remaining)
        event_time, event_posts, event_users, types = _events(
            size, rng, now_epoch, authors, post_created, activity_cdf, count
        )
        client.insert_arrow(f"{database}.post_events", pa.table({
            "event_time": _timestamps(event_time),
            "post_id": pa.array(event_posts, type=pa.uint64()),
            "user_id": pa.array(event_users, type=pa.uint64()),
            "event_type": pa.array(types, type=pa.string()),
        }))
        remaining -= count
    log.info("demo: %s events", size.event_count)

    # Blocks: half between strangers, half cutting an existing follow.
    block_count = size.block_count
    strangers = block_count - block_count // 2
    picks = rng.integers(0, len(followers), block_count // 2) if len(followers) else np.zeros(0, dtype=np.int64)
    blockers = np.concatenate([rng.integers(1, size.users + 1, strangers), followers[picks]])
    blocked = np.concatenate([rng.integers(1, size.users + 1, strangers), followees[picks]])
    keep = blockers != blocked
    client.insert_arrow(f"{database}.user_blocks", pa.table({
        "blocker_id": pa.array(blockers[keep], type=pa.uint64()),
        "blocked_id": pa.array(blocked[keep], type=pa.uint64()),
        "created_at": _timestamps(now_epoch - rng.integers(60, 90 * DAY, int(keep.sum()))),
    }))

    stats = DemoStats(
        users=size.users,
        follows=follow_count,
        posts=len(post_ids),
        events=size.event_count,
        blocks=int(keep.sum()),
        seconds=round(time.perf_counter() - started, 2),
    )
    log.info("demo data loaded into %s: %s", database, asdict(stats))
    return stats


def store_is_empty(client: Client, database: str) -> bool:
    exists = client.query(
        "SELECT count() FROM system.tables WHERE database = {db:String} AND name = 'post_events'",
        parameters={"db": database},
    ).result_rows[0][0]
    if not exists:
        return True
    return client.query(f"SELECT count() FROM {database}.post_events").result_rows[0][0] == 0
