"""`ordered_map`: results in input order, errors where they belong, nothing left running."""

from __future__ import annotations

import threading
import time

import pytest

from pipeline.ordered import conversion_threads, ordered_map


def _slow_square(n: int) -> int:
    time.sleep(0.002 * (n % 5))  # later items often finish first
    return n * n


@pytest.mark.parametrize("threads", [1, 4])
def test_results_come_in_input_order(threads):
    assert list(ordered_map(_slow_square, range(50), threads)) == [n * n for n in range(50)]


@pytest.mark.parametrize("threads", [1, 3])
def test_errors_of_the_function_and_of_the_input_reach_the_caller_in_place(threads):
    def fail_at_7(n: int) -> int:
        if n == 7:
            raise ValueError("bad frame 7")
        return n

    seen = []
    with pytest.raises(ValueError, match="bad frame 7"):
        for value in ordered_map(fail_at_7, range(20), threads):
            seen.append(value)
    assert seen == list(range(7))

    def items():
        yield from range(5)
        raise OSError("decoder died")

    with pytest.raises(OSError, match="decoder died"):
        list(ordered_map(_slow_square, items(), threads))


def test_at_most_ahead_items_are_in_flight_and_an_early_stop_leaves_no_thread():
    started = []
    gate = threading.Event()

    def record(n: int) -> int:
        started.append(n)
        gate.wait(5)
        return n

    results = ordered_map(record, range(100), 4, ahead=6)
    gate.set()
    assert next(results) == 0
    assert len(started) <= 7  # the first item and at most ahead more
    results.close()
    assert not [t for t in threading.enumerate() if t.name.startswith("convert")]


def test_conversion_threads_grow_with_cores_and_stay_inline_on_small_machines():
    assert conversion_threads(2) == 1
    assert conversion_threads(16) == 4
    assert conversion_threads(128) == 4
