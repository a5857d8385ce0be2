"""The gRPC access log: one line per call over a real socket, with peer, status and sizes."""

from __future__ import annotations

import json
from concurrent import futures

import grpc
import pytest

from lameta_proto.v1 import intent_pb2
from servicekit.grpc_access import AccessLog

METHOD = "/lameta.v1.IntentService/ReportOutcome"


def _report(request: intent_pb2.ReportOutcomeRequest, context: grpc.ServicerContext):
    if request.reward < 0:
        context.abort(grpc.StatusCode.INVALID_ARGUMENT, "negative reward")
    if request.reward > 100:
        raise RuntimeError("boom")
    return intent_pb2.ReportOutcomeResponse(memory_size=7)


@pytest.fixture
def served(tmp_path):
    log = AccessLog(tmp_path / "access" / "rapp.jsonl", clock=lambda: 123.5)
    server = grpc.server(futures.ThreadPoolExecutor(2), interceptors=[log])
    handler = grpc.method_handlers_generic_handler(
        "lameta.v1.IntentService",
        {
            "ReportOutcome": grpc.unary_unary_rpc_method_handler(
                _report,
                request_deserializer=intent_pb2.ReportOutcomeRequest.FromString,
                response_serializer=intent_pb2.ReportOutcomeResponse.SerializeToString,
            )
        },
    )
    server.add_generic_rpc_handlers((handler,))
    port = server.add_insecure_port("127.0.0.1:0")
    server.start()
    channel = grpc.insecure_channel(f"127.0.0.1:{port}")
    call = channel.unary_unary(
        METHOD,
        request_serializer=intent_pb2.ReportOutcomeRequest.SerializeToString,
        response_deserializer=intent_pb2.ReportOutcomeResponse.FromString,
    )
    yield call, log.path
    channel.close()
    server.stop(None)
    log.close()


def test_each_call_is_one_line_with_its_status_and_sizes(served) -> None:
    call, path = served
    ok = intent_pb2.ReportOutcomeRequest(prompt="p", reward=1.0, request_id="r-1")
    assert call(ok, timeout=5).memory_size == 7
    with pytest.raises(grpc.RpcError) as bad:
        call(intent_pb2.ReportOutcomeRequest(reward=-1.0, request_id="r-2"), timeout=5)
    assert bad.value.code() is grpc.StatusCode.INVALID_ARGUMENT
    with pytest.raises(grpc.RpcError):
        call(intent_pb2.ReportOutcomeRequest(reward=101.0), timeout=5)
    lines = [json.loads(x) for x in path.read_text().splitlines()]
    assert [x["code"] for x in lines] == ["OK", "INVALID_ARGUMENT", "UNKNOWN"]
    assert [x["request_id"] for x in lines] == ["r-1", "r-2", ""]
    first = lines[0]
    assert first["method"] == METHOD and first["t"] == 123.5
    assert first["peer"].startswith("ipv4:127.0.0.1:")
    assert first["request_bytes"] == ok.ByteSize() and first["response_bytes"] == 2
    assert lines[1]["response_bytes"] == 0
    # One channel, one peer: the peer names the client's connection.
    assert len({x["peer"] for x in lines}) == 1
