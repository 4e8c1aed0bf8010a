"""Recent rejected events of a source, read off the tail of events.rejected.

The log is where rejections are kept (with their reason and raw payload), so this reads it
rather than keeping a second copy in a table. A source's rejections are keyed by its id, so
they share a partition; the last `scan` records of each partition are read and filtered.
"""
from __future__ import annotations

from services.runtime.log import Record, TopicPartition
from services.runtime.sealing import read_json
from services.runtime.topics import EVENTS_REJECTED


def recent_rejections(log, settings, source_id: str, limit: int, scan: int = 2000) -> list[dict]:
    """The source's newest rejected events first: reason, payload, when it was received."""
    partitions = [TopicPartition(EVENTS_REJECTED, p) for p in range(settings.partitions_for(EVENTS_REJECTED))]
    found = [value for tp, end in log.end_offsets(partitions).items()
             for value in read_json(log, _read(log, tp, max(end - scan, 0), end))
             if isinstance(value, dict) and value.get("sourceId") == source_id]
    found.sort(key=lambda v: v.get("receivedAt") or "", reverse=True)
    return [{"received_at": v.get("receivedAt"), "kind": v.get("kind"), "reason": v.get("reason"),
             "violations": v.get("violations"), "payload": v.get("payload")} for v in found[:limit]]


def _read(log, tp: TopicPartition, start: int, end: int) -> list[Record]:
    if start >= end:
        return []
    if hasattr(log, "read"):  # the embedded log reads a range directly
        return log.read(tp, start, end - start)
    return _read_kafka(log, tp, start, end)


def _read_kafka(log, tp: TopicPartition, start: int, end: int) -> list[Record]:
    """A group-less consumer assigned to the partition: nothing is committed or rebalanced.
    It reads on until a poll comes back empty rather than stopping at `end` (Tansu's end
    offsets undercount multi-record batches)."""
    from kafka.structs import TopicPartition as KafkaTopicPartition

    from services.runtime.log.kafka import kafka_consumer

    theirs = KafkaTopicPartition(log.name(tp.topic), tp.partition)
    consumer = kafka_consumer(log.servers, group_id=None, enable_auto_commit=False)
    try:
        consumer.assign([theirs])
        consumer.seek(theirs, start)
        records: list[Record] = []
        while fetched := consumer.poll(timeout_ms=300 if records else 3000):
            records += [Record(tp.topic, tp.partition, m.offset, None, m.value, m.timestamp)
                        for batch in fetched.values() for m in batch]
        return records
    finally:
        consumer.close()
