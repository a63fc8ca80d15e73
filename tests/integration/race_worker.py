"""A worker process for the race tests: THREADS threads, each with its own Limiter, wait until
START (epoch seconds), then each tries ATTEMPTS consumes, going round FEATURES (and round
ACCOUNTS, a comma-separated list). Prints the units granted per feature, as JSON.

With SHARE=1 the threads' Limiters share one store object (one connection pool per process, as
an app server would have); otherwise each opens its own. An optional POLICY file replaces the
built-in policy; optional USERS (comma-separated) make each request by one of them in turn, and
the units are then counted per "feature/user"."""

from __future__ import annotations

import json
import sys
import threading
import time
from collections import Counter

from allowance import Limiter, load_policy
from allowance.stores import store_from_url

TIMEOUT = 60.0  # seconds a call may take


def main() -> None:
    url, accounts, features, threads, attempts, start, share = sys.argv[1:8]
    policy = load_policy(sys.argv[8]) if len(sys.argv) > 8 else None
    users = sys.argv[9].split(",") if len(sys.argv) > 9 else None
    feature_list = features.split(",")
    account_list = accounts.split(",")
    granted = [Counter[str]() for _ in range(int(threads))]
    failed: list[BaseException] = []
    # correctness is under test, not latency: a loaded machine must not time a call out (a
    # timed-out call may still have been applied, and would be missing from the counts)
    shared = store_from_url(url, timeout=TIMEOUT) if share == "1" else None

    def run(i: int) -> None:
        try:
            consume_all(i)
        except BaseException as exc:  # a thread's error would not fail the process
            failed.append(exc)

    def consume_all(i: int) -> None:
        lim = Limiter(policy, store=shared or url, timeout=TIMEOUT)
        time.sleep(max(0.0, float(start) - time.time()))
        for n in range(int(attempts)):
            feature = feature_list[(i + n) % len(feature_list)]
            account = account_list[(i + 3 * n) % len(account_list)]
            if users is None:
                granted[i][feature] += lim.consume(account, feature).granted
            else:
                user = users[(i * 7 + n) % len(users)]
                granted[i][f"{feature}/{user}"] += lim.consume(account, feature, user=user).granted
        if shared is None:
            lim.close()

    workers = [threading.Thread(target=run, args=(i,)) for i in range(int(threads))]
    for w in workers:
        w.start()
    for w in workers:
        w.join()
    if failed:
        sys.exit(f"race worker: {len(failed)} thread(s) failed, the first: {failed[0]!r}")
    print(json.dumps(sum(granted, Counter[str]())))


if __name__ == "__main__":
    main()
