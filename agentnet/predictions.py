"""E-LAM predictions of labelled intents, kept in files: the rApp writes them
(``rapp-intent predict``), SRL training and evaluation read them.

The two apps never import each other; this file format is their contract. One JSON file
per E-LAM, ``<dir>/<elam>.json``::

    {"format": 1, "elam": "minilm", "artefact": "<sha256 of the distilled weights, or raw>",
     "variant": "<how the outputs were decoded>", "n_parameters": 22713216,
     "vectors": {"<sha1 of app NUL prompt>": [w_C, w_B, w_L, w_P] | null}}

``null`` records a failed translation (a failure is remembered as one). A file made by
other weights or another decoding is never reused: the writer starts it afresh.
"""

from __future__ import annotations

import hashlib
import json
import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any

FORMAT = 1

MISSING = "missing"
"""What :meth:`PredictionFile.get` answers for a prompt the file does not hold."""


def prediction_key(prompt: str, app: str) -> str:
    """The key of one (prompt, application) pair."""
    return hashlib.sha1(f"{app}\x00{prompt}".encode()).hexdigest()


class PredictionFile:
    """The predictions of one E-LAM, as made by one artefact and decoding.

    Args:
        path: the JSON file (read when it exists).
        elam: E-LAM id.
        artefact: sha256 of the distilled weights (``raw`` for a raw model).
        variant: how outputs were decoded (e.g. ``expected-b4``).
        n_parameters: the E-LAM's parameter count (its fee, MODEL.md F(kappa)).
    """

    def __init__(
        self, path: Path, elam: str, artefact: str, variant: str = "", n_parameters: float = 0.0
    ):
        self.path = Path(path)
        self.elam, self.artefact, self.variant = elam, artefact, variant
        self.n_parameters = float(n_parameters)
        self.vectors: dict[str, list[float] | None] = {}
        if self.path.exists():
            data = json.loads(self.path.read_text())
            same = (data.get("format"), data.get("elam"), data.get("artefact"),
                    data.get("variant")) == (FORMAT, elam, artefact, variant)  # fmt: skip
            if same:
                self.vectors = dict(data.get("vectors", {}))

    @classmethod
    def read(cls, path: Path) -> PredictionFile:
        """A file as it is on disk (whatever made it).

        Raises:
            FileNotFoundError: no such file.
            ValueError: not a prediction file of this format.
        """
        data = json.loads(Path(path).read_text())
        if not isinstance(data, dict) or data.get("format") != FORMAT:
            raise ValueError(f"{path}: not an E-LAM prediction file (format {FORMAT})")
        return cls(
            path,
            str(data["elam"]),
            str(data["artefact"]),
            str(data.get("variant", "")),
            float(data.get("n_parameters", 0.0)),
        )

    def get(self, prompt: str, app: str) -> list[float] | str | None:
        """The vector, None (a failed translation) or :data:`MISSING`."""
        return self.vectors.get(prediction_key(prompt, app), MISSING)

    def put(self, prompt: str, app: str, vector: Sequence[float] | None) -> None:
        """Record one prediction (None: the translation failed)."""
        key = prediction_key(prompt, app)
        self.vectors[key] = None if vector is None else [float(v) for v in vector]

    def to_json(self) -> dict[str, Any]:
        return {
            "format": FORMAT,
            "elam": self.elam,
            "artefact": self.artefact,
            "variant": self.variant,
            "n_parameters": self.n_parameters,
            "vectors": self.vectors,
        }

    def save(self) -> None:
        """Write atomically (a reader never sees half a file)."""
        self.path.parent.mkdir(parents=True, exist_ok=True)
        tmp = self.path.with_suffix(f".tmp{os.getpid()}")
        tmp.write_text(json.dumps(self.to_json()))
        os.replace(tmp, self.path)
