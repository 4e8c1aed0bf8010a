"""Re-reads events from the log at known positions, to resolve them again after a split.

The Log interface has no random read yet (a request to the runtime's owner), so this
reaches into each backend: the embedded log reads its table, Kafka uses a group-less
consumer assigned to the partitions.
"""
from __future__ import annotations

from collections import defaultdict

from services.runtime import jsoncodec
from services.runtime.log import Log, TopicPartition
from services.runtime.sealing import open_values


def read_at(log: Log, positions: list[tuple[str, int, int]]) -> dict[tuple[str, int, int], dict]:
    """The events at (topic, partition, offset), as JSON; those sealed under a destroyed key
    (an erased person's) are left out."""
    raw = _read_raw(log, positions)
    keystore = getattr(log, "keystore", None)
    if keystore is None:
        return {at: jsoncodec.loads(value) for at, value in raw.items()}
    return {at: jsoncodec.loads(opened) for at, opened in zip(raw, open_values(keystore, list(raw.values())))
            if opened is not None}


def _read_raw(log: Log, positions: list[tuple[str, int, int]]) -> dict[tuple[str, int, int], bytes]:
    wanted: dict[TopicPartition, set[int]] = defaultdict(set)
    for topic, partition, offset in positions:
        wanted[TopicPartition(topic, partition)].add(offset)
    if not wanted:
        return {}
    if hasattr(log, "read"):  # the embedded log
        return {(tp.topic, tp.partition, r.offset): r.value for tp, offsets in wanted.items()
                for start, limit in _runs(offsets)
                for r in log.read(tp, start, limit) if r.offset in offsets}
    return _read_kafka(log, wanted)


def _runs(offsets: set[int]) -> list[tuple[int, int]]:
    """Consecutive offsets as (start, count): one read per run."""
    runs: list[list[int]] = []
    for offset in sorted(offsets):
        if runs and offset == runs[-1][0] + runs[-1][1]:
            runs[-1][1] += 1
        else:
            runs.append([offset, 1])
    return [(start, count) for start, count in runs]


def _read_kafka(log, wanted: dict[TopicPartition, set[int]]) -> dict:
    from kafka.structs import TopicPartition as KafkaTopicPartition

    from services.runtime.log.kafka import kafka_consumer

    consumer = kafka_consumer(log.servers, enable_auto_commit=False, group_id=None,
                              request_timeout_ms=max(log.settings.kafka_request_timeout_ms, 30_000) + 5_000)
    found: dict[tuple[str, int, int], bytes] = {}
    try:
        theirs = {KafkaTopicPartition(log.name(tp.topic), tp.partition): tp for tp in wanted}
        consumer.assign(list(theirs))
        for kafka_tp, tp in theirs.items():
            consumer.seek(kafka_tp, min(wanted[tp]))
        missing = sum(len(o) for o in wanted.values())
        for _ in range(200):  # bounded: a missing offset must not hang a worker
            if len(found) >= missing:
                break
            for kafka_tp, records in consumer.poll(timeout_ms=200).items():
                tp = theirs[kafka_tp]
                found.update({(tp.topic, tp.partition, r.offset): r.value
                              for r in records if r.offset in wanted[tp]})
    finally:
        consumer.close()
    if len(found) < sum(len(o) for o in wanted.values()):
        raise RuntimeError("could not re-read every event of a split profile from the log")
    return found
