"""servicekit.heap: start-up objects leave the collector's full passes, garbage does not
get frozen. Run in a fresh interpreter: freezing concerns the whole process."""

from __future__ import annotations

import subprocess
import sys
import textwrap

SCRIPT = textwrap.dedent(
    """
    import gc, weakref
    from servicekit.heap import freeze_startup

    class Node:
        pass

    kept = [Node() for _ in range(1000)]          # start-up objects, alive
    cycle = Node(); cycle.me = cycle              # start-up garbage (a reference cycle)
    gone = weakref.ref(cycle); del cycle
    gc.disable()                                  # only freeze_startup collects
    frozen = freeze_startup()
    assert gone() is None, "garbage was frozen instead of collected"
    assert frozen >= 1000 and gc.get_freeze_count() == frozen
    tracked = {id(o) for o in gc.get_objects()}
    assert not any(id(o) in tracked for o in kept), "start-up objects are still scanned"
    later = Node(); later.me = later              # what the service allocates afterwards
    assert id(later) in {id(o) for o in gc.get_objects()}
    print("ok")
    """
)


def test_start_up_objects_leave_the_full_passes_and_garbage_is_collected_first() -> None:
    res = subprocess.run([sys.executable, "-c", SCRIPT], capture_output=True, text=True)
    assert res.returncode == 0, res.stderr
    assert res.stdout.strip() == "ok"
