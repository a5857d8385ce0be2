"""rapp_negotiation: MAESTRO's business plane on the agentic network.

Tenants (business operators) negotiate the **admitted arrival rate per chain, λ**, at
which the agentic network runs (NEGOTIATION.md); the mediator MAESTRO announces the
consensus λ*, which goes to the emulator as a retained policy on
``lameta/v1/<network>/policy`` and changes the QoE every later decision feels.

Running it
==========

The service watches the emulator's state, negotiates when the capacity λ_cap moves, when
the tenants' business intents change or on request, and publishes λ*::

    sim-ric run --broker mqtt://127.0.0.1:1883 --network lab &
    rapp-negotiation run --broker mqtt://127.0.0.1:1883 --network lab \\
        --intents tenants.yaml --design soft --llm local --health-port 9470

- ``--intents``: the tenants' business intents (JSON or YAML; see
  :mod:`rapp_negotiation.scenario`). Edit the file while the service runs: the next
  check (``--intents-poll``, 2 s) reloads it and starts a negotiation. A file that does
  not parse is logged (``intents_invalid``) and the previous intents stay. ``kill -HUP``
  asks for a negotiation now.
- ``--design``: ``none`` (the LLMs alone), ``soft`` (the optimizer's consensus as advice,
  the default) or ``hard`` (imposed).
- ``--llm``: ``local`` (SmolLM2-135M, offline), ``openai`` (any OpenAI-compatible
  endpoint: ``NEGO_LLM_BASE_URL``, ``NEGO_LLM_MODEL``, ``NEGO_LLM_API_KEY``) or
  ``scripted`` (deterministic negotiators; for tests, never a result).
- ``--arbitral``: ``classifier`` (MiniLM + the trained head in
  ``models/negotiation/arbitral/``), ``llm`` or ``off``.
- Broker: ``--broker mqtt://user:pass@host:1883`` or ``mqtts://...`` with
  ``NEGO_TLS_CA``, ``NEGO_TLS_CERT``, ``NEGO_TLS_KEY``; the service publishes only the
  policy topic (and its status), so its broker user needs publish rights there alone.
- Health and metrics: ``/ric/v1/health/alive``, ``/ric/v1/health/ready`` (broker
  connected, a state observed) and ``/metrics`` (``nego_*``: negotiations by outcome,
  rounds, messages, fallbacks, warnings, penalties, λ_cap, load, λ*, x*).
- Logs (structlog; JSON off a terminal): ``negotiation_started`` (inputs and x*),
  ``negotiation_round`` (proposals, arbitral verdicts, announcement), ``negotiation_finished``,
  ``policy_published``, ``negotiation_halted`` (λ_cap = 0: λ* = 0 is published).

Every setting reads ``NEGO_<NAME>`` from the environment; ``rapp-negotiation run --help``
lists them.

Benchmarks
==========

::

    rapp-negotiation bench --agents 2,5,10 --negotiations 100 --designs none,soft,hard \\
        --llm local --json --out bench.json
    rapp-negotiation personalities --games 10 --llm local --json --png fig3a.png

The committed results, the commands that made them and what they say are in
``models/negotiation/report/``.

Units (maestro Fig. 2)
======================

:mod:`~rapp_negotiation.messages` (extraction), :mod:`~rapp_negotiation.arbitral`,
:mod:`~rapp_negotiation.regulatory`, :mod:`~rapp_negotiation.observability`,
:mod:`~rapp_negotiation.optimizer` (eq. 1 and the closed-form x*),
:mod:`~rapp_negotiation.negotiators` (the LLM unit), :mod:`~rapp_negotiation.validation`;
:mod:`~rapp_negotiation.agent` puts them together and :mod:`~rapp_negotiation.engine` runs
the rounds.
"""
