-- wrk script for the max-rate probe: POST the same JSON job body as the
-- open-loop scenarios. The body comes from the environment (BENCH_BODY) so
-- run.sh keeps one definition of it. No response() hook: it would slow wrk.
wrk.method = "POST"
wrk.body = os.getenv("BENCH_BODY") or '{"kind":"http","provider":"mock","request":{"path":"/json?latency_ms=5000"}}'
wrk.headers["Content-Type"] = "application/json"
