//! The cost of a progress event, held as features land (issue 30): the heap allocations one
//! progress event (and one partial result) makes on its way from the tool's report through the
//! run's log and its reader to its bytes for the wire. Allocations are counted, not timed, so the figure is exact on any
//! machine however loaded; the bench (`cargo bench --bench hotpath -- --quick`) measures the time.
//!
//! What bare tonic does per event, for scale: it builds the message (its strings) and encodes it
//! into the transport's buffer. What toolstream may add is the event the log keeps (one `Arc`,
//! shared by every reader); its encoding lives inside the event, and the log's bookkeeping
//! (latest progress per call, wakers, compaction) allocates nothing per event.

use std::alloc::{GlobalAlloc, Layout, System};
use std::cell::Cell;
use std::sync::Arc;

use futures::StreamExt;
use serde_json::json;
use toolstream::config::Limits;
use toolstream::engine::{Engine, RunOptions, ToolRunRequest};
use toolstream::registry::ToolRegistry;
use toolstream::tools::native::tool_fn;
use toolstream::tools::{Progress, ToolError};
use toolstream::transport::wire::EncodedEvent;

/// Counts the heap allocations of each thread. A process-wide count (a heap profiler's) would
/// also count whatever else the test harness runs at the same time on other threads.
struct CountingAllocator;

thread_local! {
    static ALLOCATIONS: Cell<u64> = const { Cell::new(0) };
}

fn count_one() {
    // `try_with`: a thread being torn down has no counter any more; its allocations are not ours.
    let _ = ALLOCATIONS.try_with(|count| count.set(count.get() + 1));
}

// SAFETY: every call is passed on to the system allocator unchanged; counting touches only a
// thread-local `Cell` (const-initialised, no destructor), which allocates nothing.
unsafe impl GlobalAlloc for CountingAllocator {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        count_one();
        // SAFETY: the caller's contract is the system allocator's.
        unsafe { System.alloc(layout) }
    }

    unsafe fn alloc_zeroed(&self, layout: Layout) -> *mut u8 {
        count_one();
        // SAFETY: as above.
        unsafe { System.alloc_zeroed(layout) }
    }

    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        count_one();
        // SAFETY: as above.
        unsafe { System.realloc(ptr, layout, new_size) }
    }

    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        // SAFETY: as above.
        unsafe { System.dealloc(ptr, layout) }
    }
}

#[global_allocator]
static ALLOCATOR: CountingAllocator = CountingAllocator;

fn allocations() -> u64 {
    ALLOCATIONS.with(Cell::get)
}

#[derive(serde::Deserialize, schemars::JsonSchema)]
struct CountArgs {
    count: u64,
}

/// A tool that reports `count` fractions (no status: a status is the tool's own string, which
/// bare tonic allocates too), yielding every 64 reports as `ticks` does.
fn counting_tool() -> ToolRegistry {
    let mut registry = ToolRegistry::new();
    let tool = tool_fn(
        "count",
        "Reports `count` fractions.",
        |args: CountArgs, progress: Progress| async move {
            for i in 1..=args.count {
                progress.fraction(i as f64 / args.count as f64);
                if i % 64 == 0 {
                    tokio::task::yield_now().await;
                }
            }
            Ok::<_, ToolError>(json!({"count": args.count}))
        },
    );
    registry.register(Arc::new(tool)).expect("register");
    let partials = tool_fn(
        "partials",
        "Sends `count` numbers as partial results.",
        |args: CountArgs, progress: Progress| async move {
            for i in 1..=args.count {
                // The main output's next item, a number: the tool allocates nothing for it.
                progress.partial_append("", i)?;
                if i % 64 == 0 {
                    tokio::task::yield_now().await;
                }
            }
            Ok::<_, ToolError>(json!({"count": args.count}))
        },
    );
    registry.register(Arc::new(partials)).expect("register");
    registry
}

/// Allocations on this thread for one run of `tool` making `count` events read to the end by its
/// caller, every event encoded for the wire; and the events delivered.
async fn run_and_count(engine: &Engine, tool: &str, count: u64) -> (u64, u64) {
    let before = allocations();
    let handle = engine
        .run_tool(ToolRunRequest {
            tool: tool.into(),
            arguments: Some(json!({"count": count})),
            options: RunOptions::default(),
            deadline: None,
            owner: None,
            idempotency_key: String::new(),
            labels: Default::default(),
        })
        .await
        .expect("run");
    let mut events = handle.events;
    let mut delivered = 0;
    let mut bytes = 0;
    while let Some(event) = events.next().await {
        let event = event.expect("event");
        bytes += EncodedEvent::of(event).bytes().len();
        delivered += 1;
    }
    drop(events);
    assert!(bytes > 0);
    (allocations() - before, delivered)
}

/// A progress event costs at most one heap allocation in the server (the event the log keeps),
/// however many events the run has: the marginal cost of 20,000 more events, every one delivered
/// to a reader that keeps up. On a current-thread runtime the tool, the log and the reader all run
/// on the test's thread, so every allocation of theirs is counted.
#[tokio::test(flavor = "current_thread")]
async fn a_progress_event_costs_at_most_one_allocation_from_report_to_wire() {
    assert_one_allocation_per_event("count", "a progress event").await;
}

/// A partial result is held to the same budget (issue 30): the event the log keeps, and nothing
/// to encode it (no protobuf `Value` built from the JSON, no buffer of its own).
#[tokio::test(flavor = "current_thread")]
async fn a_partial_result_costs_at_most_one_allocation_from_tool_to_wire() {
    assert_one_allocation_per_event("partials", "a partial result").await;
}

async fn assert_one_allocation_per_event(tool: &str, what: &str) {
    let per_event = marginal_allocations(tool).await;
    assert!(
        per_event <= 1.05,
        "{what} made {per_event:.3} heap allocations per event; the budget is one: the event the \
         log keeps"
    );
}

/// The heap allocations per event of `tool`: the marginal cost of 20,000 more events, every one
/// delivered to a reader that keeps up. On a current-thread runtime the tool, the log and the
/// reader all run on the test's thread, so every allocation of theirs is counted.
async fn marginal_allocations(tool: &str) -> f64 {
    let engine = Engine::new(Arc::new(counting_tool()), Limits::default());
    // Once, so that what is made once per process (the runtime's buffers, lazy statics) is made.
    run_and_count(&engine, tool, 1_000).await;
    let (small, small_delivered) = run_and_count(&engine, tool, 1_000).await;
    let (large, large_delivered) = run_and_count(&engine, tool, 21_000).await;
    let events = large_delivered - small_delivered;
    assert_eq!(events, 20_000, "a reader that keeps up gets every event");
    (large - small) as f64 / events as f64
}
