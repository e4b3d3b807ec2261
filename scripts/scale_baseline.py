"""The baseline of scripts/bench_scale.sh: the same one-vector searches
with pymilvus, as a tutorial user would write them, on the same collection
and query vectors, with the same search parameters the gateway sends.

    scale_baseline.py wait URI COLLECTION
        waits until the collection's index covers every row and the query
        node searches every segment through it, printing the seconds.
    scale_baseline.py search URI COLLECTION CALLS TRUTH_JSON LEVEL:EF...
        CALLS searches per level, top 10, Bounded consistency (the
        tutorial's effective level), params {"level": LEVEL, "ef": EF};
        prints per level p50 and p99 in ms and recall@10 over the first
        pass through the queries, as JSON.
"""
import json
import sys
import time

from pymilvus import Collection, connections, utility


def wait(collection: str) -> None:
    started = time.perf_counter()
    utility.wait_for_index_building_complete(collection, timeout=3600)
    total = utility.index_building_progress(collection)["total_rows"]
    # The query node swaps a segment for its indexed version after the
    # index is built; until then it searches the segment exactly.
    while sum(s.num_rows for s in utility.get_query_segment_info(collection)
              if s.index_name) < total:
        time.sleep(0.5)
    print(json.dumps({"index_seconds": time.perf_counter() - started}))


def search(collection: str, calls: int, truth_path: str, levels: list) -> None:
    truth = json.load(open(truth_path))
    queries, exact = truth["queries"], [set(t) for t in truth["truth"]]
    c = Collection(collection)
    c.load()
    out = {}
    for level, ef in (spec.split(":") for spec in levels):
        seconds, found = [], 0
        param = {"metric_type": "L2", "params": {"level": int(level), "ef": int(ef)}}
        for i in range(calls + 10):
            q = (i - 10 if i >= 10 else i) % len(queries)
            start = time.perf_counter()
            r = c.search(data=[queries[q]], anns_field="image_embedding", param=param,
                         limit=10, output_fields=["filepath"], consistency_level="Bounded")
            if i < 10:
                continue
            seconds.append(time.perf_counter() - start)
            if i - 10 < len(queries):
                rows = (int(h.entity.get("filepath")[2:]) for h in r[0])
                found += sum(1 for row in rows if row in exact[q])
        seconds.sort()
        pick = lambda p: seconds[round((len(seconds) - 1) * p)] * 1e3
        out[level] = {"p50_ms": pick(0.5), "p99_ms": pick(0.99),
                      "recall": found / (10 * len(queries))}
    print(json.dumps(out))


def main() -> None:
    mode, uri, collection, *rest = sys.argv[1:]
    connections.connect(uri=uri)
    if mode == "wait":
        wait(collection)
    else:
        search(collection, int(rest[0]), rest[1], rest[2:])


if __name__ == "__main__":
    main()
