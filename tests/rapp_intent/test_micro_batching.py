"""Dynamic micro-batching of Translate: concurrent calls share one encoder pass and get the
answers single calls get; a bad call fails alone; a closed batcher refuses.

The E-LAM here has no embedding cache, so every answer comes from an encoder pass (a
cached embedding would make batched and single answers equal whatever the batching did).
"""

from __future__ import annotations

import threading

import grpc
import numpy as np
import pytest

from lameta_proto.v1 import intent_pb2, intent_pb2_grpc
from rapp_intent.elam.base import MemoryContext
from rapp_intent.elam.minilm import MiniLMELam
from rapp_intent.elam.registry import Registry
from rapp_intent.server import RappServer
from rapp_intent.service import IntentTranslator, MicroBatcher, TranslateInput, Unavailable

REQUESTS = [
    ("render the scene for my headset, no lag at all", "immersive"),
    ("stream the match in the best picture you can", "content"),
    ("what is the boiling point of ethanol?", "qa"),
    ("remote surgery robot: every millisecond counts", "critical"),
    ("cheap answers are fine, I am not in a hurry", ""),
    ("keep the VR avatars in sync for the whole class", "immersive"),
    ("summarise this contract and cite the clauses", "qa"),
    ("alarm telemetry from the plant must never be dropped", "critical"),
]


class CountingEncoder:
    """The session's encoder, recording the number of prompts of every pass."""

    def __init__(self, encoder):
        self.encoder = encoder
        self.passes: list[int] = []
        self._lock = threading.Lock()

    def encode(self, texts):
        with self._lock:
            self.passes.append(len(texts))
        return self.encoder.encode(texts)

    def __getattr__(self, name):
        return getattr(self.encoder, name)


@pytest.fixture
def uncached(minilm):
    """A minilm E-LAM without embedding cache on a counting view of the session's encoder."""
    encoder = CountingEncoder(minilm.base_encoder)
    elam = MiniLMELam(encoder, cache_entries=0)
    encoder.passes.clear()  # the descriptions' embeddings at construction
    return elam, encoder


def _serve(make_settings, elam, **overrides) -> RappServer:
    server = RappServer(make_settings(**overrides), registry=Registry([elam]))
    server.start()
    assert server.wait_ready(60)
    return server


def _concurrently(server: RappServer, requests) -> list:
    """Send every request at once (one thread each); the answers or errors, in order."""
    stub = intent_pb2_grpc.IntentServiceStub(grpc.insecure_channel(f"127.0.0.1:{server.port}"))
    go = threading.Barrier(len(requests))
    out: list = [None] * len(requests)

    def call(i: int, prompt: str, app: str) -> None:
        go.wait()
        try:
            out[i] = stub.Translate(intent_pb2.TranslateRequest(prompt=prompt, app=app), timeout=60)
        except grpc.RpcError as exc:
            out[i] = exc

    threads = [threading.Thread(target=call, args=(i, *r)) for i, r in enumerate(requests)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(90)
    return out


def _batches(server: RappServer) -> float:
    return server.metrics.registry.get_sample_value("rapp_translate_batch_size_count") or 0.0


def test_concurrent_calls_share_a_pass_and_match_single_calls(make_settings, uncached):
    elam, encoder = uncached
    batched = _serve(make_settings, elam, batch_window_ms=100, batch_max=8)
    try:
        encoder.passes.clear()
        together = _concurrently(batched, REQUESTS)
        batches = _batches(batched)
    finally:
        batched.stop(grace=5)
    assert all(isinstance(r, intent_pb2.TranslateResponse) for r in together), together
    assert batches < len(REQUESTS)  # calls were grouped...
    assert max(encoder.passes) > 1  # ...into encoder passes of several prompts
    assert sum(encoder.passes) == len(REQUESTS)

    single = _serve(make_settings, elam, batch_max=1)
    try:
        encoder.passes.clear()
        alone = [_concurrently(single, [r])[0] for r in REQUESTS]
        assert _batches(single) == 0  # no micro-batcher at batch_max 1
    finally:
        single.stop(grace=5)
    assert encoder.passes == [1] * len(REQUESTS)
    for a, b in zip(together, alone, strict=True):
        # Padding to the longest prompt of a pass changes float rounding only.
        np.testing.assert_allclose(a.preference, b.preference, atol=1e-6)
        assert (a.model, a.calibrated, a.fallback, a.failure) == (
            b.model,
            b.calibrated,
            b.fallback,
            b.failure,
        )


def test_a_bad_call_fails_alone_in_its_batch(make_settings, uncached):
    elam, _ = uncached
    server = _serve(make_settings, elam, batch_window_ms=100, batch_max=8)
    try:
        calls = [*REQUESTS[:3], ("fine prompt, unknown application", "no-such-app")]
        out = _concurrently(server, calls)
    finally:
        server.stop(grace=5)
    assert all(isinstance(r, intent_pb2.TranslateResponse) for r in out[:3])
    assert out[3].code() == grpc.StatusCode.INVALID_ARGUMENT
    assert "no-such-app" in out[3].details()
    refused = server.metrics.registry.get_sample_value(
        "rapp_requests_total", {"method": "Translate", "code": "INVALID_ARGUMENT"}
    )
    assert refused == 1.0


def test_a_closed_batcher_refuses_and_its_thread_ends(make_settings, uncached, tmp_path):
    elam, _ = uncached
    from rapp_intent.memory import Memory

    translator = IntentTranslator.from_settings(
        Registry([elam]), Memory(tmp_path / "m.sqlite3", 100), make_settings()
    )
    batcher = MicroBatcher(translator, window_s=0.0, max_size=4)
    first = batcher.translate(TranslateInput(prompt=REQUESTS[0][0], app=REQUESTS[0][1]))
    assert first.model == "minilm" and abs(sum(first.preference) - 1.0) < 1e-6
    batcher.close()
    assert not batcher._thread.is_alive()
    with pytest.raises(Unavailable):
        batcher.translate(TranslateInput(prompt=REQUESTS[1][0]))


class GatedEncoder(CountingEncoder):
    """The session's encoder, holding every pass that encodes ``gated`` until ``release``
    is set (``entered`` tells when one is held), recording each pass's thread."""

    def __init__(self, encoder, gated: str):
        super().__init__(encoder)
        self.gated, self.entered, self.release = gated, threading.Event(), threading.Event()
        self.threads: list[str] = []

    def encode(self, texts):
        self.threads.append(threading.current_thread().name)
        if self.gated in texts:
            self.entered.set()
            assert self.release.wait(60)
        return super().encode(texts)


def test_a_cached_prompt_is_answered_while_a_new_one_is_encoded(make_settings, minilm):
    new, cached = REQUESTS[0], REQUESTS[1]
    encoder = GatedEncoder(minilm.base_encoder, new[0])
    elam = MiniLMELam(encoder)
    server = _serve(make_settings, elam, batch_window_ms=0, batch_max=8, batch_new_apart=True)
    try:
        stub = intent_pb2_grpc.IntentServiceStub(grpc.insecure_channel(f"127.0.0.1:{server.port}"))
        stub.Translate(intent_pb2.TranslateRequest(prompt=cached[0], app=cached[1]), timeout=30)
        held = stub.Translate.future(
            intent_pb2.TranslateRequest(prompt=new[0], app=new[1]), timeout=60
        )
        assert encoder.entered.wait(30)
        # the new prompt's pass is held; the cached one is answered meanwhile
        quick = stub.Translate(
            intent_pb2.TranslateRequest(prompt=cached[0], app=cached[1]), timeout=30
        )
        assert not held.done()
        encoder.release.set()
        slow = held.result()
    finally:
        encoder.release.set()
        server.stop(grace=5)
    # the pass ran in the batcher's cold lane, not on the E-LAM's worker
    assert encoder.threads[-1] == "rapp-batcher-cold"
    for (prompt, app), got in ((cached, quick), (new, slow)):
        want = minilm.translate([prompt], [MemoryContext(app=app)])[0].vector
        np.testing.assert_allclose(got.preference, want, atol=1e-6)


def test_closing_answers_what_the_cold_lane_holds(make_settings, minilm, tmp_path):
    from rapp_intent.memory import Memory

    new = REQUESTS[2]
    encoder = GatedEncoder(minilm.base_encoder, new[0])
    elam = MiniLMELam(encoder)
    translator = IntentTranslator.from_settings(
        Registry([elam]), Memory(tmp_path / "m.sqlite3", 100), make_settings()
    )
    batcher = MicroBatcher(translator, window_s=0.0, max_size=4, new_apart=True)
    out: list = []
    caller = threading.Thread(
        target=lambda: out.append(batcher.translate(TranslateInput(prompt=new[0], app=new[1])))
    )
    caller.start()
    assert encoder.entered.wait(30)
    closer = threading.Thread(target=batcher.close, kwargs={"timeout": 60})
    closer.start()
    encoder.release.set()
    closer.join(60)
    caller.join(60)
    assert len(out) == 1 and abs(sum(out[0].preference) - 1.0) < 1e-6
    assert not batcher._thread.is_alive() and not batcher._cold_thread.is_alive()


def test_a_torch_encoder_precomputes_on_the_elam_worker(minilm):
    encoder = GatedEncoder(minilm.base_encoder, "never sent")
    encoder.concurrent = lambda n: False  # as a torch runtime
    elam = MiniLMELam(encoder)
    assert elam.uncached([REQUESTS[3][0]]) == [REQUESTS[3][0]]
    elam.precompute([REQUESTS[3][0]])
    assert encoder.threads[-1].startswith("elam")
    assert elam.uncached([REQUESTS[3][0]]) == []
    # without an embedding cache nothing is computed ahead
    assert MiniLMELam(encoder, cache_entries=0).uncached([REQUESTS[4][0]]) == []


def test_new_prompts_stay_on_the_elam_worker_unless_set_apart(make_settings, minilm, monkeypatch):
    encoder = GatedEncoder(minilm.base_encoder, "never sent")
    server = _serve(make_settings, MiniLMELam(encoder), batch_window_ms=0, batch_max=8)
    try:
        assert not server.state.batcher.new_apart  # the default
        stub = intent_pb2_grpc.IntentServiceStub(grpc.insecure_channel(f"127.0.0.1:{server.port}"))
        stub.Translate(intent_pb2.TranslateRequest(prompt=REQUESTS[5][0]), timeout=30)
    finally:
        server.stop(grace=5)
    assert encoder.threads[-1].startswith("elam")
    monkeypatch.setenv("RAPP_BATCH_NEW_APART", "true")
    assert make_settings().batch_new_apart is True
    monkeypatch.setenv("RAPP_BATCH_NEW_APART", "sometimes")
    with pytest.raises(ValueError, match="batch_new_apart"):
        make_settings()
