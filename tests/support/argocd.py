"""Argo CD's Lua health checks, run as Argo CD runs them: a Lua 5.1 VM (gopher-lua is 5.1) with
only the base and table libraries, the resource as the global ``obj`` (JSON arrays become
1-based tables), a table with ``status`` and ``message`` as the result."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from lupa import lua51

from kubegym_localcluster import layout

CUSTOMIZATIONS = layout.REPO / "examples" / "argocd" / "resource_customizations"
#: Argo CD's health codes (gitops-engine health.HealthStatusCode).
HEALTH_CODES = frozenset({"Healthy", "Progressing", "Degraded", "Suspended", "Missing", "Unknown"})

#: Base library functions gopher-lua's OpenBase provides that a health check may use; the
#: loaders (dofile, loadfile, loadstring, require) are left out on purpose.
_BASE = (
    "assert",
    "error",
    "getmetatable",
    "ipairs",
    "next",
    "pairs",
    "pcall",
    "rawequal",
    "rawget",
    "rawset",
    "select",
    "setmetatable",
    "tonumber",
    "tostring",
    "type",
    "unpack",
    "xpcall",
    "_VERSION",
)

_RUNNER = """
function(source, name, base, obj)
  local env = {}
  for _, fn in ipairs(base) do env[fn] = _G[fn] end
  env.table = table
  env.obj = obj
  env._G = env
  local chunk, err = loadstring(source, name)
  if chunk == nil then error(err) end
  setfenv(chunk, env)
  return chunk()
end
"""


@dataclass(frozen=True)
class Health:
    status: str
    message: str


class LuaHealth:
    """One Lua VM; :meth:`check` runs a script against a resource in a fresh environment."""

    def __init__(self) -> None:
        self.lua = lua51.LuaRuntime(unpack_returned_tuples=False, register_eval=False)
        self._run = self.lua.eval(_RUNNER)
        self._base = self.lua.table_from(list(_BASE))

    def check(self, script: str, obj: Mapping[str, Any], name: str = "health.lua") -> Health:
        result = self._run(script, name, self._base, self.lua.table_from(obj, recursive=True))
        if result is None or lua51.lua_type(result) != "table":
            raise AssertionError(f"{name} returned {result!r}, not a table")
        status, message = result["status"], result["message"]
        if status not in HEALTH_CODES:
            raise AssertionError(f"{name} returned health status {status!r}, not one of {sorted(HEALTH_CODES)}")
        return Health(str(status), "" if message is None else str(message))


def script_of(kind: str, group: str = "kubegym.io") -> str:
    return (CUSTOMIZATIONS / group / kind / "health.lua").read_text(encoding="utf-8")


def kind_dirs(root: Path = CUSTOMIZATIONS) -> list[Path]:
    return sorted(p.parent for p in root.glob("*/*/health.lua"))
