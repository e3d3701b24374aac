"""Hypothesis strategies for data-plane request bodies, shared by the unit and integration fuzzers.

``documents`` are JSON objects built around OpenAI's documented parameters:
mostly well-formed requests with a few fields at or past the edges of their
rules (so examples get past ``model``/``messages`` to every parameter rule),
some with anything at all. ``bodies`` mixes those with raw bytes, broken and
truncated JSON, invalid UTF-8 and nesting of any depth up to past orjson's.
"""

from __future__ import annotations

import json
from typing import Any

from hypothesis import strategies as st

from inferenceops.pipeline.params import RULES
from inferenceops.platform import Endpoint

ROUTES = {"/v1/chat/completions": Endpoint.CHAT, "/v1/completions": Endpoint.COMPLETIONS,
          "/v1/embeddings": Endpoint.EMBEDDINGS}
FIELDS = sorted({name for rules in RULES.values() for name in rules}
                | {"model", "stream", "max_tokens", "max_completion_tokens"})
#: Model names the fuzz platforms define: chat models (``gpt-alias`` is an alias,
#: so the proxy rewrites and re-serialises the body) and an embedding model.
MODELS = ["chat-model", "gpt-alias", "ok", "embed-model"]


def dumps(value: object) -> bytes:
    return json.dumps(value).encode()  # stdlib: writes integers of any size, unlike orjson


scalars = (st.none() | st.booleans() | st.integers(-(2**64), 2**64) | st.floats(allow_nan=False,
           allow_infinity=False) | st.text(max_size=12)
           | st.sampled_from(["", "auto", "none", "required", "function", "json_schema", "text",
                              "json_object", "float", "base64", "user", "get_weather"]))
keys = st.sampled_from(FIELDS) | st.sampled_from(["type", "function", "name", "role", "content",
                                                  "json_schema", "schema", "include_usage",
                                                  "parameters", "custom", "allowed_tools",
                                                  "mode", "tools", "strict"]) | st.text(max_size=6)
json_values = st.recursive(
    scalars,
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(keys, inner, max_size=4),
    max_leaves=16,
)


def _objects(required: dict[str, Any], optional: dict[str, Any]) -> st.SearchStrategy[Any]:
    return st.fixed_dictionaries(required, optional=optional)


names = st.text(max_size=8) | st.just("get_weather") | scalars
function = _objects({"name": names}, {"parameters": json_values, "strict": scalars,
                                      "description": scalars})
#: Values near each documented field's rule (edges, nearly right shapes), so the
#: examples reach every branch of every rule, not only the first type check.
PLAUSIBLE: dict[str, st.SearchStrategy[Any]] = {
    "temperature": st.floats(-1, 3) | st.integers(-1, 3),
    "top_p": st.floats(-0.5, 1.5),
    "n": st.integers(-2, 200),
    "best_of": st.integers(-2, 30),
    "stop": st.text(max_size=3) | st.lists(st.text(max_size=3) | scalars, max_size=6),
    "presence_penalty": st.floats(-3, 3),
    "frequency_penalty": st.integers(-3, 3),
    "logit_bias": st.dictionaries(st.integers(-5, 10**6).map(str) | st.text(max_size=4),
                                  st.integers(-150, 150) | st.floats(-150, 150) | scalars,
                                  max_size=3),
    "seed": st.integers(-(2**64), 2**64),
    "logprobs": st.booleans() | st.integers(-1, 7),
    "top_logprobs": st.integers(-1, 25),
    "dimensions": st.integers(-1, 4096),
    "encoding_format": st.sampled_from(["float", "base64", "int8"]),
    "response_format": _objects(
        {"type": st.sampled_from(["text", "json_object", "json_schema", "structural_tag", "x"])},
        {"json_schema": _objects({}, {"name": names, "schema": json_values, "strict": scalars})
         | scalars}),
    "tools": st.lists(_objects({}, {"type": st.sampled_from(["function", "custom", "x"]),
                                    "function": function | scalars, "custom": function}),
                      max_size=3),
    "tool_choice": st.sampled_from(["none", "auto", "required", "x"]) | _objects(
        {"type": st.sampled_from(["function", "custom", "allowed_tools", "x"])},
        {"function": function, "custom": function, "allowed_tools": _objects(
            {}, {"mode": st.sampled_from(["auto", "required", "x"]), "tools": json_values})}),
    "stream_options": _objects({}, {"include_usage": st.booleans() | scalars}),
    "messages": st.lists(_objects({}, {"role": st.just("user") | scalars,
                                       "content": st.just("hi") | json_values}), max_size=3),
    "prompt": st.lists(st.integers(-1, 5) | st.text(max_size=3), max_size=4)
    | st.lists(st.lists(st.integers(-1, 5), max_size=3), max_size=3),
}
PLAUSIBLE["input"] = PLAUSIBLE["prompt"]


def _fields(chosen: list[str]) -> st.SearchStrategy[dict[str, Any]]:
    return st.fixed_dictionaries({name: PLAUSIBLE.get(name, st.nothing()) | json_values
                                  for name in chosen})


#: Mostly well-formed requests with a few documented fields near their edges (so
#: the examples get past model/messages to the parameter rules), and some with
#: anything at all in the first fields.
near_valid = st.builds(
    lambda required, extra: {**required, **extra},
    _objects({"model": st.sampled_from(MODELS),
              "messages": st.just([{"role": "user", "content": "hi"}]),
              "prompt": st.just("hi"), "input": st.just(["a", "b"])}, {}),
    st.lists(st.sampled_from([f for f in FIELDS if f != "model"]), max_size=4,
             unique=True).flatmap(_fields),
)
anything = st.fixed_dictionaries({"model": scalars},
                                 optional={name: json_values for name in FIELDS[:6]})
documents = st.integers(0, 4).flatmap(lambda i: anything if i == 0 else near_valid)


def nested(depth: int, model: str = "gpt-alias") -> bytes:
    """A chat body nested ``depth`` deep; ``gpt-alias`` makes the proxy write it again."""
    return (b'{"model": "%s", "messages": [{"role": "user", "content": "hi"}], "x": '
            % model.encode() + b"[" * (depth - 1) + b"]" * (depth - 1) + b"}")


def weighted(*choices: tuple[int, st.SearchStrategy[Any]]) -> st.SearchStrategy[Any]:
    """One of ``choices``, each drawn in proportion to its weight."""
    table = [strategy for weight, strategy in choices for _ in range(weight)]
    return st.integers(0, len(table) - 1).flatmap(lambda i: table[i])


bodies = weighted(
    (6, st.builds(dumps, documents)),
    (1, st.binary(max_size=200)),
    (1, st.builds(dumps, json_values)),
    (1, st.builds(nested, st.integers(2, 1100))),
    (1, st.builds(lambda doc, cut: dumps(doc)[:cut], documents, st.integers(0, 60))),
    (1, st.text(max_size=50).map(lambda s: s.encode("utf-8", "surrogatepass"))),
)
