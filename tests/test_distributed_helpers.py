"""The pieces of a distributed round that one process can check: shards, agreement, answers by sample."""

from __future__ import annotations

from predictions.scoring.sample import Sample
from predictions.training.distributed import all_ranks_ok, equal_shards, sharded_generation, sharding
from predictions.training.monitor import answers_by_index
from tests import helpers_training as h

SAMPLES = [Sample(i * 10, f"p{i}", f"t{i}") for i in range(5)]


def test_equal_shards_have_equal_lengths_and_cover_every_item_in_order():
    shards = equal_shards(list(range(5)), 2)
    assert [len(s) for s in shards] == [3, 3]
    assert shards == [[0, 1, 2], [3, 4, 4]]
    assert equal_shards(list(range(4)), 4) == [[0], [1], [2], [3]]


def test_one_process_agrees_with_itself_without_a_process_group():
    assert all_ranks_ok(True) is True
    assert all_ranks_ok(False) is False


def test_a_plain_model_is_not_sharded_and_generates_unsynced():
    model = h.model()
    assert sharding(model) is None
    with sharded_generation(model) as options:
        assert options == {"synced_gpus": False}


def test_a_failed_rank_answers_nothing_and_the_padding_never_overrides_an_answer():
    """Rank 1 of 2 held samples 3, 4 and 4 again (padding): its None leaves exactly those out."""
    assert answers_by_index(SAMPLES, [["a0", "a1", "a2"], None]) == {0: "a0", 10: "a1", 20: "a2"}
    both = answers_by_index(SAMPLES, [["a0", "a1", "a2"], ["a3", "a4", "padding"]])
    assert both == {0: "a0", 10: "a1", 20: "a2", 30: "a3", 40: "a4"}
    assert answers_by_index(SAMPLES, [None, None]) == {}
