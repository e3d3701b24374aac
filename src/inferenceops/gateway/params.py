"""Edge checks of OpenAI's documented request parameters: types and ranges, table-driven.

Why here: an engine handed a wrongly typed standard field (``temperature:
"hot"``) may answer 500, which the client sees as 502 with no hint of what was
wrong. Checked at the edge, the client gets a 400 in OpenAI's shape whose
``param`` names the field and whose message says what is allowed.

What is checked: only the fields OpenAI documents for each endpoint, one rule
per field in a table per endpoint (``RULES``). What is left alone:

- every other field — vLLM's ``top_k``, ``min_p``, ``guided_json``, … — passes
  through untouched to the engines that understand it;
- ``null`` for any field (OpenAI documents most as nullable; the engine then
  applies its default);
- the inside of free-form values: a tool's ``parameters`` or a
  ``json_schema.schema`` must be an object, but is never validated as a JSON
  Schema; message contents are the engine's business.

When a value might be valid for some engine, the rule lets it through
(``response_format`` also knows vLLM's ``structural_tag``; a tool without
``type`` is a function, as vLLM reads it; ``json_schema.name`` is not
required because llama.cpp does without it).

Cost: one dict lookup per top-level field of the body and one small rule call
for each that is present — a few µs for a typical chat body, against a 5 µs
budget (``python -m bench.params`` measures it). Rules test ``type(v) is …``
and build no strings unless they refuse. Pure: no I/O, the parsed document is
read and never changed.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

import orjson

from inferenceops.errors import InvalidParameter
from inferenceops.platform import Endpoint

#: A rule checks one present, non-null top-level field; ``doc`` is there for the
#: few rules that depend on another field (``top_logprobs`` needs ``logprobs``).
Rule = Callable[[str, Any, Mapping[str, Any]], None]

INT64_MIN, INT64_MAX = -(2**63), 2**63 - 1
#: OpenAI's documented maximum for ``n``; each choice is a whole generation, so an
#: unbounded ``n`` is an unbounded amount of engine work behind one admission.
MAX_N = 128

_JSON_TYPES = {str: "a string", int: "an integer", float: "a number", bool: "a boolean",
               list: "an array", dict: "an object", type(None): "null"}


def json_type(value: object) -> str:
    """The JSON name of a parsed value's type, for messages ("got a string")."""
    return _JSON_TYPES.get(type(value), type(value).__name__)


def wrong_type(param: str, allowed: str, value: object) -> InvalidParameter:
    return InvalidParameter(f"'{param}' must be {allowed}; got {json_type(value)}.",
                            param=param, code="invalid_type")


def wrong_value(param: str, allowed: str, value: object) -> InvalidParameter:
    shown = orjson.dumps(value).decode()
    if len(shown) > 60:
        shown = shown[:57] + "..."
    return InvalidParameter(f"'{param}' must be {allowed}; got {shown}.", param=param,
                            code="invalid_value")


# --- rule builders ------------------------------------------------------------------------
# ``type(v) is int`` (not isinstance) is deliberate: it is faster, and it keeps
# booleans out — JSON ``true`` must never pass as 1.


def number(low: float, high: float) -> Rule:
    allowed = f"a number between {low:g} and {high:g}"

    def rule(name: str, value: Any, doc: Mapping[str, Any]) -> None:
        kind = type(value)
        if kind is not float and kind is not int:
            raise wrong_type(name, allowed, value)
        if not low <= value <= high:
            raise wrong_value(name, allowed, value)
    return rule


def integer(low: int, high: int | None = None) -> Rule:
    allowed = (f"an integer >= {low}" if high is None else
               f"an integer between {low} and {high}")

    def rule(name: str, value: Any, doc: Mapping[str, Any]) -> None:
        if type(value) is not int:
            raise wrong_type(name, allowed, value)
        if value < low or (high is not None and value > high):
            raise wrong_value(name, allowed, value)
    return rule


def of_type(kind: type, allowed: str) -> Rule:
    def rule(name: str, value: Any, doc: Mapping[str, Any]) -> None:
        if type(value) is not kind:
            raise wrong_type(name, allowed, value)
    return rule


def one_of(*choices: str) -> Rule:
    allowed = "one of " + ", ".join(f"'{c}'" for c in choices)
    known = frozenset(choices)

    def rule(name: str, value: Any, doc: Mapping[str, Any]) -> None:
        if type(value) is not str:
            raise wrong_type(name, allowed, value)
        if value not in known:
            raise wrong_value(name, allowed, value)
    return rule


boolean = of_type(bool, "a boolean")
string = of_type(str, "a string")
obj = of_type(dict, "an object")


def _optional(rule: Rule, name: str, container: Mapping[str, Any], key: str) -> None:
    """Check ``container[key]`` with ``rule`` when it is present and not null."""
    value = container.get(key)
    if value is not None:
        rule(f"{name}.{key}", value, container)


def _required(rule: Rule, name: str, container: Mapping[str, Any], key: str) -> None:
    value = container.get(key)
    if value is None:
        raise InvalidParameter(f"Missing required parameter: '{name}.{key}'.",
                               param=f"{name}.{key}", code="missing_required_parameter")
    rule(f"{name}.{key}", value, container)


# --- field rules ----------------------------------------------------------------------------


def messages(name: str, value: Any, doc: Mapping[str, Any]) -> None:
    """A non-empty array of objects, each with a string ``role`` (contents are the engine's)."""
    if type(value) is not list or not value:
        raise wrong_type(name, "a non-empty array of messages", value)
    for message in value:  # the common case in one tight loop; the error path finds which
        if type(message) is not dict or type(message.get("role")) is not str:
            _bad_message(name, value)


def _bad_message(name: str, value: list[Any]) -> None:
    for i, message in enumerate(value):
        if type(message) is not dict:
            raise wrong_type(f"{name}[{i}]", "a message object", message)
        role = message.get("role")
        if role is None:
            raise InvalidParameter(f"Missing required parameter: '{name}[{i}].role'.",
                                   param=f"{name}[{i}].role", code="missing_required_parameter")
        if type(role) is not str:
            raise wrong_type(f"{name}[{i}].role", "a string", role)


_STR, _INT, _LIST = frozenset({str}), frozenset({int}), frozenset({list})
_TEXT_OR_TOKENS = ("a string, an array of strings, an array of token ids or an array of "
                   "token-id arrays")


def _token_ids(value: list[Any], kinds: set[type] | None = None) -> bool:
    # map/set/min run in C: a long token array costs far less than a Python loop over it
    if kinds is None:
        kinds = set(map(type, value))
    return kinds <= _INT and (not value or min(value) >= 0)


def text_or_tokens(name: str, value: Any, doc: Mapping[str, Any]) -> None:
    """``prompt`` / ``input``: a string, or an array of strings, tokens or token arrays."""
    if type(value) is str:
        return
    if type(value) is not list:
        raise wrong_type(name, _TEXT_OR_TOKENS, value)
    kinds = set(map(type, value))
    if kinds <= _STR or _token_ids(value, kinds):
        return
    if kinds == _LIST and all(_token_ids(item) for item in value):
        return
    raise InvalidParameter(f"'{name}' must be {_TEXT_OR_TOKENS} (not a mix; token ids are "
                           "integers >= 0).", param=name, code="invalid_value")


def embedding_input(name: str, value: Any, doc: Mapping[str, Any]) -> None:
    text_or_tokens(name, value, doc)
    if not value:
        raise InvalidParameter(f"'{name}' must not be empty.", param=name)


_STOP = "a string or an array of up to 4 strings"


def stop(name: str, value: Any, doc: Mapping[str, Any]) -> None:
    if type(value) is str:
        return
    if type(value) is not list:
        raise wrong_type(name, _STOP, value)
    if len(value) > 4:
        raise InvalidParameter(f"'{name}' must be {_STOP}; got {len(value)} items.",
                               param=name, code="invalid_value")
    for item in value:
        if type(item) is not str:
            raise wrong_type(name, _STOP, item)


_BIAS = "an object mapping token ids (as strings) to numbers between -100 and 100"


def logit_bias(name: str, value: Any, doc: Mapping[str, Any]) -> None:
    if type(value) is not dict:
        raise wrong_type(name, _BIAS, value)
    for token, bias in value.items():
        if not (token.isascii() and token.isdigit()):
            raise InvalidParameter(f"'{name}' must be {_BIAS}; the key {token[:40]!r} is not "
                                   "a token id.", param=name, code="invalid_value")
        kind = type(bias)
        if kind is not int and kind is not float:
            raise wrong_type(name, _BIAS, bias)
        if not -100 <= bias <= 100:
            raise wrong_value(name, _BIAS, bias)


_FORMATS = ("text", "json_object", "json_schema",
            "structural_tag")  # the last is vLLM's (and SGLang's); harmless to the others


_format_type = one_of(*_FORMATS)


def response_format(name: str, value: Any, doc: Mapping[str, Any]) -> None:
    if type(value) is not dict:
        raise wrong_type(name, "an object such as {\"type\": \"json_object\"}", value)
    _required(_format_type, name, value, "type")
    if value["type"] == "json_schema":
        _required(obj, name, value, "json_schema")
        schema = value["json_schema"]
        where = f"{name}.json_schema"
        _optional(string, where, schema, "name")
        _optional(string, where, schema, "description")
        _optional(obj, where, schema, "schema")
        _optional(boolean, where, schema, "strict")


def _function(name: str, value: Any, doc: Mapping[str, Any]) -> None:
    """``{name, description?, parameters?, strict?}`` — ``parameters`` is a JSON Schema."""
    if type(value) is not dict:
        raise wrong_type(name, "an object", value)
    _required(string, name, value, "name")
    _optional(string, name, value, "description")
    _optional(obj, name, value, "parameters")
    _optional(boolean, name, value, "strict")


def _named(name: str, value: Any, doc: Mapping[str, Any]) -> None:
    if type(value) is not dict:
        raise wrong_type(name, "an object", value)
    _required(string, name, value, "name")


_TOOL_TYPES = {"function": _function, "custom": _named}
_tool_type = one_of(*_TOOL_TYPES)


def tools(name: str, value: Any, doc: Mapping[str, Any]) -> None:
    """An array of ``{"type": "function", "function": {"name", ...}}`` (or ``custom``) tools."""
    if type(value) is not list:
        raise wrong_type(name, "an array of tools", value)
    for i, tool in enumerate(value):
        where = f"{name}[{i}]"
        if type(tool) is not dict:
            raise wrong_type(where, "a tool object", tool)
        kind = tool.get("type")
        if kind is None:
            kind = "function"  # vLLM's default; OpenAI itself says so with its own 400
        else:
            _tool_type(f"{where}.type", kind, tool)
        _required(_TOOL_TYPES[kind], where, tool, kind)


_CHOICE = "'none', 'auto', 'required' or an object naming a tool"
_CHOICE_MODES = frozenset({"none", "auto", "required"})
_mode = one_of("auto", "required")
_tool_list = of_type(list, "an array of tools")


def _allowed_tools(name: str, value: Any, doc: Mapping[str, Any]) -> None:
    if type(value) is not dict:
        raise wrong_type(name, "an object", value)
    _required(_mode, name, value, "mode")
    _required(_tool_list, name, value, "tools")


_CHOICE_TYPES: dict[str, Rule] = {"function": _named, "custom": _named,
                                  "allowed_tools": _allowed_tools}
_choice_type = one_of(*_CHOICE_TYPES)


def tool_choice(name: str, value: Any, doc: Mapping[str, Any]) -> None:
    if type(value) is str:
        if value not in _CHOICE_MODES:
            raise wrong_value(name, _CHOICE, value)
        return
    if type(value) is not dict:
        raise wrong_type(name, _CHOICE, value)
    _required(_choice_type, name, value, "type")
    kind = value["type"]
    _required(_CHOICE_TYPES[kind], name, value, kind)


def stream_options(name: str, value: Any, doc: Mapping[str, Any]) -> None:
    if type(value) is not dict:
        raise wrong_type(name, "an object", value)
    for key in ("include_usage", "include_obfuscation"):  # no names built unless one is wrong
        flag = value.get(key)
        if flag is not None and type(flag) is not bool:
            raise wrong_type(f"{name}.{key}", "a boolean", flag)


_top_logprobs = integer(0, 20)


def top_logprobs(name: str, value: Any, doc: Mapping[str, Any]) -> None:
    _top_logprobs(name, value, doc)
    if doc.get("logprobs") is not True:
        raise InvalidParameter(f"'{name}' requires 'logprobs' to be true.", param=name,
                               code="invalid_value")


# --- the tables -----------------------------------------------------------------------------

_SAMPLING: dict[str, Rule] = {
    "temperature": number(0, 2),
    "top_p": number(0, 1),
    "n": integer(1, MAX_N),
    "stop": stop,
    "presence_penalty": number(-2, 2),
    "frequency_penalty": number(-2, 2),
    "logit_bias": logit_bias,
    "seed": integer(INT64_MIN, INT64_MAX),
    "stream_options": stream_options,
    "user": string,
}

RULES: dict[Endpoint, dict[str, Rule]] = {
    Endpoint.CHAT: {
        **_SAMPLING,
        "messages": messages,
        "logprobs": boolean,
        "top_logprobs": top_logprobs,
        "response_format": response_format,
        "tools": tools,
        "tool_choice": tool_choice,
        "parallel_tool_calls": boolean,
    },
    Endpoint.COMPLETIONS: {
        **_SAMPLING,
        "prompt": text_or_tokens,
        "logprobs": integer(0, 5),
        "best_of": integer(0, 20),
        "echo": boolean,
        "suffix": string,
    },
    Endpoint.EMBEDDINGS: {
        "input": embedding_input,
        "encoding_format": one_of("float", "base64"),
        "dimensions": integer(1),
        "user": string,
    },
}


def check_params(doc: Mapping[str, Any], endpoint: Endpoint) -> None:
    """Raise ``InvalidParameter`` for the first documented field with a wrong type or value."""
    rules = RULES[endpoint]
    for name, value in doc.items():
        rule = rules.get(name)
        if rule is not None and value is not None:
            rule(name, value, doc)
