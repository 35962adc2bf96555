#!/usr/bin/env python3
"""limit_split.py — a provider's global rate limit split across N broker
shards under skewed load, simulated (docs/scale-out.md, "Limits and quotas
across shards").

Each shard holds a token bucket with its share of the provider's
rate_limit and burst, as one broker does today (broker/bucket.h). Every
REBALANCE seconds each shard reports its demand (jobs that arrived in the
interval, and its backlog); the coordinator — in the design, the lowest
live shard — water-fills the global rate over the demands: each shard gets
what it asks for when the total fits, the contested rest is shared max-min
fairly, with a small floor per live shard so a shard that starts to see
jobs is not locked out for a whole interval, and every unit of rate is
always handed out (the shares sum to the limit). Shares travel over the
network (each message takes from half of DELAY to DELAY): a decrease
takes effect when it arrives, an increase only after DELAY more, once the
decreases are acknowledged, and one round is in flight at a time, so the
shards' shares never sum to more than the limit, not even in transit. A shard that
is down holds no share.

The load is skewed on purpose: one hot shard, a hot spot that moves, a
shard that is down for 10 s and comes back with a backlog, a burst, a quiet
phase. What counts is the global rate while the provider is saturated
(total backlog > 0 over a whole second): dispatched ÷ the limit, per
one-second window, compared with a static equal split (each shard a fixed
1/N, what sharding without rebalancing gives).

    tests/scaleout/limit_split.py            # the table
    tests/scaleout/limit_split.py --check    # also exits 1 unless the
        # rebalanced split holds every saturated second (but the one where a
        # shard fails, before its lease runs out) at 0.95 of the limit or
        # more and 0.98 on average, never more than the limit plus one burst
        # in any second, the shares never summing to more than the limit at
        # any moment, and the static split falling short (< 0.9 on average:
        # the load is skewed enough to need rebalancing)

Deterministic (seeded), about 0.6 s of CPU. Standard library only.
"""
import argparse
import math
import random
import sys

TICK = 0.005            # simulation step, seconds
FALL = 0.1              # time constant of a falling demand estimate, seconds


class Shard:
    """One broker shard's state of one provider."""

    def __init__(self, rate, burst):
        self.rate = rate            # its share of the limit, tokens/s
        self.burst = burst          # its bucket size
        self.tokens = burst         # tokens held
        self.queue = 0              # jobs waiting for a token
        self.arrived = 0            # jobs arrived since the last report
        self.up = True              # serving


def poisson(rng, mean):
    """A Poisson draw (Knuth's method for small means, normal beyond)."""
    if mean <= 0:
        return 0
    if mean > 30:
        return max(0, int(round(rng.gauss(mean, math.sqrt(mean)))))
    limit, k, p = math.exp(-mean), 0, 1.0
    while True:
        p *= rng.random()
        if p <= limit:
            return k
        k += 1


def water_fill(total, wants, floor):
    """Shares of total for wants (None = shard down, gets 0): every live shard
    at least floor, then max-min fair up to its want, then the unclaimed rest
    spread over the live shards in proportion to their shares (so it sums to
    total, and an idle shard keeps a little)."""
    live = [i for i, w in enumerate(wants) if w is not None]
    shares = [0.0] * len(wants)
    if not live:
        return shares
    floor = min(floor, total / len(live))
    for i in live:
        shares[i] = floor
    left = total - floor * len(live)
    hungry = [i for i in live if wants[i] > floor]
    while hungry and left > 1e-9:
        each = left / len(hungry)
        still = []
        for i in hungry:
            give = min(each, wants[i] - shares[i])
            shares[i] += give
            left -= give
            if wants[i] - shares[i] > 1e-9:
                still.append(i)
        if len(still) == len(hungry):
            break   # everyone took a full even part: nothing left to redistribute
        hungry = still
    if left > 1e-9:
        held = sum(shares[i] for i in live)
        for i in live:
            shares[i] += left * (shares[i] / held if held > 0 else 1 / len(live))
    return shares


def load(t, shards):
    """Jobs/s arriving at each shard at time t: the skewed scenario."""
    base = [0.0] * shards
    if t < 20:      # one hot shard: 70 % of 1.3× the limit
        mix = [0.70] + [0.30 / (shards - 1)] * (shards - 1)
        total = 1.3
    elif t < 50:    # a hot spot that moves every 5 s
        hot = int((t - 20) // 5) % shards
        mix = [0.55 if i == hot else 0.45 / (shards - 1) for i in range(shards)]
        total = 1.2
    elif t < 70:    # even load, a little over the limit
        mix = [1 / shards] * shards
        total = 1.05
    elif t < 90:    # shard 1 down 70–80 s (its jobs wait there), then back
        mix = [0.25, 0.40, 0.20, 0.15][:shards] if shards == 4 else [1 / shards] * shards
        total = 1.1
    elif t < 95:    # a burst at three times the limit on two shards
        mix = [0.5, 0.5] + [0.0] * (shards - 2)
        total = 3.0
    else:           # quiet: below the limit, nothing saturated
        mix = [0.4] + [0.6 / (shards - 1)] * (shards - 1)
        total = 0.5
    for i in range(shards):
        base[i] = mix[i] * total
    return base


def simulate(limit, burst, shards, rebalance, delay, detect, duration, seed, dynamic):
    """Runs the scenario; returns one (dispatched, saturated, failing) per
    second (failing: a shard was down and not yet known to be), and the
    most the shards' rates ever summed to at one moment."""
    rng = random.Random(seed)
    jitter = random.Random(seed + 1)
    state = [Shard(limit / shards, burst / shards) for _ in range(shards)]
    pending = []                    # (apply at, shard, new rate, new burst)
    wants = [limit / shards] * shards   # the coordinator's latest view (None: known down)
    reported = [None] * shards      # (time, want) of each shard's last report
    down_since = [None] * shards    # when each shard went down
    stale, round_done = False, 0.0     # wants changed since the last round; when it is over
    committed = 0.0                 # the most the shards' rates ever summed to
    windows = []
    dispatched_second, saturated_second, failing_second = 0, True, False
    ticks_per_second = round(1 / TICK)
    horizon = 2.0                   # a backlog is asked for as if drained in this long
    rise, fall = TICK / 0.25, TICK / FALL   # arrival rate: EWMA weights
    for step in range(round(duration / TICK)):
        t = step * TICK
        for i, shard in enumerate(state):
            up = not (shards == 4 and i == 1 and 70 <= t < 80)
            if shard.up and not up:
                down_since[i] = t
            shard.up = up
        # shares arriving
        for item in [p for p in pending if p[0] <= t]:
            _, i, rate, size = item
            state[i].rate, state[i].burst = rate, size
            state[i].tokens = min(state[i].tokens, size)
            pending.remove(item)
        committed = max(committed, sum(s.rate for s in state if s.up))
        # arrivals, refill, dispatch
        rates = load(t, shards)
        for i, shard in enumerate(state):
            arrived = poisson(rng, rates[i] * limit * TICK)
            shard.queue += arrived
            # Demand that falls is believed at once, demand that rises over
            # a quarter of a second (a backlog asks for more meanwhile).
            rate_now = arrived / TICK
            shard.arrived += (fall if rate_now < shard.arrived else rise) * (rate_now - shard.arrived)
            if not shard.up:
                continue
            shard.tokens = min(shard.burst, shard.tokens + shard.rate * TICK)
            take = min(shard.queue, int(shard.tokens))
            shard.queue -= take
            shard.tokens -= take
            dispatched_second += take
        saturated_second = saturated_second and sum(s.queue for s in state if s.up) > 0
        failing_second = failing_second or any(
            not s.up and wants[i] is not None for i, s in enumerate(state))
        if (step + 1) % ticks_per_second == 0:
            windows.append((dispatched_second, saturated_second, failing_second))
            dispatched_second, saturated_second, failing_second = 0, True, False
        if not dynamic:
            continue
        # Reports: every `rebalance` seconds, and early (at most every 50 ms)
        # when a shard's demand moved by a fifth. A shard that is down sends
        # none; the coordinator gives its share away once its lease of
        # `detect` seconds has run out.
        now = t + TICK
        changed = False
        for i, shard in enumerate(state):
            if not shard.up:
                if wants[i] is not None and now - down_since[i] >= detect:
                    wants[i] = None
                    changed = True
                continue
            want = shard.arrived + shard.queue / horizon
            last = reported[i]
            due = last is None or now - last[0] >= rebalance - 1e-9
            moved = last is not None and now - last[0] >= 0.05 - 1e-9 and \
                abs(want - last[1]) > max(0.2 * last[1], 0.01 * limit / shards)
            if due or moved or wants[i] is None:
                reported[i] = (now, want)
                wants[i] = want
                changed = True
        stale = stale or changed
        # One round of new shares in flight at a time: decreases apply on
        # arrival, increases once those are acknowledged (2 × delay), and the
        # next round waits for that, so the shards' rates, old and new mixed,
        # never sum to more than the limit.
        if stale and now >= round_done:
            stale = False
            round_done = now + 2 * delay + TICK
            shares = water_fill(limit, wants, floor=0.02 * limit / shards)
            for i, share in enumerate(shares):
                size = max(1.0, burst * share / limit)
                # Each message takes from half the delay to all of it.
                transit = delay * (0.5 + 0.5 * jitter.random())
                when = now + transit if share <= state[i].rate else now + delay + transit
                pending.append((when, i, share, size))
    return windows, committed


def summarize(windows, committed, limit):
    steady = [d / limit for d, sat, failing in windows if sat and not failing]
    failing = [d / limit for d, sat, failing in windows if sat and failing]
    nan = float("nan")
    return {
        "saturated_seconds": len(steady),
        "mean": sum(steady) / len(steady) if steady else nan,
        "min": min(steady) if steady else nan,
        "max": max(steady) if steady else nan,
        "failing_seconds": len(failing),
        "failing_min": min(failing) if failing else nan,
        "peak_any_second": max(d for d, _, _ in windows) / limit,
        "committed": committed / limit,
    }


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--limit", type=float, default=1000, help="provider rate_limit, jobs/s (1000)")
    parser.add_argument("--burst", type=float, default=100, help="its burst (a tenth of a second: 100)")
    parser.add_argument("--shards", type=int, default=4, help="broker shards (4)")
    parser.add_argument("--rebalance", type=float, default=0.5, help="seconds between rebalances (0.5)")
    parser.add_argument("--delay", type=float, default=0.02, help="one-way delay of a share, s (0.02)")
    parser.add_argument("--detect", type=float, default=1.0,
                        help="seconds before a silent shard's share is given away (its lease, 1.0)")
    parser.add_argument("--duration", type=float, default=110, help="simulated seconds (110)")
    parser.add_argument("--seed", type=int, default=15)
    parser.add_argument("--check", action="store_true", help="exit 1 unless the split holds (above)")
    args = parser.parse_args()
    if args.shards < 2 or args.limit <= 0 or args.rebalance <= 0:
        parser.error("needs --shards ≥ 2, --limit > 0, --rebalance > 0")

    rows = []
    for name, dynamic in (("rebalanced", True), ("static 1/N split", False)):
        windows, committed = simulate(args.limit, args.burst, args.shards, args.rebalance, args.delay,
                                      args.detect, args.duration, args.seed, dynamic)
        rows.append((name, summarize(windows, committed, args.limit)))
    print("limit %g jobs/s (burst %g) over %d shards, %g s simulated; reports every %g s and on a "
          "change of demand; share delay %g s; a silent shard's lease %g s; seed %d"
          % (args.limit, args.burst, args.shards, args.duration, args.rebalance, args.delay,
             args.detect, args.seed))
    print("| split | saturated seconds | global rate ÷ limit: mean | min | max "
          "| seconds with a shard down, not yet noticed: count, min | busiest second of all "
          "| shares' sum at most |")
    print("|---|---|---|---|---|---|---|---|")
    for name, r in rows:
        print("| %s | %d | %.3f | %.3f | %.3f | %d, %.3f | %.3f | %.4f |"
              % (name, r["saturated_seconds"], r["mean"], r["min"], r["max"], r["failing_seconds"],
                 r["failing_min"], r["peak_any_second"], r["committed"]))
    if not args.check:
        return 0
    dynamic, static = rows[0][1], rows[1][1]
    ceiling = 1 + args.burst / args.limit
    failures = []
    if dynamic["saturated_seconds"] < 30:
        failures.append("only %d saturated seconds: the scenario no longer saturates" % dynamic["saturated_seconds"])
    if not dynamic["min"] >= 0.95:
        failures.append("rebalanced: a saturated second at %.3f of the limit (< 0.95)" % dynamic["min"])
    if not dynamic["mean"] >= 0.98:
        failures.append("rebalanced: %.3f of the limit on average (< 0.98)" % dynamic["mean"])
    if not dynamic["peak_any_second"] <= ceiling + 1e-9:
        failures.append("rebalanced: a second at %.3f of the limit (above limit + one burst, %.3f)"
                        % (dynamic["peak_any_second"], ceiling))
    if not dynamic["max"] <= ceiling + 1e-9:
        failures.append("rebalanced: a saturated second above limit + one burst")
    if not dynamic["committed"] <= 1 + 1e-9:
        failures.append("rebalanced: the shards' rates summed to %.4f of the limit at one moment"
                        % dynamic["committed"])
    if not static["mean"] < 0.9:
        failures.append("static split at %.3f on average: the load is not skewed enough to test "
                        "rebalancing" % static["mean"])
    for failure in failures:
        print("limit_split: FAIL " + failure)
    print("limit_split: %s" % ("held" if not failures else "NOT held"))
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
