//! `toolstream mcp-stdio`: the server's tools to an MCP client on stdin/stdout
//! ([`toolstream::mcp::bridge`]).

use std::process::ExitCode;

use super::McpStdioArgs;
use super::client::channel;

pub(super) async fn mcp_stdio(args: McpStdioArgs) -> anyhow::Result<ExitCode> {
    let channel = channel(&args.client).await?;
    let bridge = toolstream::mcp::bridge::GrpcBridge::new(channel, args.client.token.as_deref())?;
    bridge.serve_stdio().await?;
    Ok(ExitCode::SUCCESS)
}
