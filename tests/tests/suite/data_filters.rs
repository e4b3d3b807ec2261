//! Typed filters on the real stack: a table of filters over an extended
//! collection of known attributes, each answer (Count, Search, Delete)
//! checked against the same filter evaluated here over the rows read back
//! from Milvus; every search option combined with a filter; quoting
//! torture; and the tutorial collection's refusals.

use std::collections::BTreeSet;

use imgsearch_proto::v1::{
    condition::Test as T, search_stream_request, CountRequest, DeleteRequest, Filter,
    SearchRequest, SearchStreamRequest, Vector,
};
use imgsearch_tests::{
    data::{
        all, any_of, attrs, extended, flag, insert_items, int, num, on, on_filepath, passes, text,
        texts, vector, vector_item, Attributes,
    },
    search::{by_filepath, exact_order, search, stream, Stack},
    stack::TestCollection,
};
use tonic::Code;

const ROWS: u64 = 64;
const DIM: usize = 2048;

/// Row `i`'s attributes: every type, some keys missing, one type mixed.
fn attributes_of(i: u64) -> Attributes {
    let cats = ["shoes", "hats", "bags", "x\" or 1==1"];
    let mut a = attrs(vec![
        ("cat", text(cats[(i % 4) as usize])),
        (
            "price",
            if i.is_multiple_of(2) {
                int(i as i64)
            } else {
                num(i as f64 + 0.5)
            },
        ),
        ("new", flag(i.is_multiple_of(3))),
    ]);
    if !i.is_multiple_of(5) {
        let tag = format!("t{}", i % 3);
        a.insert("tags".into(), texts(&[&tag, "all"]));
    }
    if i.is_multiple_of(2) {
        a.insert("owner".into(), text(&format!("o{}", i % 7)));
    }
    if i == 7 {
        a.insert("cat".into(), int(5));
    }
    a
}

fn filepath_of(i: u64) -> String {
    let year = if i < 32 { 2026 } else { 2025 };
    format!("catalog/{year}/{i}.jpg")
}

/// An extended collection of [`ROWS`] vector rows with known attributes.
async fn catalogue(stack: &Stack, name: &str) -> TestCollection {
    let mut c = extended(stack, name).await;
    let items = (0..ROWS)
        .map(|i| vector_item(&filepath_of(i), vector(i, DIM), attributes_of(i)))
        .collect();
    let fingerprint = c.info.fingerprint.clone();
    let answers = insert_items(&mut c.client, name, &fingerprint, items).await;
    answers.assert_every_item_settled_once();
    assert_eq!(answers.summary().inserted, ROWS, "{:?}", answers.failures());
    c
}

/// The ids the test's own reading of `filter` selects among the stored rows.
async fn expected(c: &TestCollection, filter: &Filter) -> BTreeSet<i64> {
    let rows = c.milvus().attributes(&c.name).await;
    rows.into_iter()
        .filter(|(_, path, a)| passes(filter, path, a))
        .map(|(id, _, _)| id)
        .collect()
}

async fn count(c: &mut TestCollection, filter: Option<Filter>) -> Result<u64, tonic::Status> {
    let req = CountRequest {
        collection: c.name.clone(),
        filter,
        ..Default::default()
    };
    Ok(c.client.count(req).await?.into_inner().count)
}

fn filtered_search(collection: &str, q: &[f32], top_k: u32, filter: &Filter) -> SearchRequest {
    SearchRequest {
        collection: collection.into(),
        vectors: vec![Vector { values: q.to_vec() }],
        top_k,
        filter: Some(filter.clone()),
        with_attributes: true,
        ..Default::default()
    }
}

fn table() -> Vec<(&'static str, Filter)> {
    let fp = |i| text(&filepath_of(i));
    vec![
        ("cat = shoes", all(vec![on("cat", T::Eq(text("shoes")))])),
        ("cat != shoes", all(vec![on("cat", T::Ne(text("shoes")))])),
        (
            "cat in hats, bags",
            all(vec![on("cat", any_of(vec![text("hats"), text("bags")]))]),
        ),
        (
            "cat = the injection",
            all(vec![on("cat", T::Eq(text("x\" or 1==1")))]),
        ),
        ("cat = 5 (mixed types)", all(vec![on("cat", T::Eq(int(5)))])),
        ("cat < c", all(vec![on("cat", T::Lt(text("c")))])),
        (
            "cat prefix ha",
            all(vec![on("cat", T::Prefix("ha".into()))]),
        ),
        ("price < 10", all(vec![on("price", T::Lt(int(10)))])),
        ("price >= 30.5", all(vec![on("price", T::Ge(num(30.5)))])),
        (
            "10 < price <= 20",
            all(vec![
                on("price", T::Gt(int(10))),
                on("price", T::Le(int(20))),
            ]),
        ),
        (
            "price in 2, 4, 5.5",
            all(vec![on("price", any_of(vec![int(2), int(4), num(5.5)]))]),
        ),
        ("new = true", all(vec![on("new", T::Eq(flag(true)))])),
        (
            "tags has t1",
            all(vec![on("tags", T::Contains("t1".into()))]),
        ),
        ("tags missing", all(vec![on("tags", T::Exists(false))])),
        (
            "owner exists and price < 20",
            all(vec![
                on("owner", T::Exists(true)),
                on("price", T::Lt(int(20))),
            ]),
        ),
        ("owner != o3", all(vec![on("owner", T::Ne(text("o3")))])),
        (
            "filepath prefix 2026",
            all(vec![on_filepath(T::Prefix("catalog/2026/".into()))]),
        ),
        (
            "filepath prefix 2026/1",
            all(vec![on_filepath(T::Prefix("catalog/2026/1".into()))]),
        ),
        ("filepath = 40", all(vec![on_filepath(T::Eq(fp(40)))])),
        (
            "filepath in 3, 50",
            all(vec![on_filepath(any_of(vec![fp(3), fp(50)]))]),
        ),
        (
            "filepath < 2026",
            all(vec![on_filepath(T::Lt(text("catalog/2026/")))]),
        ),
        (
            "nothing matches",
            all(vec![on("cat", T::Eq(text("boots")))]),
        ),
        ("no conditions", all(vec![])),
    ]
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn count_and_search_select_exactly_what_the_filter_selects_here() {
    let stack = Stack::shared().await;
    let mut c = catalogue(&stack, "data_filter_table").await;
    let q = vector(1000, DIM);
    for (name, filter) in table() {
        let want = expected(&c, &filter).await;
        if !name.starts_with("nothing") && name != "no conditions" {
            assert!(
                !want.is_empty() && want.len() < ROWS as usize,
                "{name}: a filter the table should make selective"
            );
        }
        let counted = count(&mut c, Some(filter.clone()))
            .await
            .unwrap_or_else(|s| panic!("{name}: {s:?}"));
        assert_eq!(counted, want.len() as u64, "Count, {name}");
        let found = search(&mut c.client, filtered_search(&c.name, &q, 1024, &filter))
            .await
            .unwrap_or_else(|s| panic!("{name}: {s:?}"));
        let got: BTreeSet<i64> = found.results[0].hits.iter().map(|h| h.id).collect();
        assert_eq!(got, want, "Search, {name}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn top_k_offset_max_distance_and_like_each_combine_with_a_filter() {
    let stack = Stack::shared().await;
    let mut c = catalogue(&stack, "data_filter_options").await;
    let filter = all(vec![on(
        "cat",
        T::In(imgsearch_proto::v1::AttributeValues {
            values: vec![text("shoes"), text("bags")],
        }),
    )]);
    let selected = expected(&c, &filter).await;
    let vectors = c.milvus().vectors(&c.name).await;
    let rows: Vec<(i64, Vec<f32>)> = vectors
        .into_iter()
        .filter(|(id, _)| selected.contains(id))
        .collect();
    let q = vector(2000, DIM);
    let order: Vec<i64> = exact_order(&q, &rows)
        .into_iter()
        .map(|(_, id)| id)
        .collect();

    let mut req = filtered_search(&c.name, &q, 5, &filter);
    req.offset = 3;
    let hits = search(&mut c.client, req).await.unwrap().results[0]
        .hits
        .clone();
    let ids: Vec<i64> = hits.iter().map(|h| h.id).collect();
    assert_eq!(
        ids,
        order[3..8].to_vec(),
        "top_k 5 after offset 3, filtered"
    );

    let exact = exact_order(&q, &rows);
    let radius = ((exact[9].0 + exact[10].0) / 2.0) as f32;
    let mut req = filtered_search(&c.name, &q, 100, &filter);
    req.max_distance = Some(radius);
    let within = search(&mut c.client, req).await.unwrap().results[0]
        .hits
        .len();
    assert_eq!(within, 10, "the filtered rows within the radius");

    // A like row outside the filter is found; its neighbours must pass.
    let req = SearchRequest {
        vectors: vec![],
        like: vec![by_filepath(&filepath_of(1))],
        ..filtered_search(&c.name, &q, 100, &filter)
    };
    let hits = search(&mut c.client, req).await.unwrap().results[0]
        .hits
        .clone();
    let got: BTreeSet<i64> = hits.iter().map(|h| h.id).collect();
    assert_eq!(got, selected, "a like search, filtered");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_search_stream_applies_its_first_messages_filter_to_every_query() {
    let stack = Stack::shared().await;
    let mut c = catalogue(&stack, "data_filter_stream").await;
    let filter = all(vec![on("new", T::Eq(flag(true)))]);
    let want = expected(&c, &filter).await;
    let reqs = (0..3)
        .map(|i| SearchStreamRequest {
            collection: if i == 0 {
                c.name.clone()
            } else {
                String::new()
            },
            top_k: if i == 0 { 1024 } else { 0 },
            filter: (i == 0).then(|| filter.clone()),
            query: Some(search_stream_request::Query::Vector(Vector {
                values: vector(3000 + i, DIM),
            })),
            ..Default::default()
        })
        .collect();
    let (answers, end) = stream(&mut c.client, reqs).await;
    assert!(end.is_none(), "{end:?}");
    assert_eq!(answers.len(), 3);
    for a in answers {
        let got: BTreeSet<i64> = a.result.unwrap().hits.iter().map(|h| h.id).collect();
        assert_eq!(got, want);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn quotes_backslashes_and_line_breaks_match_exactly_their_literal() {
    let stack = Stack::shared().await;
    let mut c = extended(&stack, "data_filter_quoting").await;
    let nasty = [
        "plain",
        "a\"b",
        "\" or 1==1 or \"",
        "back\\slash",
        "\\\"",
        "line\nbreak",
        "cr\rlf",
        "tab\there",
        "%_*",
        "ünïcødé ✓",
    ];
    let items = nasty
        .iter()
        .enumerate()
        .map(|(i, s)| {
            vector_item(
                &format!("q/{s}"),
                vector(i as u64, DIM),
                attrs(vec![("label", text(s))]),
            )
        })
        .collect();
    let fingerprint = c.info.fingerprint.clone();
    let answers = insert_items(&mut c.client, &c.name.clone(), &fingerprint, items).await;
    assert_eq!(answers.summary().inserted, nasty.len() as u64);
    for s in nasty {
        let by_label = all(vec![on("label", T::Eq(text(s)))]);
        let by_path = all(vec![on_filepath(T::Eq(text(&format!("q/{s}"))))]);
        for f in [by_label, by_path] {
            let ids = expected(&c, &f).await;
            assert_eq!(ids.len(), 1, "the test's reading of {s:?}");
            assert_eq!(count(&mut c, Some(f)).await.unwrap(), 1, "{s:?}");
        }
        let prefix = all(vec![on("label", T::Prefix(s.into()))]);
        let want = expected(&c, &prefix).await;
        assert_eq!(
            count(&mut c, Some(prefix)).await.unwrap(),
            want.len() as u64,
            "prefix {s:?}"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_delete_by_filter_removes_exactly_the_rows_it_selects() {
    let stack = Stack::shared().await;
    let mut c = catalogue(&stack, "data_filter_delete").await;
    let filter = all(vec![on("cat", T::Eq(text("hats")))]);
    let doomed = expected(&c, &filter).await;
    let req = DeleteRequest {
        collection: c.name.clone(),
        filter: Some(filter.clone()),
        ..Default::default()
    };
    let deleted = c.client.delete(req).await.unwrap().into_inner().deleted;
    assert_eq!(deleted, doomed.len() as u64);
    let left: BTreeSet<i64> = c.rows().await.into_iter().map(|(id, _)| id).collect();
    assert_eq!(left.len(), ROWS as usize - doomed.len());
    assert!(left.is_disjoint(&doomed));

    // With filepaths, the filter narrows them.
    let req = DeleteRequest {
        collection: c.name.clone(),
        filepaths: vec![filepath_of(0), filepath_of(2)],
        filter: Some(all(vec![on("price", T::Lt(int(1)))])),
        ..Default::default()
    };
    let deleted = c.client.delete(req).await.unwrap().into_inner().deleted;
    assert_eq!(deleted, 1, "only row 0 has price < 1");
    assert_eq!(c.count().await, ROWS as usize - doomed.len() - 1);

    let empty = DeleteRequest {
        collection: c.name.clone(),
        filter: Some(all(vec![])),
        ..Default::default()
    };
    let refused = c.client.delete(empty).await.unwrap_err();
    assert_eq!(refused.code(), Code::InvalidArgument, "{refused:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_tutorial_collection_refuses_what_needs_the_extended_fields() {
    let stack = Stack::shared().await;
    let mut c = stack.collection("data_filter_tutorial").await;
    assert_eq!(
        c.info.profile(),
        imgsearch_proto::v1::CollectionProfile::Tutorial
    );
    let by_attr = all(vec![on("cat", T::Eq(text("shoes")))]);
    let e = count(&mut c, Some(by_attr.clone())).await.unwrap_err();
    assert_eq!(e.code(), Code::FailedPrecondition, "{e:?}");
    assert!(e.message().contains("--extended"), "{}", e.message());
    let e = search(
        &mut c.client,
        filtered_search(&c.name, &vector(1, DIM), 3, &by_attr),
    )
    .await
    .unwrap_err();
    assert_eq!(e.code(), Code::FailedPrecondition);
    let delete = DeleteRequest {
        collection: c.name.clone(),
        filter: Some(by_attr.clone()),
        ..Default::default()
    };
    assert_eq!(
        c.client.delete(delete).await.unwrap_err().code(),
        Code::FailedPrecondition
    );
    let first = SearchStreamRequest {
        collection: c.name.clone(),
        filter: Some(by_attr),
        query: Some(search_stream_request::Query::Vector(Vector {
            values: vector(1, DIM),
        })),
        ..Default::default()
    };
    let (answers, end) = stream(&mut c.client, vec![first]).await;
    assert!(answers.is_empty());
    assert_eq!(end.expect("an error").code(), Code::FailedPrecondition);

    // Attributes on an item fail that item alone, naming --extended.
    let fingerprint = c.info.fingerprint.clone();
    let items = vec![
        vector_item("t/plain", vector(1, DIM), Attributes::new()),
        vector_item("t/attrs", vector(2, DIM), attrs(vec![("cat", text("x"))])),
    ];
    let answers = insert_items(&mut c.client, &c.name.clone(), &fingerprint, items).await;
    answers.assert_every_item_settled_once();
    let failures = answers.failures();
    assert_eq!(failures.len(), 1);
    assert_eq!(failures[0].index, 1);
    assert!(failures[0]
        .error
        .as_ref()
        .unwrap()
        .message
        .contains("--extended"));

    // Filepath filters need no extended field.
    let by_path = all(vec![on_filepath(T::Prefix("t/".into()))]);
    assert_eq!(count(&mut c, Some(by_path)).await.unwrap(), 1);
    assert_eq!(c.count().await, 1);
}
