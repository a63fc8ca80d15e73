"""The Redis memory an active account costs: ``MEMORY USAGE`` of its keys and the
``used_memory`` growth over a fresh prefix."""

from __future__ import annotations

import gc
import time

from allowance import Limiter
from allowance.stores.redis import RedisStore
from stores.common import (
    MEMORY_FEATURES,
    MEMORY_SAMPLE,
    MEMORY_TARGET,
    PLAN,
    Memory,
    add_query,
    in_parallel,
    new_name,
)
from stores.servers import RedisTarget


def measure_memory(target: RedisTarget, keys: list[str], workers: int) -> Memory:
    prefix = new_name("memory")
    url = add_query(target.url, prefix=prefix)
    node = target.masters()[0]

    def use(part: list[str], url: str = url) -> None:
        with Limiter(store=url) as lim:  # the real clock: Redis TIME, as in production
            for account in part:
                lim.set_account(account, PLAN)
                for feature in MEMORY_FEATURES:
                    if not lim.consume(account, feature).allowed:
                        raise RuntimeError(f"memory: {feature} denied for {account}")

    def settled_used_memory(clients: int) -> int:
        """used_memory once the clients this measurement opened are gone (a client's buffers
        are not per-account memory); waits at most ~2 s."""
        for _ in range(200):
            if int(node.info("clients")["connected_clients"]) <= clients:
                break
            time.sleep(0.01)
        return int(node.info("memory")["used_memory"])

    # the compiled scripts are cached by the server once, whatever the prefix: load them first
    warm = new_name("memory_warmup")
    use(keys[:1], add_query(target.url, prefix=warm))
    target.delete_prefix(warm)
    try:
        gc.collect()
        clients = int(node.info("clients")["connected_clients"])
        before = settled_used_memory(clients)
        in_parallel(use, keys, workers)
        after = settled_used_memory(clients)
        store = RedisStore.from_url(url)
        try:
            sample = keys[:: max(1, len(keys) // MEMORY_SAMPLE)][:MEMORY_SAMPLE]
            a_sizes = [int(node.memory_usage(store.key(k, "a"), samples=0)) for k in sample]
            c_sizes = [int(node.memory_usage(store.key(k, "c"), samples=0)) for k in sample]
            values = [node.get(store.key(k, "c")) or b"" for k in sample]
        finally:
            store.close()
    finally:
        target.delete_prefix(prefix)
    a_avg = sum(a_sizes) / len(a_sizes)
    c_avg = sum(c_sizes) / len(c_sizes)
    delta = after - before
    per_account = delta / len(keys)
    return Memory(
        accounts=len(keys),
        sampled=len(sample),
        account_key_bytes=a_avg,
        counters_key_bytes=c_avg,
        per_account_keys=a_avg + c_avg,
        used_memory_delta=delta,
        used_memory_per_account=per_account,
        counters_example=values[0].decode(),
        counters_len_avg=sum(len(v) for v in values) / len(values),
        met=a_avg + c_avg <= MEMORY_TARGET and per_account <= MEMORY_TARGET,
    )
