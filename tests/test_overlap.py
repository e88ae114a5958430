import threading
import time

from stylize.overlap import WriteBehind, read_ahead


def test_read_ahead_keeps_order_and_hands_back_errors():
    def read(i):
        time.sleep(0.01 * (5 - i % 5))  # later items finish first
        if i == 3:
            raise ValueError("bad file 3")
        return i * 10

    got = list(read_ahead(range(8), read, workers=3))
    assert [item for item, _ in got] == list(range(8))
    assert [r for i, r in got if i != 3] == [0, 10, 20, 40, 50, 60, 70]
    assert isinstance(got[3][1], ValueError) and str(got[3][1]) == "bad file 3"


def test_read_ahead_reads_only_a_few_items_ahead():
    started = []
    gen = read_ahead(range(100), lambda i: started.append(i) or i, workers=2)
    next(gen)
    time.sleep(0.05)
    assert len(started) <= 3  # `workers` ahead, plus the one taken
    gen.close()


def test_write_behind_reports_in_order_and_bounds_what_is_in_flight():
    gate, in_flight, peak = threading.Event(), [0], [0]
    lock = threading.Lock()

    def write(i):
        with lock:
            in_flight[0] += 1
            peak[0] = max(peak[0], in_flight[0])
        if i == 0:
            gate.wait(1)  # the first write is slow: nothing may be reported before it
        with lock:
            in_flight[0] -= 1
        return i

    writer = WriteBehind(workers=2)
    done = []
    for i in range(10):
        done += writer.submit(f"t{i}", lambda i=i: write(i))
        if i == 1:
            assert done == []
            gate.set()
    done += writer.close()
    assert done == [(f"t{i}", i) for i in range(10)]
    assert peak[0] <= 2
