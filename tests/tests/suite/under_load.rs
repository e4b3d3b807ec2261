//! Under load, busy means wait: concurrent ingests through small embedder
//! queues lose no image to overload, searches do not queue behind bulk
//! ingest, and what a caller may make the gateway hold is bounded and
//! refused at once beyond it.

use std::time::{Duration, Instant};

use imgsearch_proto::v1::{
    embedder_client::EmbedderClient, Consistency, EmbedBatchRequest, SearchRequest,
};
use imgsearch_tests::{
    cli::{spawn_ingest, wait_ingest, write_pngs},
    deps,
    embedder::{quick_precision, EmbedderProcess},
    gateway::{GatewayFlags, GatewayProcess},
    insert::{self, named_pngs},
    milvus::Milvus,
    stack::{Client, Stack, TestCollection},
};
use tonic::Code;

/// These tests measure load and time: one at a time, or each would be
/// the others' load.
static ONE_AT_A_TIME: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

/// The `p`th quantile of `samples` (sorted here).
fn quantile(samples: &mut [Duration], p: f64) -> Duration {
    samples.sort();
    let i = ((samples.len() as f64 * p).ceil() as usize).clamp(1, samples.len());
    samples[i - 1]
}

/// `n` one-image searches from `clients` concurrent clients; each latency,
/// and each one's embed time as the gateway measured it. Eventually
/// consistent: Session would wait for the ingest's own latest rows to
/// become visible, which is freshness, not queueing.
async fn searches(
    client: &Client,
    collection: &str,
    clients: usize,
    n: usize,
) -> (Vec<Duration>, Vec<Duration>) {
    let image = std::fs::read(&deps::fixture_images()[0]).unwrap();
    let tasks: Vec<_> = (0..clients)
        .map(|_| {
            let (mut client, image, collection) =
                (client.clone(), image.clone(), collection.to_string());
            tokio::spawn(async move {
                let (mut out, mut embed) = (Vec::new(), Vec::new());
                for _ in 0..n / clients {
                    let t = Instant::now();
                    let r = client
                        .search(SearchRequest {
                            collection: collection.clone(),
                            images: vec![image.clone().into()],
                            top_k: 3,
                            consistency: Consistency::Eventually as i32,
                            ..Default::default()
                        })
                        .await
                        .unwrap_or_else(|s| panic!("a search failed under load: {s:?}"))
                        .into_inner();
                    out.push(t.elapsed());
                    embed.push(Duration::from_secs_f64(r.embed_seconds));
                }
                (out, embed)
            })
        })
        .collect();
    let (mut all, mut embed) = (Vec::new(), Vec::new());
    for t in tasks {
        let (a, e) = t.await.unwrap();
        all.extend(a);
        embed.extend(e);
    }
    (all, embed)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_cli_ingests_through_one_small_embedder_store_everything_once_and_finish_together() {
    let _one = ONE_AT_A_TIME.lock().await;
    let stack = Stack::with()
        .quick()
        .embedder(&["--max-batch", "16", "--queue-capacity", "32"])
        .start()
        .await;
    let c = stack.collection("load_two_ingests").await;
    let dir = tempfile::tempdir().unwrap();
    let (a, b) = (dir.path().join("a"), dir.path().join("b"));
    write_pngs(&a, "a", 0, 1000);
    write_pngs(&b, "b", 1000, 1000);
    let uri = stack.gateway.uri();
    let children = [&a, &b].map(|d| spawn_ingest(&uri, d, &c.name, &[]));
    let ended = children.map(|child| std::thread::spawn(move || wait_ingest(child)));
    let ended = ended.map(|t| t.join().unwrap());
    for e in &ended {
        assert!(e.status.success(), "{}\n{}", e.stderr, e.report);
        assert_eq!(e.report["inserted"], 1000, "{}", e.report);
        assert_eq!(e.report["failures"].as_array().unwrap().len(), 0);
    }
    let rows = c.rows().await;
    let mut paths: Vec<_> = rows.iter().map(|(_, p)| p.clone()).collect();
    paths.sort();
    paths.dedup();
    assert_eq!((rows.len(), paths.len()), (2000, 2000), "each image once");
    assert_eq!(
        stack
            .embedder
            .metric("embedder_errors_total{kind=\"overloaded\"}"),
        0.0
    );
    let secs = ended.map(|e| e.report["seconds"].as_f64().unwrap());
    let (fast, slow) = (secs[0].min(secs[1]), secs[0].max(secs[1]));
    println!("two ingests took {secs:?} s");
    assert!(
        slow <= fast * 1.25,
        "equal streams through one embedder should finish within 25 %: {secs:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn four_ingests_through_two_small_replicas_store_everything_and_a_late_small_one_is_not_starved(
) {
    let _one = ONE_AT_A_TIME.lock().await;
    let small = [
        "--max-batch",
        "4",
        "--queue-capacity",
        "8",
        "--precision",
        quick_precision(),
    ];
    let (e1, e2) = (
        EmbedderProcess::start(&small).await,
        EmbedderProcess::start(&small).await,
    );
    let milvus = Milvus::shared();
    let gateway = GatewayProcess::start(
        &milvus.uri(),
        &[e1.uri(), e2.uri()],
        &GatewayFlags::default(),
    )
    .await;
    let client = gateway.client().await;
    let name = "load_two_replicas";
    insert::create(&mut client.clone(), name).await;
    let big: Vec<_> = (0..4u64)
        .map(|s| {
            let mut client = client.clone();
            tokio::spawn(async move {
                let items = named_pngs(&format!("big{s}/"), s * 150, 150);
                let answers = insert::insert(&mut client, name, items).await;
                (answers, Instant::now())
            })
        })
        .collect();
    tokio::time::sleep(Duration::from_secs(3)).await;
    let answers = insert::insert(&mut client.clone(), name, named_pngs("late/", 10_000, 10)).await;
    let late_done = Instant::now();
    answers.assert_every_item_settled_once();
    assert_eq!(answers.summary().inserted, 10, "{:?}", answers.failures());
    let mut last_big = late_done;
    for b in big {
        let (answers, done) = b.await.unwrap();
        answers.assert_every_item_settled_once();
        assert!(answers.error.is_none(), "{:?}", answers.error);
        assert_eq!(answers.summary().inserted, 150, "{:?}", answers.failures());
        last_big = last_big.max(done);
    }
    assert!(
        late_done < last_big,
        "a small ingest started during four large ones finished after all of them"
    );
    assert_eq!(milvus.rows(name).await.len(), 610);
    for e in [&e1, &e2] {
        assert!(
            e.metric("embedder_images_total") > 0.0,
            "a replica did no work"
        );
        assert_eq!(e.metric("embedder_errors_total{kind=\"overloaded\"}"), 0.0);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn searches_during_a_saturating_ingest_wait_about_one_batch_more_than_idle() {
    let _one = ONE_AT_A_TIME.lock().await;
    let stack = Stack::with().quick().start().await;
    let mut c = stack.collection("load_search_first").await;
    c.insert(named_pngs("seed/", 0, 20)).await;
    let max_batch = stack.embedder.info().await.max_batch_size as usize;

    // One full batch, idle, straight to the embedder: what a search may
    // have to wait for when it arrives just after a batch started.
    let image = std::fs::read(&deps::fixture_images()[0]).unwrap();
    let mut embedder = EmbedderClient::new(stack.embedder.channel().await.unwrap())
        .max_decoding_message_size(64 << 20);
    let mut batch_times = Vec::new();
    for _ in 0..3 {
        let t = Instant::now();
        embedder
            .embed_batch(EmbedBatchRequest {
                images: vec![image.clone().into(); max_batch],
            })
            .await
            .unwrap();
        batch_times.push(t.elapsed());
    }
    let batch = quantile(&mut batch_times, 1.0);
    let (mut idle, mut idle_embed) = searches(&stack.client, &c.name, 4, 40).await;
    let idle_p99 = quantile(&mut idle, 0.99);
    let idle_embed_p99 = quantile(&mut idle_embed, 0.99);

    let ingests: Vec<_> = (0..4u64)
        .map(|s| {
            let (mut client, name) = (stack.client.clone(), c.name.clone());
            tokio::spawn(async move {
                insert::insert(
                    &mut client,
                    &name,
                    named_pngs(&format!("bulk{s}/"), s * 1000, 1000),
                )
                .await
            })
        })
        .collect();
    // Let the ingest fill the embedder's queue first.
    tokio::time::sleep(Duration::from_secs(3)).await;
    let queued = stack.embedder.metric("embedder_queue_depth");
    let inference = |e: &EmbedderProcess| {
        (
            e.metric("embedder_inference_seconds_sum"),
            e.metric("embedder_inference_seconds_count"),
        )
    };
    let handler = |e: &EmbedderProcess| {
        (
            e.metric("embedder_request_seconds_sum{method=\"EmbedBatch\"}"),
            e.metric("embedder_request_seconds_count{method=\"EmbedBatch\"}"),
        )
    };
    let before = inference(&stack.embedder);
    let handler_before = handler(&stack.embedder);
    // On the ingest's own connection, as a service sharing one channel does.
    let (mut loaded, mut loaded_embed) = searches(&stack.client, &c.name, 4, 200).await;
    let loaded_p99 = quantile(&mut loaded, 0.99);

    let loaded_embed_p99 = quantile(&mut loaded_embed, 0.99);
    let still_queued = stack.embedder.metric("embedder_queue_depth");
    let after = inference(&stack.embedder);
    let handler_after = handler(&stack.embedder);
    let in_embedder = Duration::from_secs_f64(
        (handler_after.0 - handler_before.0) / (handler_after.1 - handler_before.1).max(1.0),
    );
    let loaded_batch =
        Duration::from_secs_f64((after.0 - before.0) / (after.1 - before.1).max(1.0));
    let p50 = quantile(&mut loaded.clone(), 0.5);
    for i in ingests {
        i.abort();
    }
    println!(
        "one batch of {max_batch}: {batch:?}; search p99 idle {idle_p99:?}, under ingest \
         {loaded_p99:?}; embed p99 idle {idle_embed_p99:?}, under ingest {loaded_embed_p99:?} \
         (queue depth {queued} then {still_queued}); loaded p50 {p50:?}, mean model time per batch \
         under load {loaded_batch:?}; mean EmbedBatch time inside the embedder {in_embedder:?}"
    );
    assert!(
        queued >= max_batch as f64 && still_queued >= max_batch as f64,
        "the ingest did not saturate the embedder"
    );
    // One batch for the one in flight, and half of one for the CPU the
    // ingest's decoding and Milvus's inserts take from the search's own work
    // on a 2-core machine: without it the p99 passed the bound by up to 8 ms
    // in 2 runs of 7, the same before and after the replica scoring change.
    // A starved search (the fault this guards against) waited 2 s and more.
    let slack = batch / 2;
    assert!(
        loaded_p99 <= idle_p99 + batch + slack,
        "search p99 under ingest {loaded_p99:?} > idle p99 {idle_p99:?} + one batch {batch:?} \
         + {slack:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_ingest_during_searches_that_never_stop_still_gets_its_share_and_is_not_taken_for_stalled(
) {
    let _one = ONE_AT_A_TIME.lock().await;
    // A stall timer short enough that a starved stream would be ended.
    let stack = Stack::with()
        .quick()
        .gateway(GatewayFlags {
            embed_timeout_secs: Some(5),
            ..Default::default()
        })
        .start()
        .await;
    let c = stack.collection("load_search_flood").await;
    let (stop, stopped) = tokio::sync::watch::channel(false);
    let image = std::fs::read(&deps::fixture_images()[0]).unwrap();
    let searchers: Vec<_> = (0..8)
        .map(|_| {
            let (mut client, name, image, stopped) = (
                stack.client.clone(),
                c.name.clone(),
                image.clone(),
                stopped.clone(),
            );
            tokio::spawn(async move {
                let mut answered = 0;
                while !*stopped.borrow() {
                    client
                        .search(SearchRequest {
                            collection: name.clone(),
                            images: vec![image.clone().into()],
                            consistency: Consistency::Eventually as i32,
                            ..Default::default()
                        })
                        .await
                        .unwrap_or_else(|s| panic!("a search failed: {s:?}"));
                    answered += 1;
                }
                answered
            })
        })
        .collect();
    tokio::time::sleep(Duration::from_secs(2)).await;
    let dir = tempfile::tempdir().unwrap();
    write_pngs(dir.path(), "flood", 0, 60);
    let ingest = spawn_ingest(&stack.gateway.uri(), dir.path(), &c.name, &[]);
    let ended = tokio::task::spawn_blocking(move || wait_ingest(ingest))
        .await
        .unwrap();
    stop.send_replace(true);
    let mut answered = 0;
    for s in searchers {
        answered += s.await.unwrap();
    }
    println!(
        "searches answered meanwhile: {answered}; ingest {}",
        ended.report
    );
    assert!(ended.status.success(), "{}\n{}", ended.stderr, ended.report);
    assert_eq!(ended.report["inserted"], 60, "{}", ended.report);
    assert!(answered > 0);
    assert_eq!(c.count().await, 60);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn large_searches_beyond_the_search_budget_are_refused_at_once_and_memory_stays_bounded() {
    let _one = ONE_AT_A_TIME.lock().await;
    let budget: u64 = 256 << 20;
    let stack = Stack::with()
        .gateway(GatewayFlags {
            search_memory_bytes: Some(budget),
            ..Default::default()
        })
        .start()
        .await;
    let c = stack.collection("load_large_searches").await;
    let base = stack.gateway.rss_bytes();
    // 48 MiB that are not an image: each answered query fails alone, after
    // its bytes have travelled to the embedder and back.
    let blob = vec![0x5au8; 48 << 20];
    let calls: Vec<_> = (0..16)
        .map(|_| {
            let (mut client, blob, name) = (stack.client.clone(), blob.clone(), c.name.clone());
            tokio::spawn(async move {
                let t = Instant::now();
                let r = client
                    .search(SearchRequest {
                        collection: name,
                        images: vec![blob.into()],
                        ..Default::default()
                    })
                    .await;
                (r.map(|_| ()), t.elapsed())
            })
        })
        .collect();
    let (mut answered, mut refused) = (0, 0);
    for call in calls {
        match call.await.unwrap() {
            (Ok(()), _) => answered += 1,
            (Err(s), took) => {
                assert_eq!(s.code(), Code::ResourceExhausted, "{s:?}");
                assert!(
                    s.message().contains("--search-memory-bytes"),
                    "{}",
                    s.message()
                );
                assert!(
                    s.metadata().get("grpc-retry-pushback-ms").is_some(),
                    "a refusal says when to retry"
                );
                assert!(took < Duration::from_secs(20), "refused late: {took:?}");
                refused += 1;
            }
        }
    }
    let peak = stack.gateway.peak_rss_bytes();
    // The budget, plus what a refused request's first frames and the
    // HTTP/2 windows hold, plus allocator slack.
    let bound = base + budget + (128 << 20);
    println!(
        "{answered} answered, {refused} refused; gateway RSS base {} MiB, peak {} MiB, bound {} MiB",
        base >> 20,
        peak >> 20,
        bound >> 20
    );
    assert!(
        answered > 0 && refused > 0,
        "{answered} answered, {refused} refused"
    );
    assert!(peak < bound, "gateway peak RSS {peak} over {bound}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn streams_beyond_a_connections_cap_are_not_served_until_one_ends() {
    let _one = ONE_AT_A_TIME.lock().await;
    let stack = Stack::with()
        .gateway(GatewayFlags {
            max_connection_streams: Some(4),
            ..Default::default()
        })
        .start()
        .await;
    let c = stack.collection("load_connection_cap").await;
    let base = stack.gateway.rss_bytes();
    let (release, released) = tokio::sync::watch::channel(false);
    // Twelve streams on one connection, each holding itself open after its
    // first image until released.
    let calls = held_streams(&stack.client, &c.name, "cap", 12, &released);
    tokio::time::sleep(Duration::from_secs(3)).await;
    let open = stack.gateway.metric("gateway_insert_streams");
    release.send_replace(true);
    for call in calls {
        let answers = call.await.unwrap();
        assert!(answers.error.is_none(), "{:?}", answers.error);
        assert_eq!(answers.summary().inserted, 1);
    }
    let peak = stack.gateway.peak_rss_bytes();
    println!(
        "open at the gateway: {open}; RSS base {} MiB peak {} MiB",
        base >> 20,
        peak >> 20
    );
    assert_eq!(
        open, 4.0,
        "the gateway served more streams than one connection may open"
    );
    assert_eq!(c.count().await, 12);
    assert!(peak < base + (256 << 20));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn calls_beyond_the_gateways_cap_are_refused_at_once_with_a_retry_hint() {
    let _one = ONE_AT_A_TIME.lock().await;
    let stack = Stack::with()
        .gateway(GatewayFlags {
            max_calls: Some(3),
            ..Default::default()
        })
        .start()
        .await;
    let c = stack.collection("load_call_cap").await;
    let (release, released) = tokio::sync::watch::channel(false);
    let held = held_streams(&stack.client, &c.name, "held", 3, &released);
    tokio::time::sleep(Duration::from_secs(2)).await;
    let t = Instant::now();
    let refused = stack
        .client
        .clone()
        .describe_collection(imgsearch_proto::v1::DescribeCollectionRequest {
            name: c.name.clone(),
        })
        .await
        .expect_err("a fourth call is over the cap");
    assert_eq!(refused.code(), Code::ResourceExhausted, "{refused:?}");
    assert!(
        refused.message().contains("--max-calls"),
        "{}",
        refused.message()
    );
    assert!(refused.metadata().get("grpc-retry-pushback-ms").is_some());
    assert!(t.elapsed() < Duration::from_secs(1), "not refused at once");
    release.send_replace(true);
    for h in held {
        assert_eq!(h.await.unwrap().summary().inserted, 1);
    }
    assert_eq!(c.count().await, 3, "the calls inside the cap were served");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_ingest_refused_as_busy_waits_for_its_turn_and_stores_everything() {
    let _one = ONE_AT_A_TIME.lock().await;
    let (stack, c, held) = busy_gateway(
        GatewayFlags {
            max_insert_streams: Some(1),
            ..Default::default()
        },
        "load_busy_cli",
        1,
    )
    .await;
    let dir = tempfile::tempdir().unwrap();
    write_pngs(dir.path(), "late", 100, 20);
    let child = spawn_ingest(&stack.gateway.uri(), dir.path(), &c.name, &[]);
    let ended = std::thread::spawn(move || wait_ingest(child));
    tokio::time::sleep(Duration::from_secs(3)).await;
    assert_eq!(held.release().await, 1);
    let ended = ended.join().unwrap();
    assert!(ended.status.success(), "{}\n{}", ended.stderr, ended.report);
    assert!(
        ended.stderr.contains("busy"),
        "it said it waited: {}",
        ended.stderr
    );
    assert_eq!(ended.report["inserted"], 20, "{}", ended.report);
    assert_eq!(c.count().await, 1 + 1 + 20);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_ingest_still_refused_after_its_busy_wait_fails_resource_exhausted_having_stored_nothing(
) {
    let _one = ONE_AT_A_TIME.lock().await;
    let (stack, c, held) = busy_gateway(
        GatewayFlags {
            max_insert_streams: Some(1),
            ..Default::default()
        },
        "load_busy_cli_gives_up",
        1,
    )
    .await;
    let dir = tempfile::tempdir().unwrap();
    write_pngs(dir.path(), "late", 100, 5);
    let t = Instant::now();
    let ended = wait_ingest(spawn_ingest(
        &stack.gateway.uri(),
        dir.path(),
        &c.name,
        &["--busy-wait-secs", "2"],
    ));
    let took = t.elapsed();
    held.release().await;
    assert_eq!(ended.status.code(), Some(1), "{}", ended.stderr);
    assert!(
        ended.stderr.contains("ResourceExhausted"),
        "{}",
        ended.stderr
    );
    assert!(
        ended.stderr.contains("--max-insert-streams"),
        "{}",
        ended.stderr
    );
    assert!(
        took < Duration::from_secs(10),
        "waited {took:?} for a 2 s patience"
    );
    assert_eq!(ended.report["inserted"], 0, "{}", ended.report);
    assert_eq!(c.count().await, 1 + 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_cli_search_refused_as_busy_is_sent_again_and_answered() {
    let _one = ONE_AT_A_TIME.lock().await;
    let (stack, c, held) = busy_gateway(
        GatewayFlags {
            max_calls: Some(2),
            ..Default::default()
        },
        "load_busy_search",
        2,
    )
    .await;
    let query = deps::fixture_images()[0].display().to_string();
    let search = spawn_cli(&stack, &["search", "-c", &c.name, "--json", &query]);
    tokio::time::sleep(Duration::from_secs(3)).await;
    held.release().await;
    let (stdout, stderr) = succeeded(search);
    assert!(stderr.contains("busy"), "it said it waited: {stderr}");
    let results: serde_json::Value = serde_json::from_str(&stdout).unwrap();
    assert!(results["results"][0]["error"].is_null(), "{results}");
    assert!(results["results"][0]["hits"].is_array(), "{results}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_cli_delete_refused_as_busy_is_sent_again_and_deletes() {
    let _one = ONE_AT_A_TIME.lock().await;
    let (stack, c, held) = busy_gateway(
        GatewayFlags {
            max_calls: Some(2),
            ..Default::default()
        },
        "load_busy_delete",
        2,
    )
    .await;
    let delete = spawn_cli(&stack, &["delete", "-c", &c.name, "--json", "before/0.png"]);
    tokio::time::sleep(Duration::from_secs(3)).await;
    assert_eq!(held.release().await, 2);
    let (stdout, stderr) = succeeded(delete);
    assert!(stderr.contains("busy"), "it said it waited: {stderr}");
    let answer: serde_json::Value = serde_json::from_str(&stdout).unwrap();
    assert_eq!(answer["deleted"], 1, "{answer}");
    let rows = c.rows().await;
    assert!(rows.iter().all(|(_, f)| f != "before/0.png"), "{rows:?}");
}

/// The CLI run against `stack`'s gateway with `args`, its output captured.
fn spawn_cli(stack: &Stack, args: &[&str]) -> std::process::Child {
    std::process::Command::new(imgsearch_tests::server_process::workspace_binary(
        "imgsearch",
    ))
    .arg("--gateway")
    .arg(stack.gateway.uri())
    .args(args)
    .stdout(std::process::Stdio::piped())
    .stderr(std::process::Stdio::piped())
    .spawn()
    .unwrap()
}

/// The stdout and stderr of `child`, which must exit 0.
fn succeeded(child: std::process::Child) -> (String, String) {
    let out = child.wait_with_output().unwrap();
    let (stdout, stderr) = (
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    );
    assert!(out.status.success(), "{stderr}");
    (stdout, stderr)
}

/// A collection holding one image, `before/0.png`, behind a gateway whose
/// only places are then taken by `held` Insert streams of one image each,
/// open until [`Held::release`].
async fn busy_gateway(
    flags: GatewayFlags,
    collection: &str,
    held: u64,
) -> (Stack, TestCollection, Held) {
    let stack = Stack::with().gateway(flags).start().await;
    let mut collection = stack.collection(collection).await;
    collection.insert(named_pngs("before/", 500, 1)).await;
    let (release, released) = tokio::sync::watch::channel(false);
    let streams = held_streams(&stack.client, &collection.name, "held", held, &released);
    // Until the held streams have their places.
    tokio::time::sleep(Duration::from_secs(2)).await;
    (stack, collection, Held { release, streams })
}

struct Held {
    release: tokio::sync::watch::Sender<bool>,
    streams: Vec<tokio::task::JoinHandle<insert::Answers>>,
}

impl Held {
    /// Ends the held streams; how many images they stored.
    async fn release(self) -> u64 {
        self.release.send_replace(true);
        let mut inserted = 0;
        for s in self.streams {
            inserted += s.await.unwrap().summary().inserted;
        }
        inserted
    }
}

/// `n` Insert streams of one image each, all on `client`'s connection, each
/// held open after its image until `released` turns true.
fn held_streams(
    client: &Client,
    collection: &str,
    prefix: &str,
    n: u64,
    released: &tokio::sync::watch::Receiver<bool>,
) -> Vec<tokio::task::JoinHandle<insert::Answers>> {
    (0..n)
        .map(|s| {
            let (mut client, mut released) = (client.clone(), released.clone());
            let first = insert::requests(
                collection,
                named_pngs(&format!("{prefix}{s}/"), s, 1),
                false,
            );
            tokio::spawn(async move {
                let hold = async_stream_of(first, async move {
                    let _ = released.wait_for(|r| *r).await;
                });
                insert::collect(client.insert(hold).await).await
            })
        })
        .collect()
}

/// `first` as a stream that stays open until `hold` resolves.
fn async_stream_of<T: Send + 'static>(
    first: Vec<T>,
    hold: impl std::future::Future<Output = ()> + Send + 'static,
) -> impl tokio_stream::Stream<Item = T> + Send + 'static {
    use futures::StreamExt;
    let end = futures::stream::once(hold).filter_map(|()| async { None });
    tokio_stream::iter(first).chain(end)
}
