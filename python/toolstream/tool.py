"""Write a toolstream command tool in Python.

A tool is a function. When it is a generator, every dict it yields is a progress report (or, made
by :func:`partial`, a piece of its output before the result) and the value it returns is the
result::

    from toolstream.tool import main, progress

    @progress
    def process_files(files: list[str]) -> str:
        for i, file in enumerate(files):
            yield {"progress": (i + 1) / len(files), "status": f"Processing {file}"}
            do_processing(file)
        return "All files processed"

    if __name__ == "__main__":
        main(process_files)

``main`` speaks the command-tool protocol: it reads the arguments as one JSON line from stdin,
calls the function with them as keyword arguments (converted to its type hints, see
:func:`toolstream.schema.coerce_arguments`), writes each progress report as one JSON line to
stdout (``{"progress": 0.5, "status": "...", ...extra}``), then ``{"result": value}``. An
exception becomes ``{"error": "<Type>: message"}`` and exit status 1, with the traceback on
stderr. While the function runs, ``print`` goes to stderr (which toolstream logs), so stray output
cannot break the protocol.

A generator can ask a person and wait: ``answer = yield ask("Overwrite report.pdf?", bool)``
writes ``{"ask": {"id", "prompt", "schema"}}`` and reads the one ``{"answer": ...}`` line that
toolstream writes to stdin (the ``[[tools]]`` entry needs ``asks = true``); see :func:`ask`. The
arguments are read as one line, so stdin may stay open after them.

Run with ``--describe`` (what toolstream does at start-up for an entry with ``describe = true``),
``main`` prints the tool's description and JSON Schemas, derived from the function's type hints and
docstring (:func:`toolstream.schema.describe`), and exits: the ``[[tools]]`` entry needs no
``input_schema``.

Only the standard library is used, so a tool runs with ``python/`` on ``PYTHONPATH`` and nothing
installed. The same functions can be served many at a time, in one long-lived process, by
:func:`toolstream.worker.serve`.
"""

import contextlib
import contextvars
import inspect
import json
import sys
import traceback
import uuid
from typing import (
    Any,
    Callable,
    Dict,
    Iterator,
    List,
    Mapping,
    Optional,
    TextIO,
    Tuple,
    TypeVar,
    Union,
    overload,
)

from .schema import coerce_arguments, coerce_value, describe, json_default, value_schema

__all__ = [
    "progress",
    "partial",
    "ask",
    "Ask",
    "InputNotAnswered",
    "InputDeclined",
    "InputExpired",
    "InputCancelled",
    "InputRefused",
    "main",
    "run",
    "child",
    "Task",
    "CallTasks",
]

F = TypeVar("F", bound=Callable[..., Any])


@overload
def progress(fn: F) -> F: ...


@overload
def progress(
    *, name: Optional[str] = None, description: Optional[str] = None
) -> Callable[[F], F]: ...


def progress(
    fn: Optional[F] = None, *, name: Optional[str] = None, description: Optional[str] = None
) -> Union[F, Callable[[F], F]]:
    """Marks ``fn`` as a tool that reports progress by yielding dicts.

    Use it bare (``@progress``) or with a name or description other than the function's own
    (``@progress(name="search", description="Searches the web.")``). The function is returned as
    it is (calling it still returns its generator), so it can be tested directly; ``main`` runs it
    as a command tool and :func:`toolstream.worker.serve` serves it.
    """

    def mark(target: F) -> F:
        setattr(target, "__toolstream_progress__", True)
        if name is not None:
            setattr(target, "__toolstream_name__", name)
        if description is not None:
            setattr(target, "__toolstream_description__", description)
        return target

    if fn is not None:
        return mark(fn)
    return mark


def partial(
    value: Any, key: str = "", append: bool = False, task: "Union[Task, str, None]" = None
) -> Dict[str, Any]:
    """A partial result to yield: a piece of the tool's output before its result, sent to the
    caller at once and never coalesced (unlike progress). ``key`` names which output
    (``""``: the main one); with ``append=True`` the value is that output's next item (callers
    assemble a list), otherwise it replaces the output::

        @progress
        def search(query: str) -> int:
            hits = 0
            for hit in find(query):
                hits += 1
                yield partial(hit, key="hits", append=True)
            return hits

    ``task`` makes it a piece of a sub-task's output instead (a :class:`Task` from
    ``progress.child``, or its id), shown under that sub-task's node::

        with progress.child(path) as sub:
            yield toolstream.partial(digest(path), key="sha256", task=sub)

    Also reachable as ``toolstream.partial`` and ``progress.partial``. A value larger than the
    server's message limit fails the call with an error naming the limit."""
    if not isinstance(key, str):
        raise TypeError(f"a partial result's key must be a string, not {type(key).__name__}")
    body: Dict[str, Any] = {"value": value, "key": key, "append": bool(append)}
    if task is not None:
        body["task"] = task.id if isinstance(task, Task) else str(task)
    return {"partial": body}


class Ask:
    """A question for a person, made by :func:`ask`; yield it and the generator is resumed with
    the answer."""

    def __init__(self, prompt: str, answer_type: Any = None) -> None:
        if not isinstance(prompt, str):
            raise TypeError(f"a question's prompt must be a string, not {type(prompt).__name__}")
        self.prompt = prompt
        self.answer_type = answer_type
        #: The JSON Schema the answer must satisfy; ``None``: any value.
        self.schema = None if answer_type is None else value_schema(answer_type)

    def line(self, question_id: str) -> Dict[str, Any]:
        """The protocol's ``ask`` line for this question."""
        body: Dict[str, Any] = {"id": question_id, "prompt": self.prompt}
        if self.schema is not None:
            body["schema"] = self.schema
        return {"ask": body}

    def __repr__(self) -> str:
        return f"ask({self.prompt!r})"


def ask(prompt: str, answer_type: Any = None) -> Ask:
    """A question for a person, to yield from a ``@progress`` generator; the ``yield`` gives the
    answer, converted to ``answer_type``::

        @progress
        def publish(path: str):
            if not (yield ask(f"Overwrite {path}?", bool)):
                return "kept"
            overwrite(path)
            return "overwritten"

    ``answer_type`` gives the answer's JSON Schema the way a parameter's type hint gives the
    argument's (``bool``, ``int``, ``Literal["a", "b"]``, a dataclass...); ``None``: any JSON
    value. While the question is open the run is INPUT_REQUIRED. When nobody answers, the
    ``yield`` raises :class:`InputNotAnswered`, as the subclass for the outcome
    (:class:`InputDeclined`, :class:`InputExpired`, :class:`InputCancelled`,
    :class:`InputRefused`); catch it to go on without an answer, or let it fail the call.

    In a command tool (:func:`main`) the ``[[tools]]`` entry needs ``asks = true``, so that the
    server keeps the tool's stdin open for the answer. In a worker (:mod:`toolstream.worker`)
    the question reaches the federating server's run, and the answer comes back through the
    worker's RespondToRun. Also reachable as ``toolstream.ask`` and ``progress.ask``."""
    return Ask(prompt, answer_type)


class InputNotAnswered(Exception):
    """A question (:func:`ask`) got no answer; raised at the ``yield`` that asked it.

    ``outcome`` says why: ``"declined"`` (the person said no to answering), ``"expired"`` (nobody
    answered by the run's ``input_timeout_ms`` or deadline), ``"cancelled"`` (the run is ending),
    ``"refused"`` (the question could not be asked; ``reason`` says why, e.g. its schema). Each
    has its own subclass."""

    outcome = ""

    def __init__(self, prompt: str, reason: str = "") -> None:
        message = f"{prompt!r} was not answered: {self.outcome}"
        super().__init__(f"{message} ({reason})" if reason else message)
        self.prompt = prompt
        self.reason = reason


class InputDeclined(InputNotAnswered):
    """The person declined to answer."""

    outcome = "declined"


class InputExpired(InputNotAnswered):
    """Nobody answered in time (the run's ``input_timeout_ms`` or its deadline)."""

    outcome = "expired"


class InputCancelled(InputNotAnswered):
    """The run was cancelled while the question was open."""

    outcome = "cancelled"


class InputRefused(InputNotAnswered):
    """The server could not ask the question (``reason`` says why)."""

    outcome = "refused"


_NOT_ANSWERED = {
    kind.outcome: kind for kind in (InputDeclined, InputExpired, InputCancelled, InputRefused)
}


class Resume:
    """What a generator is resumed with at its next ``yield``: the answer to the question it
    yielded (``None`` after a progress report), or the :class:`InputNotAnswered` to raise
    there. Shared by command tools and the worker, sync and async."""

    def __init__(self) -> None:
        self._value: Any = None
        self._error: Optional[InputNotAnswered] = None

    def answer(self, get: Callable[[], Any]) -> None:
        """Resumes with what ``get()`` returns, or with what it raises if that is
        :class:`InputNotAnswered`."""
        try:
            self._value, self._error = get(), None
        except InputNotAnswered as error:
            self._value, self._error = None, error

    def _take(self) -> Tuple[Any, Optional[InputNotAnswered]]:
        taken = self._value, self._error
        self._value, self._error = None, None
        return taken

    def send(self, generator: Any) -> Any:
        """Resumes the sync ``generator``; returns what it yields next."""
        value, error = self._take()
        return generator.throw(error) if error is not None else generator.send(value)

    async def asend(self, generator: Any) -> Any:
        """Resumes the async ``generator``; returns what it yields next."""
        value, error = self._take()
        if error is not None:
            return await generator.athrow(error)
        return await generator.asend(value)


class AnswerLineError(RuntimeError):
    """What came on stdin is not the answer to the question asked."""


def read_answer(question: Ask, question_id: str, answers: TextIO) -> Any:
    """Reads the answer to ``question`` (asked as ``question_id``) from one ``{"answer": ...}``
    line of ``answers``: its value, converted to the question's type. Raises the
    :class:`InputNotAnswered` subclass for any other outcome, :class:`AnswerLineError` when the
    line is missing or malformed."""
    text = answers.readline()
    if not text:
        raise AnswerLineError(
            f"the tool asked {question.prompt!r} but its stdin is closed: give its [[tools]] "
            "entry `asks = true` so that the server keeps stdin open for answers"
        )
    try:
        answer = json.loads(text)["answer"]
        given_id, outcome = answer["id"], answer["outcome"]
    except (ValueError, KeyError, TypeError) as error:
        raise AnswerLineError(
            f"expected an answer line such as {{\"answer\": {{\"id\": ..., \"outcome\": ...}}}}, "
            f"got {text.strip()[:200]!r} ({type(error).__name__}: {error})"
        ) from None
    if given_id != question_id:
        raise AnswerLineError(f"the answer is to question {given_id!r}, not {question_id!r}")
    if outcome == "answered":
        if question.answer_type is None:
            return answer.get("value")
        return coerce_value(answer.get("value"), question.answer_type, "answer")
    not_answered = _NOT_ANSWERED.get(outcome)
    if not_answered is None:
        raise AnswerLineError(f"unknown outcome {outcome!r} for question {question_id!r}")
    raise not_answered(question.prompt, str(answer.get("reason") or ""))


def _progress_line(report: Any) -> Dict[str, Any]:
    """A yielded value as a progress object: a dict as it is, a number as the fraction done, a
    string as the status."""
    if isinstance(report, Mapping):
        return dict(report)
    if isinstance(report, bool):
        raise TypeError(f"a progress report must be a dict, not {report!r}")
    if isinstance(report, (int, float)):
        return {"progress": report}
    if isinstance(report, str):
        return {"status": report}
    raise TypeError(f"a progress report must be a dict, not {type(report).__name__}")


def _write(out: TextIO, obj: Dict[str, Any]) -> None:
    # allow_nan=False: NaN is not JSON, and toolstream would refuse the line.
    out.write(json.dumps(obj, separators=(",", ":"), allow_nan=False, default=json_default))
    out.write("\n")
    out.flush()


def run(
    fn: Callable[..., Any],
    arguments: Dict[str, Any],
    out: TextIO,
    answers: Optional[TextIO] = None,
) -> Any:
    """Calls ``fn(**arguments)``, writing each progress report to ``out`` as a JSON line, and
    returns its result. A yielded dict with a ``result`` key is the result too (the generator is
    closed there). A yielded :func:`ask` is written as an ``ask`` line and the generator resumed
    with the answer read from ``answers`` (or the :class:`InputNotAnswered` thrown into it).
    Exceptions propagate."""
    tasks = CallTasks()
    asked = 0
    with tasks.current():
        outcome = fn(**coerce_arguments(fn, arguments))
        if not inspect.isgenerator(outcome):
            return outcome
        resume = Resume()
        while True:
            try:
                report = resume.send(outcome)
            except StopIteration as stop:
                for line in tasks.take():
                    _write(out, line)
                return stop.value
            for line in tasks.take():
                _write(out, line)
            if isinstance(report, Ask):
                asked += 1
                question_id = f"q{asked}"
                if answers is None:
                    raise AnswerLineError(f"the tool asked {report.prompt!r}, but nothing answers")
                _write(out, report.line(question_id))
                resume.answer(lambda: read_answer(report, question_id, answers))
                continue
            line = _progress_line(report)
            if "result" in line:
                outcome.close()
                return line["result"]
            _write(out, line)


def _read_arguments(stdin: TextIO) -> Dict[str, Any]:
    # toolstream writes the arguments as one line; for a tool that asks (`asks = true`) stdin then
    # stays open for the answers, so reading to its end would wait forever. A first line that is
    # not a whole JSON value (arguments typed by hand over several lines) is read on to the end.
    text = stdin.readline()
    try:
        json.loads(text)
    except ValueError:
        text += stdin.read()
    if not text.strip():
        return {}
    arguments = json.loads(text)
    if not isinstance(arguments, dict):
        raise TypeError(f"the arguments must be a JSON object, not {type(arguments).__name__}")
    return arguments


def main(fn: Callable[..., Any]) -> None:
    """Runs ``fn`` as a toolstream command tool and exits: 0 after a result, 1 after an error.

    With ``--describe`` on the command line it prints the tool's description as JSON and exits 0
    instead (``describe = true`` in the ``[[tools]]`` entry)."""
    if "--describe" in sys.argv[1:]:
        json.dump(describe(fn), sys.stdout)
        sys.stdout.write("\n")
        sys.stdout.flush()
        sys.exit(0)
    out = sys.stdout
    # The protocol owns stdout; anything the tool prints goes to stderr, which toolstream logs.
    sys.stdout = sys.stderr
    try:
        arguments = _read_arguments(sys.stdin)
        result = run(fn, arguments, out, answers=sys.stdin)
        _write(out, {"result": result})
    except BrokenPipeError:
        # toolstream stopped listening (the run was cancelled): nobody is left to tell.
        sys.exit(1)
    except BaseException as error:  # noqa: BLE001 - every failure must reach the caller
        traceback.print_exc(file=sys.stderr)
        name = type(error).__name__
        message = str(error)
        if isinstance(error, SystemExit):
            message = f"the tool exited (status {error.code}) before returning a result"
        try:
            _write(out, {"error": f"{name}: {message}" if message else name})
        except BrokenPipeError:
            pass
        sys.exit(1)
    finally:
        sys.stdout = out
    sys.exit(0)


# Sub-tasks ---------------------------------------------------------------------------------------


class CallTasks:
    """The sub-tasks of one call of a tool: how they are numbered, and the lines they announce
    (made, finished) that no yield carries, waiting for whoever runs the call (``run``, or a
    worker) to send them before the next yielded line. Made per call and dropped with it, so a
    long-lived process holds nothing of calls that ended."""

    def __init__(self, prefix: str = "t") -> None:
        self._prefix = prefix
        self._made = 0
        self._lines: List[Dict[str, Any]] = []

    def _new_id(self) -> str:
        self._made += 1
        return f"{self._prefix}{self._made}"

    def _announce(self, line: Dict[str, Any]) -> None:
        self._lines.append(line)

    def take(self) -> List[Dict[str, Any]]:
        """The lines announced since the last ``take``, in order."""
        lines, self._lines = self._lines, []
        return lines

    @contextlib.contextmanager
    def current(self) -> Iterator["CallTasks"]:
        """Within the block (on this thread, or this asyncio task), ``progress.child`` makes
        sub-tasks of this call."""
        token = _current_call.set(self)
        try:
            yield self
        finally:
            _current_call.reset(token)


# The call running on this thread or asyncio task: a context variable, so that calls running at
# once in one worker (each on a thread or task of its own) keep their sub-tasks apart.
_current_call: "contextvars.ContextVar[Optional[CallTasks]]" = contextvars.ContextVar(
    "toolstream_call_tasks", default=None
)


class Task:
    """A sub-task of the tool's run, made by ``progress.child(label, weight)`` (or ``child``).

    Its reports reach the client as progress of a node of its own (named ``label``) under the
    tool's progress, and roll up into its parent's: the parent's fraction is its finished
    sub-tasks' weights plus each running sub-task's weight times its fraction, so the tool does no
    arithmetic. The seed's nested example becomes::

        @progress
        def outer_task(items: list) -> str:
            for i, item in enumerate(items):
                with progress.child(f"item {i + 1}", weight=1 / len(items)) as sub:
                    for j in range(3):
                        yield sub.report((j + 1) / 3, f"Item {i + 1}, step {j + 1}")
            return "All done"

    ``report`` returns the line to yield. A sub-task is announced when it is made, so it shows
    (and weighs) even before it reports, and it is complete when its ``with`` block ends or
    ``finish()`` is called; those two lines are sent before the next yielded line. A sub-task can
    have sub-tasks of its own (``sub.child(...)``), to any depth. The same tool gives the same tree
    as a command tool (``main``) and in a worker (:mod:`toolstream.worker`).

    A sub-task belongs to the call running where it is made: make it in the tool's own code (its
    thread, or its asyncio task), not on a thread the tool started. Made outside any call (a
    tool's generator driven by a test, say) it still works, and its announcements go nowhere.
    """

    def __init__(self, label: str, weight: float = 1.0, parent: "Optional[Task]" = None) -> None:
        if parent is not None:
            tasks = parent._tasks
        else:
            # Outside a call (or on a thread the tool started), ids that cannot be taken for
            # those of the call's own sub-tasks.
            tasks = _current_call.get() or CallTasks(prefix=f"free-{uuid.uuid4().hex[:12]}-")
        self._tasks: CallTasks = tasks
        self.id = tasks._new_id()
        self.label = str(label)
        self.weight = float(weight)
        self.parent = parent
        self.finished = False
        tasks._announce({"task": self._declaration()})

    def _declaration(self) -> Dict[str, Any]:
        return {
            "id": self.id,
            "parent": self.parent.id if self.parent is not None else "",
            "label": self.label,
            "weight": self.weight,
        }

    def report(
        self, fraction: Optional[float] = None, status: Optional[str] = None, **data: Any
    ) -> Dict[str, Any]:
        """The progress line of this sub-task (``fraction`` of it done, 0.0-1.0, and a status),
        with any extra data; yield it."""
        line: Dict[str, Any] = {"task": {"id": self.id}}
        if fraction is not None:
            line["progress"] = fraction
        if status is not None:
            line["status"] = status
        line.update(data)
        return line

    def child(self, label: str, weight: float = 1.0) -> "Task":
        """A sub-task of this sub-task."""
        return Task(label, weight, parent=self)

    def finish(self) -> None:
        """Marks the sub-task complete (it then counts as fully done). Only the first call
        counts."""
        if not self.finished:
            self.finished = True
            self._tasks._announce({"task": {"id": self.id, "done": True}})

    def __enter__(self) -> "Task":
        return self

    def __exit__(self, *_exc: Any) -> None:
        self.finish()


def child(label: str, weight: float = 1.0) -> Task:
    """A sub-task of the tool's run; see ``Task``. Also reachable as ``progress.child``."""
    return Task(label, weight)


progress.child = child  # type: ignore[attr-defined]
progress.partial = partial  # type: ignore[attr-defined]
progress.ask = ask  # type: ignore[attr-defined]
