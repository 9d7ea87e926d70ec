"""schemathesis against the served /openapi.json: every operation, bounded examples, no 5xx answer.

Real HTTP on 127.0.0.1: a tiny decoder base (with a chat template) and two tiny adapters; the
admin token is sent too, so the management endpoints are explored past their auth check.
"""

from __future__ import annotations

import os

import pytest
import schemathesis
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from schemathesis.checks import not_a_server_error

from softprompt.backbones import load_backbone
from softprompt.serve.app import create_app
from softprompt.serve.config import ServeSettings
from softprompt.serve.store import AdapterStore
from tests.serve.helpers import make_adapter, serve_in_thread

pytestmark = pytest.mark.timeout(600)
# options refused with 400 when set (or past their limits)
UNSUPPORTED = ("n", "presence_penalty", "frequency_penalty", "logit_bias", "logprobs", "top_logprobs", "tools",
               "tool_choice", "response_format", "echo", "best_of", "suffix", "stop")

TOKEN_ENV = "SOFTPROMPT_FUZZ_TOKEN"
TOKEN = "fuzz-token"
TEMPLATE = "{% for m in messages %}<|{{ m['role'] }}|>{{ m['content'] }}\n{% endfor %}{% if add_generation_prompt %}<|assistant|>{% endif %}"


@pytest.fixture(scope="module")
def served(tmp_path_factory):
    root = tmp_path_factory.mktemp("fuzz-prompts")
    backbone = load_backbone("tiny-gpt2")
    backbone.tokenizer.chat_template = TEMPLATE
    make_adapter(backbone, "prompt-tuning", root / "pt", seed=1)
    make_adapter(backbone, "prefix-tuning", root / "prefix", seed=2, fold=False)
    cfg = ServeSettings(base="tiny-gpt2", prompts=str(root), token_env=TOKEN_ENV, max_tokens_limit=16, max_length=64,
                        max_text_chars=2000, max_wait_ms=1)
    store = AdapterStore(backbone, cfg.max_length)
    store.load_dir(root)
    os.environ[TOKEN_ENV] = TOKEN
    try:
        app = create_app(cfg, store)
    finally:
        os.environ.pop(TOKEN_ENV, None)
    with serve_in_thread(app) as url:
        yield url


def test_no_operation_answers_5xx(served):
    """Each operation of the served schema, 25 generated requests each (schemathesis strategies run by
    hypothesis here: schemathesis' lazy pytest fixture loader does not work with this pytest)."""
    schema = schemathesis.openapi.from_url(served + "/openapi.json")
    operations = [result.ok() for result in schema.get_all_operations()]
    labels = {f"{op.method.upper()} {op.path}" for op in operations}
    assert {"POST /v1/completions", "POST /v1/chat/completions", "GET /v1/models", "POST /v1/classify",
            "POST /v1/generate", "DELETE /v1/adapters/{name}"} <= labels, labels
    seen: dict[str, set[int]] = {}
    for operation in operations:
        label = f"{operation.method.upper()} {operation.path}"

        @settings(max_examples=25, deadline=None, derandomize=True, database=None,
                  suppress_health_check=list(HealthCheck))
        @given(case=operation.as_strategy(), name=st.sampled_from([None, "pt", "prefix", "tiny-gpt2"]))
        def check(case, name):
            if name is not None:  # half the time a served name, so generation runs too
                if isinstance(case.body, dict):
                    for key in UNSUPPORTED:  # leave them out here, so requests reach the model
                        case.body.pop(key, None)
                    for key in ("model", "adapter"):
                        if key in case.body:
                            case.body[key] = name
                for key in ("name", "model"):
                    if case.path_parameters and key in case.path_parameters:
                        case.path_parameters[key] = name
            response = case.call(base_url=served, headers={"Authorization": f"Bearer {TOKEN}"}, timeout=60)
            seen.setdefault(label, set()).add(response.status_code)
            assert response.status_code < 500, (label, case.body, response.status_code, response.text[:500])
            case.validate_response(response, checks=[not_a_server_error])

        check()
    assert set(seen) == labels  # every operation was called
    for label in ("GET /v1/models", "GET /healthz", "POST /v1/completions", "POST /v1/chat/completions",
                  "POST /v1/generate", "POST /v1/classify", "GET /v1/models/{model}"):
        assert 200 in seen[label], (label, seen[label])  # the fuzzing got past validation into the model
