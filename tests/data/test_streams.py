"""Endless batch streams: pass after pass, one empty pass tolerated (a loader restored at the
end of its pass), two in a row are an error naming the problem."""
import pytest

from data.streams import endless


class Passes:
    """A re-iterable loader whose passes yield the given lists in turn, then stay empty."""

    def __init__(self, *passes):
        self.passes = list(passes)

    def __iter__(self):
        return iter(self.passes.pop(0) if self.passes else [])


def test_batches_follow_pass_after_pass_and_one_empty_pass_is_passed_over():
    stream = endless(Passes([1, 2], [], [3], [4, 5]))
    assert [next(stream) for _ in range(5)] == [1, 2, 3, 4, 5]


def test_two_empty_passes_raise_the_given_error():
    class NoData(Exception):
        pass
    with pytest.raises(NoData, match="nothing to read"):
        list(endless(Passes([], []), no_data="nothing to read", error=NoData))


def test_keep_filters_batches_and_a_pass_of_only_rejected_ones_counts_as_empty():
    stream = endless(Passes([1, 20, 3], [40]), keep=lambda b: b < 10)
    assert [next(stream), next(stream)] == [1, 3]
    with pytest.raises(RuntimeError, match="no batch"):
        next(stream)
