//! Exact duplicates on the real stack: under `skip_same_content` an image
//! whose bytes a stored row holds, under any filepath, is skipped before it
//! is embedded, and its acknowledgement names that row. Rows and their
//! content hashes are read from Milvus directly.

use imgsearch_proto::v1::{InsertRequest, SameContent};
use imgsearch_tests::{
    data::extended,
    insert::{collect, distinct_pngs, Answers},
    search::Stack,
    stack::TestCollection,
};
use sha2::{Digest, Sha256};
use tonic::Code;

/// Sends (filepath, bytes) items on one stream with `skip_same_content`.
async fn insert_skipping_copies(c: &mut TestCollection, items: &[(&str, &[u8])]) -> Answers {
    let reqs: Vec<InsertRequest> = items
        .iter()
        .map(|(filepath, image)| InsertRequest {
            collection: c.name.clone(),
            filepath: filepath.to_string(),
            image: image.to_vec().into(),
            skip_same_content: true,
            ..Default::default()
        })
        .collect();
    collect(c.client.insert(tokio_stream::iter(reqs)).await).await
}

fn same_content(a: &Answers) -> Vec<(u64, i64)> {
    let mut all: Vec<SameContent> = a.acks.iter().flat_map(|x| x.same_content.clone()).collect();
    all.sort_by_key(|s| s.index);
    all.into_iter().map(|s| (s.index, s.id)).collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn renamed_copies_are_skipped_naming_the_row_that_holds_their_bytes() {
    let stack = Stack::shared().await;
    let mut c = extended(&stack, "data_dup_exact").await;
    let pngs = distinct_pngs(300, 3);
    let (a, b, new) = (&pngs[0][..], &pngs[1][..], &pngs[2][..]);
    let first = insert_skipping_copies(
        &mut c,
        &[
            ("a.png", a),
            ("b.png", b),
            ("copies/a.png", a),
            ("b-renamed.png", b),
        ],
    )
    .await;
    first.assert_every_item_settled_once();
    assert_eq!(first.summary().inserted, 2);
    let (id_a, id_b) = (first.id_of(0), first.id_of(1));
    assert_eq!(
        same_content(&first),
        [(2, id_a), (3, id_b)],
        "copies on the same stream wait for their original and name it"
    );

    let second = insert_skipping_copies(&mut c, &[("new.png", new), ("again/a.png", a)]).await;
    second.assert_every_item_settled_once();
    assert_eq!(second.summary().inserted, 1);
    assert_eq!(same_content(&second), [(1, id_a)], "a copy of a stored row");

    let hashes = stack.milvus.strings(&c.name, "content_sha256").await;
    let mut want: Vec<String> = [a, b, new]
        .iter()
        .map(|bytes| format!("{:x}", Sha256::digest(bytes)))
        .collect();
    let mut got: Vec<String> = hashes.into_iter().map(|(_, h)| h).collect();
    // Ids follow commit order, which the embedder's answers decide.
    got.sort();
    want.sort();
    assert_eq!(
        got, want,
        "one row per distinct content, its SHA-256 in Milvus"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn skipping_same_content_needs_an_extended_collection_and_no_filepath_skip() {
    let stack = Stack::shared().await;
    let png = distinct_pngs(400, 1).remove(0);
    let mut tutorial = stack.collection("data_dup_tutorial").await;
    let refused = insert_skipping_copies(&mut tutorial, &[("a.png", &png)]).await;
    let e = refused.error.expect("refused");
    assert_eq!(e.code(), Code::FailedPrecondition, "{e:?}");
    assert!(e.message().contains("--extended"), "{}", e.message());

    let mut c = extended(&stack, "data_dup_both").await;
    let both = InsertRequest {
        collection: c.name.clone(),
        filepath: "a.png".into(),
        image: png.into(),
        skip_same_content: true,
        skip_existing: true,
        ..Default::default()
    };
    let refused = collect(c.client.insert(tokio_stream::iter(vec![both])).await).await;
    assert_eq!(refused.error.unwrap().code(), Code::InvalidArgument);
    assert_eq!(c.count().await, 0);
}
