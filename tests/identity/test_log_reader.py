"""Re-reading events at known positions (an unmerge resolves a split profile's events again),
on each backend: also when the events are megabytes apart on every partition."""
import pytest

from services.identity.log_reader import read_at
from services.runtime.log import Message, TopicPartition, open_log
from tests.support import kafka_errors

TOPIC = "reader.topic"


@pytest.fixture
def log(settings):
    log = open_log(settings)
    log.ensure_topics([TOPIC])
    yield log
    log.close()


def test_events_megabytes_apart_on_every_partition_are_read_again(log, settings, caplog):
    count, pad = settings.partitions_for(TOPIC), "x" * 4000
    log.append(TOPIC, [Message.of(f"k{i}", {"n": i, "pad": pad}) for i in range(500 * count)])
    ends = log.end_offsets([TopicPartition(TOPIC, p) for p in range(count)])
    wanted = [(TOPIC, tp.partition, offset) for tp, end in ends.items() if end for offset in (0, end - 1)]
    with caplog.at_level("WARNING"):
        found = read_at(log, wanted)
    assert set(found) == set(wanted)
    assert kafka_errors(caplog) == []  # no failed fetch
    assert all(value["pad"] == pad for value in found.values())
