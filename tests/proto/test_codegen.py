"""The committed generated protobuf code is what ``make proto`` produces from the sources."""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
COMMITTED = ROOT / "proto" / "lameta_proto" / "v1"


def _load_codegen():
    spec = importlib.util.spec_from_file_location("lameta_codegen", ROOT / "proto" / "codegen.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module
    spec.loader.exec_module(module)
    return module


def test_generated_files_are_current(tmp_path: Path) -> None:
    generated = _load_codegen().generate(tmp_path)
    names = sorted(p.name for p in generated)
    committed = sorted(p.name for p in COMMITTED.glob("*_pb2*.py*"))
    assert names, "codegen produced no files"
    assert names == committed, "generated and committed file sets differ; run `make proto`"
    stale = [p.name for p in generated if p.read_bytes() != (COMMITTED / p.name).read_bytes()]
    assert not stale, f"stale generated files {stale}; run `make proto` and commit them"


def test_every_proto_source_is_generated(tmp_path: Path) -> None:
    codegen = _load_codegen()
    generated = {p.name for p in codegen.generate(tmp_path)}
    for source in codegen.proto_sources():
        stem = source.stem
        for suffix in ("_pb2.py", "_pb2.pyi", "_pb2_grpc.py"):
            assert f"{stem}{suffix}" in generated
