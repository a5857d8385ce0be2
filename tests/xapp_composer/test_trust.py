"""The xApp's side of the trust model: signed policies (at start and on hot reload), the
rApp's per-request refusals never opening the circuit, oversize prompts answered before
any rApp call, decisions re-published for requests announced again, and only outcomes of
its own decisions reaching the rApp's memory."""

from __future__ import annotations

import functools
import shutil

import grpc
import pytest
from support.loop import copy_policy, perturbed_copy, unit_policy
from test_loop_core import StubRapp, make_core, request, state_payload

from agentnet.network import generate_network
from lameta_proto.v1 import network_pb2
from servicekit import codec
from servicekit.integrity import (
    generate_keypair,
    load_private_key,
    load_public_key,
    sign_artefact,
)
from xapp_composer.control import MALFORMED_REQUEST
from xapp_composer.ledger import Decided
from xapp_composer.policy_watch import PolicyWatcher
from xapp_composer.rapp_client import RappClient
from xapp_composer.runtime import PolicyIntegrityError, PolicyRuntime


@pytest.fixture
def keys(tmp_path):
    generate_keypair(tmp_path / "k.pem", tmp_path / "k.pub")
    generate_keypair(tmp_path / "other.pem", tmp_path / "other.pub")
    return (load_private_key(tmp_path / "k.pem"), load_public_key(tmp_path / "k.pub"),
            load_private_key(tmp_path / "other.pem"))  # fmt: skip


def test_a_tampered_policy_with_a_rewritten_card_passes_the_card_but_not_the_signature(
    tmp_path, keys
) -> None:
    private, public, other = keys
    good = copy_policy(unit_policy(), tmp_path / "good")
    sign_artefact(good, private)
    assert PolicyRuntime(good, public_key=public).signed_by
    # Negated weights, card's sha256 rewritten to match: the card alone accepts it.
    evil = perturbed_copy(unit_policy(), tmp_path / "evil", scale=-1.0)
    PolicyRuntime(evil)
    with pytest.raises(PolicyIntegrityError, match="not signed"):
        PolicyRuntime(evil, public_key=public)
    # The attacker re-signs with a key of their own.
    sign_artefact(evil, other)
    with pytest.raises(PolicyIntegrityError, match="does not verify"):
        PolicyRuntime(evil, public_key=public)
    # Or keeps the real signature beside the tampered files.
    shutil.copy(
        good.with_name("srl-general.signature.json"), evil.with_name("srl-general.signature.json")
    )
    with pytest.raises(PolicyIntegrityError, match="changed after signing"):
        PolicyRuntime(evil, public_key=public)


def test_hot_reload_refuses_an_unsigned_policy_and_keeps_serving(tmp_path, keys) -> None:
    private, public, _ = keys
    path = copy_policy(unit_policy(), tmp_path / "live")
    sign_artefact(path, private)
    loader = functools.partial(PolicyRuntime, public_key=public)
    core = make_core(loader(path))
    old = core.runtime
    watcher = PolicyWatcher(path, core, loader, core.metrics)
    evil = perturbed_copy(unit_policy(), tmp_path / "evil", scale=-1.0)
    for f in evil.parent.iterdir():  # rewritten in place, signature left as it was
        shutil.copy(f, path.parent / f.name)
    assert watcher.poll() == "settling"
    assert watcher.poll() == "rejected"
    assert core.runtime is old
    # A properly signed new policy is taken.
    sign_artefact(path, private)
    assert watcher.poll() == "settling" and watcher.poll() == "loaded"
    assert core.runtime is not old


class _Rpc(grpc.RpcError):
    def __init__(self, code):
        self._code = code

    def code(self):
        return self._code

    def details(self):
        return self._code.name


@pytest.mark.parametrize(
    ("code", "trips"),
    [
        (grpc.StatusCode.INVALID_ARGUMENT, False),
        (grpc.StatusCode.NOT_FOUND, False),
        (grpc.StatusCode.RESOURCE_EXHAUSTED, False),  # message too large, or load shedding
        (grpc.StatusCode.UNAVAILABLE, True),
        (grpc.StatusCode.DEADLINE_EXCEEDED, True),
    ],
)
def test_only_transport_failures_and_deadlines_open_the_circuit(code, trips) -> None:
    client = RappClient("127.0.0.1:9", retry_after_s=60)

    class Stub:
        def Translate(self, req, timeout):
            raise _Rpc(code)

    client.stub = Stub()
    from xapp_composer.translation import TranslationFailed

    with pytest.raises(TranslationFailed):
        client.translate("p", "", "qa", "r")
    assert (client.clock() < client._open_until) == trips
    client.close()


def test_an_oversize_prompt_is_answered_before_any_rapp_call(runtime_unit) -> None:
    rapp = StubRapp()
    core = make_core(runtime_unit, rapp, max_prompt_bytes=4096)
    core.on_state(state_payload(generate_network(1)))
    result = core.handle_request(request("big", prompt="x" * 5_000_000))
    assert result.status == "rejected" and result.decision.rejection.startswith(MALFORMED_REQUEST)
    assert "5000000 bytes exceeds the rApp's limit of 4096" in result.decision.rejection
    assert rapp.calls == []
    ok = core.handle_request(request("small", prompt="x" * 4096))
    assert ok.status == "decided" and len(rapp.calls) == 1


def test_a_request_announced_again_gets_its_decision_published_again(runtime_unit) -> None:
    core = make_core(runtime_unit, StubRapp())
    core.on_state(state_payload(generate_network(1)))
    sent: list[network_pb2.ControlDecision] = []

    def publish(d):
        sent.append(d)
        return True

    first, ok1 = core.process(request("r-9"), publish)
    again, ok2 = core.process(request("r-9"), publish)
    assert ok1 and ok2 and first.status == "decided" and again.status == "duplicate"
    assert len(sent) == 2 and codec.encode(sent[0]) == codec.encode(sent[1])
    snap = core.metrics.snapshot()
    assert snap.get("decision_republished") == 1 and snap.get("duplicates") == 1


def test_an_outcome_counts_only_when_it_is_of_the_decision_made() -> None:
    mine = Decided(
        codec.ControlDecision(request_id="r", chain=[1, 2, 3], predicted=[0.1, 0.2, 0.3, 0.4])
    )
    served = codec.Outcome(
        request_id="r", code="served", chain=[1, 2, 3], predicted=[0.1, 0.2, 0.3, 0.4]
    )
    assert mine.matches(served)
    for forged in (
        codec.Outcome(
            request_id="r", code="served", chain=[4, 5, 6], predicted=[0.1, 0.2, 0.3, 0.4]
        ),
        codec.Outcome(
            request_id="r", code="served", chain=[1, 2, 3], predicted=[0.97, 0.01, 0.01, 0.01]
        ),
    ):
        assert not mine.matches(forged)


@pytest.fixture(scope="module")
def runtime_unit() -> PolicyRuntime:
    return PolicyRuntime(unit_policy())


def test_settings_bind_loopback_and_take_the_policy_key(monkeypatch, tmp_path) -> None:
    from xapp_composer.settings import XappSettings

    monkeypatch.setenv("XAPP_POLICY_PUBLIC_KEY", str(tmp_path / "k.pub"))
    s = XappSettings()
    assert s.health_host == "127.0.0.1" and s.policy_public_key == tmp_path / "k.pub"
    assert s.rapp_max_prompt_bytes == 4096
