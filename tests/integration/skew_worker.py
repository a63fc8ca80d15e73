"""A worker whose local clock is wrong by SKEW seconds: it patches ``time.time`` before
anything else runs, then does one operation on a store and prints the answer as JSON.

usage: skew_worker.py SKEW URL consume|check|usage ACCOUNT [FEATURE]
"""

from __future__ import annotations

import json
import sys
import time
from typing import Any

_real = time.time
time.time = lambda: _real() + float(sys.argv[1])  # the skew: this process's clock is off

from allowance import Limiter  # noqa: E402 - imported after the clock is skewed


def main() -> None:
    _, _, url, op, account, *rest = sys.argv
    lim = Limiter(store=url)
    out: list[dict[str, Any]] | dict[str, Any]
    if op == "usage":
        out = [m.to_json() for m in lim.usage(account)]
    elif op == "consume":
        out = lim.consume(account, rest[0]).to_json()
    else:
        out = lim.check(account, rest[0]).to_json()
    print(json.dumps({"local_time": time.time(), "answer": out}))


if __name__ == "__main__":
    main()
