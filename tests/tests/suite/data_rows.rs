//! Rows of the extended schema on the real stack: typed attributes stored
//! and returned, each limit refused per item by name, and your own vectors
//! accepted only under the collection's fingerprint.

use imgsearch_proto::{
    limits,
    v1::{CollectionProfile, DescribeCollectionRequest, ErrorKind, SearchRequest},
};
use imgsearch_tests::{
    data::{
        attrs, extended, flag, insert_items, int, num, text, texts, vector, vector_item, Attributes,
    },
    hostile,
    search::{for_vector, search, Stack},
};
use tonic::Code;

const DIM: usize = 2048;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn attributes_of_every_type_are_stored_as_typed_and_come_back_on_hits() {
    let stack = Stack::shared().await;
    let mut c = extended(&stack, "data_rows_types").await;
    let a = attrs(vec![
        ("sku", text("A-1 \"quoted\"\n")),
        ("count", int(-42)),
        ("big", int(i64::MAX)),
        ("price", num(19.0)),
        ("ratio", num(-1.25e-7)),
        ("active", flag(false)),
        ("tags", texts(&["red", "", "ünï"])),
        ("empty", texts(&[])),
    ]);
    let fingerprint = c.info.fingerprint.clone();
    let v = vector(1, DIM);
    let items = vec![vector_item("typed.jpg", v.clone(), a.clone())];
    let answers = insert_items(&mut c.client, &c.name.clone(), &fingerprint, items).await;
    assert_eq!(answers.summary().inserted, 1, "{:?}", answers.failures());

    let mut req = for_vector(&c.name, &v, 1);
    req.with_attributes = true;
    let hit = search(&mut c.client, req).await.unwrap().results[0].hits[0].clone();
    assert_eq!(hit.filepath, "typed.jpg");
    assert_eq!(
        hit.attributes, a,
        "every type comes back as the type it went in as"
    );

    let stored = stack.milvus.attributes(&c.name).await;
    assert_eq!(
        stored[0].2["price"].to_string(),
        "19.0",
        "a float stays a float in Milvus"
    );
    assert_eq!(stored[0].2["big"], serde_json::json!(i64::MAX));

    let plain = search(&mut c.client, for_vector(&c.name, &v, 1))
        .await
        .unwrap();
    assert!(
        plain.results[0].hits[0].attributes.is_empty(),
        "only when asked"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn each_attribute_limit_fails_its_item_alone_naming_the_limit() {
    let stack = Stack::shared().await;
    let mut c = extended(&stack, "data_rows_limits").await;
    let too_many: Attributes = (0..=limits::MAX_ATTRIBUTES)
        .map(|i| (format!("k{i}"), int(i as i64)))
        .collect();
    let long_key = "k".repeat(limits::ATTRIBUTE_KEY_MAX_BYTES + 1);
    let long_list: Vec<String> = (0..=limits::MAX_ATTRIBUTE_LIST)
        .map(|i| i.to_string())
        .collect();
    let long_list: Vec<&str> = long_list.iter().map(String::as_str).collect();
    let cases: Vec<(&str, Attributes)> = vec![
        ("MAX_ATTRIBUTES", too_many),
        (
            "ATTRIBUTE_KEY_MAX_BYTES",
            attrs(vec![(&long_key, flag(true))]),
        ),
        (
            "ATTRIBUTE_KEY_MAX_BYTES",
            attrs(vec![("bad key", flag(true))]),
        ),
        ("ATTRIBUTE_KEY_MAX_BYTES", attrs(vec![("", flag(true))])),
        (
            "MAX_ATTRIBUTES_BYTES",
            attrs(vec![("t", text(&"x".repeat(limits::MAX_ATTRIBUTES_BYTES)))]),
        ),
        ("MAX_ATTRIBUTE_LIST", attrs(vec![("l", texts(&long_list))])),
        ("finite", attrs(vec![("n", num(f64::INFINITY))])),
    ];
    let mut items = vec![vector_item(
        "good/0",
        vector(0, DIM),
        attrs(vec![("ok", flag(true))]),
    )];
    for (i, (_, a)) in cases.iter().enumerate() {
        items.push(vector_item(
            &format!("bad/{i}"),
            vector(i as u64 + 1, DIM),
            a.clone(),
        ));
    }
    items.push(vector_item("good/1", vector(99, DIM), Attributes::new()));
    let fingerprint = c.info.fingerprint.clone();
    let answers = insert_items(&mut c.client, &c.name.clone(), &fingerprint, items).await;
    answers.assert_every_item_settled_once();
    let failures = answers.failures();
    assert_eq!(failures.len(), cases.len());
    for (f, (limit, _)) in failures.iter().zip(&cases) {
        let e = f.error.as_ref().unwrap();
        assert_eq!(e.kind(), ErrorKind::InvalidArgument);
        assert!(e.message.contains(limit), "{limit}: {}", e.message);
    }
    let rows = c.rows().await;
    let paths: Vec<&str> = rows.iter().map(|r| r.1.as_str()).collect();
    assert_eq!(
        paths,
        ["good/0", "good/1"],
        "the good items around them are stored"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn vectors_are_taken_only_under_the_collections_fingerprint() {
    let stack = Stack::shared().await;
    let mut c = extended(&stack, "data_rows_vectors").await;
    let name = c.name.clone();
    let fingerprint = c.info.fingerprint.clone();
    assert!(!fingerprint.is_empty());

    let wrong = insert_items(
        &mut c.client,
        &name,
        "resnet50-no-fc/sha256:0000/preprocess:1",
        vec![vector_item("w", vector(1, DIM), Attributes::new())],
    )
    .await;
    let e = wrong.error.expect("refused");
    assert_eq!(e.code(), Code::FailedPrecondition, "{e:?}");
    assert!(
        wrong.summary.is_none(),
        "refused at the start: nothing received"
    );

    let mut nan = vector(3, DIM);
    nan[7] = f32::NAN;
    let mut both = vector_item("both", vector(4, DIM), Attributes::new());
    both.image = hostile::png(&hostile::noise(32, 32, 1)).into();
    let items = || {
        vec![
            vector_item("ok", vector(2, DIM), Attributes::new()),
            vector_item("short", vec![0.5; DIM - 1], Attributes::new()),
            vector_item("nan", nan.clone(), Attributes::new()),
            both.clone(),
        ]
    };
    let unstated = insert_items(&mut c.client, &name, "", items()).await;
    unstated.assert_every_item_settled_once();
    assert_eq!(unstated.summary().inserted, 0);
    let e = unstated.failures()[0].error.clone().unwrap();
    assert!(e.message.contains("fingerprint"), "{}", e.message);

    let stated = insert_items(&mut c.client, &name, &fingerprint, items()).await;
    stated.assert_every_item_settled_once();
    assert_eq!(stated.summary().inserted, 1);
    let failed: Vec<u64> = stated.failures().iter().map(|f| f.index).collect();
    assert_eq!(
        failed,
        [1, 2, 3],
        "wrong length, not finite, image and vector"
    );
    assert_eq!(c.count().await, 1, "rows in Milvus");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stored_vector_is_found_like_the_embedded_image_it_came_from() {
    let stack = Stack::shared().await;
    let mut c = extended(&stack, "data_rows_migrated").await;
    let image = hostile::png(&hostile::noise(64, 48, 7));
    let embedded = c.insert(vec![("embedded.png".into(), image.clone())]).await;
    assert_eq!(embedded.summary().inserted, 1);
    let (_, v) = stack.milvus.vectors(&c.name).await.remove(0);

    let name = c.name.clone();
    let fingerprint = c.info.fingerprint.clone();
    let items = vec![vector_item(
        "migrated.png",
        v,
        attrs(vec![("from", text("tutorial"))]),
    )];
    let moved = insert_items(&mut c.client, &name, &fingerprint, items).await;
    assert_eq!(moved.summary().inserted, 1);

    let by_image = SearchRequest {
        collection: name.clone(),
        images: vec![image.into()],
        top_k: 2,
        with_attributes: true,
        ..Default::default()
    };
    let hits = search(&mut c.client, by_image).await.unwrap().results[0]
        .hits
        .clone();
    let mut paths: Vec<&str> = hits.iter().map(|h| h.filepath.as_str()).collect();
    paths.sort();
    assert_eq!(paths, ["embedded.png", "migrated.png"]);
    assert!(hits.iter().all(|h| h.distance < 1e-3), "{hits:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn describe_names_the_profile_and_the_extended_fields() {
    let stack = Stack::shared().await;
    let c = extended(&stack, "data_rows_describe").await;
    let info = stack
        .client
        .clone()
        .describe_collection(DescribeCollectionRequest {
            name: c.name.clone(),
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(info.profile(), CollectionProfile::Extended);
    let fields: Vec<(&str, &str)> = info
        .fields
        .iter()
        .map(|f| (f.name.as_str(), f.data_type.as_str()))
        .collect();
    assert_eq!(
        fields,
        [
            ("id", "Int64"),
            ("filepath", "VarChar"),
            ("attributes", "Json"),
            ("content_sha256", "VarChar"),
            ("tenant", "VarChar"),
            ("image_embedding", "FloatVector"),
        ]
    );
}
