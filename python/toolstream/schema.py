"""JSON Schemas from Python functions, and their JSON arguments back as Python values.

A tool's input schema is derived from its signature, so it is never written twice::

    def search(query: str, pages: int = 5, mode: Literal["fast", "deep"] = "fast") -> dict:
        '''Searches the web.

        Args:
            query: What to look for.
            pages: How many result pages to read.
        '''

gives ``{"type": "object", "properties": {"query": {"type": "string", "description": "What to
look for."}, "pages": {"type": "integer", "default": 5, ...}, "mode": {"enum": ["fast", "deep"],
...}}, "required": ["query"], "additionalProperties": false}`` and the description "Searches the
web.".

Understood: ``str``, ``int``, ``float``, ``bool``, ``None``, ``list[T]`` (and ``List``,
``Sequence``, ``tuple``, ``set``), ``dict[str, T]``, ``Optional[T]``, ``Union``, ``Literal``,
``Enum``, ``Annotated[T, "description"]``, ``TypedDict``, dataclasses, pydantic models (when
pydantic is installed), ``datetime``/``date`` and ``Path`` (as strings), ``Any``. A parameter
with a default is optional and its default is in the schema; ``**kwargs`` allows other keys.
The docstring (Google, Sphinx or NumPy style) gives the tool's description and each parameter's.

:func:`coerce_arguments` turns JSON arguments into what the hints ask for: whole numbers into
``int`` (JSON and protobuf carry numbers as doubles), lists into tuples or sets, objects into
dataclasses or pydantic models, strings into enums. A value that does not fit raises
:class:`ArgumentError` naming the field.

Only the standard library is used (pydantic only when the function uses it).
"""

from __future__ import annotations

import collections.abc as _abc
import dataclasses
import datetime
import enum
import inspect
import pathlib
import re
import sys
import types
import typing
from typing import Any, Callable, Dict, List, Mapping, Optional, Tuple

__all__ = [
    "ArgumentError",
    "json_default",
    "coerce_arguments",
    "describe",
    "input_schema",
    "output_schema",
    "value_schema",
    "coerce_value",
    "tool_description",
    "tool_name",
]

JsonSchema = Dict[str, Any]

_NONE_TYPE = type(None)
_UNION_TYPES: Tuple[Any, ...] = (typing.Union,)
if sys.version_info >= (3, 10):
    _UNION_TYPES = (typing.Union, types.UnionType)


class ArgumentError(ValueError):
    """An argument does not fit the function's type hints.

    ``field`` is the argument's path (``"files"``, ``"options.depth"``, ``"items.2"``), ``reason``
    what is wrong with it.
    """

    def __init__(self, field: str, reason: str) -> None:
        super().__init__(f"field {field}: {reason}" if field else reason)
        self.field = field
        self.reason = reason


def tool_name(fn: Callable[..., Any]) -> str:
    """The tool's name: ``@progress(name=...)`` or the function's name."""
    name = getattr(fn, "__toolstream_name__", None) or getattr(fn, "__name__", None)
    if not isinstance(name, str) or not name:
        raise TypeError(f"{fn!r} has no name; give one with @progress(name=...)")
    return name


def tool_description(fn: Callable[..., Any]) -> str:
    """``@progress(description=...)``, or the docstring without its parameter section."""
    given = getattr(fn, "__toolstream_description__", None)
    if isinstance(given, str) and given:
        return given
    summary, _ = _parse_docstring(inspect.getdoc(fn) or "")
    return summary


def describe(fn: Callable[..., Any]) -> Dict[str, Any]:
    """What a client or a model is told about ``fn`` as a tool: its name, description, input
    schema and (when its return type says) output schema."""
    description: Dict[str, Any] = {
        "name": tool_name(fn),
        "description": tool_description(fn),
        "input_schema": input_schema(fn),
    }
    output = output_schema(fn)
    if output is not None:
        description["output_schema"] = output
    return description


def input_schema(fn: Callable[..., Any]) -> JsonSchema:
    """The JSON Schema of ``fn``'s keyword arguments, from its type hints, defaults and
    docstring."""
    signature = inspect.signature(fn)
    hints = _hints(fn)
    _, documented = _parse_docstring(inspect.getdoc(fn) or "")
    defs: Dict[str, JsonSchema] = {}
    properties: Dict[str, JsonSchema] = {}
    required: List[str] = []
    extra_allowed = False
    for name, parameter in signature.parameters.items():
        if parameter.kind == inspect.Parameter.VAR_KEYWORD:
            extra_allowed = True
            continue
        if parameter.kind in (inspect.Parameter.VAR_POSITIONAL, inspect.Parameter.POSITIONAL_ONLY):
            continue
        prop = _schema(hints.get(name, Any), defs)
        if name in documented and "description" not in prop:
            prop = {**prop, "description": documented[name]}
        if parameter.default is inspect.Parameter.empty:
            required.append(name)
        else:
            default = _schema_default(parameter.default)
            if default is not _NO_DEFAULT:
                prop = {**prop, "default": default}
        properties[name] = prop
    schema: JsonSchema = {"type": "object", "properties": properties}
    if required:
        schema["required"] = required
    schema["additionalProperties"] = extra_allowed
    if defs:
        schema["$defs"] = defs
    return schema


def value_schema(hint: Any) -> JsonSchema:
    """The JSON Schema of one value of type ``hint`` (as an argument of that type would have):
    what :func:`toolstream.tool.ask` sends as the schema of the answer it asks for."""
    defs: Dict[str, JsonSchema] = {}
    schema = dict(_schema(hint, defs))
    if defs:
        schema["$defs"] = defs
    return schema


def coerce_value(value: Any, hint: Any, name: str) -> Any:
    """``value`` (decoded JSON) converted to ``hint`` as an argument would be; raises
    :class:`ArgumentError` at ``name`` when it does not fit."""
    return _coerce(value, hint, name)


def output_schema(fn: Callable[..., Any]) -> Optional[JsonSchema]:
    """The JSON Schema of ``fn``'s result, from its return hint (for a generator, the hint's
    return type: ``Generator[dict, None, str]`` gives a string); ``None`` without a useful hint.

    The seed's tools are written ``def tool(...) -> str:`` with ``yield`` inside, which type
    checkers would call a ``Generator``; the hint is read as the result's type all the same."""
    hint = _hints(fn).get("return", inspect.Signature.empty)
    if hint is inspect.Signature.empty or hint is Any:
        return None
    origin = typing.get_origin(hint)
    if origin in _GENERATOR_ORIGINS:
        args = typing.get_args(hint)
        if origin in _ASYNC_GENERATOR_ORIGINS or len(args) < 3:
            return None
        hint = args[2]
        if hint is Any or hint is _NONE_TYPE:
            return None
    defs: Dict[str, JsonSchema] = {}
    schema = _schema(hint, defs)
    if defs:
        schema = {**schema, "$defs": defs}
    return schema


_ASYNC_GENERATOR_ORIGINS = {_abc.AsyncGenerator, _abc.AsyncIterator, _abc.AsyncIterable}
_GENERATOR_ORIGINS = {_abc.Generator, _abc.Iterator, _abc.Iterable} | _ASYNC_GENERATOR_ORIGINS


class _NoDefault:
    pass


_NO_DEFAULT = _NoDefault()


def _schema_default(value: Any) -> Any:
    """A default as JSON, or ``_NO_DEFAULT`` when it has no JSON form (left out of the schema)."""
    if value is None or isinstance(value, (bool, int, float, str)):
        return value
    if isinstance(value, enum.Enum):
        return _schema_default(value.value)
    if isinstance(value, (list, tuple)):
        items = [_schema_default(v) for v in value]
        return _NO_DEFAULT if any(i is _NO_DEFAULT for i in items) else items
    if isinstance(value, dict) and all(isinstance(k, str) for k in value):
        pairs = {k: _schema_default(v) for k, v in value.items()}
        return _NO_DEFAULT if any(v is _NO_DEFAULT for v in pairs.values()) else pairs
    return _NO_DEFAULT


def _hints(fn: Callable[..., Any]) -> Dict[str, Any]:
    target = inspect.unwrap(fn)
    try:
        return typing.get_type_hints(target, include_extras=True)
    except Exception as error:  # noqa: BLE001 - a hint that cannot be evaluated is a user error
        raise TypeError(
            f"cannot read the type hints of {getattr(fn, '__name__', fn)!r}: {error}"
        ) from error


_SIMPLE: Dict[Any, JsonSchema] = {
    str: {"type": "string"},
    int: {"type": "integer"},
    float: {"type": "number"},
    bool: {"type": "boolean"},
    _NONE_TYPE: {"type": "null"},
    None: {"type": "null"},
    bytes: {"type": "string"},
    datetime.datetime: {"type": "string", "format": "date-time"},
    datetime.date: {"type": "string", "format": "date"},
    datetime.time: {"type": "string", "format": "time"},
    pathlib.Path: {"type": "string"},
    pathlib.PurePath: {"type": "string"},
    dict: {"type": "object"},
    list: {"type": "array"},
    tuple: {"type": "array"},
    set: {"type": "array", "uniqueItems": True},
    frozenset: {"type": "array", "uniqueItems": True},
}

_SEQUENCES = {list, _abc.Sequence, _abc.MutableSequence, _abc.Iterable, _abc.Collection}
_SETS = {set, frozenset, _abc.Set, _abc.MutableSet}
_MAPPINGS = {dict, _abc.Mapping, _abc.MutableMapping}


def _schema(hint: Any, defs: Dict[str, JsonSchema]) -> JsonSchema:
    """The JSON Schema of one type hint. Named types (dataclasses, pydantic models, TypedDicts)
    go to ``defs`` and are referenced, so recursive types work."""
    if hint is Any or hint is object or hint is inspect.Parameter.empty:
        return {}
    if isinstance(hint, str):
        raise TypeError(f"the hint {hint!r} is a string that could not be resolved")
    if hint in _SIMPLE:
        return dict(_SIMPLE[hint])
    origin = typing.get_origin(hint)
    args = typing.get_args(hint)
    if origin is typing.Annotated:
        annotated = _schema(args[0], defs)
        for extra in args[1:]:
            if isinstance(extra, str):
                annotated = {**annotated, "description": extra}
            described = getattr(extra, "description", None)
            if isinstance(described, str):
                annotated = {**annotated, "description": described}
        return annotated
    if origin in _UNION_TYPES:
        if any(a is Any for a in args):
            return {}  # Python 3.9 reads `x: Any = None` as Optional[Any]
        members = [a for a in args if a is not _NONE_TYPE]
        nullable = len(members) < len(args)
        if len(members) == 1:
            inner = _schema(members[0], defs)
            if not nullable:
                return inner
            if set(inner) == {"type"} and isinstance(inner["type"], str):
                return {"type": [inner["type"], "null"]}
            return {"anyOf": [inner, {"type": "null"}]}
        options = [_schema(m, defs) for m in members]
        if nullable:
            options.append({"type": "null"})
        return {"anyOf": options}
    if origin is typing.Literal:
        values = [v.value if isinstance(v, enum.Enum) else v for v in args]
        schema: JsonSchema = {"enum": values}
        kinds = {_json_type(v) for v in values}
        if len(kinds) == 1 and None not in kinds:
            schema = {"type": kinds.pop(), **schema}
        return schema
    if origin in _SEQUENCES:
        return {"type": "array", "items": _schema(args[0], defs)} if args else {"type": "array"}
    if origin in _SETS:
        schema = {"type": "array", "uniqueItems": True}
        return {**schema, "items": _schema(args[0], defs)} if args else schema
    if origin is tuple:
        if len(args) == 2 and args[1] is Ellipsis:
            return {"type": "array", "items": _schema(args[0], defs)}
        if not args:
            return {"type": "array"}
        return {
            "type": "array",
            "prefixItems": [_schema(a, defs) for a in args],
            "minItems": len(args),
            "maxItems": len(args),
        }
    if origin in _MAPPINGS:
        if len(args) == 2 and args[1] is not Any:
            return {"type": "object", "additionalProperties": _schema(args[1], defs)}
        return {"type": "object"}
    if isinstance(hint, type):
        if issubclass(hint, enum.Enum):
            values = [member.value for member in hint]
            schema = {"enum": values}
            kinds = {_json_type(v) for v in values}
            if len(kinds) == 1 and None not in kinds:
                schema = {"type": kinds.pop(), **schema}
            return schema
        if dataclasses.is_dataclass(hint):
            return _named(hint, defs, _dataclass_schema)
        if _is_typed_dict(hint):
            return _named(hint, defs, _typed_dict_schema)
        if _is_pydantic_model(hint):
            return _pydantic_schema(hint, defs)
        # bool is a subclass of int: the table above already caught the exact types.
        for base in (bool, int, float, str):
            if issubclass(hint, base):
                return dict(_SIMPLE[base])
    raise TypeError(f"cannot make a JSON Schema of the type hint {hint!r}")


def _json_type(value: Any) -> Optional[str]:
    if isinstance(value, bool):
        return "boolean"
    if isinstance(value, int):
        return "integer"
    if isinstance(value, float):
        return "number"
    if isinstance(value, str):
        return "string"
    return None


def _named(
    cls: type, defs: Dict[str, JsonSchema], build: Callable[[type, Dict[str, JsonSchema]], JsonSchema]
) -> JsonSchema:
    name = cls.__name__
    if name not in defs:
        defs[name] = {}  # a placeholder while its fields refer back to it
        defs[name] = build(cls, defs)
    return {"$ref": f"#/$defs/{name}"}


def _dataclass_schema(cls: type, defs: Dict[str, JsonSchema]) -> JsonSchema:
    hints = typing.get_type_hints(cls, include_extras=True)
    _, documented = _parse_docstring(inspect.getdoc(cls) or "")
    properties: Dict[str, JsonSchema] = {}
    required: List[str] = []
    for field in dataclasses.fields(cls):
        if not field.init:
            continue
        schema = _schema(hints.get(field.name, Any), defs)
        described = field.metadata.get("description") or documented.get(field.name)
        if described:
            schema = {**schema, "description": described}
        if field.default is not dataclasses.MISSING:
            default = _schema_default(field.default)
            if default is not _NO_DEFAULT:
                schema = {**schema, "default": default}
        elif field.default_factory is dataclasses.MISSING:
            required.append(field.name)
        properties[field.name] = schema
    schema = {"type": "object", "title": cls.__name__, "properties": properties}
    summary = (inspect.getdoc(cls) or "").strip()
    if summary and not summary.startswith(cls.__name__ + "("):
        schema["description"] = _parse_docstring(summary)[0]
    if required:
        schema["required"] = required
    schema["additionalProperties"] = False
    return schema


def _is_typed_dict(cls: type) -> bool:
    return isinstance(cls, type) and issubclass(cls, dict) and hasattr(cls, "__total__")


def _typed_dict_schema(cls: type, defs: Dict[str, JsonSchema]) -> JsonSchema:
    hints = typing.get_type_hints(cls, include_extras=True)
    required_keys = getattr(cls, "__required_keys__", set(hints))
    properties = {name: _schema(hint, defs) for name, hint in hints.items()}
    schema: JsonSchema = {"type": "object", "title": cls.__name__, "properties": properties}
    required = [name for name in hints if name in required_keys]
    if required:
        schema["required"] = required
    return schema


def _is_pydantic_model(cls: type) -> bool:
    pydantic = sys.modules.get("pydantic")
    base = getattr(pydantic, "BaseModel", None) if pydantic is not None else None
    return base is not None and isinstance(cls, type) and issubclass(cls, base)


def _pydantic_schema(cls: type, defs: Dict[str, JsonSchema]) -> JsonSchema:
    """A pydantic model's own schema, its definitions moved up to the tool's ``$defs``."""
    model_schema = getattr(cls, "model_json_schema", None)
    if model_schema is None:  # pydantic 1
        model_schema = getattr(cls, "schema")
        schema = dict(model_schema(ref_template="#/$defs/{model}"))
        nested = schema.pop("definitions", {})
    else:
        schema = dict(model_schema(ref_template="#/$defs/{model}"))
        nested = schema.pop("$defs", {})
    defs.update(nested)
    defs[cls.__name__] = schema
    return {"$ref": f"#/$defs/{cls.__name__}"}


# Docstrings ----------------------------------------------------------------------------------

_GOOGLE_SECTION = re.compile(r"^(Args|Arguments|Parameters|Params|Keyword Args|Attributes):\s*$")
_OTHER_GOOGLE_SECTION = re.compile(
    r"^(Returns|Return|Yields|Yield|Raises|Examples?|Notes?|See Also|Warnings?|Todo):\s*$"
)
_NUMPY_SECTION = re.compile(r"^(Parameters|Attributes|Other Parameters)\s*$")
_NUMPY_OTHER = re.compile(r"^(Returns|Yields|Raises|Examples|Notes|See Also|Warns)\s*$")
_SPHINX_PARAM = re.compile(r"^:param\s+(?:[^:]*\s)?(\w+):\s*(.*)$")


def _parse_docstring(doc: str) -> Tuple[str, Dict[str, str]]:
    """The summary (text before any section) and each documented parameter's description."""
    lines = doc.expandtabs().splitlines()
    summary: List[str] = []
    params: Dict[str, str] = {}
    i = 0
    in_summary = True
    while i < len(lines):
        line = lines[i]
        stripped = line.strip()
        if _GOOGLE_SECTION.match(stripped):
            in_summary = False
            i = _google_params(lines, i + 1, params)
            continue
        if (
            _NUMPY_SECTION.match(stripped)
            and i + 1 < len(lines)
            and set(lines[i + 1].strip()) == {"-"}
        ):
            in_summary = False
            i = _numpy_params(lines, i + 2, params)
            continue
        if _OTHER_GOOGLE_SECTION.match(stripped) or (
            _NUMPY_OTHER.match(stripped) and i + 1 < len(lines) and set(lines[i + 1].strip()) == {"-"}
        ):
            in_summary = False
        match = _SPHINX_PARAM.match(stripped)
        if match:
            in_summary = False
            text = [match.group(2).strip()]
            i += 1
            while i < len(lines) and lines[i].strip() and not lines[i].strip().startswith(":"):
                text.append(lines[i].strip())
                i += 1
            params[match.group(1)] = " ".join(t for t in text if t)
            continue
        if stripped.startswith(":") and not match:
            in_summary = False
        if in_summary:
            summary.append(line)
        i += 1
    return "\n".join(summary).strip(), params


def _google_params(lines: List[str], i: int, params: Dict[str, str]) -> int:
    """Reads ``name (type): text`` entries of a Google-style section; returns the next line."""
    indent: Optional[int] = None
    current: Optional[str] = None
    while i < len(lines):
        line = lines[i]
        if not line.strip():
            i += 1
            continue
        width = len(line) - len(line.lstrip())
        if indent is None:
            if width == 0:
                return i
            indent = width
        if width < indent:
            return i
        if width == indent:
            match = re.match(r"^\**(\w+)(?:\s*\([^)]*\))?\s*:\s*(.*)$", line.strip())
            if match:
                current = match.group(1)
                params[current] = match.group(2).strip()
            else:
                current = None
        elif current is not None:
            params[current] = (params[current] + " " + line.strip()).strip()
        i += 1
    return i


def _numpy_params(lines: List[str], i: int, params: Dict[str, str]) -> int:
    """Reads ``name : type`` entries, each followed by indented text, of a NumPy section."""
    current: Optional[str] = None
    while i < len(lines):
        line = lines[i]
        stripped = line.strip()
        if not stripped:
            i += 1
            if i < len(lines) and lines[i].strip() and not lines[i].startswith((" ", "\t")):
                if i + 1 < len(lines) and set(lines[i + 1].strip()) == {"-"}:
                    return i
            continue
        if not line.startswith((" ", "\t")):
            if i + 1 < len(lines) and set(lines[i + 1].strip()) == {"-"}:
                return i
            current = re.split(r"\s*:\s*", stripped, maxsplit=1)[0].lstrip("*")
            params[current] = ""
        elif current is not None:
            params[current] = (params[current] + " " + stripped).strip()
        i += 1
    return i


def json_default(value: Any) -> Any:
    """For ``json.dumps(default=...)``: results and progress data may hold dataclasses, pydantic
    models, enums, sets, tuples, paths and dates; they are sent as their JSON form."""
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        return dataclasses.asdict(value)
    dump = getattr(value, "model_dump", None)
    if callable(dump) and _is_pydantic_model(type(value)):
        return dump(mode="json")
    if isinstance(value, enum.Enum):
        return value.value
    if isinstance(value, (set, frozenset, tuple)):
        return list(value)
    if isinstance(value, pathlib.PurePath):
        return str(value)
    if isinstance(value, (datetime.datetime, datetime.date, datetime.time)):
        return value.isoformat()
    if isinstance(value, bytes):
        return value.decode("utf-8", errors="replace")
    raise TypeError(f"{type(value).__name__} is not JSON: {_describe_value(value)}")


# Arguments -----------------------------------------------------------------------------------


def coerce_arguments(fn: Callable[..., Any], arguments: Mapping[str, Any]) -> Dict[str, Any]:
    """``arguments`` (decoded JSON) as the keyword arguments ``fn`` expects: checked against its
    parameters and converted to its type hints. Raises :class:`ArgumentError` naming the first
    field that does not fit."""
    signature = inspect.signature(fn)
    hints = _hints(fn)
    parameters = signature.parameters
    accepts_extra = any(p.kind == inspect.Parameter.VAR_KEYWORD for p in parameters.values())
    keyword = {
        name: p
        for name, p in parameters.items()
        if p.kind in (inspect.Parameter.POSITIONAL_OR_KEYWORD, inspect.Parameter.KEYWORD_ONLY)
    }
    result: Dict[str, Any] = {}
    for name, value in arguments.items():
        if name not in keyword:
            if accepts_extra:
                result[name] = value
                continue
            raise ArgumentError(name, f"unknown argument; {_expected_names(keyword)}")
        result[name] = _coerce(value, hints.get(name, Any), name)
    for name, parameter in keyword.items():
        if name not in result and parameter.default is inspect.Parameter.empty:
            raise ArgumentError(name, "missing (it is required)")
    return result


def _expected_names(keyword: Mapping[str, inspect.Parameter]) -> str:
    if not keyword:
        return "the tool takes no arguments"
    return "expected " + ", ".join(sorted(keyword))


def _describe_value(value: Any) -> str:
    text = repr(value)
    return text if len(text) <= 80 else text[:77] + "..."


def _coerce(value: Any, hint: Any, path: str) -> Any:
    """``value`` converted to ``hint``, or :class:`ArgumentError` at ``path``."""
    if hint is Any or hint is object or hint is inspect.Parameter.empty or isinstance(hint, str):
        return value
    origin = typing.get_origin(hint)
    args = typing.get_args(hint)
    if origin is typing.Annotated:
        return _coerce(value, args[0], path)
    if origin in _UNION_TYPES:
        if value is None and _NONE_TYPE in args:
            return None
        errors = []
        for member in args:
            if member is _NONE_TYPE:
                continue
            try:
                return _coerce(value, member, path)
            except ArgumentError as error:
                errors.append(error.reason)
        raise ArgumentError(path, f"{_describe_value(value)} fits none of: " + "; ".join(errors))
    if origin is typing.Literal:
        for option in args:
            plain = option.value if isinstance(option, enum.Enum) else option
            if value == plain and type(value) is not bool or value is plain:
                return option
        raise ArgumentError(path, f"{_describe_value(value)} is not one of {list(args)!r}")
    if hint is _NONE_TYPE or hint is None:
        if value is None:
            return None
        raise ArgumentError(path, f"expected null, got {_describe_value(value)}")
    if hint is bool:
        if isinstance(value, bool):
            return value
        raise ArgumentError(path, f"expected a boolean, got {_describe_value(value)}")
    if hint is int:
        if isinstance(value, int) and not isinstance(value, bool):
            return value
        if isinstance(value, float) and value.is_integer():
            return int(value)
        raise ArgumentError(path, f"expected an integer, got {_describe_value(value)}")
    if hint is float:
        if isinstance(value, (int, float)) and not isinstance(value, bool):
            return float(value)
        raise ArgumentError(path, f"expected a number, got {_describe_value(value)}")
    if hint is str:
        if isinstance(value, str):
            return value
        raise ArgumentError(path, f"expected a string, got {_describe_value(value)}")
    if origin in _SEQUENCES or origin in _SETS or origin is tuple or hint in (list, tuple, set, frozenset):
        if not isinstance(value, (list, tuple)):
            raise ArgumentError(path, f"expected an array, got {_describe_value(value)}")
        if origin is tuple and args and not (len(args) == 2 and args[1] is Ellipsis):
            if len(value) != len(args):
                raise ArgumentError(path, f"expected {len(args)} items, got {len(value)}")
            return tuple(_coerce(v, a, f"{path}.{i}") for i, (v, a) in enumerate(zip(value, args)))
        item = args[0] if args else Any
        items = [_coerce(v, item, f"{path}.{i}") for i, v in enumerate(value)]
        if origin is tuple or hint is tuple:
            return tuple(items)
        if origin in _SETS or hint in (set, frozenset):
            return frozenset(items) if frozenset in (origin, hint) else set(items)
        return items
    if origin in _MAPPINGS or hint is dict:
        if not isinstance(value, dict):
            raise ArgumentError(path, f"expected an object, got {_describe_value(value)}")
        item = args[1] if len(args) == 2 else Any
        return {k: _coerce(v, item, f"{path}.{k}") for k, v in value.items()}
    if isinstance(hint, type):
        if issubclass(hint, enum.Enum):
            for member in hint:
                if member.value == value and type(value) is not bool or member.value is value:
                    return member
            raise ArgumentError(
                path, f"{_describe_value(value)} is not one of {[m.value for m in hint]!r}"
            )
        if dataclasses.is_dataclass(hint):
            if not isinstance(value, dict):
                raise ArgumentError(path, f"expected an object, got {_describe_value(value)}")
            hints = typing.get_type_hints(hint, include_extras=True)
            fields = {f.name: f for f in dataclasses.fields(hint) if f.init}
            values: Dict[str, Any] = {}
            for key, item in value.items():
                if key not in fields:
                    raise ArgumentError(f"{path}.{key}", "unknown field")
                values[key] = _coerce(item, hints.get(key, Any), f"{path}.{key}")
            for name, field in fields.items():
                if (
                    name not in values
                    and field.default is dataclasses.MISSING
                    and field.default_factory is dataclasses.MISSING
                ):
                    raise ArgumentError(f"{path}.{name}", "missing (it is required)")
            return hint(**values)
        if _is_typed_dict(hint):
            if not isinstance(value, dict):
                raise ArgumentError(path, f"expected an object, got {_describe_value(value)}")
            hints = typing.get_type_hints(hint, include_extras=True)
            return {k: _coerce(v, hints.get(k, Any), f"{path}.{k}") for k, v in value.items()}
        if _is_pydantic_model(hint):
            validate = getattr(hint, "model_validate", None) or getattr(hint, "parse_obj")
            try:
                return validate(value)
            except Exception as error:  # noqa: BLE001 - pydantic's ValidationError
                raise ArgumentError(path, str(error).replace("\n", " ")) from error
        if hint in (datetime.datetime, datetime.date, datetime.time):
            if not isinstance(value, str):
                raise ArgumentError(path, f"expected a string, got {_describe_value(value)}")
            try:
                return hint.fromisoformat(value.replace("Z", "+00:00"))
            except ValueError as error:
                raise ArgumentError(path, str(error)) from error
        if issubclass(hint, pathlib.PurePath):
            if not isinstance(value, str):
                raise ArgumentError(path, f"expected a string, got {_describe_value(value)}")
            return hint(value)
        if hint is bytes:
            if not isinstance(value, str):
                raise ArgumentError(path, f"expected a string, got {_describe_value(value)}")
            return value.encode()
    return value
