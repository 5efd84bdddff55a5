"""The MCP server behind `enpire mcp`: verbs as MCP tools over stdio.

The server is handed its tools: plain functions with typed parameters and a docstring that
return the CLI's ``--json`` object (the verbs of :mod:`enpire_agent_bridge.tools` and of the
other packages, bound to one runtime directory). The top layer (enpire_bringup.agent_tools)
assembles that table, so this package imports no higher one. A failing tool returns an MCP
tool error (``is_error``) whose text is the CLI's ``--json`` error object:
``{"ok": false, "error_code": 401, "error": "POLICY_REJECTED", "message": "..."}``.

The stdio transport diverts fd 1 to stderr while it serves, so progress lines and stray
prints of the tools (or the nodes they start) never corrupt the protocol stream.
"""

from __future__ import annotations

import functools
import json
from collections.abc import Callable, Sequence
from typing import Any

from enpire_common.errors import EnpireError

Tool = Callable[..., dict[str, Any]]


def _as_tool_error(fn: Tool) -> Tool:
    """Turn EnpireError into an MCP tool error that carries the code and message."""
    from mcp.server.mcpserver.exceptions import ToolError

    @functools.wraps(fn)
    def wrapper(*args: Any, **kwargs: Any) -> dict[str, Any]:
        try:
            return fn(*args, **kwargs)
        except EnpireError as err:
            raise ToolError(json.dumps(err.to_dict())) from err

    return wrapper


def build_server(tools: Sequence[Tool], *, name: str = 'enpire',
                 instructions: str | None = None) -> Any:
    """An MCPServer serving ``tools`` (each named after its function, described by its
    docstring, its parameters from its signature)."""
    from mcp.server.mcpserver import MCPServer

    server = MCPServer(name, instructions=instructions)
    for fn in tools:
        server.tool()(_as_tool_error(fn))
    return server

