"""Fair share between tenants (quotas.TENANT.weight): within a provider's
queue, tenants are served in weighted round robin, so a tenant with 20,000
jobs queued delays another tenant's first job by at most a round. Asserted
on the order in which jobs started (their started_at), never on time."""
import datetime
import json
import time

from harness import Stack, request

KEYS = {"a": "key-of-a", "b": "key-of-b"}


def _stamp(text):
    """RFC 3339 with milliseconds → integer wall milliseconds."""
    moment = datetime.datetime.strptime(text, "%Y-%m-%dT%H:%M:%S.%fZ")
    return round(moment.replace(tzinfo=datetime.timezone.utc).timestamp() * 1000)


def _auth(tenant):
    return {"Authorization": "Bearer " + KEYS[tenant]}


def _batch(stack, tenant, count, path):
    spec = {"kind": "http", "provider": "slow", "max_attempts": 1, "request": {"path": path}}
    resp = request(stack.gateway_port, "POST", "/v1/batch", body={"jobs": [spec] * count},
                   headers=_auth(tenant))
    assert resp.status == 202, (resp.status, resp.body[:500])
    items = resp.json()["jobs"]
    assert all("id" in item for item in items), [i for i in items if "id" not in i][:2]
    return [item["id"] for item in items]


def _job(stack, tenant, job_id, wait=None):
    resp = request(stack.gateway_port, "GET", "/v1/jobs/%s%s" % (job_id, "?wait=%d" % wait if wait else ""),
                   headers=_auth(tenant))
    assert resp.status == 200, (resp.status, resp.body[:500])
    return resp.json()


def _started_by(stack, ids, moment_ms, inclusive):
    """How many of a tenant's jobs (ids, which start in this order: one
    tenant's jobs of one priority are served first in, first out) had
    started at moment_ms (inclusive) or before it: a binary search."""
    def started(index):
        stamp = _job(stack, "a", ids[index])["started_at"]
        if stamp is None:
            return False
        at = _stamp(stamp)
        return at <= moment_ms if inclusive else at < moment_ms
    low, high = 0, len(ids)
    while low < high:
        middle = (low + high) // 2
        if started(middle):
            low = middle + 1
        else:
            high = middle
    return low


def test_a_flood_delays_another_tenants_jobs_by_at_most_a_round():
    stack = Stack(workers=0, start=False)
    stack.config["gateway"]["api_keys"] = [{"key": KEYS[t], "tenant": t} for t in KEYS]
    stack.config["quotas"] = {"b": {"weight": 4}}
    stack.config["providers"]["slow"] = {"base_url": stack.mock_url(""), "rate_limit": 100,
                                         "burst": 1}
    with stack:
        stack.start_all(workers=1)
        # Tenant a floods the provider (100 calls/s) with 20,000 jobs, in
        # batches of 1,000 (the batch path is what makes this quick).
        began = time.monotonic()
        a_ids = []
        for _ in range(20):
            a_ids += _batch(stack, "a", 1000, "/json?t=a")
        print("20,000 jobs of a accepted in %.1f s" % (time.monotonic() - began))
        # Then tenant b (weight 4) submits 10.
        b_ids = _batch(stack, "b", 10, "/json?t=b")
        b_jobs = []
        for job_id in b_ids:
            job = _job(stack, "b", job_id, wait=30)
            assert job["status"] == "succeeded", json.dumps(job)[:1000]
            b_jobs.append(job)
        submitted = min(_stamp(j["created_at"]) for j in b_jobs)
        first = min(_stamp(j["started_at"]) for j in b_jobs)
        last = max(_stamp(j["started_at"]) for j in b_jobs)
        a_before = _started_by(stack, a_ids, submitted, inclusive=False)
        a_waited_for = _started_by(stack, a_ids, first, inclusive=True) - a_before
        a_between = _started_by(stack, a_ids, last, inclusive=False) - \
            _started_by(stack, a_ids, first, inclusive=True)
        print("a's jobs started before b submitted: %d; after, before b's first: %d; "
              "between b's first and last: %d; b's first started %d ms after its submission, "
              "its last %d ms after" % (a_before, a_waited_for, a_between,
                                        first - submitted, last - submitted))
        # a's flood is still queued: b did not just wait for it to drain.
        assert a_before + a_waited_for + a_between < 10000
        # b's first job waits for at most a's turn (1 call), and those of a's
        # calls that started while b's batch went from the gateway (which
        # stamps created_at) into the broker's queue: one per 10 ms. (Served
        # first in, first out, it would wait for 19,000 of them.)
        assert a_waited_for <= 10, a_waited_for
        # b's 10 jobs take turns of 4 against a's 1: 4 b, 1 a, 4 b, 1 a, 2 b
        # (2 of a's calls; weight 1 for b would let 9 through).
        assert a_between <= 3, a_between
