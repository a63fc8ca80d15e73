"""A worker process for the race tests: THREADS threads, each with its own Limiter on one store,
wait until START (epoch seconds), then each tries ATTEMPTS consumes. Prints the units granted."""

from __future__ import annotations

import sys
import threading
import time

from allowance import Limiter


def main() -> None:
    url, account, features, threads, attempts, start = sys.argv[1:7]
    feature_list = features.split(",")
    granted = [0] * int(threads)

    def run(i: int) -> None:
        lim = Limiter(store=url)
        time.sleep(max(0.0, float(start) - time.time()))
        for n in range(int(attempts)):
            d = lim.consume(account, feature_list[(i + n) % len(feature_list)])
            granted[i] += d.granted
        lim.close()

    workers = [threading.Thread(target=run, args=(i,)) for i in range(int(threads))]
    for w in workers:
        w.start()
    for w in workers:
        w.join()
    print(sum(granted))


if __name__ == "__main__":
    main()
