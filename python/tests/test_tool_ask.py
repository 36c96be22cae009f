"""``answer = yield toolstream.ask(prompt, type)`` in a command tool (toolstream.tool.run): the ask
line it writes, the answer line it reads, the answer converted to the type, and each outcome that
is not an answer raised at the ``yield`` as its own InputNotAnswered subclass. The same tool through
a real server is tests/it/ask_python.rs."""

from __future__ import annotations

import io
import json
from typing import Any, Dict, Generator, List, Literal

import pytest

import toolstream
from toolstream.schema import ArgumentError
from toolstream.tool import AnswerLineError, progress, run


@progress
def confirm(path: str) -> Generator[Any, Any, str]:
    if (yield toolstream.ask(f"Overwrite {path}?", bool)):
        return "overwritten"
    return "kept"


@progress
def careful(path: str) -> Generator[Any, Any, str]:
    yield {"status": "checking"}
    try:
        copies = yield toolstream.ask("How many copies?", int)
    except toolstream.InputNotAnswered as error:
        return f"{error.outcome}: {error.reason}"
    colour = yield toolstream.ask("Colour?", Literal["red", "blue"])
    return f"{copies} {colour}"


def answer(question_id: str, outcome: str, **rest: Any) -> str:
    return json.dumps({"answer": {"id": question_id, "outcome": outcome, **rest}}) + "\n"


def call(fn: Any, answers: str, **arguments: Any) -> tuple[Any, List[Dict[str, Any]]]:
    out = io.StringIO()
    result = run(fn, arguments, out, answers=io.StringIO(answers))
    return result, [json.loads(line) for line in out.getvalue().splitlines()]


def test_the_ask_line_carries_the_prompt_and_the_schema_from_the_type() -> None:
    result, lines = call(confirm, answer("q1", "answered", value=True), path="report.pdf")
    assert lines == [
        {"ask": {"id": "q1", "prompt": "Overwrite report.pdf?", "schema": {"type": "boolean"}}}
    ]
    assert result == "overwritten"
    assert call(confirm, answer("q1", "answered", value=False), path="a")[0] == "kept"


def test_questions_are_numbered_and_answers_converted_to_their_type() -> None:
    answers = answer("q1", "answered", value=3) + answer("q2", "answered", value="blue")
    result, lines = call(careful, answers, path="a")
    assert result == "3 blue"
    assert lines[0] == {"status": "checking"}
    assert lines[1]["ask"]["id"] == "q1"
    assert lines[1]["ask"]["schema"] == {"type": "integer"}
    assert lines[2]["ask"]["id"] == "q2"
    assert lines[2]["ask"]["schema"]["enum"] == ["red", "blue"]


@pytest.mark.parametrize(
    "outcome, kind",
    [
        ("declined", toolstream.InputDeclined),
        ("expired", toolstream.InputExpired),
        ("cancelled", toolstream.InputCancelled),
        ("refused", toolstream.InputRefused),
    ],
)
def test_each_outcome_without_an_answer_raises_its_own_type_at_the_yield(
    outcome: str, kind: type[toolstream.InputNotAnswered]
) -> None:
    with pytest.raises(kind) as raised:
        call(confirm, answer("q1", outcome), path="a")
    assert raised.value.outcome == outcome
    assert str(raised.value) == f"'Overwrite a?' was not answered: {outcome}"
    # A tool that catches it goes on.
    result, _ = call(careful, answer("q1", outcome, reason="why"), path="a")
    assert result == f"{outcome}: why"


def test_an_answer_not_of_the_type_fails_naming_it() -> None:
    with pytest.raises(ArgumentError) as wrong:
        call(careful, answer("q1", "answered", value="three"), path="a")
    assert wrong.value.field == "answer"


def test_a_closed_stdin_says_the_entry_needs_asks_true() -> None:
    with pytest.raises(AnswerLineError, match="asks = true"):
        call(confirm, "", path="a")


@pytest.mark.parametrize(
    "line, says",
    [
        ("not json\n", "expected an answer line"),
        ('{"result": 1}\n', "expected an answer line"),
        (answer("q7", "answered", value=True), "question 'q7', not 'q1'"),
        (answer("q1", "maybe"), "unknown outcome 'maybe'"),
    ],
)
def test_a_malformed_answer_line_is_an_error_saying_what_came(line: str, says: str) -> None:
    with pytest.raises(AnswerLineError, match=says):
        call(confirm, line, path="a")
