//! The tutorial end to end over gRPC: real Milvus, real embedder, real
//! gateway. What the gateway did is checked in Milvus directly, through
//! milvus-sdk-rust, not through the gateway.
//!
//! The tutorial's collection is created and filled once, by the first test
//! that needs it ([`tutorial`]); each test then checks one thing about it.

use std::{collections::HashMap, path::PathBuf};

use imgsearch_proto::v1::{
    CreateCollectionRequest, DescribeCollectionRequest, DropCollectionRequest, ErrorKind,
    ListCollectionsRequest, SearchRequest, Vector,
};
use imgsearch_tests::{
    deps,
    insert::{insert, Answers},
    pyref,
    stack::{Client, Stack, TestCollection},
};
use milvus::v2::prelude as mv;
use tokio::sync::OnceCell;
use tonic::Code;

/// The tutorial's collection after its ingest: every fixture but the last,
/// with a text file among them.
struct Tutorial {
    stack: Stack,
    collection: TestCollection,
    stored: Vec<PathBuf>,
    held_back: PathBuf,
    answers: Answers,
}

/// Where the text file goes among the images.
const NOT_AN_IMAGE_AT: u64 = 5;

async fn tutorial() -> &'static Tutorial {
    static TUTORIAL: OnceCell<Tutorial> = OnceCell::const_new();
    TUTORIAL
        .get_or_init(|| async {
            // A small batch size so the stream spans several Milvus inserts.
            let stack = Stack::with().batch_size(8).start().await;
            let mut collection = stack.collection("tutorial_e2e").await;
            let (held_back, stored) = deps::fixture_images()
                .split_last()
                .map(|(h, s)| (h.clone(), s.to_vec()))
                .unwrap();
            let mut items = imgsearch_tests::stack::files_as_items(&stored);
            items.insert(
                NOT_AN_IMAGE_AT as usize,
                ("not-an-image.txt".into(), b"plain text".to_vec()),
            );
            let answers = collection.insert(items).await;
            Tutorial {
                stack,
                collection,
                stored,
                held_back,
                answers,
            }
        })
        .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ingest_stores_every_image_acknowledged_and_fails_the_text_file_alone() {
    let t = tutorial().await;
    let answers = &t.answers;
    assert!(answers.error.is_none(), "{:?}", answers.error);
    answers.assert_every_item_settled_once();
    let summary = answers.summary();
    assert_eq!(summary.received, t.stored.len() as u64 + 1);
    assert_eq!(summary.inserted, t.stored.len() as u64);
    assert!(summary.flushed);
    // Batches of 8: the stored rows came in more than one acknowledgement.
    assert!(answers.acks.iter().filter(|a| !a.stored.is_empty()).count() > 1);
    let failures = answers.failures();
    assert_eq!(failures.len(), 1);
    assert_eq!(failures[0].index, NOT_AN_IMAGE_AT);
    assert_eq!(
        failures[0].error.as_ref().unwrap().kind(),
        ErrorKind::InvalidImage
    );
    let ids: Vec<i64> = t.collection.rows().await.iter().map(|r| r.0).collect();
    assert_eq!(
        ids,
        answers.ids(),
        "Milvus holds exactly the acknowledged rows"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_inserted_image_finds_itself_first() {
    let stack = Stack::shared().await;
    let mut c = stack.collection("finds_itself").await;
    let files = &deps::fixture_images()[..3];
    c.insert_files(files).await.assert_every_item_settled_once();
    assert_eq!(c.count().await, 3);
    let hits = c.search_file(&files[1], 3).await;
    assert_eq!(hits[0].filepath, files[1].display().to_string());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn create_drops_an_existing_collection_unless_told_not_to() {
    let stack = Stack::shared().await;
    let name = "tutorial_recreate";
    let created = stack.collection(name).await;
    assert_eq!(created.info.load_state, "Loaded");
    let mut client = stack.client.clone();
    let create = |drop_if_exists| CreateCollectionRequest {
        name: name.into(),
        drop_if_exists,
        ..Default::default()
    };
    // Unset means drop-if-exists, as in the tutorial.
    client
        .create_collection(create(None))
        .await
        .expect("recreate");
    let exists = client.create_collection(create(Some(false))).await;
    assert_eq!(exists.unwrap_err().code(), Code::AlreadyExists);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_collection_in_milvus_has_the_tutorials_schema_index_and_load_state() {
    let t = tutorial().await;
    let name = t.collection.name.as_str();
    let sdk = mv::ClientV2::new(&mv::ConnectConfig::new().uri(t.stack.milvus.uri()))
        .await
        .unwrap();
    let desc = sdk
        .describe_collection(
            mv::DescribeCollectionRequest::builder()
                .collection_name(name)
                .build()
                .unwrap(),
        )
        .await
        .unwrap();
    let fields: Vec<_> = desc
        .description()
        .get_schema()
        .get_fields()
        .iter()
        .map(|f| {
            (
                f.get_name().to_string(),
                f.get_data_type(),
                f.is_primary_key(),
                f.is_auto_id(),
                f.get_dimension(),
                // The SDK reports a default max_length on every field; only VARCHAR's means anything.
                if f.get_data_type() == mv::DataType::VarChar {
                    f.get_max_length()
                } else {
                    0
                },
            )
        })
        .collect();
    assert_eq!(
        fields,
        vec![
            ("id".into(), mv::DataType::Int64, true, true, 0, 0),
            (
                "filepath".into(),
                mv::DataType::VarChar,
                false,
                false,
                0,
                200
            ),
            (
                "image_embedding".into(),
                mv::DataType::FloatVector,
                false,
                false,
                2048,
                0
            ),
        ]
    );
    let index = sdk
        .describe_index(
            mv::DescribeIndexRequest::builder()
                .collection_name(name)
                .field_name("image_embedding")
                .build()
                .unwrap(),
        )
        .await
        .unwrap();
    let index = &index.indexes()[0];
    assert_eq!(index.get_index_type(), mv::IndexType::AutoIndex);
    assert_eq!(index.get_metric_type(), mv::MetricType::L2);
    let load = sdk
        .get_load_state(
            mv::GetLoadStateRequest::builder()
                .collection_name(name)
                .build()
                .unwrap(),
        )
        .await
        .unwrap();
    assert_eq!(load.state(), mv::LoadState::Loaded);
    let stats = sdk
        .get_collection_stats(
            mv::GetCollectionStatsRequest::builder()
                .collection_name(name)
                .build()
                .unwrap(),
        )
        .await
        .unwrap();
    assert_eq!(stats.statistics()["row_count"], t.stored.len().to_string());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn describe_reports_the_index_metric_and_row_count() {
    let t = tutorial().await;
    let described = t
        .stack
        .gateway
        .client()
        .await
        .describe_collection(DescribeCollectionRequest {
            name: t.collection.name.clone(),
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(
        (
            described.index_type.as_str(),
            described.metric_type.as_str()
        ),
        ("AUTOINDEX", "L2")
    );
    assert_eq!(described.row_count, t.stored.len() as u64);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_stored_image_finds_itself_first() {
    let t = tutorial().await;
    let mut client = t.stack.gateway.client().await;
    for chunk in t.stored.chunks(16) {
        let images = chunk
            .iter()
            .map(|f| std::fs::read(f).unwrap().into())
            .collect();
        let resp = client
            .search(SearchRequest {
                collection: t.collection.name.clone(),
                images,
                top_k: 3,
                ..Default::default()
            })
            .await
            .expect("search")
            .into_inner();
        for (f, r) in chunk.iter().zip(&resp.results) {
            assert_eq!(r.hits.len(), 3);
            assert_eq!(r.hits[0].filepath, f.display().to_string());
            assert!(
                r.hits[0].distance < 1e-3,
                "self distance {}",
                r.hits[0].distance
            );
        }
        assert!(resp.search_seconds > 0.0 && resp.embed_seconds > 0.0);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_new_image_gets_the_tutorials_three_nearest_stored_files() {
    let t = tutorial().await;
    let mut collection = TestCollection::clone(&t.collection);
    // top_k 0 means the tutorial's 3.
    let hits = collection.search_file(&t.held_back, 0).await;
    assert_eq!(hits.len(), 3);
    assert!(hits.windows(2).all(|w| w[0].distance <= w[1].distance));
    assert!(hits
        .iter()
        .all(|h| std::path::Path::new(&h.filepath).is_file()));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn vectors_stored_in_milvus_are_pytorchs() {
    let t = tutorial().await;
    let rows = t.collection.rows().await;
    let vectors: HashMap<i64, Vec<f32>> = t
        .stack
        .milvus
        .vectors(&t.collection.name)
        .await
        .into_iter()
        .collect();
    let stored: HashMap<String, &Vec<f32>> = rows
        .iter()
        .map(|(id, path)| (path.clone(), &vectors[id]))
        .collect();
    assert_eq!(stored.len(), t.stored.len());
    let reference = pyref::pipeline(&deps::seeded_weights(), &t.stored).vectors;
    let mut min = f64::MAX;
    for (f, theirs) in t.stored.iter().zip(&reference) {
        min = min.min(pyref::cosine(stored[&f.display().to_string()], theirs));
    }
    println!("vectors stored in Milvus vs PyTorch: min cosine {min:.8}");
    assert!(min >= 0.9999);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_dropped_collection_leaves_the_list_and_is_not_found() {
    let stack = Stack::shared().await;
    let name = "tutorial_dropped";
    stack.collection(name).await;
    let mut client = stack.client.clone();
    let listed = |mut client: Client| async move {
        let listed = client.list_collections(ListCollectionsRequest {}).await;
        listed
            .unwrap()
            .into_inner()
            .names
            .contains(&name.to_string())
    };
    assert!(listed(client.clone()).await);
    client
        .drop_collection(DropCollectionRequest { name: name.into() })
        .await
        .unwrap();
    assert!(!listed(client.clone()).await);
    let gone = client
        .describe_collection(DescribeCollectionRequest { name: name.into() })
        .await
        .unwrap_err();
    assert_eq!(gone.code(), Code::NotFound);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_requests_get_clear_errors() {
    let stack = Stack::shared().await;
    let name = "bad_requests";
    stack.collection(name).await;
    let mut client = stack.client.clone();
    let image = std::fs::read(&deps::fixture_images()[0]).unwrap();

    let search = |collection: &str,
                  images: Vec<imgsearch_proto::Bytes>,
                  vectors: Vec<Vector>,
                  top_k: u32| SearchRequest {
        collection: collection.into(),
        images,
        vectors,
        top_k,
        ..Default::default()
    };
    let code = |r: Result<tonic::Response<_>, tonic::Status>| {
        r.map(|_: tonic::Response<imgsearch_proto::v1::SearchResponse>| ())
            .unwrap_err()
            .code()
    };
    assert_eq!(
        code(
            client
                .search(search(
                    "no_such_collection",
                    vec![image.clone().into()],
                    vec![],
                    3
                ))
                .await
        ),
        Code::NotFound
    );
    assert_eq!(
        code(
            client
                .search(search(name, vec![image.clone().into()], vec![], 100_000))
                .await
        ),
        Code::InvalidArgument
    );
    assert_eq!(
        code(
            client
                .search(search(
                    name,
                    vec![],
                    vec![Vector {
                        values: vec![0.5; 7]
                    }],
                    3
                ))
                .await
        ),
        Code::InvalidArgument
    );
    assert_eq!(
        code(client.search(search(name, vec![], vec![], 3)).await),
        Code::InvalidArgument
    );
    assert_eq!(
        code(
            client
                .search(search("bad name!", vec![image.clone().into()], vec![], 3))
                .await
        ),
        Code::InvalidArgument
    );
    let describe = client
        .describe_collection(DescribeCollectionRequest {
            name: "no_such_collection".into(),
        })
        .await;
    assert_eq!(describe.unwrap_err().code(), Code::NotFound);
    let dropped = client
        .drop_collection(DropCollectionRequest {
            name: "no_such_collection".into(),
        })
        .await;
    assert_eq!(dropped.unwrap_err().code(), Code::NotFound);

    let empty = insert(&mut client, name, vec![]).await;
    assert_eq!(empty.error.unwrap().code(), Code::InvalidArgument);
    assert!(
        empty.summary.is_none(),
        "a refused stream ends with the error alone"
    );
    let unknown = insert(
        &mut client,
        "no_such_collection",
        vec![("a.jpg".into(), image.clone())],
    )
    .await;
    assert_eq!(unknown.error.unwrap().code(), Code::NotFound);

    let long = "x".repeat(300);
    let answers = insert(
        &mut client,
        name,
        vec![("ok.jpg".into(), image.clone()), (long, image.clone())],
    )
    .await;
    assert_eq!(answers.summary().inserted, 1);
    let failures = answers.failures();
    assert_eq!(failures.len(), 1);
    assert_eq!(failures[0].index, 1);
    assert_eq!(
        failures[0].error.as_ref().unwrap().kind(),
        ErrorKind::InvalidArgument
    );
    assert!(
        failures[0].filepath.ends_with("..."),
        "a long filepath is echoed cut"
    );

    // A raw vector of the right dimension searches fine.
    let v = Vector {
        values: vec![0.1; 2048],
    };
    let r = client
        .search(search(name, vec![], vec![v], 1))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(r.results[0].hits[0].filepath, "ok.jpg");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn trace_id_reaches_the_embedder_and_calls_are_counted() {
    // Its own stack: it counts calls and reads logs.
    let stack = Stack::start().await;
    let name = "traced";
    stack.collection(name).await;
    let (embedder, gateway, mut client) = (&stack.embedder, &stack.gateway, stack.client.clone());

    let trace_id = "4bf92f3577b34da6a3ce929d0e0e4736";
    let image = std::fs::read(&deps::fixture_images()[6]).unwrap();
    let mut request = tonic::Request::new(SearchRequest {
        collection: name.into(),
        images: vec![image.into()],
        vectors: vec![],
        top_k: 3,
        ..Default::default()
    });
    request.metadata_mut().insert(
        "traceparent",
        format!("00-{trace_id}-00f067aa0ba902b7-01")
            .parse()
            .unwrap(),
    );
    let resp = client.search(request).await.unwrap().into_inner();
    assert!(resp.results[0].hits.is_empty(), "empty collection, no hits");
    let _ = client
        .describe_collection(DescribeCollectionRequest {
            name: "missing".into(),
        })
        .await;

    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    while !embedder.log().contains(trace_id) {
        assert!(
            std::time::Instant::now() < deadline,
            "trace id not in the embedder's log:\n{}",
            embedder.log()
        );
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
    assert!(
        gateway.log().contains(trace_id),
        "trace id not in the gateway's log"
    );
    assert_eq!(
        gateway.metric(r#"gateway_requests_total{code="Ok",method="Search"}"#),
        1.0
    );
    assert_eq!(
        gateway.metric(r#"gateway_requests_total{code="NotFound",method="DescribeCollection"}"#),
        1.0
    );
    assert_eq!(gateway.metric("gateway_milvus_up"), 1.0);
    assert_eq!(gateway.metric("gateway_search_seconds_count"), 1.0);
    assert_eq!(
        embedder.metric(r#"embedder_requests_total{code="Ok",method="EmbedBatch"}"#),
        1.0
    );
}
