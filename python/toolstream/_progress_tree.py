"""The progress tree of one call of a worker's tool: the lines the tool produces (the command-tool
protocol's progress lines, ``{"task": {...}}`` included) in, the reports of each node out.

A command tool writes its lines and the toolstream server builds the tree from them. A worker
speaks ``ToolService`` instead, where a run's progress is already a tree: each report names its
node (``call_id``, ``parent_call_id``, ``tool`` for the label), and the top level's fraction
already includes its sub-tasks (a federating server relays the nodes as they are and does not
roll them up again). So a worker builds the tree itself, with the server's rules
(``src/tools/progress.rs``)::

    parent = own + sum(weight * fraction) / max(1, sum(weight))        (at most 1)

where ``own`` is what the parent itself last reported (0 before), and a sub-task counts 0 before
it reports and 1 once finished. A sub-task is announced by a report with no fraction when it is
made, and its last report says 1.0. Its ``call_id`` is its place under its parent, as the server
names them: ``"2"`` for the second sub-task of the call, ``"2/1"`` for the first of that one.

Plain code, no I/O: one ``ProgressTree`` per call, dropped with it.
"""

from __future__ import annotations

import math
from typing import Any, Dict, List, Mapping, NamedTuple, Optional

__all__ = ["NodeReport", "ProgressTree", "TaskLineError"]


class TaskLineError(ValueError):
    """A ``task`` object that breaks the protocol (the command-tool server refuses it too)."""


class NodeReport(NamedTuple):
    """One report of one node: ``call_id`` empty for the call's own progress."""

    call_id: str
    parent_call_id: str
    label: str
    #: ``progress``, ``status`` and the data, as the tool reported them (``progress`` replaced by
    #: the rolled-up fraction on a node with sub-tasks).
    fields: Dict[str, Any]


class _Node:
    __slots__ = (
        "call_id",
        "parent",
        "label",
        "weight",
        "own",
        "fraction",
        "children",
        "weights",
        "finished_weights",
        "going",
        "unfinished",
        "status",
        "shown",
        "finished",
    )

    def __init__(self, call_id: str, parent: Optional["_Node"], label: str, weight: float) -> None:
        self.call_id = call_id
        self.parent = parent
        self.label = label
        self.weight = weight
        self.own = 0.0
        #: As a child: what it last reported (1.0 once finished).
        self.fraction = 0.0
        self.children = 0
        self.weights = 0.0
        self.finished_weights = 0.0
        #: Sum of weight * fraction over the children still going.
        self.going = 0.0
        self.unfinished = 0
        #: The latest status since the node has children, repeated when a child moves it.
        self.status: Optional[str] = None
        self.shown: Optional[float] = None
        self.finished = False

    def rolled_up(self) -> float:
        if self.unfinished == 0:
            share = self.weights / max(self.weights, 1.0)
        else:
            share = (self.finished_weights + self.going) / max(self.weights, 1.0)
        return min(max(self.own + share, 0.0), 1.0)


def _fraction(value: Any) -> Optional[float]:
    """A reported fraction, clamped; ``None`` for none (or NaN, which is no fraction)."""
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return None
    if math.isnan(value):
        return None
    return min(max(float(value), 0.0), 1.0)


class ProgressTree:
    """The progress tree of one call; see the module docs."""

    def __init__(self) -> None:
        self._top = _Node("", None, "", 0.0)
        #: The tool's ids for its sub-tasks; ``None`` once done.
        self._tasks: Dict[str, Optional[_Node]] = {}
        self._out: List[NodeReport] = []

    def apply(self, line: Mapping[str, Any]) -> List[NodeReport]:
        """The reports one progress line makes (a line with ``task``: of that sub-task, making it
        on its first line and finishing it on ``done``). Raises ``TaskLineError`` for a ``task``
        that breaks the protocol."""
        fields = dict(line)
        task = fields.get("task")
        if isinstance(task, Mapping) and isinstance(task.get("id"), str):
            del fields["task"]
            self._task(dict(task), fields)
        else:
            self._report(self._top, fields)
        out, self._out = self._out, []
        return out

    def node(self, ident: str) -> NodeReport:
        """The node of the open sub-task ``ident`` (a line naming it, such as a partial result
        of it), as a report with no fields. Raises ``TaskLineError`` when no open sub-task has
        that id."""
        if ident not in self._tasks:
            raise TaskLineError(f"partial.task {ident!r} names a task that no earlier line made")
        node = self._tasks[ident]
        if node is None:
            raise TaskLineError(f"partial.task {ident!r} is named after it was done")
        parent = node.parent.call_id if node.parent is not None else ""
        return NodeReport(node.call_id, parent, node.label, {})

    def finish_all(self) -> List[NodeReport]:
        """Finishes every sub-task still open (the call returned), newest first."""
        for node in reversed(list(self._tasks.values())):
            if node is not None:
                self._finish(node)
        self._tasks.clear()
        out, self._out = self._out, []
        return out

    # The tree -------------------------------------------------------------------------------

    def _task(self, task: Dict[str, Any], fields: Dict[str, Any]) -> None:
        ident = task.pop("id")
        parent_id = _text(task, "parent") or ""
        label = _text(task, "label")
        weight = task.pop("weight", None)
        if weight is not None and (
            isinstance(weight, bool) or not isinstance(weight, (int, float)) or not weight >= 0
        ):
            raise TaskLineError(f"task.weight must be a number >= 0, not {weight!r}")
        done = task.pop("done", None)
        if done is not None and not isinstance(done, bool):
            raise TaskLineError(f"task.done must be true or false, not {done!r}")
        if task:
            raise TaskLineError(
                f"task has an unknown key {next(iter(task))!r} (known: id, parent, label, weight, done)"
            )
        if ident in self._tasks:
            node = self._tasks[ident]
            if node is None:
                raise TaskLineError(f"task {ident!r} is named after it was done")
        else:
            node = self._make(ident, parent_id, label, weight)
        if fields:
            self._report(node, fields)
        if done:
            self._tasks[ident] = None
            self._finish(node)

    def _make(self, ident: str, parent_id: str, label: Optional[str], weight: Any) -> _Node:
        if parent_id == "":
            parent = self._top
        elif parent_id not in self._tasks:
            raise TaskLineError(
                f"task {ident!r} names task {parent_id!r} as its parent, which no earlier line made"
            )
        else:
            found = self._tasks[parent_id]
            if found is None:
                raise TaskLineError(
                    f"task {ident!r} names task {parent_id!r} as its parent after it was done"
                )
            parent = found
        share = 1.0 if weight is None else float(weight)
        if not math.isfinite(share):
            share = 0.0
        parent.children += 1
        place = str(parent.children)
        call_id = f"{parent.call_id}/{place}" if parent.call_id else place
        node = _Node(call_id, parent, ident if label is None else label, share)
        parent.weights += share
        parent.unfinished += 1
        self._tasks[ident] = node
        # Announced before it reports, so it shows (and weighs) from the start.
        self._emit(node, {})
        return node

    def _emit(self, node: _Node, fields: Dict[str, Any]) -> None:
        parent = node.parent.call_id if node.parent is not None else ""
        self._out.append(NodeReport(node.call_id, parent, node.label, fields))

    def _report(self, node: _Node, fields: Dict[str, Any]) -> None:
        if node.finished:
            return
        fraction = _fraction(fields.get("progress"))
        if fraction is not None:
            node.own = fraction
        if node.children:
            if isinstance(fields.get("status"), str):
                node.status = fields["status"]
            fraction = node.rolled_up()
            fields["progress"] = fraction
        self._emit(node, fields)
        if fraction is not None:
            node.shown = fraction
            if node.parent is not None:
                self._child_moved(node.parent, node, fraction, finished=False)

    def _child_moved(self, node: _Node, child: _Node, fraction: float, finished: bool) -> None:
        if child.finished and not finished:
            return
        before = child.fraction
        if finished:
            child.fraction = 1.0
            node.finished_weights += child.weight
            node.going -= child.weight * before
            node.unfinished -= 1
            if node.unfinished == 0:
                node.going = 0.0
        else:
            child.fraction = fraction
            node.going += child.weight * (fraction - before)
        if node.finished:
            return
        rolled = node.rolled_up()
        if node.shown == rolled:
            return
        node.shown = rolled
        fields: Dict[str, Any] = {"progress": rolled}
        if node.status is not None:
            fields["status"] = node.status
        self._emit(node, fields)
        if node.parent is not None:
            self._child_moved(node.parent, node, rolled, finished=False)

    def _finish(self, node: _Node) -> None:
        if node.finished or node.parent is None:
            return
        node.finished = True
        node.shown = 1.0
        self._emit(node, {"progress": 1.0})
        self._child_moved(node.parent, node, 1.0, finished=True)


def _text(task: Dict[str, Any], key: str) -> Optional[str]:
    value = task.pop(key, None)
    if value is None or isinstance(value, str):
        return value
    raise TaskLineError(f"task.{key} must be a string, not {value!r}")
