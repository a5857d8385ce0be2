"""Negotiation rounds with the scripted negotiator (a test aid: these check the machinery,
not an LLM), the OpenAI-compatible path against a fake endpoint, and a small end-to-end
negotiation with the local SmolLM2."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest
from support.openai import ChatServer, completion

from llmkit.chat import ChatSettings, OpenAIChat
from rapp_negotiation.agent import MEDIATOR, Agent, Units
from rapp_negotiation.arbitral import Arbitral, ToxicityClassifier
from rapp_negotiation.bench import scenario_tenants
from rapp_negotiation.embedding import shared_minilm
from rapp_negotiation.engine import (
    Bilateral,
    Context,
    Negotiation,
    NegotiationConfig,
    drive,
    run,
)
from rapp_negotiation.messages import render
from rapp_negotiation.negotiators import LLMNegotiator, ScriptedNegotiator, conversation
from rapp_negotiation.regulatory import Constraints
from rapp_negotiation.scenario import Tenant

CAP = 12.9
CTX = Context(CAP, 1.0, Constraints(0.05 * CAP, 0.95 * CAP, "ADM-2: at most 95% of capacity"))


def group(n: int, design: str, count: int = 8, seed: int = 0, origin: str = "scripted"):
    rng = np.random.default_rng(seed)
    return [
        Negotiation(
            scenario_tenants(n, CAP, rng),
            CTX,
            NegotiationConfig(design=design),
            llm=origin,
            origin=origin,
        )
        for _ in range(count)
    ]


@pytest.mark.parametrize("n", [2, 5, 10])
def test_hard_design_matches_the_theoretical_consensus(n):
    results = drive(group(n, "hard"), ScriptedNegotiator())
    for r in results:
        assert r.error <= 0.005 * CAP
        assert r.r_min <= r.agreed <= r.r_max
        assert r.messages == 2 * n * r.rounds  # n each way per round
        assert r.rounds <= 2  # the imposed proposals meet the announcement in round 2
        # A target above r_max opens out of bounds: the only cause of a fallback here.
        issues = [i for rec in r.records for v in rec.issues.values() for i in v]
        assert r.fallbacks == issues.count("out_of_bounds")


@pytest.mark.parametrize("design", ["none", "soft", "hard"])
def test_sources_are_counted_per_role_and_scripted_is_never_the_llm(design):
    results = drive(group(5, design, count=4), ScriptedNegotiator())
    for r in results:
        tenant, mediator = r.role_sources["tenant"], r.role_sources["mediator"]
        assert "llm" not in tenant and "llm" not in mediator
        assert sum(tenant.values()) == 5 * r.rounds and sum(mediator.values()) == r.rounds
        assert tenant.get("fallback", 0) + mediator.get("fallback", 0) == r.fallbacks
        assert tenant.get("imposed", 0) + mediator.get("imposed", 0) == r.imposed
        assert r.summary()["sources"] == r.role_sources
        if design == "none":
            assert "imposed" not in tenant and "imposed" not in mediator


def test_a_game_built_for_the_llm_refuses_the_scripted_negotiator():
    tenants = [Tenant("a", "x", target=4.0), Tenant("b", "y", target=6.0)]
    with pytest.raises(ValueError, match="scripted"):
        run(Negotiation(tenants, CTX, NegotiationConfig()), ScriptedNegotiator())
    with pytest.raises(ValueError, match="origin"):
        Negotiation(tenants, CTX, NegotiationConfig(), origin="oracle")


def test_designs_order_and_rounds_do_not_grow_with_tenants():
    mae, rounds = {}, {}
    for design in ("none", "soft", "hard"):
        for n in (2, 10):
            res = drive(group(n, design), ScriptedNegotiator())
            mae[design, n] = float(np.mean([r.error for r in res]))
            rounds[design, n] = float(np.mean([r.rounds for r in res]))
    for n in (2, 10):
        assert mae["hard", n] <= mae["soft", n] < mae["none", n]
    assert rounds["hard", 10] <= 2 and rounds["hard", 2] <= 2


class FollowsAdvice(ScriptedNegotiator):
    """A scripted tenant that proposes its optimizer's advice once it has one (what the
    soft design's prompt asks), else the scripted behaviour."""

    def _tenant(self, r):
        if r.advice is not None and r.previous is not None:
            return render(r.advice, "We follow our optimizer's proposal.")
        return super()._tenant(r)


def test_rounds_grow_only_with_the_scripted_fixed_concession_rate():
    """Rounds do not depend on the number of tenants when tenants follow the soft
    design's advice; the scripted tenant's fixed halfway step needs
    1 + ceil(log2(d_max / tol)) rounds without an optimizer, which grows with the
    spread of the targets (report/README.md explains the bench's numbers)."""
    open_ctx = Context(CAP, 1.0, Constraints(0.0, math.inf, ""))
    cfg = NegotiationConfig(design="none", rounds=12)
    tol = cfg.tolerance * CAP
    for n in (2, 5, 10):
        rng = np.random.default_rng(n)
        games = [Negotiation(scenario_tenants(n, CAP, rng), open_ctx, cfg, llm="scripted",
                             origin="scripted") for _ in range(6)]  # fmt: skip
        for r in drive(games, ScriptedNegotiator()):
            mean = float(np.mean(r.targets))
            d_max = max(abs(t - mean) for t in r.targets)
            assert r.status == "consensus"
            assert r.rounds == 1 + max(0, math.ceil(math.log2(d_max / tol))), (n, d_max)
        follow = drive(group(n, "soft", seed=n), FollowsAdvice())
        assert all(r.status == "consensus" and r.rounds <= 2 for r in follow)
        assert max(r.error for r in follow) <= 0.005 * CAP


def test_malformed_messages_are_answered_not_crashed_on():
    mediator = Agent(MEDIATOR, "mediator", Units("soft"))
    inbox = mediator.receive([("t1", "\x00\xff garbage"), ("t2", None),
                              ("t3", '{"value": 4, "reasoning": "fine"}')])  # fmt: skip
    assert [m.extracted.error for m in inbox] == ["no_json", "empty", ""]
    n = group(3, "soft", count=1)[0]
    announcement = mediator.decide('{"value": 5, "reasoning": "middle"}',
                                   n._mediator_request(1, inbox, 5.0), fallback=5.0)  # fmt: skip
    answers = [json.loads(n._feedback(m, announcement, 0.3)) for m in inbox]
    assert "could not be read" in answers[0]["error"] and answers[0]["value"] == 5
    assert "could not be read" in answers[1]["error"]
    assert answers[2]["direction"].startswith("raise")


class Garbled:
    """A backend that answers every tenant with garbage: the tenants' validation falls back."""

    name = "garbled"
    origin = "llm"

    def decide(self, requests):
        return ["<<<" if r.role == "tenant" else None for r in requests]


def test_unusable_llm_outputs_fall_back_and_are_counted():
    (r,) = drive(group(3, "soft", count=1, origin="llm"), Garbled())
    assert r.fallbacks == r.rounds * 4  # 3 tenants and the mediator, every round
    assert r.role_sources == {"tenant": {"fallback": 3 * r.rounds},
                              "mediator": {"fallback": r.rounds}}  # fmt: skip
    assert abs(r.agreed - r.theoretical) <= 1e-3 * CAP  # the optimizer stood in
    issues = r.records[0].issues
    assert set(issues) == {"t1", "t2", "t3"} and issues["t1"] == ["syntax:no_json"]


def test_a_toxic_tenant_is_warned_then_its_weight_halved():
    arbitral = Arbitral(ToxicityClassifier.load(shared_minilm()))
    tenants = [Tenant("calm", "low cost", target=3.0),
               Tenant("bully", "reach", target=11.0, weight=2.0, personality="toxic")]  # fmt: skip
    n = Negotiation(tenants, CTX, NegotiationConfig(design="soft"), arbitral, llm="scripted",
                    origin="scripted")  # fmt: skip
    r = run(n, ScriptedNegotiator())
    assert r.warnings == 1 and r.penalties == r.rounds - 1 >= 1
    assert r.final_weights == [1.0, 2.0 * 0.5 ** (r.rounds - 1)]
    assert r.records[0].verdicts["bully"]["action"] == "warning"
    assert "calm" not in r.records[0].verdicts
    # Penalties pull the announcement below x*, which keeps the declared weights.
    assert r.agreed < r.theoretical


def test_a_halt_between_steps_stops_the_negotiation():
    n = group(2, "soft", count=1)[0]
    calls = []

    def between():
        calls.append(1)
        if len(calls) == 3:
            n.halt("no_capacity")

    r = run(n, ScriptedNegotiator(), between)
    assert r.status == "halted:no_capacity" and r.rounds == 1


def test_bilateral_personalities_drag_the_outcome():
    low = Tenant("cost", "low cost", target=2.0, personality="vulnerable")
    high = Tenant("reach", "reach", target=10.0, personality="toxic")
    normal = [Tenant("cost", "c", target=2.0), Tenant("reach", "r", target=10.0)]
    vt, nn = drive([Bilateral(low, high, CTX, 5.0, origin="scripted"),
                    Bilateral(*normal, CTX, 5.0, origin="scripted")],
                   ScriptedNegotiator())  # fmt: skip
    assert sum(vt.sources.values()) == 2 * vt.rounds and "llm" not in vt.sources
    assert vt.agreed > 9.0 and vt.pair == ("vulnerable", "toxic")
    assert 5.0 <= nn.agreed <= 7.0 and nn.consensus


# ---- the LLM unit over an OpenAI-compatible endpoint ---------------------------------------
def test_openai_negotiator_an_out_of_bounds_value_is_rejected_and_replaced():
    server = ChatServer()
    try:
        # Round 1: two tenants, then the mediator (one batched call per step, in order).
        server.script.extend([
            (200, completion('{"value": 3.0, "reasoning": "cost matters"}'), {}),
            (200, completion('{"value": 40.0, "reasoning": "we want everything"}'), {}),
            (200, completion('Here you go: {"value": 6.0, "reasoning": "a fair middle"}'), {}),
        ])  # fmt: skip
        chat = OpenAIChat(ChatSettings(backend="openai", base_url=server.url, model="m",
                                       concurrency=1, max_retries=0))  # fmt: skip
        negotiator = LLMNegotiator(chat, max_tokens=64, temperature=0.0)
        tenants = [Tenant("cost", "low cost", target=3.0), Tenant("reach", "reach", target=9.0)]
        n = Negotiation(
            tenants, CTX, NegotiationConfig(design="soft", rounds=1), llm=negotiator.name
        )
        r = run(n, negotiator)
        rec = r.records[0]
        assert rec.proposals == {"cost": 3.0, "reach": 9.0}  # 40 replaced by its optimizer
        assert rec.sources == {"cost": "llm", "reach": "fallback"}
        assert rec.issues["reach"] == ["out_of_bounds"]
        assert (rec.announcement, rec.announcement_source) == (6.0, "llm")
        assert r.role_sources == {"tenant": {"llm": 1, "fallback": 1}, "mediator": {"llm": 1}}
        assert r.llm == "openai:m" and r.fallbacks == 1
        bodies = [b for b, _ in server.requests]
        assert len(bodies) == 3 and all(b["model"] == "m" for b in bodies)
        assert '"value": 4.2' in bodies[0]["messages"][0]["content"]  # the one-shot example
        assert "MAESTRO, the mediator" in bodies[2]["messages"][1]["content"]
        assert "reach (weight 1): 9.00" in bodies[2]["messages"][1]["content"]
    finally:
        server.close()


def test_prompts_carry_personality_advice_and_rules():
    n = Negotiation([Tenant("x", "reach", target=9.0, personality="toxic")], CTX,
                    NegotiationConfig(design="hard"))  # fmt: skip
    req = n._request(n.agents[0], 2, [], 7.25, 9.0)
    text = conversation(req)[1]["content"]
    assert "manipulate" in text and "propose exactly this value" in text and "7.25" in text
    med = conversation(n._mediator_request(1, [], 6.5))[1]["content"]
    assert "ADM-2" in med and "6.50" in med


# ---- the local SmolLM2, small budget ------------------------------------------------------
@pytest.mark.slow
def test_local_smollm2_negotiation_end_to_end():
    from llmkit.chat import LocalChat
    from llmkit.smollm2 import DEFAULT_CACHE_DIR

    negotiator = LLMNegotiator(LocalChat(DEFAULT_CACHE_DIR, batch_size=8), max_tokens=48)
    tenants = [Tenant("cost", "low cost", target=3.0), Tenant("reach", "reach", target=9.0)]
    results = drive(
        [Negotiation(tenants, CTX, NegotiationConfig(design=d, rounds=2), llm=negotiator.name)
         for d in ("soft", "hard")],
        negotiator,
    )  # fmt: skip
    for r in results:
        assert r.llm == "local:SmolLM2-135M-Instruct"
        assert r.agreed is not None and r.r_min <= r.agreed <= r.r_max
        assert 1 <= r.rounds <= 2 and r.messages == 4 * r.rounds
        sources = [s for rec in r.records for s in rec.sources.values()]
        assert set(sources) <= {"llm", "fallback", "imposed"}
        assert r.fallbacks == sum(s == "fallback" for s in sources) + sum(
            rec.announcement_source == "fallback" for rec in r.records
        )
    hard = results[1]
    assert abs(hard.agreed - hard.theoretical) <= 1e-3 * CAP
    assert math.isfinite(results[0].error)


def test_the_service_builds_the_openai_backend_from_nego_llm_settings(monkeypatch):
    from rapp_negotiation.service import build_arbitral, build_negotiator
    from rapp_negotiation.settings import NegoSettings

    server = ChatServer()
    try:
        monkeypatch.setenv("NEGO_LLM_BASE_URL", server.url)
        monkeypatch.setenv("NEGO_LLM_MODEL", "big-model")
        monkeypatch.setenv("NEGO_LLM_API_KEY", "sekrit")
        monkeypatch.setenv("NEGO_LLM_MAX_RETRIES", "0")
        settings = NegoSettings(llm="openai", arbitral="llm", design="hard")
        negotiator = build_negotiator(settings)
        assert negotiator.name == "openai:big-model"
        arbitral = build_arbitral(settings, negotiator)
        assert arbitral is not None and arbitral.arbiter.name == "llm:openai:big-model"
        proposal = (200, completion('{"value": 5, "reasoning": "ok"}'), {})
        verdict = (200, completion("No."), {})
        # Two tenants, the arbiter on their two messages, then the mediator.
        server.script.extend([proposal, proposal, verdict, verdict, proposal])
        tenants = [Tenant("a", "x", target=4.0), Tenant("b", "y", target=6.0)]
        n = Negotiation(tenants, CTX, NegotiationConfig(design="hard", rounds=1), arbitral,
                        llm=negotiator.name)  # fmt: skip
        r = run(n, negotiator)
        assert r.agreed == pytest.approx(5.0) and r.fallbacks == 0 and r.warnings == 0
        _, headers = server.requests[0]
        assert headers["Authorization"] == "Bearer sekrit"
        assert len(server.requests) == 5
        assert "arbitral unit" in server.requests[2][0]["messages"][0]["content"]
    finally:
        server.close()
