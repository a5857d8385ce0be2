"""Keeping the cyclic garbage collector's full passes short in a serving process.

CPython's collector scans every tracked object of the oldest generation in a full
(generation 2) pass, with every thread of the process stopped meanwhile. Right after
start-up that generation is almost all start-up objects: modules, classes, the models'
and libraries' own objects, about 80,000 in the xApp and in the emulator, which makes
one full pass take 20-75 ms on a 2-core machine. Such a pass is triggered by allocation
wherever it happens, so it lands on whatever request is being served: it is a tail
latency. :func:`freeze_startup` moves those objects into the permanent generation
(:func:`gc.freeze`) once the service is ready, so full passes scan only what the service
allocated since, as pre-fork servers do (Instagram's Django, gunicorn's
``gc.freeze()`` hook). Frozen objects are still freed by reference counting; only
reference cycles among them are never collected, and start-up objects live as long as the
process anyway.
"""

from __future__ import annotations

import gc


def freeze_startup() -> int:
    """Collect what start-up left as garbage, then freeze every object that remains.

    Call it once the service has loaded what it serves with, before it serves.

    Returns:
        The number of objects now in the permanent generation.
    """
    gc.collect()
    gc.freeze()
    return gc.get_freeze_count()
