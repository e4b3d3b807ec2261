//! The tutorial end to end over gRPC: real Milvus, real embedder, real
//! gateway. What the gateway did is checked in Milvus directly, through
//! milvus-sdk-rust, not through the gateway.

use std::{collections::HashMap, path::PathBuf};

use imgsearch_proto::v1::{
    CreateCollectionRequest, DescribeCollectionRequest, DropCollectionRequest, ErrorKind,
    ListCollectionsRequest, SearchRequest, Vector,
};
use imgsearch_tests::{
    deps, embedder::EmbedderProcess, gateway::GatewayProcess, insert::insert, milvus::Milvus, pyref,
};
use milvus::v2::prelude as mv;
use tonic::Code;

fn files_as_items(files: &[PathBuf]) -> Vec<(String, Vec<u8>)> {
    files
        .iter()
        .map(|f| (f.display().to_string(), std::fs::read(f).unwrap()))
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_tutorial_end_to_end() {
    let milvus = Milvus::shared();
    let embedder = EmbedderProcess::start(&[]).await;
    // A small batch size so the stream spans several Milvus inserts.
    let gateway =
        GatewayProcess::start(&milvus.uri(), &[embedder.uri()], &["--batch-size", "8"]).await;
    let mut client = gateway.client().await;
    let name = "tutorial_e2e";

    let created = client
        .create_collection(CreateCollectionRequest {
            name: name.into(),
            drop_if_exists: Some(true),
        })
        .await
        .expect("create")
        .into_inner()
        .collection
        .unwrap();
    assert_eq!(created.load_state, "Loaded");
    // Drop-if-exists: creating again over it works.
    client
        .create_collection(CreateCollectionRequest {
            name: name.into(),
            drop_if_exists: None,
        })
        .await
        .expect("recreate");
    let exists = client
        .create_collection(CreateCollectionRequest {
            name: name.into(),
            drop_if_exists: Some(false),
        })
        .await;
    assert_eq!(exists.unwrap_err().code(), Code::AlreadyExists);

    let fixtures = deps::fixture_images();
    let (held_back, stored) = fixtures.split_last().unwrap();
    let mut items = files_as_items(stored);
    items.insert(5, ("not-an-image.txt".into(), b"plain text".to_vec()));
    let answers = insert(&mut client, name, items).await;
    assert!(answers.error.is_none(), "{:?}", answers.error);
    answers.assert_every_item_settled_once();
    let summary = answers.summary();
    assert_eq!(summary.received, stored.len() as u64 + 1);
    assert_eq!(summary.inserted, stored.len() as u64);
    assert!(summary.flushed);
    // Batches of 8: the stored rows came in more than one acknowledgement.
    assert!(answers.acks.iter().filter(|a| !a.stored.is_empty()).count() > 1);
    let failures = answers.failures();
    assert_eq!(failures.len(), 1);
    assert_eq!(failures[0].index, 5);
    assert_eq!(
        failures[0].error.as_ref().unwrap().kind(),
        ErrorKind::InvalidImage
    );
    assert_eq!(
        milvus
            .rows(name)
            .await
            .iter()
            .map(|r| r.0)
            .collect::<Vec<_>>(),
        answers.ids(),
        "Milvus holds exactly the acknowledged rows"
    );

    // Milvus itself: schema, index, load state, rows; exactly the tutorial's.
    let sdk = mv::ClientV2::new(&mv::ConnectConfig::new().uri(milvus.uri()))
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
    assert_eq!(stats.statistics()["row_count"], stored.len().to_string());
    let described = client
        .describe_collection(DescribeCollectionRequest { name: name.into() })
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
    assert_eq!(described.row_count, stored.len() as u64);

    // Every stored image finds itself first.
    for chunk in stored.chunks(16) {
        let images = chunk.iter().map(|f| std::fs::read(f).unwrap()).collect();
        let resp = client
            .search(SearchRequest {
                collection: name.into(),
                images,
                vectors: vec![],
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
    // The held-back image: top_k hits, nearest first, all real files.
    let resp = client
        .search(SearchRequest {
            collection: name.into(),
            images: vec![std::fs::read(held_back).unwrap()],
            vectors: vec![],
            top_k: 0,
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner();
    let hits = &resp.results[0].hits;
    assert_eq!(hits.len(), 3, "top_k 0 means the tutorial's 3");
    assert!(hits.windows(2).all(|w| w[0].distance <= w[1].distance));
    assert!(hits
        .iter()
        .all(|h| std::path::Path::new(&h.filepath).is_file()));

    // Parity in Milvus: the stored vectors are the tutorial's.
    let ids: Vec<i64> = answers.ids();
    let rows = sdk
        .query(
            mv::QueryRequest::builder()
                .collection_name(name)
                .filter(format!("id in {ids:?}"))
                .output_fields(["filepath", "image_embedding"])
                .consistency_level(mv::ConsistencyLevel::Strong)
                .build()
                .unwrap(),
        )
        .await
        .unwrap();
    let mut paths = Vec::new();
    let mut vectors = Vec::new();
    for f in rows.results().get_output_fields() {
        match f {
            mv::FieldData::VarChar { name, values } if name == "filepath" => paths = values.clone(),
            mv::FieldData::FloatVector { name, values, .. } if name == "image_embedding" => {
                vectors = values.clone()
            }
            _ => {}
        }
    }
    assert_eq!(paths.len(), stored.len());
    let stored_vectors: HashMap<String, Vec<f32>> = paths.into_iter().zip(vectors).collect();
    let (_, reference) = pyref::pipeline(&deps::seeded_weights(), stored);
    let mut min = f64::MAX;
    for (i, f) in stored.iter().enumerate() {
        let theirs = Vec::<f32>::try_from(reference.get(i as i64)).unwrap();
        let c = pyref::cosine(&stored_vectors[&f.display().to_string()], &theirs);
        min = min.min(c);
    }
    println!("vectors stored in Milvus vs PyTorch: min cosine {min:.8}");
    assert!(min >= 0.9999);

    let names = client
        .list_collections(ListCollectionsRequest {})
        .await
        .unwrap()
        .into_inner()
        .names;
    assert!(names.contains(&name.to_string()));
    client
        .drop_collection(DropCollectionRequest { name: name.into() })
        .await
        .unwrap();
    let gone = client
        .describe_collection(DescribeCollectionRequest { name: name.into() })
        .await
        .unwrap_err();
    assert_eq!(gone.code(), Code::NotFound);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_requests_get_clear_errors() {
    let milvus = Milvus::shared();
    let embedder = EmbedderProcess::start(&[]).await;
    let gateway = GatewayProcess::start(&milvus.uri(), &[embedder.uri()], &[]).await;
    let mut client = gateway.client().await;
    let name = "bad_requests";
    client
        .create_collection(CreateCollectionRequest {
            name: name.into(),
            drop_if_exists: Some(true),
        })
        .await
        .unwrap();
    let image = std::fs::read(&deps::fixture_images()[0]).unwrap();

    let search =
        |collection: &str, images: Vec<Vec<u8>>, vectors: Vec<Vector>, top_k: u32| SearchRequest {
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
                .search(search("no_such_collection", vec![image.clone()], vec![], 3))
                .await
        ),
        Code::NotFound
    );
    assert_eq!(
        code(
            client
                .search(search(name, vec![image.clone()], vec![], 100_000))
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
                .search(search("bad name!", vec![image.clone()], vec![], 3))
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
    let milvus = Milvus::shared();
    let embedder = EmbedderProcess::start(&[]).await;
    let gateway = GatewayProcess::start(&milvus.uri(), &[embedder.uri()], &[]).await;
    let mut client = gateway.client().await;
    let name = "traced";
    client
        .create_collection(CreateCollectionRequest {
            name: name.into(),
            drop_if_exists: Some(true),
        })
        .await
        .unwrap();

    let trace_id = "4bf92f3577b34da6a3ce929d0e0e4736";
    let image = std::fs::read(&deps::fixture_images()[6]).unwrap();
    let mut request = tonic::Request::new(SearchRequest {
        collection: name.into(),
        images: vec![image],
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
