"""Regenerate the Python code of the ``lameta.v1`` protobuf package.

Sources live in ``proto/lameta_proto/v1/*.proto`` and the generated modules are written
beside them, so the installed import package is ``lameta_proto`` (the name ``proto``
belongs to proto-plus). Run ``make proto`` after editing a ``.proto`` file;
``tests/proto/test_codegen.py`` fails when the committed files are stale.

Usage: ``python proto/codegen.py [--out DIR]``
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

PROTO_ROOT = Path(__file__).resolve().parent


def proto_sources() -> list[Path]:
    """Return the ``.proto`` files, sorted for a reproducible run."""
    return sorted((PROTO_ROOT / "lameta_proto" / "v1").glob("*.proto"))


def generate(out_dir: Path) -> list[Path]:
    """Run protoc (from grpcio-tools) and return the generated files.

    Args:
        out_dir: Directory that receives ``lameta_proto/v1/*_pb2*.py(i)``.

    Returns:
        The generated files.

    Raises:
        RuntimeError: protoc failed.
    """
    import grpc_tools
    from grpc_tools import protoc

    out_dir.mkdir(parents=True, exist_ok=True)
    include = str(Path(grpc_tools.__file__).parent / "_proto")
    sources = [str(p.relative_to(PROTO_ROOT)) for p in proto_sources()]
    args = [
        "protoc",
        f"-I{PROTO_ROOT}",
        f"-I{include}",
        f"--python_out={out_dir}",
        f"--pyi_out={out_dir}",
        f"--grpc_python_out={out_dir}",
        *sources,
    ]
    if protoc.main(args) != 0:
        raise RuntimeError(f"protoc failed: {' '.join(args)}")
    return sorted((out_dir / "lameta_proto" / "v1").glob("*_pb2*.py*"))


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=PROTO_ROOT, help="output root")
    args = parser.parse_args(argv)
    for path in generate(args.out):
        print(path)
    return 0


if __name__ == "__main__":
    sys.exit(main())
