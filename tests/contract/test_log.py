"""The log contract, run on each backend."""
from __future__ import annotations

from collections import defaultdict
from concurrent.futures import ThreadPoolExecutor

import pytest

from services.runtime.log import LogUnavailable, Message, TopicPartition, open_log
from tests.support import kafka_errors, wait_until

TOPIC = "contract.topic"


def read_everything(log, expected: int, start=lambda tps: {}) -> list:
    consumer = log.consumer("contract-reader", [TOPIC], start)
    records = []
    try:
        wait_until(lambda: records.extend(consumer.poll(500, 0.2)) or len(records) >= expected,
                   60, f"{expected} records")
    finally:
        consumer.close()
    return records


class LogContract:
    @pytest.fixture
    def log(self, settings):
        log = open_log(settings)
        log.ensure_topics([TOPIC])
        yield log
        log.close()

    def test_a_key_keeps_its_messages_in_order_on_one_partition(self, log):
        sent = [Message.of(f"person-{i % 7}", {"n": i}) for i in range(140)]
        for start in range(0, len(sent), 20):
            log.append(TOPIC, sent[start:start + 20])
        by_key = defaultdict(list)
        for record in sorted(read_everything(log, 140), key=lambda r: (r.partition, r.offset)):
            by_key[record.key].append((record.partition, record.json()["n"]))
        assert len(by_key) == 7
        for key, seen in by_key.items():
            assert len({partition for partition, _ in seen}) == 1, key
            assert [n for _, n in seen] == sorted(n for _, n in seen) and len(seen) == 20

    def test_topics_have_the_configured_partitions_and_offsets_count_from_zero(self, log, settings):
        log.append(TOPIC, [Message.of(f"k{i}", i) for i in range(60)])
        offsets = defaultdict(list)
        for record in read_everything(log, 60):
            offsets[record.partition].append(record.offset)
        assert set(offsets) == set(range(settings.partitions_for(TOPIC)))
        assert all(sorted(seen) == list(range(len(seen))) for seen in offsets.values())

    def test_end_offsets_count_each_partitions_messages(self, log, settings, request):
        if settings.log_backend == "kafka" and request.getfixturevalue("broker_is_tansu"):
            pytest.xfail("Tansu answers ListOffsets(latest) with the last batch's base offset + 1")
        log.append(TOPIC, [Message.of(f"k{i}", i) for i in range(60)])
        count = settings.partitions_for(TOPIC)
        ends = log.end_offsets([TopicPartition(TOPIC, p) for p in range(count)])
        per_partition = defaultdict(int)
        for record in read_everything(log, 60):
            per_partition[record.partition] += 1
        assert ends == {TopicPartition(TOPIC, p): per_partition[p] for p in range(count)}

    def test_a_consumer_starts_where_its_owner_says(self, log, settings):
        log.append(TOPIC, [Message.of("same-key", i) for i in range(10)])
        partition = read_everything(log, 10)[0].partition
        assigned = []

        def start_at_six(partitions):
            assigned.extend(partitions)
            return {TopicPartition(TOPIC, partition): 6}
        records = read_everything(log, 4, start_at_six)
        assert TopicPartition(TOPIC, partition) in assigned
        assert [r.json() for r in records] == [6, 7, 8, 9]

    def test_appends_from_many_threads_all_return_and_land_once(self, log):
        """Each append waits for its own messages' acknowledgements while others are in flight."""
        def appender(thread: int) -> int:
            for batch in range(5):
                log.append(TOPIC, [Message.of(f"t{thread}-{i}", {"thread": thread, "batch": batch}) for i in range(8)])
            return thread
        with ThreadPoolExecutor(6) as pool:
            assert sorted(pool.map(appender, range(6), timeout=60)) == list(range(6))
        records = read_everything(log, 6 * 5 * 8)
        assert sorted((r.json()["thread"], r.json()["batch"], r.key) for r in records) == \
            sorted((t, b, f"t{t}-{i}") for t in range(6) for b in range(5) for i in range(8))

    def test_a_backlog_of_megabytes_is_read_without_a_failed_fetch(self, log, settings, caplog):
        """A consumer far behind gets fetches of several megabytes (kafka-python 2.3 dropped the
        connection on any response over 1 MB, and logged why)."""
        count, value = settings.partitions_for(TOPIC), "x" * 4000
        log.append(TOPIC, [Message.of(f"k{i}", {"n": i, "pad": value}) for i in range(500 * count)])
        with caplog.at_level("WARNING"):
            records = read_everything(log, 500 * count)
        assert sorted(r.json()["n"] for r in records) == list(range(500 * count))
        assert kafka_errors(caplog) == []

    def test_appended_messages_survive_reopening_the_log(self, log, settings):
        log.append(TOPIC, [Message.of("k", {"n": i}) for i in range(25)])
        log.close()
        reopened = open_log(settings)
        try:
            assert sorted(r.json()["n"] for r in read_everything(reopened, 25)) == list(range(25))
        finally:
            reopened.close()


class TestEmbeddedLog(LogContract):
    @pytest.fixture
    def backend(self):
        return "embedded"

    def test_the_log_is_a_file_that_outlives_the_process_objects(self, log, settings):
        log.append(TOPIC, [Message.of("k", 1)])
        assert settings.embedded_log_url.startswith("sqlite:///")
        assert (settings.data_dir / "log.db").stat().st_size > 0

    def test_a_backlog_on_one_partition_does_not_starve_the_others(self, log, settings):
        count = settings.partitions_for(TOPIC)
        log.append(TOPIC, [Message.of(f"k{i}", i) for i in range(100 * count)])
        consumer = log.consumer("fair-reader", [TOPIC], lambda tps: {})
        try:
            polled = [{r.partition for r in consumer.poll(10, 1.0)} for _ in range(count)]
        finally:
            consumer.close()
        assert set().union(*polled) == set(range(count))  # every partition within `count` polls


@pytest.mark.real_backends
class TestKafkaLog(LogContract):
    @pytest.fixture
    def backend(self):
        return "postgres+kafka"

    def test_a_key_lands_on_the_partition_java_clients_and_kafka_python_choose(self, log, settings):
        """So a deployment keeps each person on their partition across a change of producer."""
        from kafka.partitioner.default import murmur2

        count = settings.partitions_for(TOPIC)
        keys = [f"person-{i}" for i in range(40)]
        log.append(TOPIC, [Message.of(key, i) for i, key in enumerate(keys)])
        placed = {r.key: r.partition for r in read_everything(log, len(keys))}
        assert placed == {key: (murmur2(key.encode()) & 0x7FFFFFFF) % count for key in keys}
        assert len(set(placed.values())) == count

    def test_an_unreachable_broker_raises_log_unavailable(self, settings):
        from tests.backends import free_port

        settings.kafka_bootstrap_servers = f"127.0.0.1:{free_port()}"
        settings.kafka_request_timeout_ms = 1000
        log = open_log(settings)
        with pytest.raises(LogUnavailable):
            log.append(TOPIC, [Message.of("k", 1)])
        log.close()
        log.close()  # twice: a runtime and a test's fixture may both close it
        with pytest.raises(RuntimeError, match="closed"):  # destroyed, not left reconnecting to no one
            log.producer().kafka.poll(0)
