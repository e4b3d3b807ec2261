"""The baseline of scripts/bench_search.sh: the tutorial's own search, with
pymilvus, of the same query vectors the gateway's queries embed to, one
vector per call, with the tutorial's effective consistency (Bounded, the
collection default pymilvus gives). Prints the p50 and p99 in ms as JSON.

    search_baseline.py URI COLLECTION CALLS VECTORS_JSON
"""
import json
import sys
import time

from pymilvus import Collection, connections

uri, collection, calls, vectors_path = sys.argv[1:]
calls = int(calls)
vectors = json.load(open(vectors_path))
connections.connect(uri=uri)
c = Collection(collection)
c.load()
params = {"metric_type": "L2"}
seconds = []
for i in range(calls + 10):
    start = time.perf_counter()
    c.search(
        data=[vectors[i % len(vectors)]],
        anns_field="image_embedding",
        param=params,
        limit=3,
        output_fields=["filepath"],
        consistency_level="Bounded",
    )
    if i >= 10:
        seconds.append(time.perf_counter() - start)
seconds.sort()
pick = lambda p: seconds[round((len(seconds) - 1) * p)] * 1e3
print(json.dumps({"p50_ms": pick(0.5), "p99_ms": pick(0.99)}))
