"""Fuzz of what the rApp decodes and checks before any E-LAM runs: the request
deserialisers of every IntentService method keep parse errors (INVALID_ARGUMENT, never
INTERNAL), and the prompt, application, request-id and vector checks either return a clean
value or raise InvalidInput with a reason."""

from __future__ import annotations

import math

import pytest
from hypothesis import given
from hypothesis import strategies as st

from agentnet.intents import APPS
from lameta_proto.v1 import intent_pb2
from rapp_intent.server import _lenient, _Undecodable
from rapp_intent.service import (
    InvalidInput,
    check_app,
    check_preference,
    check_prompt,
    check_request_id,
)

pytestmark = pytest.mark.fuzz

REQUESTS = (
    intent_pb2.TranslateRequest,
    intent_pb2.TranslateBatchRequest,
    intent_pb2.ReportOutcomeRequest,
    intent_pb2.ListModelsRequest,
)
report = st.builds(
    intent_pb2.ReportOutcomeRequest,
    prompt=st.text(max_size=80),
    preference=st.lists(st.floats(allow_nan=True, allow_infinity=True), max_size=6),
    reward=st.floats(allow_nan=True, allow_infinity=True),
    app=st.text(max_size=16),
    request_id=st.text(max_size=200),
)


@given(st.sampled_from(REQUESTS), st.binary(max_size=600))
def test_every_method_deserialiser_keeps_the_parse_error(cls, data: bytes) -> None:
    out = _lenient(cls)(data)
    assert isinstance(out, cls | _Undecodable)
    if isinstance(out, _Undecodable):
        assert out.error


@given(st.one_of(st.text(max_size=300), st.binary(max_size=300)))
def test_a_prompt_is_clean_text_or_refused_with_a_reason(prompt) -> None:
    try:
        text = check_prompt(prompt, 128)
    except InvalidInput as exc:
        assert str(exc).startswith("prompt")
        return
    assert text.strip() and len(text.encode("utf-8")) <= 128
    assert not any(ord(c) < 32 and c not in "\t\n\r" for c in text)


@given(report)
def test_a_report_passes_every_check_or_names_the_field(req) -> None:
    checks = [
        ("prompt", lambda: check_prompt(req.prompt, 4096)),
        ("app", lambda: check_app(req.app, APPS)),
        ("request_id", lambda: check_request_id(req.request_id)),
        ("preference", lambda: check_preference(list(req.preference))),
    ]
    for field, check in checks:
        try:
            value = check()
        except InvalidInput as exc:
            assert field in str(exc)
            continue
        if field == "preference":
            assert len(value) == 4 and all(math.isfinite(v) and v >= 0 for v in value)
            assert abs(sum(value) - 1.0) < 1e-6
