"""The example service as an asyncio web service (FastAPI).

It submits flows from an endpoint and runs a flowbaton replica in its
lifespan, on the host's event loop, through ``flowbaton.aio``: no call
blocks the loop, and the replica's lease keeping runs on threads of its own.
Several copies of it share one backend; kill one mid-flow and another
finishes its flows.

    pip install -r deploy/example/requirements.txt
    FLOWBATON_BACKEND=redis://localhost:6379/0 PYTHONPATH=deploy/example \\
        uvicorn example_service.api:app --port 8000
    curl -X POST 'localhost:8000/machines/vm-1?steps=10&pause=1'
    curl localhost:8000/flows/FLOW_ID

Settings (environment): ``FLOWBATON_BACKEND`` (the backend URL),
``FLOWBATON_LEASE`` (seconds, default 5), ``FLOWBATON_CONCURRENCY``
(flows at once, default 8), ``FLOWBATON_REPLICA_ID`` (default: host and
process).
"""

from __future__ import annotations

import os
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Annotated, Any

from fastapi import FastAPI, HTTPException, Path, Query

import flowbaton

FACTORY = "example_service.flows:provision_async"


@asynccontextmanager
async def lifespan(app: FastAPI) -> AsyncIterator[None]:
    coord = flowbaton.aio.connect(
        os.environ.get("FLOWBATON_BACKEND"),
        replica_id=os.environ.get("FLOWBATON_REPLICA_ID") or None,
        allow=["example_service."],
        lease=float(os.environ.get("FLOWBATON_LEASE", "5")),
    )
    async with coord:
        await coord.start(concurrency=int(os.environ.get("FLOWBATON_CONCURRENCY", "8")))
        app.state.flowbaton = coord
        yield
        await coord.stop()


app = FastAPI(title="flowbaton example service", lifespan=lifespan)

Name = Annotated[str, Path(min_length=1, max_length=64, pattern=r"^[A-Za-z0-9][A-Za-z0-9._-]*$")]
FlowId = Annotated[str, Path(max_length=128, pattern=r"^[A-Za-z0-9][A-Za-z0-9._-]*$")]


@app.post("/machines/{name}")
async def provision(
    name: Name,
    steps: Annotated[int, Query(ge=1, le=100)] = 10,
    pause: Annotated[float, Query(ge=0, le=60)] = 1.0,
) -> dict[str, str]:
    """Start provisioning ``name``: a flow any copy of the service may run."""
    flow_id = await app.state.flowbaton.submit(FACTORY, kwargs={"name": name, "steps": steps, "pause": pause})
    return {"flow_id": flow_id}


@app.get("/flows/{flow_id}")
async def flow(flow_id: FlowId) -> dict[str, Any]:
    """The flow's state now, and its results once it is done."""
    try:
        report = await app.state.flowbaton.report(flow_id)
    except flowbaton.FlowNotFound:
        raise HTTPException(status_code=404, detail="no such flow") from None
    return {"flow_id": flow_id, "state": report.state, "results": report.results}


@app.get("/health")
async def health() -> dict[str, str]:
    return {"status": "ok"}
