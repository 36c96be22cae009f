//! `ticks`: emits `count` progress events, then `{"count": count}`. For demos and load tests.

use std::time::Duration;

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use crate::tools::native::{NativeTool, tool_fn};
use crate::tools::{Progress, Tool, ToolError};

/// Arguments of `ticks`.
#[derive(Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct TicksArgs {
    /// How many progress events to emit.
    #[schemars(range(min = 0, max = 100_000_000))]
    pub count: u64,
    /// Pause between two events, in milliseconds (default 100; 0 emits as fast as possible).
    #[serde(default = "default_interval_ms")]
    #[schemars(range(min = 0, max = 3_600_000))]
    pub interval_ms: u64,
}

fn default_interval_ms() -> u64 {
    100
}

/// Result of `ticks`.
#[derive(Debug, Serialize, JsonSchema)]
pub struct TicksResult {
    /// The number of events emitted.
    pub count: u64,
}

/// Without a pause between events, yield to the scheduler this often so that a cancelled run
/// stops promptly and other runs on the same worker are not starved.
const YIELD_EVERY: u64 = 64;

/// The `ticks` tool.
pub fn ticks() -> impl Tool {
    let tool: NativeTool<TicksArgs, _> = tool_fn(
        "ticks",
        "Emits `count` progress events, `interval_ms` apart, then returns {\"count\": count}.",
        |args: TicksArgs, progress: Progress| async move {
            let interval = Duration::from_millis(args.interval_ms);
            for i in 1..=args.count {
                if interval.is_zero() {
                    if i % YIELD_EVERY == 0 {
                        tokio::task::yield_now().await;
                    }
                } else {
                    tokio::time::sleep(interval).await;
                }
                progress.report(
                    i as f64 / args.count as f64,
                    format!("tick {i}/{}", args.count),
                );
            }
            Ok::<_, ToolError>(TicksResult { count: args.count })
        },
    );
    tool.with_output::<TicksResult>()
}
