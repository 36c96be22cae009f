"""The worker's progress tree follows the server's roll-up rules (src/tools/progress.rs, whose
unit tests these mirror): weights as shares, weights as sizes, the parent's own share, and a
status repeated when a sub-task moves the parent."""

from __future__ import annotations

from typing import Any, Dict, List

import pytest

from toolstream._progress_tree import NodeReport, ProgressTree


def _task(ident: str, **fields: Any) -> Dict[str, Any]:
    task = {"id": ident}
    for key in ("parent", "label", "weight", "done"):
        if key in fields:
            task[key] = fields.pop(key)
    return {"task": task, **fields}


def _top(reports: List[NodeReport]) -> float:
    return [r.fields["progress"] for r in reports if r.call_id == "" and "progress" in r.fields][-1]


def test_sub_tasks_roll_up_by_weight_and_finish_at_one() -> None:
    tree = ProgressTree()
    made = tree.apply(_task("a", weight=0.5, label="first")) + tree.apply(_task("b", weight=0.3))
    made += tree.apply(_task("c", weight=0.2))
    assert [(r.call_id, r.parent_call_id, r.label, r.fields) for r in made] == [
        ("1", "", "first", {}),
        ("2", "", "b", {}),
        ("3", "", "c", {}),
    ]
    assert _top(tree.apply(_task("a", progress=0.5))) == pytest.approx(0.25)
    assert _top(tree.apply(_task("b", progress=1.0))) == pytest.approx(0.55)
    done = tree.apply(_task("a", done=True))
    assert done[0] == NodeReport("1", "", "first", {"progress": 1.0})
    assert _top(done) == pytest.approx(0.8)
    assert _top(tree.finish_all()) == 1.0


def test_sizes_as_weights_and_the_parents_own_share() -> None:
    tree = ProgressTree()
    tree.apply(_task("big", weight=300))
    tree.apply(_task("small", weight=100))
    assert _top(tree.apply(_task("big", progress=0.5))) == pytest.approx(0.375)
    assert _top(tree.apply(_task("small", done=True))) == pytest.approx(0.625)

    tree = ProgressTree()
    tree.apply({"progress": 0.1, "status": "prepared"})
    tree.apply(_task("a", weight=0.45))
    tree.apply(_task("b", weight=0.45))
    status = tree.apply({"status": "splitting"})
    assert status == [NodeReport("", "", "", {"status": "splitting", "progress": pytest.approx(0.1)})]
    moved = tree.apply(_task("a", progress=1.0))
    assert _top(moved) == pytest.approx(0.55)
    assert moved[-1].fields["status"] == "splitting", "a parent moved by a child repeats its status"


def test_nested_sub_tasks_are_named_under_their_parent() -> None:
    tree = ProgressTree()
    tree.apply(_task("a", weight=0.5))
    tree.apply(_task("b", weight=0.5))
    made = tree.apply(_task("a2", parent="b", label="deep"))
    assert made == [NodeReport("2/1", "2", "deep", {})]
    reports = tree.apply(_task("a2", progress=0.5))
    assert [(r.call_id, r.fields["progress"]) for r in reports] == [
        ("2/1", 0.5),
        ("2", 0.5),
        ("", 0.25),
    ]
