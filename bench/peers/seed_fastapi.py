"""The seed pattern, the way users write it before jobgate: a FastAPI route
that answers at once and hands the slow upstream call to BackgroundTasks,
made with httpx. bench/run.sh runs it beside jobgate against the same mock
upstream and load (Debian's python3-fastapi, python3-uvicorn, python3-httpx,
so it runs under /usr/bin/python3):

  UPSTREAM_URL=http://127.0.0.1:9000/json /usr/bin/python3 -m uvicorn \
      --app-dir bench/peers seed_fastapi:app --port 8000 --workers 1

  POST /search/?query=Q   -> 200 at once; the upstream is called in the background
  GET  /stats             -> {"started", "ok", "failed"}: how many calls ended how

As written in most services, each background call opens its own client
(new connection, new TLS session); SHARED_CLIENT=1 is the tuned variant with
one pooled client for the whole process.
"""
import os

import httpx
from fastapi import BackgroundTasks, FastAPI

UPSTREAM_URL = os.environ.get("UPSTREAM_URL", "http://127.0.0.1:9000/json")
ONE_CLIENT = os.environ.get("SHARED_CLIENT") == "1"

app = FastAPI()
counts = {"started": 0, "ok": 0, "failed": 0}
pooled = None


@app.on_event("startup")
async def open_pool():
    global pooled
    if ONE_CLIENT:
        pooled = httpx.AsyncClient(
            timeout=30.0,
            limits=httpx.Limits(max_connections=5000, max_keepalive_connections=5000))


@app.on_event("shutdown")
async def close_pool():
    if pooled is not None:
        await pooled.aclose()


async def fetch(query: str):
    """The slow call, made after the client already has its answer."""
    counts["started"] += 1
    try:
        if pooled is not None:
            answer = await pooled.get(UPSTREAM_URL, params={"q": query})
        else:
            async with httpx.AsyncClient(timeout=30.0) as client:
                answer = await client.get(UPSTREAM_URL, params={"q": query})
        answer.raise_for_status()
        answer.json()
    except Exception:
        counts["failed"] += 1
    else:
        counts["ok"] += 1


@app.post("/search/")
async def search(query: str, tasks: BackgroundTasks):
    tasks.add_task(fetch, query)
    return {"status": "accepted", "query": query}


@app.get("/stats")
async def stats():
    return counts
