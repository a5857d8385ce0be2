"""Language models the apps share, offline first: chat completions from a local
SmolLM2-135M-Instruct or any OpenAI-compatible endpoint (:mod:`llmkit.chat`), and the
local model's weights (:mod:`llmkit.smollm2`).

Imports torch and transformers only when the local model is loaded.
"""
