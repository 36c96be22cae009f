//! A run's progress on a terminal, as a tree: one bar per node (the run, each agent tool call,
//! each sub-task), indented under its parent, with the server's estimate of the time left.
//!
//! Nodes are named by `call_id` and placed by `parent_call_id`, as the events carry them. A
//! sub-task that finishes (reaches 1.0) is collapsed: its bar and those under it go, and its
//! parent counts it as done; an agent's tool call stays as one line with its outcome. The bars
//! are kept in the order they are drawn (a pre-order of the tree), so a new node goes right after
//! its parent's last descendant.

use std::collections::{HashMap, HashSet};
use std::time::Duration;

use indicatif::{MultiProgress, ProgressBar, ProgressDrawTarget, ProgressStyle};
use toolstream::pb;

/// Resolution of a bar: progress is a fraction, shown in thousandths.
const BAR_STEPS: u64 = 1000;

/// The call id of the run's top level.
const TOP: &str = "";

/// The tree of bars of one run.
pub(super) struct ProgressTree {
    bars: MultiProgress,
    style: ProgressStyle,
    nodes: HashMap<String, Node>,
    /// Call ids of the bars shown, in the order they are drawn.
    order: Vec<String>,
    /// Sub-tasks already collapsed: their late events are ignored.
    collapsed: HashSet<String>,
}

struct Node {
    bar: ProgressBar,
    parent: String,
    depth: usize,
    label: String,
    status: String,
    eta: Option<f64>,
    /// Sub-tasks of this node that finished and were collapsed.
    done: usize,
    /// An agent's tool call: it stays on screen when it ends.
    call: bool,
}

impl ProgressTree {
    /// A tree on stderr whose top level is named `label`.
    pub(super) fn new(label: &str) -> Self {
        Self::with_target(label, ProgressDrawTarget::stderr())
    }

    fn with_target(label: &str, target: ProgressDrawTarget) -> Self {
        let style = ProgressStyle::with_template(
            "{spinner:.green} {prefix:.bold} [{bar:30.cyan/blue}] {percent:>3}% {wide_msg}",
        )
        .unwrap_or_else(|_| ProgressStyle::default_bar())
        .progress_chars("=> ");
        let mut tree = ProgressTree {
            bars: MultiProgress::with_draw_target(target),
            style,
            nodes: HashMap::new(),
            order: Vec::new(),
            collapsed: HashSet::new(),
        };
        tree.insert(TOP, TOP, label, false);
        tree
    }

    /// Names the top level after what runs, once the stream says.
    pub(super) fn set_label(&mut self, label: &str) {
        if let Some(node) = self.nodes.get_mut(TOP) {
            node.label = label.to_owned();
            node.bar.set_prefix(label.to_owned());
        }
    }

    /// A line above the bars, for something the user should notice.
    pub(super) fn note(&self, line: &str) {
        let _ = self.bars.println(line);
    }

    /// Runs `print` with the bars out of the way (for text written to the terminal).
    pub(super) fn suspend<R>(&self, print: impl FnOnce() -> R) -> R {
        self.bars.suspend(print)
    }

    /// Shows a progress event on its node, making the node when it is new.
    pub(super) fn show(&mut self, progress: &pb::Progress) {
        if self.collapsed.contains(&progress.call_id) {
            return;
        }
        if !self.nodes.contains_key(&progress.call_id) {
            let label = if progress.tool.is_empty() {
                progress.call_id.clone()
            } else {
                progress.tool.clone()
            };
            self.insert(&progress.call_id, &progress.parent_call_id, &label, false);
        }
        let Some(node) = self.nodes.get_mut(&progress.call_id) else {
            return;
        };
        if let Some(fraction) = progress.progress {
            node.bar
                .set_position((fraction.clamp(0.0, 1.0) * BAR_STEPS as f64).round() as u64);
        }
        if let Some(status) = &progress.status {
            node.status.clone_from(status);
        }
        node.eta = progress.eta_seconds;
        node.refresh();
        let finished = progress.progress.is_some_and(|f| f >= 1.0);
        if finished && !progress.call_id.is_empty() && !node.call {
            self.collapse(&progress.call_id);
        }
    }

    /// An agent's tool call started: a line of its own, under its parent.
    pub(super) fn call_started(&mut self, call_id: &str, tool: &str, parent_call_id: &str) {
        if !self.nodes.contains_key(call_id) {
            self.insert(
                call_id,
                parent_call_id,
                &format!("{tool} ({call_id})"),
                true,
            );
        }
    }

    /// An agent's tool call ended: its line stays with the outcome, what was under it goes.
    pub(super) fn call_finished(&mut self, call_id: &str, error: Option<&str>) {
        self.remove_descendants(call_id);
        if let Some(node) = self.nodes.get_mut(call_id) {
            node.eta = None;
            match error {
                Some(error) => node.bar.abandon_with_message(format!("failed: {error}")),
                None => {
                    node.bar.set_position(BAR_STEPS);
                    node.bar.finish_with_message("done");
                }
            }
        }
    }

    /// The run ended with its result.
    pub(super) fn finish(&mut self) {
        for id in self.order.clone().iter().rev() {
            if !id.is_empty() && !self.nodes.get(id).is_some_and(|node| node.call) {
                self.remove(id);
            }
        }
        if let Some(node) = self.nodes.get_mut(TOP) {
            node.eta = None;
            node.refresh();
            node.bar.finish();
        }
    }

    /// The run ended without a result (failed, cancelled, the connection lost): the bars stay as
    /// they are, without a time left, since nothing is left to wait for.
    pub(super) fn abandon(&mut self) {
        for node in self.nodes.values_mut() {
            node.eta = None;
            node.refresh();
            node.bar.abandon();
        }
    }

    /// Adds the bar of `id` right after its parent's last descendant; an unknown parent is read
    /// as the top level.
    fn insert(&mut self, id: &str, parent: &str, label: &str, call: bool) {
        let bar = ProgressBar::new(BAR_STEPS);
        bar.set_style(self.style.clone());
        let (parent, depth, bar) = if id.is_empty() {
            (String::new(), 0, self.bars.add(bar))
        } else {
            let parent = if self.nodes.contains_key(parent) {
                parent
            } else {
                TOP
            };
            let depth = self.nodes.get(parent).map_or(0, |node| node.depth) + 1;
            let anchor = self.last_descendant(parent);
            let bar = match anchor.and_then(|anchor| self.nodes.get(&anchor)) {
                Some(anchor) => self.bars.insert_after(&anchor.bar, bar),
                None => self.bars.add(bar),
            };
            (parent.to_owned(), depth, bar)
        };
        let position = match self.last_descendant(&parent) {
            Some(last) if !id.is_empty() => self
                .order
                .iter()
                .position(|o| *o == last)
                .map_or(0, |i| i + 1),
            _ => self.order.len(),
        };
        let node = Node {
            bar,
            parent,
            depth,
            label: label.to_owned(),
            status: String::new(),
            eta: None,
            done: 0,
            call,
        };
        node.bar
            .set_prefix(format!("{}{}", "  ".repeat(depth), node.label));
        node.refresh();
        if id.is_empty() {
            node.bar.enable_steady_tick(Duration::from_millis(120));
        }
        self.order
            .insert(position.min(self.order.len()), id.to_owned());
        self.nodes.insert(id.to_owned(), node);
    }

    /// The last bar drawn in the subtree of `id` (`id` itself when it has nothing under it).
    fn last_descendant(&self, id: &str) -> Option<String> {
        let start = self.order.iter().position(|o| o == id)?;
        let depth = self.nodes.get(id)?.depth;
        let mut last = start;
        for (index, other) in self.order.iter().enumerate().skip(start + 1) {
            if self.nodes.get(other).is_some_and(|node| node.depth > depth) {
                last = index;
            } else {
                break;
            }
        }
        self.order.get(last).cloned()
    }

    /// A finished sub-task: its bar and those under it go, and its parent counts it.
    fn collapse(&mut self, id: &str) {
        let parent = self.nodes.get(id).map(|node| node.parent.clone());
        self.remove_descendants(id);
        self.remove(id);
        self.collapsed.insert(id.to_owned());
        if let Some(parent) = parent.and_then(|parent| self.nodes.get_mut(&parent)) {
            parent.done += 1;
            parent.refresh();
        }
    }

    fn remove_descendants(&mut self, id: &str) {
        let Some(start) = self.order.iter().position(|o| o == id) else {
            return;
        };
        let depth = self.nodes.get(id).map_or(0, |node| node.depth);
        let under: Vec<String> = self.order[start + 1..]
            .iter()
            .take_while(|other| self.nodes.get(*other).is_some_and(|n| n.depth > depth))
            .cloned()
            .collect();
        for other in under {
            self.remove(&other);
            self.collapsed.insert(other);
        }
    }

    fn remove(&mut self, id: &str) {
        if let Some(node) = self.nodes.remove(id) {
            node.bar.finish_and_clear();
            self.bars.remove(&node.bar);
        }
        self.order.retain(|o| o != id);
    }
}

impl Node {
    /// The message after the bar: how many sub-tasks are done, the time left, the status.
    fn refresh(&self) {
        let mut parts = Vec::new();
        if self.done > 0 {
            parts.push(format!("{} done", self.done));
        }
        if let Some(eta) = self.eta {
            parts.push(format!("ETA {}", eta_text(eta)));
        }
        if !self.status.is_empty() {
            parts.push(self.status.clone());
        }
        self.bar.set_message(parts.join(" · "));
    }
}

/// Seconds left as a person reads them: `42s`, `3m05s`, `2h10m`.
fn eta_text(seconds: f64) -> String {
    let seconds = seconds.max(0.0).round() as u64;
    match seconds {
        0..60 => format!("{seconds}s"),
        60..3600 => format!("{}m{:02}s", seconds / 60, seconds % 60),
        _ => format!("{}h{:02}m", seconds / 3600, seconds % 3600 / 60),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn progress(call_id: &str, parent: &str, tool: &str, fraction: Option<f64>) -> pb::Progress {
        pb::Progress {
            progress: fraction,
            call_id: call_id.into(),
            parent_call_id: parent.into(),
            tool: tool.into(),
            ..pb::Progress::default()
        }
    }

    fn tree() -> ProgressTree {
        ProgressTree::with_target("checksum", ProgressDrawTarget::hidden())
    }

    fn prefixes(tree: &ProgressTree) -> Vec<String> {
        tree.order
            .iter()
            .map(|id| tree.nodes[id].bar.prefix())
            .collect()
    }

    #[test]
    fn nodes_are_drawn_under_their_parents_indented() {
        let mut tree = tree();
        tree.show(&progress("1", "", "a", Some(0.1)));
        tree.show(&progress("2", "", "b", Some(0.1)));
        tree.show(&progress("1/1", "1", "a.x", None));
        tree.show(&progress("1/1/1", "1/1", "a.x.y", None));
        tree.show(&progress("1/2", "1", "a.z", None));
        assert_eq!(
            prefixes(&tree),
            [
                "checksum",
                "  a",
                "    a.x",
                "      a.x.y",
                "    a.z",
                "  b"
            ]
        );
        assert_eq!(tree.nodes["1"].bar.position(), 100);
    }

    #[test]
    fn finished_sub_tasks_collapse_with_what_is_under_them() {
        let mut tree = tree();
        tree.show(&progress("1", "", "a", Some(0.5)));
        tree.show(&progress("1/1", "1", "a.x", Some(0.5)));
        tree.show(&progress("2", "", "b", Some(0.5)));
        tree.show(&progress("1", "", "a", Some(1.0)));
        assert_eq!(prefixes(&tree), ["checksum", "  b"]);
        assert!(tree.nodes[TOP].bar.message().contains("1 done"));
        // A late event of a collapsed node does not bring it back.
        tree.show(&progress("1/1", "1", "a.x", Some(1.0)));
        assert_eq!(prefixes(&tree), ["checksum", "  b"]);
    }

    #[test]
    fn eta_and_status_show_on_each_node() {
        let mut tree = tree();
        let mut report = progress("1", "", "a", Some(0.25));
        report.status = Some("hashing".into());
        report.eta_seconds = Some(65.2);
        tree.show(&report);
        assert_eq!(tree.nodes["1"].bar.message(), "ETA 1m05s · hashing");
        report.eta_seconds = None;
        report.status = None;
        tree.show(&report);
        assert_eq!(tree.nodes["1"].bar.message(), "hashing");
    }

    #[test]
    fn agent_calls_stay_with_their_outcome() {
        let mut tree = tree();
        tree.call_started("call_1", "checksum", "");
        tree.show(&progress("call_1/1", "call_1", "a.txt", Some(0.5)));
        tree.call_started("call_2", "ticks", "");
        assert_eq!(
            prefixes(&tree),
            [
                "checksum",
                "  checksum (call_1)",
                "    a.txt",
                "  ticks (call_2)"
            ]
        );
        tree.show(&progress("call_1", "", "checksum", Some(1.0)));
        tree.call_finished("call_1", None);
        assert_eq!(
            prefixes(&tree),
            ["checksum", "  checksum (call_1)", "  ticks (call_2)"]
        );
        assert_eq!(tree.nodes["call_1"].bar.message(), "done");
    }

    #[test]
    fn eta_reads_as_time() {
        assert_eq!(eta_text(0.4), "0s");
        assert_eq!(eta_text(42.0), "42s");
        assert_eq!(eta_text(185.0), "3m05s");
        assert_eq!(eta_text(7800.0), "2h10m");
    }
}
