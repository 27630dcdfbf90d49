"""Reading and writing the DLQ topics with explicit offsets (never consumer-group commits, which
a failed sensor tick would lose or skip)."""

from __future__ import annotations

import json
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from nova_jobs.resources.kafka import KafkaResource

if TYPE_CHECKING:
    from kafka import KafkaConsumer, TopicPartition

SEND_TIMEOUT_SECONDS = 10.0


@dataclass(frozen=True)
class Record:
    topic: str
    partition: int
    offset: int
    key: bytes | None
    value: bytes | None
    timestamp_ms: int
    headers: tuple[tuple[str, bytes], ...] = ()


def publish(kafka: KafkaResource, topic: str, items: Iterable[tuple[str, bytes]]) -> list[BaseException | None]:
    """Send (key, value) pairs and wait for every acknowledgement (acks=all). Returns, per item,
    None when the broker has it, else the error; the producer's own failure raises."""
    producer = kafka.producer()
    try:
        futures = [producer.send(topic, key=key.encode("utf-8"), value=value) for key, value in items]
        producer.flush(timeout=SEND_TIMEOUT_SECONDS)
        outcomes: list[BaseException | None] = []
        for future in futures:
            try:
                future.get(timeout=SEND_TIMEOUT_SECONDS)
                outcomes.append(None)
            except Exception as error:  # noqa: BLE001 - reported per message
                outcomes.append(error)
        return outcomes
    finally:
        producer.close(timeout=SEND_TIMEOUT_SECONDS)


def publish_json(kafka: KafkaResource, topic: str, items: Iterable[tuple[str, dict[str, Any]]]) -> None:
    """Send JSON records; raise the first failure (the caller's tick then retries them all)."""
    payload = [(key, json.dumps(value, separators=(",", ":")).encode("utf-8")) for key, value in items]
    if not payload:
        return
    for error in publish(kafka, topic, payload):
        if error is not None:
            raise error


def open_consumer(kafka: KafkaResource) -> KafkaConsumer:
    return kafka.consumer(group_id=None, enable_auto_commit=False, auto_offset_reset="earliest",
                          request_timeout_ms=max(kafka.request_timeout_ms, 6000) + 1000)


def topic_partitions(consumer: KafkaConsumer, topic: str) -> list[TopicPartition]:
    from kafka import TopicPartition

    partitions = consumer.partitions_for_topic(topic)
    if partitions is None:
        # Unknown topic: ask once more (the metadata request may have just created it).
        consumer.topics()
        partitions = consumer.partitions_for_topic(topic) or set()
    return [TopicPartition(topic, p) for p in sorted(partitions)]


def _holds(consumer: KafkaConsumer, tp: TopicPartition, offset: int) -> bool:
    """Whether the partition has a record at `offset` or after it."""
    consumer.assign([tp])
    consumer.seek(tp, offset)
    for _ in range(3):
        batch = consumer.poll(timeout_ms=300, max_records=1)
        if any(m.offset >= offset for m in batch.get(tp, [])):
            return True
    return False


def _check_stored(
    consumer: KafkaConsumer,
    topics: list[str],
    partitions: list[TopicPartition],
    offsets: dict[str, dict[str, int]],
    ends: dict[TopicPartition, int],
    on_reset: Callable[[str], None],
) -> dict[str, dict[str, int]]:
    """The stored offsets, without those past the end of their partition or of a partition that
    is gone (the topic was recreated, the cluster migrated, a dev broker lost its data): reading
    from there would find nothing, forever."""
    present = {(tp.topic, str(tp.partition)) for tp in partitions}
    kept: dict[str, dict[str, int]] = {}
    for topic in topics:
        kept[topic] = {}
        for partition, offset in offsets.get(topic, {}).items():
            if (topic, partition) not in present:
                on_reset(f"{topic}[{partition}]: partition gone (stored offset {offset}); forgotten")
                continue
            kept[topic][partition] = offset
    for tp in partitions:
        stored = kept[tp.topic].get(str(tp.partition), 0)
        # The reported end is only a lower bound (tansu reports a batch's first offset + 1), so
        # an offset beyond it counts as past the end only when no record is at the one before.
        if stored > ends[tp] and not _holds(consumer, tp, stored - 1):
            on_reset(f"{tp.topic}[{tp.partition}]: stored offset {stored} is past the end ({ends[tp]}); "
                     "reading it again from the start")
            kept[tp.topic][str(tp.partition)] = 0
    return kept


def read_from(
    consumer: KafkaConsumer,
    topics: list[str],
    offsets: dict[str, dict[str, int]] | None = None,
    max_records: int = 1000,
    deadline_seconds: float = 20.0,
    on_reset: Callable[[str], None] | None = None,
) -> tuple[list[Record], dict[str, dict[str, int]]]:
    """Records of `topics` from the given next-offsets (per topic, per partition; missing means
    the beginning) up to the end as it was when reading began, at most `max_records`. Returns the
    records in order per partition and the next offsets to read from. With `on_reset`, stored
    offsets past the end of their partition (or of a partition that is gone) are reset to the
    start, and `on_reset` is told why."""
    offsets = offsets or {}
    partitions = [tp for topic in topics for tp in topic_partitions(consumer, topic)]
    if not partitions:
        return [], {topic: dict(offsets.get(topic, {})) for topic in topics}
    # The end offsets are a lower bound of what to read: reading goes on until the ends are
    # reached and a poll finds nothing more (tansu reports the end of a multi-record batch as
    # its first offset + 1).
    ends = consumer.end_offsets(partitions)
    starts = consumer.beginning_offsets(partitions)
    if on_reset is not None:
        offsets = _check_stored(consumer, topics, partitions, offsets, ends, on_reset)
    next_offsets = {topic: dict(offsets.get(topic, {})) for topic in topics}
    consumer.assign(partitions)
    for tp in partitions:
        stored = next_offsets[tp.topic].get(str(tp.partition), 0)
        start = max(stored, starts.get(tp, 0))
        if on_reset is not None and 0 < stored < start:
            on_reset(f"{tp.topic}[{tp.partition}]: records {stored}-{start - 1} were deleted (retention) before "
                     "they were read")
        next_offsets[tp.topic][str(tp.partition)] = start
        consumer.seek(tp, start)
    records: list[Record] = []
    deadline = time.monotonic() + deadline_seconds
    idle = 0
    while len(records) < max_records and time.monotonic() < deadline:
        behind = any(next_offsets[tp.topic][str(tp.partition)] < ends[tp] for tp in partitions)
        batch = consumer.poll(timeout_ms=500 if behind else 200, max_records=max_records - len(records))
        if not batch and not behind:
            # Past the reported ends, one empty poll may only mean a slow fetch (a loaded broker).
            idle += 1
            if idle >= 2:
                break
            continue
        idle = 0
        for tp, messages in batch.items():
            for message in messages:
                if message.offset < next_offsets[tp.topic][str(tp.partition)]:
                    continue
                records.append(Record(tp.topic, tp.partition, message.offset, message.key, message.value,
                                      message.timestamp, tuple(message.headers or ())))
                next_offsets[tp.topic][str(tp.partition)] = message.offset + 1
    return records, next_offsets


def read_topics(
    kafka: KafkaResource, topics: list[str], offsets: dict[str, dict[str, int]] | None = None, **options: Any
) -> tuple[list[Record], dict[str, dict[str, int]]]:
    """`read_from` (same options) on a consumer of its own, closed afterwards."""
    consumer = open_consumer(kafka)
    try:
        return read_from(consumer, topics, offsets, **options)
    finally:
        consumer.close()
