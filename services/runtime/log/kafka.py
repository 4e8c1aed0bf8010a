"""The Kafka backend: an acks=all producer (librdkafka, producer.py) and consumer groups
(kafka-python).

Topics are created at start with the configured partition counts, under the
configured prefix. Consumers seek to the positions the projector stored in its
database on every assignment; committing to Kafka only reports progress (lag).
"""
from __future__ import annotations

import threading
from collections.abc import Sequence

from kafka import KafkaAdminClient, KafkaConsumer
from kafka.admin import NewTopic
from kafka.consumer.subscription_state import ConsumerRebalanceListener
from kafka.errors import KafkaError, TopicAlreadyExistsError
from kafka.structs import OffsetAndMetadata
from kafka.structs import TopicPartition as KafkaTopicPartition

from services.runtime.log import LogUnavailable, Message, OnAssign, Record, TopicPartition
from services.runtime.log.producer import Producer


# kafka-python 2.3 refuses a response frame over 1 MB (receive_message_max_bytes) but asks for
# fetches of up to 50 MB: a consumer more than a megabyte behind on its partitions together
# dropped the connection on every such fetch (Tansu answered one with 6 MB) and read on only
# when a smaller one came back. kafka-python 3's defaults, set here.
FETCH_MAX_BYTES = 50 * 1024 * 1024
RECEIVE_MAX_BYTES = 100 * 1024 * 1024


def kafka_consumer(servers, **options) -> KafkaConsumer:
    """A kafka-python consumer that accepts every fetch response it asks for. Every consumer
    of Rapport's (groups, and the group-less readers of unmerge and rejections) is made here."""
    return KafkaConsumer(bootstrap_servers=servers, fetch_max_bytes=FETCH_MAX_BYTES,
                         receive_message_max_bytes=RECEIVE_MAX_BYTES, **options)


class KafkaLog:
    def __init__(self, settings):
        self.settings = settings
        self.prefix = settings.topic_prefix
        self.servers = settings.kafka_bootstrap_servers.split(",")
        self._producer: Producer | None = None
        self._lock = threading.Lock()

    def name(self, topic: str) -> str:
        return self.prefix + topic

    def ensure_topics(self, topics: Sequence[str]) -> None:
        admin = self._admin()
        try:
            for topic in topics:  # one by one: an existing topic raises for its request only
                try:
                    admin.create_topics([NewTopic(self.name(topic), self.settings.partitions_for(topic),
                                                  self.settings.replication_factor)])
                except TopicAlreadyExistsError:
                    pass  # created by an earlier start or another replica
        except KafkaError as error:
            raise LogUnavailable(f"could not create topics: {error}") from error
        finally:
            admin.close()

    def _admin(self) -> KafkaAdminClient:
        try:
            return KafkaAdminClient(bootstrap_servers=self.servers,
                                    request_timeout_ms=self.settings.kafka_request_timeout_ms)
        except KafkaError as error:
            raise LogUnavailable(f"kafka unreachable: {error}") from error

    def producer(self) -> Producer:
        with self._lock:
            if self._producer is None:
                self._producer = Producer(self.servers, self.settings.kafka_request_timeout_ms)
            return self._producer

    def append(self, topic: str, messages: Sequence[Message]) -> None:
        if messages:
            self.producer().send_all(self.name(topic), messages)

    def end_offsets(self, partitions: Sequence[TopicPartition]) -> dict[TopicPartition, int]:
        consumer = kafka_consumer(self.servers, enable_auto_commit=False)
        try:
            ends = consumer.end_offsets([KafkaTopicPartition(self.name(tp.topic), tp.partition)
                                         for tp in partitions])
        finally:
            consumer.close()
        return {TopicPartition(tp.topic[len(self.prefix):], tp.partition): o for tp, o in ends.items()}

    def consumer(self, group: str, topics: Sequence[str], on_assign: OnAssign) -> "KafkaLogConsumer":
        return KafkaLogConsumer(self, group, topics, on_assign)

    def close(self) -> None:
        if self._producer is not None:
            self._producer.close(timeout_s=5)


class _SeekToStored(ConsumerRebalanceListener):
    def __init__(self, owner: "KafkaLogConsumer"):
        self.owner = owner

    def on_partitions_revoked(self, revoked):
        pass

    def on_partitions_assigned(self, assigned):
        self.owner.seek_to_stored(assigned)


class KafkaLogConsumer:
    def __init__(self, log: KafkaLog, group: str, topics: Sequence[str], on_assign: OnAssign):
        self.log, self.on_assign = log, on_assign
        self.kafka = kafka_consumer(
            log.servers, group_id=log.prefix + group,
            enable_auto_commit=False, auto_offset_reset="earliest",
            session_timeout_ms=log.settings.kafka_session_timeout_ms,
            heartbeat_interval_ms=log.settings.kafka_session_timeout_ms // 3,
            request_timeout_ms=max(log.settings.kafka_request_timeout_ms, 30_000) + 5_000)
        self.kafka.subscribe([log.name(t) for t in topics], listener=_SeekToStored(self))

    def _ours(self, tp: KafkaTopicPartition) -> TopicPartition:
        return TopicPartition(tp.topic[len(self.log.prefix):], tp.partition)

    def _theirs(self, tp: TopicPartition) -> KafkaTopicPartition:
        return KafkaTopicPartition(self.log.name(tp.topic), tp.partition)

    def seek_to_stored(self, assigned) -> None:
        stored = self.on_assign([self._ours(tp) for tp in assigned])
        for tp in assigned:
            position = stored.get(self._ours(tp))
            if position is None:
                self.kafka.seek_to_beginning(tp)
            else:
                self.kafka.seek(tp, position)

    def poll(self, max_records: int, timeout_s: float) -> list[Record]:
        fetched = self.kafka.poll(timeout_ms=int(timeout_s * 1000), max_records=max_records)
        return [Record(self._ours(tp).topic, r.partition, r.offset,
                       r.key.decode() if r.key is not None else None, r.value, r.timestamp)
                for tp, records in fetched.items() for r in records]

    def seek(self, positions: dict[TopicPartition, int]) -> None:
        owned = self.kafka.assignment()
        for tp, offset in positions.items():
            if self._theirs(tp) in owned:
                self.kafka.seek(self._theirs(tp), offset)

    def commit(self, positions: dict[TopicPartition, int]) -> None:
        try:
            self.kafka.commit({self._theirs(tp): OffsetAndMetadata(o, "", -1)
                               for tp, o in positions.items()})
        except KafkaError:
            pass  # progress report only: the database holds the real positions

    def close(self) -> None:
        self.kafka.close(autocommit=False)
