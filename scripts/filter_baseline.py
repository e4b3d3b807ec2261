"""The baseline of scripts/bench_filters.sh: the same filtered searches
with pymilvus, as a tutorial user would write them, on the same collection
and query vectors.

    filter_baseline.py wait URI COLLECTION
        waits until the collection's index covers every row (so both
        clients search the same indexed segments), printing the seconds.
    filter_baseline.py search URI COLLECTION CALLS QUERIES_JSON
        one vector per call, top 10, Bounded consistency (the tutorial's
        effective level), no filter, attributes["bucket"] == 0 and
        attributes["bucket"] < 50; prints p50 and p99 in ms and the mean
        hits of each as JSON.
"""
import json
import sys
import time

from pymilvus import Collection, connections, utility


def wait(collection: str) -> None:
    started = time.perf_counter()
    utility.wait_for_index_building_complete(collection, timeout=3600)
    print(json.dumps({"index_seconds": time.perf_counter() - started}))


def search(collection: str, calls: int, queries_path: str) -> None:
    queries = json.load(open(queries_path))
    c = Collection(collection)
    c.load()
    out = {}
    for name, expr in [("none", None), ("1%", 'attributes["bucket"] == 0'),
                       ("50%", 'attributes["bucket"] < 50')]:
        seconds, hits = [], 0
        for i in range(calls + 10):
            start = time.perf_counter()
            r = c.search(data=[queries[i % len(queries)]], anns_field="image_embedding",
                         param={"metric_type": "L2"}, limit=10, expr=expr,
                         output_fields=["filepath"], consistency_level="Bounded")
            if i >= 10:
                seconds.append(time.perf_counter() - start)
                hits += len(r[0])
        seconds.sort()
        pick = lambda p: seconds[round((len(seconds) - 1) * p)] * 1e3
        out[name] = {"p50_ms": pick(0.5), "p99_ms": pick(0.99), "mean_hits": hits / calls}
    print(json.dumps(out))


def main() -> None:
    mode, uri, collection, *rest = sys.argv[1:]
    connections.connect(uri=uri)
    if mode == "wait":
        wait(collection)
    else:
        search(collection, int(rest[0]), rest[1])


if __name__ == "__main__":
    main()
