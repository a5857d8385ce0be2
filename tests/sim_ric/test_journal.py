"""The emulator's journal and the re-announce of unsettled requests: nothing issued is
lost when the broker restarts without persistence or the emulator itself is killed."""

from __future__ import annotations

import signal
from pathlib import Path

import pytest
from support.mqtt import Mosquitto, Recorder, ServiceProcess, usable_chain, wait_until

from agentnet.intents import LabelledIntent
from servicekit import codec
from sim_ric.emulator import Emulator, EmulatorConfig
from sim_ric.journal import Journal, JournalMismatch

INTENTS = [
    LabelledIntent("render the scene, no lag", (0.2, 0.1, 0.5, 0.2), "immersive"),
    LabelledIntent("exact dosage table", (0.15, 0.3, 0.2, 0.35), "critical"),
]


def _emulator(path: Path, **kw) -> Emulator:
    cfg = EmulatorConfig(seed=3, pending_timeout_s=60, **kw)
    return Emulator(INTENTS, cfg, journal=Journal(path, cfg.network, cfg.seed))


def test_a_restarted_emulator_takes_up_its_run(tmp_path: Path) -> None:
    path = tmp_path / "journal.sqlite3"
    a = _emulator(path)
    reqs = [a.new_request() for _ in range(3)]
    net = a.net
    chain = [int(net.agents_of_type(t, usable=True)[0]) for t in a.chain_types]
    served = a.handle_decision(codec.ControlDecision(request_id=reqs[0].request_id, chain=chain))
    assert served.code == "served"
    # Killed here: a fresh process opens the same journal.
    b = _emulator(path)
    assert b.run_id == a.run_id and b.issued == 3
    assert [r.request_id for r in b.pending_requests()] == [r.request_id for r in reqs[1:]]
    assert [r.prompt for r in b.pending_requests()] == [r.prompt for r in reqs[1:]]
    again = b.handle_decision(codec.ControlDecision(request_id=reqs[0].request_id, chain=chain))
    assert again.code == "duplicate" and not again.resolved  # settled once, across the restart
    assert (
        b.handle_decision(codec.ControlDecision(request_id=reqs[1].request_id, chain=chain)).code
        == "served"
    )
    assert b.new_request().request_id == f"{a.run_id}-000004"
    c = _emulator(path)
    assert [r.request_id for r in c.pending_requests()] == [
        reqs[2].request_id,
        f"{a.run_id}-000004",
    ]


def test_a_journal_of_another_network_or_seed_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "journal.sqlite3"
    Journal(path, "lab", 3).close()
    with pytest.raises(JournalMismatch, match="network 'lab'"):
        Journal(path, "default", 3)
    with pytest.raises(JournalMismatch, match="seed '3'"):
        Journal(path, "lab", 4)


def _service(broker: Mosquitto, tmp_path: Path, journal: Path, *extra: str) -> ServiceProcess:
    return ServiceProcess(
        ["--broker", broker.url, "--seed", "11", "--rate", "4", "--state-period", "0.25",
         "--pending-timeout", "300", "--duration", "240", "--journal", str(journal), *extra],
        tmp_path,
        env={"SIM_RECONNECT_MIN_DELAY": "0.2", "SIM_RECONNECT_MAX_DELAY": "1.0"},
    )  # fmt: skip


def test_unsettled_requests_survive_a_broker_restart_without_persistence(tmp_path: Path) -> None:
    """The test broker keeps no state: the request in flight at the kill would be gone
    (and the decider's subscription with it). The emulator announces it again after the
    reconnect; one decision settles it once."""
    broker = Mosquitto(tmp_path).start()
    rec = Recorder(broker.url).start()
    svc = _service(broker, tmp_path, tmp_path / "journal.sqlite3")
    try:
        first = wait_until(lambda: rec.snapshot()[1][:1], 30, "a request")[0]
        broker.kill()
        broker.start()
        rec.subscribed.clear()
        wait_until(rec.subscribed.is_set, 15, "the recorder's subscriptions after the restart")
        again = wait_until(
            lambda: sum(r.request_id == first.request_id for r in rec.snapshot()[1]) >= 2,
            20,
            "the unsettled request announced again",
        )
        assert again
        chain = usable_chain(rec.latest_state(), list(first.chain_types))
        rec.decide(first.request_id, chain)
        rec.decide(first.request_id, chain)  # a decider re-publishing: refused as duplicate
        out = rec.wait_outcome(lambda o: o.request_id == first.request_id and o.resolved, 15,
                               "the request settled")  # fmt: skip
        assert out.code == "served"
        wait_until(lambda: any(o.code == "duplicate" for o in rec.outcomes_for(first.request_id)),
                   10, "the second decision refused")  # fmt: skip
        assert sum(o.resolved for o in rec.outcomes_for(first.request_id)) == 1
    finally:
        svc.terminate()
        rec.stop()
        broker.stop()


def test_requests_pending_at_an_emulator_kill_are_settled_after_its_restart(tmp_path: Path):
    broker = Mosquitto(tmp_path).start()
    rec = Recorder(broker.url).start()
    journal = tmp_path / "journal.sqlite3"
    svc = _service(broker, tmp_path, journal)
    try:
        pending = wait_until(lambda: rec.snapshot()[1][:3], 30, "three requests")
        svc.proc.send_signal(signal.SIGKILL)
        svc.wait(10)
        svc = _service(broker, tmp_path, journal)
        chain = usable_chain(rec.latest_state(), list(pending[0].chain_types))
        for req in pending:  # decisions published while the emulator is away, or after
            rec.decide(req.request_id, chain)
        for req in pending:
            out = rec.wait_outcome(
                lambda o, rid=req.request_id: o.request_id == rid and o.resolved, 30,
                f"{req.request_id} settled",
            )  # fmt: skip
            assert out.code == "served"
        assert '"journal_taken_up"' in svc.logs()
    finally:
        svc.terminate()
        rec.stop()
        broker.stop()
