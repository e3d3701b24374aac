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

from collections.abc import Callable, Collection, Mapping
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


#: One member of a JSON object a rule looks into: (key, JSON type, what is allowed, required).
Member = tuple[str, type, str, bool]
#: Where a member sits, as parts joined only for an error: ("tools", 0, "function").
Path = tuple[str | int, ...]


def path_name(path: Path) -> str:
    """``("tools", 0, "function", "name")`` → ``"tools[0].function.name"`` (OpenAI's way)."""
    name = str(path[0])
    for part in path[1:]:
        name += f"[{part}]" if type(part) is int else f".{part}"
    return name


def _missing(path: Path) -> InvalidParameter:
    name = path_name(path)
    return InvalidParameter(f"Missing required parameter: '{name}'.", param=name,
                            code="missing_required_parameter")


def _object(value: Any, path: Path, allowed: str = "an object") -> dict[str, Any]:
    if type(value) is not dict:
        if value is None:
            raise _missing(path)
        raise wrong_type(path_name(path), allowed, value)
    return value


def _members(container: dict[str, Any], members: tuple[Member, ...], *path: str | int) -> None:
    """Type-check ``container``'s members; a name is built only when one is wrong."""
    for key, kind, allowed, required in members:
        value = container.get(key)
        if value is None:
            if required:
                raise _missing((*path, key))
        elif type(value) is not kind:
            raise wrong_type(path_name((*path, key)), allowed, value)


def _choice(container: dict[str, Any], key: str, choices: Collection[str],
            *path: str | int) -> str:
    """``container[key]``, which must be one of ``choices`` (a required string member)."""
    value = container.get(key)
    if type(value) is str and value in choices:
        return value
    if value is None:
        raise _missing((*path, key))
    allowed = "one of " + ", ".join(f"'{c}'" for c in choices)
    if type(value) is not str:
        raise wrong_type(path_name((*path, key)), allowed, value)
    raise wrong_value(path_name((*path, key)), allowed, value)


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
        _members(message, _ROLE, name, i)


_ROLE: tuple[Member, ...] = (("role", str, "a string", True),)


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
_STRING, _OBJECT, _BOOLEAN = "a string", "an object", "a boolean"
_JSON_SCHEMA: tuple[Member, ...] = (("name", str, _STRING, False),
                                    ("description", str, _STRING, False),
                                    ("schema", dict, _OBJECT, False),
                                    ("strict", bool, _BOOLEAN, False))


def response_format(name: str, value: Any, doc: Mapping[str, Any]) -> None:
    _object(value, (name,), "an object such as {\"type\": \"json_object\"}")
    if _choice(value, "type", _FORMATS, name) == "json_schema":
        schema = _object(value.get("json_schema"), (name, "json_schema"))
        _members(schema, _JSON_SCHEMA, name, "json_schema")


#: The members of a tool (or a named tool choice) of each type; ``parameters``
#: is a JSON Schema, checked as an object and never as a schema.
_TOOL_TYPES: dict[str, tuple[Member, ...]] = {
    "function": (("name", str, _STRING, True), ("description", str, _STRING, False),
                 ("parameters", dict, _OBJECT, False), ("strict", bool, _BOOLEAN, False)),
    "custom": (("name", str, _STRING, True), ("description", str, _STRING, False),
               ("format", dict, _OBJECT, False)),
}


def tools(name: str, value: Any, doc: Mapping[str, Any]) -> None:
    """An array of ``{"type": "function", "function": {"name", ...}}`` (or ``custom``) tools."""
    if type(value) is not list:
        raise wrong_type(name, "an array of tools", value)
    for i, tool in enumerate(value):
        _object(tool, (name, i), "a tool object")
        # no type: a function, as vLLM reads it (OpenAI says otherwise with its own 400)
        kind = "function" if tool.get("type") is None else _choice(tool, "type", _TOOL_TYPES,
                                                                    name, i)
        _members(_object(tool.get(kind), (name, i, kind)), _TOOL_TYPES[kind], name, i, kind)


_CHOICE = "'none', 'auto', 'required' or an object naming a tool"
_CHOICE_MODES = frozenset({"none", "auto", "required"})
_NAMED: tuple[Member, ...] = (("name", str, _STRING, True),)
_ALLOWED: tuple[Member, ...] = (("tools", list, "an array of tools", True),)
_CHOICE_TYPES = ("function", "custom", "allowed_tools")
_ALLOWED_MODES = ("auto", "required")


def tool_choice(name: str, value: Any, doc: Mapping[str, Any]) -> None:
    if type(value) is str:
        if value not in _CHOICE_MODES:
            raise wrong_value(name, _CHOICE, value)
        return
    if type(value) is not dict:
        raise wrong_type(name, _CHOICE, value)
    kind = _choice(value, "type", _CHOICE_TYPES, name)
    member = _object(value.get(kind), (name, kind))
    if kind == "allowed_tools":
        _choice(member, "mode", _ALLOWED_MODES, name, kind)
        _members(member, _ALLOWED, name, kind)
    else:
        _members(member, _NAMED, name, kind)


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
