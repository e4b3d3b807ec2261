//! The limits of the `imgsearch.v1` API, in one place: the servers check
//! requests against them, and the CLI sizes its requests and its argument
//! ranges by them, so the two cannot drift apart. Each is part of the
//! contract the protos' comments describe.

/// Largest gRPC message the servers take or send by default, and the CLI
/// always: one image travels in one message.
pub const MAX_MESSAGE_BYTES: usize = 64 << 20;

/// Hits per query when a search says 0, as in the tutorial.
pub const DEFAULT_TOP_K: u32 = 3;

/// Most hits per query. Milvus 2.3 allows 16384; more is not a search
/// result a person or a service wants.
pub const MAX_TOP_K: u32 = 1024;

/// Milvus's result window: `offset + top_k` may not exceed it.
pub const MAX_RESULT_WINDOW: u32 = 16384;

/// The search level a search without one gets (HNSW's ef 32). At 200,000
/// rows of the capacity benchmark (scripts/bench_scale.sh, the README's
/// dated run) level 1 found 99.9 % of the exact ten nearest and level 2 all
/// of them, for 15 % more time (p50 5.9 against 6.8 ms); on uniform random
/// vectors, HNSW's hardest case (tests/tests/suite/search_levels.rs), level 1
/// finds 0.44 and level 2 0.60.
pub const DEFAULT_SEARCH_LEVEL: u32 = 2;

/// How long a gateway remembers its latest write to a collection, which its
/// Session reads wait for. Milvus makes a write visible within a time tick
/// (about 200 ms), so an older write is seen by any read; forgetting it
/// bounds the gateway's memory by the collections written to lately, not by
/// every collection it ever wrote to.
pub const SESSION_WRITE_MEMORY: std::time::Duration = std::time::Duration::from_secs(600);

/// Highest search level: HNSW's ef of 8192 (16 << 9) searches a large part
/// of any index a standalone Milvus holds; more only costs time.
pub const MAX_SEARCH_LEVEL: u32 = 10;

/// Most queries in one Search call, and in one batch of a SearchStream.
pub const MAX_QUERIES: usize = 64;

/// Most filepaths per FindFilepaths call, and most ids or filepaths per
/// Delete call: 1024 quoted filepaths of 200 bytes keep Milvus's filter
/// expression near 200 KiB.
pub const MAX_FILEPATHS: usize = 1024;

/// Longest filepath stored, in bytes (not characters), as in the tutorial:
/// `VARCHAR(200)`, which Milvus counts in bytes.
pub const FILEPATH_MAX_BYTES: usize = 200;

/// Largest Insert batch a caller may ask for: 4096 rows of 2048 floats are
/// 32 MiB, half of Milvus's 64 MiB message limit.
pub const MAX_BATCH_SIZE: u32 = 4096;

/// Most images one `EmbedBatch` call may carry; more belong on the stream.
pub const MAX_EMBED_BATCH_IMAGES: usize = 64;

/// Longest an embedder lets searches go before bulk images that wait:
/// searches that never stop coming still leave an ingest a batch a second
/// (so its stream is not taken for stalled), and a search waits for such a
/// bulk batch at most once a second.
pub const MAX_BULK_WAIT_BEHIND_SEARCHES: std::time::Duration = std::time::Duration::from_secs(1);

/// Longest a health probe of one embedder (`Info`) may take. Replicas are
/// probed at once, so hung ones cost one such wait a round, not one each.
pub const EMBEDDER_PROBE_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(5);

/// Longest the gateway's health round waits for Milvus to list its
/// collections: a Milvus that takes calls and answers none turns the gateway
/// NOT_SERVING within this (and a round), not after the SDK's retries of
/// `--milvus-timeout-secs` each, and does not hold up the embedders' probes.
pub const MILVUS_PROBE_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(5);

/// How long an embedder replica a real call failed on is left out before
/// it is given a trial call: long enough that a dead replica costs one
/// retry every few seconds, not one per call.
pub const EMBEDDER_COOL_DOWN: std::time::Duration = std::time::Duration::from_secs(5);

/// Longest one DNS lookup of an embedder name may take; a lookup that takes
/// longer counts as failed, and the name keeps the replicas it had.
pub const DNS_LOOKUP_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(5);

/// HTTP/2 receive window of each call (h2's and gRPC's usual 1 MiB): what
/// a stream the server is not reading yet (backpressure) may leave buffered.
pub const HTTP2_STREAM_WINDOW_BYTES: u32 = 1 << 20;

/// Streams whose full windows one connection's window holds, where a
/// server sets no cap on streams per connection.
pub const HTTP2_WINDOW_STREAMS: u32 = 128;

/// The wait a RESOURCE_EXHAUSTED answer suggests before a retry
/// (`grpc-retry-pushback-ms`): long enough for a batch or two to finish,
/// short enough that a caller within its deadline gets its turn.
pub const RETRY_PUSHBACK_MS: u64 = 250;

/// Longest a call without a deadline waits for a place in an embedder's
/// queue before it is told RESOURCE_EXHAUSTED.
pub const MAX_QUEUE_WAIT_MS: u64 = 30_000;

/// The first pause before a call Milvus throttled (an insert, a search) is
/// sent again; it doubles per refusal (jittered) up to [`MILVUS_THROTTLE_MAX_PAUSE`].
pub const MILVUS_THROTTLE_FIRST_PAUSE: std::time::Duration = std::time::Duration::from_millis(200);
pub const MILVUS_THROTTLE_MAX_PAUSE: std::time::Duration = std::time::Duration::from_secs(5);

/// Longest attribute key, in bytes: ASCII letters, digits and `_`.
pub const ATTRIBUTE_KEY_MAX_BYTES: usize = 64;

/// Most attributes one row carries.
pub const MAX_ATTRIBUTES: usize = 32;

/// Largest attributes of one row, as the JSON Milvus stores (Milvus's own
/// limit for a JSON value is 64 KiB; a hit carries them back, so 1024 hits
/// stay near 4 MiB).
pub const MAX_ATTRIBUTES_BYTES: usize = 4096;

/// Most strings in one list attribute.
pub const MAX_ATTRIBUTE_LIST: usize = 32;

/// Most conditions in one filter.
pub const MAX_FILTER_CONDITIONS: usize = 16;

/// Most values of one `in` condition.
pub const MAX_FILTER_IN_VALUES: usize = 256;

/// Longest string in a filter (a value, a prefix), in bytes.
pub const MAX_FILTER_TEXT_BYTES: usize = 1024;

/// Rows one Delete by filter alone removes, at most: a larger selection is
/// refused, so nobody empties a collection by a typo. (One more is looked
/// up to tell; Milvus reads at most 16384 rows a query.)
pub const MAX_DELETE_BY_FILTER: u64 = 10_000;

/// Members of one near-duplicate group, at most: a larger group means the
/// distance links unrelated rows, and the call fails asking for a smaller
/// one. Also the neighbours one row's range search asks for, so a row
/// with more neighbours than this is sure to make such a group.
pub const MAX_DUPLICATE_GROUP: usize = 1000;

/// Rows read and range-searched at a time by FindDuplicates: their vectors
/// (8 KiB each at 2048 dimensions) are all it holds of the collection.
pub const DUPLICATE_PAGE_ROWS: u32 = 64;

/// Rows of unfinished groups FindDuplicates holds (an id, a distance and a
/// filepath each), at most: a group stays open until its last member's id
/// is scanned, so a collection ingested twice holds one group per image
/// until the second copy. Beyond it the call fails rather than grow.
pub const MAX_DUPLICATE_OPEN_ROWS: usize = 200_000;

/// Rows of groups FindDuplicates has sent that it remembers (8 bytes and a
/// hash slot each). AUTOINDEX is approximate: a row's range search may miss
/// a neighbour that the neighbour's own search, later, finds. The pair is
/// still linked when the earlier row was in no group sent; a row in a group
/// already sent, or one the full memory cannot tell about, is not linked
/// again, so no row is in two groups.
pub const MAX_DUPLICATE_SENT_ROWS: usize = 1_000_000;

/// Request bodies of the largest size (a `--max-message-bytes` message in
/// base64 JSON) the gateway's HTTP API buffers at once; a body beyond what
/// is left is refused (429) rather than read. Streams (NDJSON) are read a
/// line at a time and are not charged: their calls are admitted first.
pub const HTTP_BODIES_AT_ONCE: usize = 4;

/// Room a JSON body needs beyond the base64 of its largest message: field
/// names, quotes, and the other fields of a request.
pub const HTTP_JSON_SLACK_BYTES: usize = 1 << 20;

/// Longest the gateway's HTTP API waits for a request body (JSON, a form)
/// to arrive: a caller sending slowly, or not at all, holds its share of
/// the bodies' budget no longer than this, and is told 408.
pub const HTTP_BODY_READ_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(60);

/// Largest stored image the gateway's media route serves (`--media-root`):
/// a thumbnail's source is a photo, seldom over a few MiB; the body
/// streams from the file, so this bounds the transfer, not memory.
pub const MEDIA_MAX_BYTES: u64 = 16 << 20;
