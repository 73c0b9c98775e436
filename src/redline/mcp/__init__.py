"""The MCP server for AI agents (`redline mcp`), built on the SDK."""
