"""The producers' partitioner places every key where Kafka's default partitioner does."""

from __future__ import annotations

from aiokafka.partitioner import DefaultPartitioner
from hypothesis import given
from hypothesis import strategies as st

from telehealth.kafka import RememberingPartitioner


@given(
    keys=st.lists(st.binary(min_size=1, max_size=64), min_size=1, max_size=50),
    partitions=st.integers(min_value=1, max_value=64),
)
def test_same_partition_as_kafkas_default_for_every_key(keys: list[bytes], partitions: int) -> None:
    remembering, default = RememberingPartitioner(), DefaultPartitioner()
    all_partitions = list(range(partitions))
    for key in keys + keys:  # the second time from memory
        expected = default(key, all_partitions, all_partitions)
        assert remembering(key, all_partitions, all_partitions) == expected


def test_a_remembered_key_follows_a_change_in_partition_count() -> None:
    partitioner = RememberingPartitioner()
    assert partitioner(b"oxi-000123", [0, 1, 2, 3, 4, 5], [0]) == DefaultPartitioner()(
        b"oxi-000123", [0, 1, 2, 3, 4, 5], [0]
    )
    assert partitioner(b"oxi-000123", [0, 1, 2], [0, 1, 2]) == DefaultPartitioner()(
        b"oxi-000123", [0, 1, 2], [0, 1, 2]
    )


def test_memory_is_bounded() -> None:
    partitioner = RememberingPartitioner()
    partitioner.MAX_KEYS = 10
    for i in range(25):
        partitioner(f"dev-{i}".encode(), [0, 1], [0, 1])
    assert len(partitioner._hashes) <= 10


def test_keyless_records_go_to_an_available_partition() -> None:
    assert RememberingPartitioner()(None, [0, 1, 2], [2]) == 2
