"""Intrusion detection on the control plane (the Generative AI-in-the-loop case study).

A sensor with a read-only identity turns what the broker and the rApp log about each
client into one feature window per client and second (:mod:`xapp_guard.features`); a
small 1-D CNN over the last few windows (:mod:`xapp_guard.model`, exported to ONNX and
run by :mod:`xapp_guard.runtime` without torch) names the attack a client is running, and
``xapp-guard run`` publishes alerts. The detector is trained on scarce recorded windows
plus traffic an LLM describes and a model of the stack realises, checked and evolved
generation by generation (:mod:`xapp_guard.evolve`).
"""
