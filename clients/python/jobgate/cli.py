"""The `jobgate` console command (also `python3 -m jobgate`), SPEC §9:

  jobgate submit SPEC_JSON [--wait N] [--idempotency-key K]   (SPEC_JSON: text, @FILE or -)
  jobgate get ID [--wait N]        jobgate cancel ID        jobgate retry ID
  jobgate events ID [--raw]        (an LLM job's tokens as they come)
  jobgate ls [--status S] [--limit N] [--cursor C]
  jobgate top [--interval S] [--once]   (providers, queues and workers, live)

The gateway is JOBGATE_URL (default http://127.0.0.1:8080), the key
JOBGATE_API_KEY. Exit status: 0 done, 1 an API or connection error, 2 bad
usage.
"""
from __future__ import annotations

import argparse
import json
import os
import sys
import time
from typing import Any, Dict, List, Optional, TextIO

import httpx

from . import _core
from ._errors import APIError
from ._models import Job
from ._sync import Client


def _spec(text: str) -> Dict[str, Any]:
    if text == "-":
        text = sys.stdin.read()
    elif text.startswith("@"):
        with open(text[1:]) as f:
            text = f.read()
    try:
        spec = json.loads(text)
    except ValueError as exc:
        raise SystemExit("jobgate: the spec is not JSON: %s" % exc) from None
    if not isinstance(spec, dict):
        raise SystemExit("jobgate: the spec must be a JSON object")
    return spec


def _print_job(job: Job, out: TextIO) -> None:
    out.write(json.dumps(job.raw, indent=2, ensure_ascii=False) + "\n")


def _answer_text(job: Dict[str, Any]) -> Optional[str]:
    """The text of an LLM job's answer (Chat Completions), else None."""
    try:
        text = job["result"]["body"]["choices"][0]["message"]["content"]
    except (KeyError, IndexError, TypeError):
        return None
    return text if job.get("kind") == "llm" and isinstance(text, str) else None


def _events(client: Client, args: argparse.Namespace, out: TextIO, err: TextIO) -> int:
    streamed = False
    for event in client.events(args.id):
        if args.raw:
            out.write(json.dumps({"id": event.id, "event": event.event, "data": event.data},
                                 ensure_ascii=False) + "\n")
        elif event.text is not None:
            out.write(event.text)
            streamed = True
        elif event.event == "status" and isinstance(event.data, dict):
            err.write("[%s]\n" % event.data.get("status"))
        elif event.event == "result" and isinstance(event.data, dict):
            # A job finished before the stream opened sends no chunks: its
            # answer is then the assembled text, or the result as JSON.
            text = None if streamed else _answer_text(event.data)
            if streamed or text is not None:
                out.write((text or "") + "\n")
            else:
                out.write(json.dumps(event.data.get("result", event.data.get("error")),
                                     indent=2, ensure_ascii=False) + "\n")
            if event.data.get("error"):
                err.write("error: %s\n" % json.dumps(event.data["error"]))
        out.flush()
    return 0


def _ls(client: Client, args: argparse.Namespace, out: TextIO) -> int:
    page = client.list(status=args.status, limit=args.limit, cursor=args.cursor)
    out.write("%-36s  %-9s  %-6s  %-10s  %s\n" % ("ID", "STATUS", "KIND", "PROVIDER", "CREATED"))
    for job in page:
        out.write("%-36s  %-9s  %-6s  %-10s  %s\n" % (job.id, job.status, job.kind or "",
                                                     job.provider or "", job.created_at or ""))
    if page.next_cursor:
        out.write("more: --cursor %s\n" % page.next_cursor)
    return 0


def parse_metrics(text: str) -> Dict[str, float]:
    """Prometheus text → {"name{labels}": value} (comments skipped)."""
    samples: Dict[str, float] = {}
    for line in text.splitlines():
        if not line or line.startswith("#"):
            continue
        name, _, value = line.rpartition(" ")
        try:
            samples[name] = float(value)
        except ValueError:
            continue
    return samples


def render_top(providers: List[Dict[str, Any]], metrics: Dict[str, float], url: str,
               readiness: Optional[Dict[str, Any]] = None) -> str:
    """One screen of `jobgate top`: the gateway's own metrics, its /readyz
    (the broker's workers) and /v1/providers (queued and in flight, summed;
    the broker's own metrics are on broker.metrics_listen)."""
    def metric(name: str) -> str:
        value = metrics.get(name)
        return "-" if value is None else "%g" % value

    def total(field: str) -> str:
        values: List[float] = [float(p[field]) for p in providers
                               if isinstance(p.get(field), (int, float))]
        return "%g" % sum(values) if values else "-"

    workers = (readiness or {}).get("workers")
    lines = ["jobgate top — %s — %s" % (url, time.strftime("%H:%M:%S")),
             "broker up %s  workers %s  queued %s  running %s  parked requests %s  accepted %s"
             % (metric("jobgate_broker_up"), "-" if workers is None else workers,
                total("queued"), total("in_flight"),
                metric("jobgate_parked_requests"), metric("jobgate_jobs_accepted_total")),
             "",
             "%-16s %8s %8s %8s %9s %8s %8s %9s %9s" % ("PROVIDER", "RATE", "LIMIT", "INFLIGHT",
                                                      "QUEUED", "CIRCUIT", "P50 ms", "P99 ms",
                                                      "FAILED")]
    for p in providers:
        latency = p.get("latency_ms") or {}
        totals = p.get("totals") or {}

        def show(value: Any) -> str:
            return "-" if value is None else "%g" % value if isinstance(value, (int, float)) else str(value)
        lines.append("%-16s %8s %8s %8s %9s %8s %8s %9s %9s" % (
            str(p.get("name"))[:16], show(p.get("rate")), show(p.get("rate_limit")),
            show(p.get("in_flight")), show(p.get("queued")), show(p.get("circuit")),
            show(latency.get("p50")), show(latency.get("p99")), show(totals.get("failed"))))
    return "\n".join(lines) + "\n"


def _readiness(client: Client) -> Dict[str, Any]:
    """The gateway's /readyz body (200 or 503 alike), or {}."""
    try:
        body = client._request("GET", "/readyz", resend_safe=True).json()
    except (httpx.HTTPError, ValueError):
        return {}
    return body if isinstance(body, dict) else {}


def _top(client: Client, args: argparse.Namespace, out: TextIO, url: str) -> int:
    frames = 0
    try:
        while True:
            screen = render_top(client.providers(), parse_metrics(client.metrics()), url,
                                _readiness(client))
            if not args.once:
                out.write("\x1b[H\x1b[2J")        # home, clear: redraw in place
            out.write(screen)
            out.flush()
            frames += 1
            if args.once or (args.count and frames >= args.count):
                return 0
            time.sleep(args.interval)
    except KeyboardInterrupt:
        return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="jobgate", description="jobgate client (JOBGATE_URL, "
                                     "JOBGATE_API_KEY)")
    parser.add_argument("--url", default=os.environ.get("JOBGATE_URL", _core.DEFAULT_URL))
    commands = parser.add_subparsers(dest="command", required=True)
    submit = commands.add_parser("submit", help="submit a job: SPEC_JSON, @FILE or -")
    submit.add_argument("spec")
    submit.add_argument("--wait", type=float, default=None, help="seconds to wait for the result")
    submit.add_argument("--idempotency-key", default=None)
    get = commands.add_parser("get", help="show a job")
    get.add_argument("id")
    get.add_argument("--wait", type=float, default=None)
    for name, text in (("cancel", "cancel a job"), ("retry", "run a failed job again")):
        commands.add_parser(name, help=text).add_argument("id")
    events = commands.add_parser("events", help="follow a job's events (an LLM's tokens)")
    events.add_argument("id")
    events.add_argument("--raw", action="store_true", help="every event as a JSON line")
    ls = commands.add_parser("ls", help="list jobs, newest first")
    ls.add_argument("--status", default=None)
    ls.add_argument("--limit", type=int, default=None)
    ls.add_argument("--cursor", default=None)
    top = commands.add_parser("top", help="live view of providers, queues and workers")
    top.add_argument("--interval", type=float, default=1.0)
    top.add_argument("--once", action="store_true", help="print one screen and exit")
    top.add_argument("--count", type=int, default=0, help="stop after N screens")
    return parser


def main(argv: Optional[List[str]] = None, out: TextIO = sys.stdout, err: TextIO = sys.stderr) -> int:
    args = build_parser().parse_args(argv)
    try:
        with Client(args.url, api_key=os.environ.get("JOBGATE_API_KEY") or None) as client:
            if args.command == "submit":
                _print_job(client.submit(_spec(args.spec), wait=args.wait,
                                         idempotency_key=args.idempotency_key), out)
            elif args.command == "get":
                _print_job(client.get(args.id, wait=args.wait), out)
            elif args.command == "cancel":
                _print_job(client.cancel(args.id), out)
            elif args.command == "retry":
                _print_job(client.retry(args.id), out)
            elif args.command == "events":
                return _events(client, args, out, err)
            elif args.command == "ls":
                return _ls(client, args, out)
            elif args.command == "top":
                return _top(client, args, out, args.url)
    except APIError as exc:
        err.write("jobgate: %s\n" % exc)
        if exc.problem:
            err.write(json.dumps(exc.problem, ensure_ascii=False) + "\n")
        return 1
    except httpx.HTTPError as exc:
        err.write("jobgate: %s: %s\n" % (type(exc).__name__, exc))
        return 1
    return 0
