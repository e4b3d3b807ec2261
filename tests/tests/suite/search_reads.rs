//! Search against the real stack: reads that see the caller's writes
//! without Strong's wait, "more like this", range and paging checked
//! against exact L2, deletes, and the options' limits.

use imgsearch_proto::v1::{
    insert_response::Event, Consistency, DeleteRequest, DescribeCollectionRequest, InsertAck,
    InsertRequest, SearchRequest,
};
use imgsearch_tests::{
    insert::{create, insert, named_pngs},
    search::{by_filepath, by_id, exact_order, first_ids, for_vector, like, search, Client, Stack},
};
use tokio::sync::mpsc;
use tokio_stream::wrappers::ReceiverStream;
use tonic::Code;

/// Opens an Insert stream of `n` images in one batch and returns its first
/// acknowledgement while the stream is still open (nothing flushed yet).
async fn first_ack_of_open_stream(client: &mut Client, collection: &str, n: u64) -> InsertAck {
    let (tx, rx) = mpsc::channel(64);
    for (i, (filepath, image)) in named_pngs("fresh/", 100, n).into_iter().enumerate() {
        tx.send(InsertRequest {
            collection: collection.into(),
            filepath,
            image: image.into(),
            batch_size: if i == 0 { n as u32 } else { 0 },
            ..Default::default()
        })
        .await
        .unwrap();
    }
    let mut answers = client
        .insert(ReceiverStream::new(rx))
        .await
        .expect("insert opens")
        .into_inner();
    let first = answers
        .message()
        .await
        .expect("an answer")
        .expect("not the end");
    // `tx` is still held: the stream is open, so no flush has happened.
    let ack = match first.event {
        Some(Event::Ack(a)) => a,
        other => panic!("expected an acknowledgement, got {other:?}"),
    };
    drop(tx);
    ack
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_search_right_after_an_acknowledged_insert_finds_the_new_rows() {
    let mut s = Stack::start().await;
    let c = "reads_own_writes";
    create(&mut s.client, c).await;
    let ack = first_ack_of_open_stream(&mut s.client, c, 8).await;
    assert_eq!(ack.stored.len(), 8);
    assert!(
        ack.write_token > 0,
        "an acknowledgement carries a write token"
    );
    // The default (session) consistency: the rows this gateway just wrote
    // are visible at once, looked up by id and found by search.
    let newest = ack.stored[7].id;
    let mut req = like(c, by_id(newest), 8);
    req.include_self = true;
    let found = search(&mut s.client, req).await.expect("row found");
    assert!(first_ids(&found).contains(&newest), "{found:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_write_token_makes_another_gateway_see_the_insert_at_once() {
    let mut s = Stack::start().await;
    let c = "reads_token_elsewhere";
    create(&mut s.client, c).await;
    let other = s.another_gateway().await;
    let mut elsewhere = other.client().await;
    let ack = first_ack_of_open_stream(&mut s.client, c, 8).await;
    let newest = ack.stored[7].id;
    let mut req = like(c, by_id(newest), 8);
    req.include_self = true;
    req.write_token = ack.write_token;
    let found = search(&mut elsewhere, req)
        .await
        .expect("the token's row is visible on the other gateway");
    assert!(first_ids(&found).contains(&newest));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn more_like_this_by_id_or_filepath_leaves_the_item_out() {
    let mut s = Stack::start().await;
    let c = "reads_like";
    create(&mut s.client, c).await;
    let answers = insert(&mut s.client, c, named_pngs("like/", 0, 10)).await;
    let (item, item_path) = (answers.id_of(0), "like/0.png");

    let by_id_hits = search(&mut s.client, like(c, by_id(item), 3))
        .await
        .unwrap();
    assert_eq!(first_ids(&by_id_hits).len(), 3);
    assert!(!first_ids(&by_id_hits).contains(&item));
    assert_eq!(by_id_hits.embed_seconds, 0.0, "nothing is embedded");

    let by_path = search(&mut s.client, like(c, by_filepath(item_path), 3))
        .await
        .unwrap();
    assert!(by_path.results[0]
        .hits
        .iter()
        .all(|h| h.filepath != item_path));
    assert_eq!(first_ids(&by_path), first_ids(&by_id_hits));

    let mut with_self = like(c, by_id(item), 3);
    with_self.include_self = true;
    let hits = search(&mut s.client, with_self).await.unwrap().results[0]
        .hits
        .clone();
    assert_eq!(hits[0].id, item);
    assert!(hits[0].distance.abs() < 1e-3);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_unknown_id_or_filepath_is_not_found() {
    let mut s = Stack::start().await;
    let c = "reads_unknown";
    create(&mut s.client, c).await;
    insert(&mut s.client, c, named_pngs("u/", 0, 3)).await;
    for row in [by_id(12345), by_filepath("never/stored.png")] {
        let e = search(&mut s.client, like(c, row, 3)).await.unwrap_err();
        assert_eq!(e.code(), Code::NotFound, "{e:?}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn max_distance_and_offset_agree_with_exact_l2() {
    let mut s = Stack::start().await;
    let c = "reads_range";
    create(&mut s.client, c).await;
    insert(&mut s.client, c, named_pngs("r/", 0, 20)).await;
    let rows = s.milvus.vectors(c).await;
    assert_eq!(rows.len(), 20);
    let q = rows[3].1.clone();
    let exact = exact_order(&q, &rows);
    let ids = |r: &[(f64, i64)]| r.iter().map(|e| e.1).collect::<Vec<_>>();

    let mut page = for_vector(c, &q, 5);
    page.offset = 5;
    let second_page = search(&mut s.client, page.clone()).await.unwrap();
    assert_eq!(first_ids(&second_page), ids(&exact[5..10]));
    for (hit, (d, _)) in second_page.results[0].hits.iter().zip(&exact[5..10]) {
        assert!(
            (f64::from(hit.distance) - d).abs() <= 1e-3 * d.max(1.0),
            "{hit:?} vs {d}"
        );
    }

    // A cut halfway between the 8th and the 9th nearest keeps exactly 8.
    let cut = ((exact[7].0 + exact[8].0) / 2.0) as f32;
    let mut within = for_vector(c, &q, 20);
    within.max_distance = Some(cut);
    let r = search(&mut s.client, within.clone()).await.unwrap();
    assert_eq!(first_ids(&r), ids(&exact[..8]));
    within.offset = 3;
    let r = search(&mut s.client, within).await.unwrap();
    assert_eq!(first_ids(&r), ids(&exact[3..8]));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn deleted_rows_are_gone_from_the_next_search_and_the_count() {
    let mut s = Stack::start().await;
    let c = "reads_delete";
    create(&mut s.client, c).await;
    let answers = insert(&mut s.client, c, named_pngs("d/", 0, 10)).await;
    let gone = [answers.id_of(0), answers.id_of(1), answers.id_of(2)];
    let deleted = s
        .client
        .delete(DeleteRequest {
            collection: c.into(),
            ids: vec![gone[2], 999_999],
            filepaths: vec!["d/0.png".into(), "d/1.png".into(), "never.png".into()],
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(deleted.deleted, 3, "rows that existed, not keys given");
    assert!(deleted.write_token > 0);

    let rows = s.milvus.vectors(c).await;
    assert_eq!(rows.len(), 7);
    let q = &rows[0].1;
    let hits = search(&mut s.client, for_vector(c, q, 10)).await.unwrap();
    let found = first_ids(&hits);
    assert_eq!(found.len(), 7);
    assert!(gone.iter().all(|id| !found.contains(id)), "{found:?}");
    for id in gone {
        let e = search(&mut s.client, like(c, by_id(id), 3))
            .await
            .unwrap_err();
        assert_eq!(e.code(), Code::NotFound);
    }
    let info = s
        .client
        .describe_collection(DescribeCollectionRequest { name: c.into() })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(info.row_count, 7, "the row count subtracts deletes");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn options_outside_milvus_limits_are_invalid_argument() {
    let mut s = Stack::start().await;
    let c = "reads_limits";
    create(&mut s.client, c).await;
    let base = like(c, by_id(1), 3);
    let future_token = (u64::MAX >> 18) << 18;
    let cases: Vec<(&str, SearchRequest)> = vec![
        (
            "NaN distance",
            SearchRequest {
                max_distance: Some(f32::NAN),
                ..base.clone()
            },
        ),
        (
            "negative distance",
            SearchRequest {
                max_distance: Some(-1.0),
                ..base.clone()
            },
        ),
        (
            "window",
            SearchRequest {
                offset: 16_000,
                top_k: 1000,
                ..base.clone()
            },
        ),
        (
            "top_k",
            SearchRequest {
                top_k: 5000,
                ..base.clone()
            },
        ),
        (
            "token with bounded",
            SearchRequest {
                write_token: 1 << 40,
                consistency: Consistency::Bounded as i32,
                ..base.clone()
            },
        ),
        (
            "future token",
            SearchRequest {
                write_token: future_token,
                ..base.clone()
            },
        ),
        (
            "unknown consistency",
            SearchRequest {
                consistency: 99,
                ..base.clone()
            },
        ),
        (
            "two kinds",
            SearchRequest {
                images: vec![vec![1].into()],
                ..base.clone()
            },
        ),
    ];
    for (what, req) in cases {
        let e = search(&mut s.client, req).await.unwrap_err();
        assert_eq!(e.code(), Code::InvalidArgument, "{what}: {e:?}");
    }
}
