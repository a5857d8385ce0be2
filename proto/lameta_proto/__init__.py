"""Generated protobuf and gRPC code of the ``lameta.v1`` package (see proto/codegen.py)."""
