"""Adapter management: GET /v1/adapters (a read endpoint), POST /v1/adapters/{name} {path} to load or
replace an adapter at run time and DELETE /v1/adapters/{name} to unload it (both need the token)."""

from __future__ import annotations

import asyncio
import logging
from typing import Any

from fastapi import APIRouter, Depends, HTTPException

from softprompt.errors import AdapterError
from softprompt.serve.context import ServeContext, admin_access, get_context, read_access
from softprompt.serve.protocol import LoadRequest
from softprompt.serve.store import WrongBaseError

log = logging.getLogger("softprompt.serve")

router = APIRouter()


@router.get("/v1/adapters", dependencies=[Depends(read_access)])
async def adapters(ctx: ServeContext = Depends(get_context)) -> dict[str, Any]:
    store, backbone = ctx.store, ctx.backbone
    await asyncio.to_thread(store.rescan, False)
    resident = {e.name: e for e in store.entries()}
    sources = {s.name: s for s in store.sources()}
    listed = []
    for name in store.names():
        if name in resident:
            listed.append({**resident[name].describe(), "loaded": True})
        elif name in sources:
            source = sources[name]
            listed.append({"name": name, "method": (source.meta.get("method") or {}).get("name"),
                           "task": source.meta.get("task"), "path": str(source.path), "loaded": False})
    return {
        "base": {"name": backbone.name, "family": backbone.family, "kind": backbone.kind,
                 "fingerprint": backbone.fingerprint()},
        "adapters": listed,
        "skipped": store.skipped,
        "rejected": store.rejected,
        "memory": {"bytes": store.memory_bytes, "budget_bytes": store.budget, "in_memory": len(resident),
                   "loads": store.loads, "evictions": store.evictions},
    }


@router.post("/v1/adapters/{name}", status_code=201, dependencies=[Depends(admin_access)],
             responses={409: {"description": "made for another base model"}, 422: {"description": "bad adapter"}})
async def load(name: str, req: LoadRequest, ctx: ServeContext = Depends(get_context)) -> dict[str, Any]:
    try:
        entry = await asyncio.to_thread(ctx.store.build, name, req.path)
    except WrongBaseError as err:
        raise HTTPException(409, str(err)) from None
    except AdapterError as err:
        raise HTTPException(422, str(err)) from None
    except Exception as err:
        raise HTTPException(422, f"adapter {name!r} could not be loaded: {type(err).__name__}: {err}") from None
    replaced = ctx.store.add(entry) is not None
    log.info("adapter %s %s from %s", name, "replaced" if replaced else "loaded", entry.path)
    return {"adapter": entry.describe(), "replaced": replaced}


@router.delete("/v1/adapters/{name}", dependencies=[Depends(admin_access)])
async def unload(name: str, ctx: ServeContext = Depends(get_context)) -> dict[str, Any]:
    if ctx.store.remove(name) is None:
        raise ctx.unknown_adapter(name)
    log.info("adapter %s unloaded", name)
    return {"deleted": name}
