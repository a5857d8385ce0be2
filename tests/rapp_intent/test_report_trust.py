"""Who may write the rApp's memory, how often, and what a poisoner achieves (real server,
real mutual TLS with certificates from the local stack's CA, real SQLite memory)."""

from __future__ import annotations

import threading
import time
import uuid

import grpc
import pytest
from grpc_health.v1 import health_pb2, health_pb2_grpc

from agentnet.intents import project_intents
from lameta_proto.v1 import intent_pb2, intent_pb2_grpc
from lameta_stack.pki import CertificateAuthority
from rapp_intent.server import SERVICE_NAME, TokenBuckets
from rapp_intent.settings import RappSettings

NOT_SERVING = health_pb2.HealthCheckResponse.NOT_SERVING
APP = "immersive"
ATTACK = [0.97, 0.01, 0.01, 0.01]


@pytest.fixture(scope="module")
def pki(tmp_path_factory):
    ca = CertificateAuthority(tmp_path_factory.mktemp("pki"))
    ca.issue("rapp-intent", server_names=("127.0.0.1", "localhost"))
    for name in ("xapp-composer", "intruder"):
        ca.issue(name, client=True)
    return ca


@pytest.fixture
def mtls(running, pki):
    """Start an rApp with mutual TLS (settings overrides as keywords); returns
    (server, stub_for(client_name))."""

    def start(**overrides):
        d = pki.directory
        server = running(
            tls_cert=d / "rapp-intent.pem",
            tls_key=d / "rapp-intent.key",
            tls_client_ca=pki.cert_path,
            **{"report_identities": ["xapp-composer"], **overrides},
        )

        def stub(client: str) -> intent_pb2_grpc.IntentServiceStub:
            creds = grpc.ssl_channel_credentials(
                root_certificates=pki.cert_path.read_bytes(),
                private_key=(d / f"{client}.key").read_bytes(),
                certificate_chain=(d / f"{client}.pem").read_bytes(),
            )
            channel = grpc.secure_channel(f"localhost:{server.port}", creds)
            return intent_pb2_grpc.IntentServiceStub(channel)

        return server, stub

    return start


def _report(stub, vector=ATTACK, reward=1e6, request_id=None, prompt="render the scene"):
    return stub.ReportOutcome(
        intent_pb2.ReportOutcomeRequest(
            prompt=prompt,
            preference=vector,
            reward=reward,
            app=APP,
            request_id=request_id or uuid.uuid4().hex,
        ),
        timeout=10,
    )


def _code(call, *args, **kwargs) -> tuple[grpc.StatusCode, str]:
    with pytest.raises(grpc.RpcError) as info:
        call(*args, **kwargs)
    return info.value.code(), info.value.details()


def _sample(server, name: str, **labels) -> float:
    value = server.metrics.registry.get_sample_value(name, labels)
    return value or 0.0


def _records(server) -> int:
    return server.memory.size(APP)


def test_a_caller_not_in_the_allow_list_stores_nothing(mtls):
    server, stub = mtls()
    for _ in range(5):
        code, details = _code(_report, stub("intruder"))
        assert code == grpc.StatusCode.PERMISSION_DENIED and "intruder" in details
    assert _records(server) == 0
    assert _sample(server, "rapp_memory_refused_total", app=APP, reason="denied") == 5
    assert (
        _sample(server, "rapp_requests_total", method="ReportOutcome", code="PERMISSION_DENIED")
        == 5
    )
    _report(stub("xapp-composer"))  # the allowed identity writes
    assert _records(server) == 1


def test_without_mutual_tls_no_caller_writes_unless_told_to(running):
    server = running(
        report_identities=RappSettings.model_fields["report_identities"].get_default(
            call_default_factory=True
        )
    )  # default allow-list, no TLS: nobody has an identity
    channel = grpc.insecure_channel(f"127.0.0.1:{server.port}")
    code, details = _code(_report, intent_pb2_grpc.IntentServiceStub(channel))
    assert code == grpc.StatusCode.PERMISSION_DENIED and "client certificate" in details
    assert _records(server) == 0
    open_server = running(report_identities=["*"])  # development: anyone
    channel = grpc.insecure_channel(f"127.0.0.1:{open_server.port}")
    _report(intent_pb2_grpc.IntentServiceStub(channel))
    assert open_server.memory.size(APP) == 1


def test_a_request_id_is_stored_once(mtls):
    server, stub = mtls()
    xapp = stub("xapp-composer")
    first = _report(xapp, vector=[0.25, 0.25, 0.25, 0.25], reward=0.5, request_id="req-1")
    again = _report(xapp, vector=[0.25, 0.25, 0.25, 0.25], reward=0.5, request_id="req-1")
    assert first.memory_size == again.memory_size == 1 == _records(server)
    assert _sample(server, "rapp_memory_refused_total", app=APP, reason="duplicate") == 1


def test_reports_are_rate_limited_per_application(mtls):
    server, stub = mtls(report_rate=0.01, report_burst=3)
    xapp = stub("xapp-composer")
    for _ in range(3):
        _report(xapp)
    code, _details = _code(_report, xapp)
    assert code == grpc.StatusCode.RESOURCE_EXHAUSTED
    assert _records(server) == 3
    assert _sample(server, "rapp_memory_refused_total", app=APP, reason="rate_limited") == 1
    # another application has its own bucket
    xapp.ReportOutcome(
        intent_pb2.ReportOutcomeRequest(
            prompt="p", preference=[0.25] * 4, reward=0.1, app="qa", request_id="qa-1"
        ),
        timeout=10,
    )


def test_token_buckets_refill_at_their_rate():
    now = [0.0]
    buckets = TokenBuckets(rate=2.0, burst=2, clock=lambda: now[0])
    assert buckets.take("a") and buckets.take("a") and not buckets.take("a")
    assert buckets.take("b")
    now[0] = 0.5  # one token back
    assert buckets.take("a") and not buckets.take("a")


def test_an_allowed_poisoner_cannot_move_a_regular_prompt(mtls):
    """100 extreme records with huge rewards from an allowed (compromised) identity move
    the served vector of a regular prompt by at most 0.05 (L1), after a legitimate
    history of the application's training intents."""
    server, stub = mtls(report_burst=1000)
    xapp = stub("xapp-composer")
    train = [i for i in project_intents("train") if i.app == APP][:40]
    assert len(train) == 40
    for item in train:
        _report(xapp, vector=list(item.s), reward=0.8, prompt=item.prompt)
    prompt = train[0].prompt

    def served() -> list[float]:
        resp = xapp.Translate(intent_pb2.TranslateRequest(prompt=prompt, app=APP), timeout=30)
        return list(resp.preference)

    before = served()
    for _ in range(100):
        _report(xapp)
    after = served()
    shift = sum(abs(a - b) for a, b in zip(before, after, strict=True))
    assert shift <= 0.05, (before, after)
    assert _sample(server, "rapp_memory_refused_total", app=APP, reason="quarantined") >= 100


def test_every_refusal_is_counted_even_with_many_callers(running):
    """50 callers at once against one admission slot: every answer is in
    rapp_requests_total (the servicer refuses before grpc's uncounted limit)."""
    server = running(max_concurrent_rpcs=1)
    channel = grpc.insecure_channel(f"127.0.0.1:{server.port}")
    stub = intent_pb2_grpc.IntentServiceStub(channel)
    codes: list[grpc.StatusCode] = []
    lock = threading.Lock()
    go = threading.Event()

    def call(i: int) -> None:
        go.wait()
        try:
            stub.Translate(
                intent_pb2.TranslateRequest(prompt=f"caller {i} wants speed"), timeout=60
            )
            code = grpc.StatusCode.OK
        except grpc.RpcError as exc:
            code = exc.code()
        with lock:
            codes.append(code)

    threads = [threading.Thread(target=call, args=(i,)) for i in range(50)]
    for t in threads:
        t.start()
    go.set()
    for t in threads:
        t.join(120)
    assert len(codes) == 50
    counted = {
        c: _sample(server, "rapp_requests_total", method="Translate", code=c.name)
        for c in set(codes)
    }
    assert counted == {c: float(codes.count(c)) for c in set(codes)}
    assert set(codes) <= {grpc.StatusCode.OK, grpc.StatusCode.RESOURCE_EXHAUSTED}


def test_health_answers_not_serving_over_the_wire_during_drain(running):
    """While an in-flight call finishes, the port stays open: health says NOT_SERVING (not
    UNAVAILABLE) and new calls get UNAVAILABLE, counted."""
    server = running()
    channel = grpc.insecure_channel(f"127.0.0.1:{server.port}")
    stub = intent_pb2_grpc.IntentServiceStub(channel)
    health = health_pb2_grpc.HealthStub(channel)
    words = ["latency", "camera", "render", "budget", "privacy", "stream", "frame", "rate"]
    batch = intent_pb2.TranslateBatchRequest(
        requests=[
            intent_pb2.TranslateRequest(prompt=" ".join(words[(i + j) % 8] for j in range(200)))
            for i in range(96)
        ]
    )
    result: dict = {}
    slow = threading.Thread(target=lambda: result.update(r=stub.TranslateBatch(batch, timeout=300)))
    slow.start()
    deadline = time.monotonic() + 30
    while server.in_flight() < 1 and time.monotonic() < deadline:
        time.sleep(0.005)
    stopper = threading.Thread(target=server.stop, kwargs={"grace": 120})
    stopper.start()
    while not server.state.draining:
        time.sleep(0.005)
    if server.in_flight() < 1:
        pytest.skip("the slow call finished before the drain began")
    status = health.Check(health_pb2.HealthCheckRequest(service=SERVICE_NAME), timeout=5).status
    code, _ = _code(stub.Translate, intent_pb2.TranslateRequest(prompt="late"), timeout=5)
    slow.join(300)
    stopper.join(300)
    assert status == NOT_SERVING
    assert code == grpc.StatusCode.UNAVAILABLE
    assert len(result["r"].responses) == 96
    assert _sample(server, "rapp_requests_total", method="Translate", code="UNAVAILABLE") == 1
