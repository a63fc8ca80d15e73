"""A worker process for the race tests: THREADS threads, each with its own Limiter, wait until
START (epoch seconds), then each tries ATTEMPTS consumes. Prints the units granted.

With SHARE=1 the threads' Limiters share one store object (one connection pool per process, as
an app server would have); otherwise each opens its own."""

from __future__ import annotations

import sys
import threading
import time

from allowance import Limiter
from allowance.stores import store_from_url


def main() -> None:
    url, account, features, threads, attempts, start, share = sys.argv[1:8]
    feature_list = features.split(",")
    granted = [0] * int(threads)
    shared = store_from_url(url) if share == "1" else None

    def run(i: int) -> None:
        lim = Limiter(store=shared or url)
        time.sleep(max(0.0, float(start) - time.time()))
        for n in range(int(attempts)):
            d = lim.consume(account, feature_list[(i + n) % len(feature_list)])
            granted[i] += d.granted
        if shared is None:
            lim.close()

    workers = [threading.Thread(target=run, args=(i,)) for i in range(int(threads))]
    for w in workers:
        w.start()
    for w in workers:
        w.join()
    print(sum(granted))


if __name__ == "__main__":
    main()
