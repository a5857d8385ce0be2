"""The agentic-network model of MODEL.md: model constants, network generation, the chain
QoE of eqs. 2-15 with both subjective objectives, chain scoring, the exact optimum and
the baselines, and the intent vocabulary of INTENTS.md.

Pure numpy/scipy, no transport and no learning framework: the emulator, the xApp and the
studies all score chains with this one implementation.
"""
