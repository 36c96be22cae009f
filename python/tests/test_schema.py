"""Schemas from type hints and docstrings, and JSON arguments converted back to the hints
(toolstream.schema: what workers and command tools describe themselves with)."""


import dataclasses
import datetime
import enum
import json
import sys
from pathlib import Path
from typing import Any, Dict, List, Literal, Optional, Tuple, TypedDict, Union

import pytest

from toolstream.schema import ArgumentError, coerce_arguments, describe, input_schema, output_schema

if sys.version_info >= (3, 9):
    from typing import Annotated


class Level(enum.Enum):
    LOW = 1
    HIGH = 2


class Point(TypedDict):
    x: float
    y: float


@dataclasses.dataclass
class Node:
    name: str
    children: List["Node"] = dataclasses.field(default_factory=list)


def google(query: str, pages: int = 5, *, exact: bool = False) -> List[str]:
    """Searches the web.

    Reads result pages one by one.

    Args:
        query: What to look
            for.
        pages (int): How many pages.
        exact: Match the whole phrase.

    Returns:
        The hits.
    """
    return []


def sphinx(path: str, mode: Literal["r", "w"] = "r") -> None:
    """Opens a file.

    :param path: The file.
    :param str mode: How to open it.
    :returns: nothing
    """


def numpy_style(a: float, b: Optional[float] = None) -> float:
    """Adds.

    Parameters
    ----------
    a : float
        The first.
    b : float, optional
        The second,
        if any.

    Returns
    -------
    float
    """
    return a


def test_google_docstrings_describe_the_tool_and_its_arguments() -> None:
    described = describe(google)
    assert described["name"] == "google"
    assert described["description"] == "Searches the web.\n\nReads result pages one by one."
    schema = described["input_schema"]
    assert schema == {
        "type": "object",
        "properties": {
            "query": {"type": "string", "description": "What to look for."},
            "pages": {"type": "integer", "description": "How many pages.", "default": 5},
            "exact": {"type": "boolean", "description": "Match the whole phrase.", "default": False},
        },
        "required": ["query"],
        "additionalProperties": False,
    }
    assert described["output_schema"] == {"type": "array", "items": {"type": "string"}}


def test_sphinx_and_numpy_docstrings() -> None:
    assert describe(sphinx)["description"] == "Opens a file."
    props = input_schema(sphinx)["properties"]
    assert props["path"]["description"] == "The file."
    assert props["mode"] == {
        "type": "string",
        "enum": ["r", "w"],
        "description": "How to open it.",
        "default": "r",
    }
    assert output_schema(sphinx) == {"type": "null"}
    props = input_schema(numpy_style)["properties"]
    assert props["a"]["description"] == "The first."
    assert props["b"] == {
        "type": ["number", "null"],
        "description": "The second, if any.",
        "default": None,
    }
    assert describe(numpy_style)["description"] == "Adds."


def test_many_kinds_of_hints() -> None:
    def tool(
        level: Level,
        point: Point,
        tree: Node,
        pair: Tuple[int, str],
        many: Tuple[int, ...],
        tags: Dict[str, int],
        either: Union[int, str],
        when: datetime.datetime,
        where: Path,
        note: Annotated[str, "A note."] = "",
        anything: Any = None,
        **extra: Any,
    ) -> Node:
        raise NotImplementedError

    schema = input_schema(tool)
    props = schema["properties"]
    assert props["level"] == {"type": "integer", "enum": [1, 2]}
    assert props["point"] == {"$ref": "#/$defs/Point"}
    assert schema["$defs"]["Point"]["required"] == ["x", "y"]
    assert props["tree"] == {"$ref": "#/$defs/Node"}
    assert schema["$defs"]["Node"]["properties"]["children"] == {
        "type": "array",
        "items": {"$ref": "#/$defs/Node"},
    }
    assert props["pair"]["prefixItems"] == [{"type": "integer"}, {"type": "string"}]
    assert props["many"] == {"type": "array", "items": {"type": "integer"}}
    assert props["tags"] == {"type": "object", "additionalProperties": {"type": "integer"}}
    assert props["either"] == {"anyOf": [{"type": "integer"}, {"type": "string"}]}
    assert props["when"] == {"type": "string", "format": "date-time"}
    assert props["where"] == {"type": "string"}
    assert props["note"] == {"type": "string", "description": "A note.", "default": ""}
    assert props["anything"] == {"default": None}
    assert schema["additionalProperties"] is True  # **extra
    assert output_schema(tool) == {"$ref": "#/$defs/Node", "$defs": {"Node": schema["$defs"]["Node"]}}
    json.dumps(schema)


def test_pydantic_models_bring_their_own_schema() -> None:
    pydantic = pytest.importorskip("pydantic")

    class Inner(pydantic.BaseModel):  # type: ignore[misc,name-defined]
        depth: int = 1

    class Query(pydantic.BaseModel):  # type: ignore[misc,name-defined]
        text: str
        inner: Inner

    def tool(query: Query) -> str:
        return query.text

    schema = input_schema(tool)
    assert schema["properties"]["query"] == {"$ref": "#/$defs/Query"}
    assert schema["$defs"]["Query"]["properties"]["inner"] == {"$ref": "#/$defs/Inner"}
    assert "Inner" in schema["$defs"]
    arguments = coerce_arguments(tool, {"query": {"text": "hi", "inner": {"depth": 2.0}}})
    assert isinstance(arguments["query"], Query) and arguments["query"].inner.depth == 2
    with pytest.raises(ArgumentError) as error:
        coerce_arguments(tool, {"query": {"inner": {}}})
    assert error.value.field == "query"


def test_arguments_are_converted_and_checked() -> None:
    def tool(
        count: int,
        level: Level,
        tree: Node,
        pair: Tuple[int, str],
        ratio: float = 1.0,
        when: Optional[datetime.date] = None,
        mode: Literal["a", "b"] = "a",
    ) -> None:
        pass

    arguments = coerce_arguments(
        tool,
        {
            "count": 3.0,
            "level": 2.0,
            "tree": {"name": "root", "children": [{"name": "leaf"}]},
            "pair": [1.0, "x"],
            "ratio": 2,
            "when": "2024-05-01",
        },
    )
    assert arguments["count"] == 3 and type(arguments["count"]) is int
    assert arguments["level"] is Level.HIGH
    assert arguments["tree"] == Node("root", [Node("leaf")])
    assert arguments["pair"] == (1, "x")
    assert type(arguments["ratio"]) is float
    assert arguments["when"] == datetime.date(2024, 5, 1)

    for bad, field, reason in [
        ({"count": 1.5}, "count", "expected an integer"),
        ({"count": True}, "count", "expected an integer"),
        ({"count": 1, "level": 3}, "level", "is not one of"),
        ({"count": 1, "tree": {"name": 1}}, "tree.name", "expected a string"),
        ({"count": 1, "tree": {"name": "a", "children": [{"nom": "b"}]}}, "tree.children.0.nom", "unknown field"),
        ({"count": 1, "pair": [1]}, "pair", "expected 2 items"),
        ({"count": 1, "mode": "c"}, "mode", "is not one of"),
        ({"count": 1, "other": 1}, "other", "unknown argument"),
        ({}, "count", "missing"),
    ]:
        with pytest.raises(ArgumentError) as error:
            coerce_arguments(tool, bad)
        assert error.value.field == field, bad
        assert reason in error.value.reason, (bad, error.value.reason)
        assert str(error.value).startswith(f"field {field}: ")


def test_a_hint_without_a_json_form_is_a_clear_error() -> None:
    def tool(callback: complex) -> None:
        pass

    with pytest.raises(TypeError, match="cannot make a JSON Schema"):
        input_schema(tool)
