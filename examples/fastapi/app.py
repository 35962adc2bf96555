"""The seed's search endpoint (bench/peers/seed_fastapi.py) on jobgate, in both
modes, plus a webhook receiver. With `make run` serving:

  JOBGATE_WEBHOOK_SECRET=whsec_... JOBGATE_CALLBACK_URL=http://127.0.0.1:8000/hooks/jobgate \\
      python3 -m uvicorn --app-dir examples/fastapi app:app --port 8000

  POST /search/?query=Q  -> 202 {"id"} at once (the job's); jobgate makes the call, durably
  GET  /search/?query=Q  -> the upstream's answer; the wait is parked in jobgate
  POST /hooks/jobgate    -> a finished job, its signature checked (Standard Webhooks)
"""
import os

import jobgate
from fastapi import FastAPI, HTTPException, Request, Response

env = os.environ.get
client = jobgate.AsyncClient(env("JOBGATE_URL", "http://127.0.0.1:8080"), env("JOBGATE_API_KEY"))
callback = {"callback": {"url": env("JOBGATE_CALLBACK_URL")}} if env("JOBGATE_CALLBACK_URL") else {}
app = FastAPI(on_shutdown=[client.aclose])
finished = []


def search_job(query: str) -> dict:
    return {"kind": "http", "provider": env("JOBGATE_PROVIDER", "mock"),
            "request": {"path": env("UPSTREAM_PATH", "/json"), "query": {"q": query}}, **callback}


@app.post("/search/", status_code=202)
async def search(query: str):
    job = await client.submit(search_job(query))
    return {"id": job.id, "status": job.status}


@app.get("/search/")
async def search_and_wait(query: str):
    job = await client.submit(search_job(query), wait=20)
    if job.status != "succeeded":
        raise HTTPException(502 if job.done else 504, detail=job.error or job.status)
    return job.result["body"]


@app.post("/hooks/jobgate", status_code=204)
async def job_finished(request: Request):
    try:
        event = jobgate.verify_webhook(env("JOBGATE_WEBHOOK_SECRET", ""), await request.body(),
                                       request.headers)
    except jobgate.WebhookVerificationError as exc:
        raise HTTPException(400, detail=str(exc))
    # The Standard Webhooks envelope: "job.succeeded" | "job.failed" |
    # "job.canceled", when, and the finished job object.
    job = event["data"]
    finished.append({"id": job["id"], "status": job["status"], "type": event["type"]})
    return Response(status_code=204)


@app.get("/hooks/jobgate")
async def jobs_finished():
    return {"finished": finished}
