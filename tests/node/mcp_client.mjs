// Drives toolstream's /mcp with the official TypeScript MCP SDK client under Node and prints
// what it saw as one JSON object (tests/mcp_server.rs reads it).
//
//     node mcp_client.mjs URL TOOL ARGS_JSON
//
// Lists the tools, then calls TOOL with ARGS_JSON and an `onprogress` callback: prints the tool
// names, the progress notifications, the negotiated protocol version and the result.
import { Client } from "@modelcontextprotocol/sdk/client/index.js";
import { StreamableHTTPClientTransport } from "@modelcontextprotocol/sdk/client/streamableHttp.js";

const [url, tool, args] = process.argv.slice(2);
const client = new Client({ name: "toolstream-test", version: "1.0.0" });
const transport = new StreamableHTTPClientTransport(new URL(url));
await client.connect(transport);
const tools = await client.listTools();
const progress = [];
const result = await client.callTool({ name: tool, arguments: JSON.parse(args) }, undefined, {
  onprogress: (notification) => progress.push(notification),
});
console.log(
  JSON.stringify({
    tools: tools.tools.map((t) => t.name),
    protocolVersion: transport.protocolVersion ?? null,
    progress,
    result,
  }),
);
await client.close();
