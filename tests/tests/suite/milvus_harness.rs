//! The harness starts a real Milvus, and the tutorial's collection definition
//! round-trips through it: created with milvus-sdk-rust, read back with
//! DescribeCollection.

use imgsearch_gateway::schema;
use imgsearch_tests::milvus::Milvus;
use milvus::v2::prelude::*;

#[tokio::test]
async fn creates_the_tutorial_collection_and_describes_it() {
    let milvus = Milvus::shared();
    let client = ClientV2::new(&ConnectConfig::new().uri(milvus.uri()))
        .await
        .expect("connect");
    let name = "harness_describe";
    client
        .create_collection(
            schema::create_request(name, 2048, "test", schema::Profile::Tutorial).expect("request"),
        )
        .await
        .expect("create collection");

    let described = client
        .describe_collection(
            DescribeCollectionRequest::builder()
                .collection_name(name)
                .build()
                .unwrap(),
        )
        .await
        .expect("describe collection");
    let desc = described.description();
    assert_eq!(desc.get_collection_name(), name);
    let fields: Vec<_> = desc
        .get_schema()
        .get_fields()
        .iter()
        .map(|f| {
            (
                f.get_name().to_string(),
                f.get_data_type(),
                f.is_primary_key(),
                f.is_auto_id(),
            )
        })
        .collect();
    assert_eq!(
        fields,
        vec![
            ("id".to_string(), DataType::Int64, true, true),
            ("filepath".to_string(), DataType::VarChar, false, false),
            (
                "image_embedding".to_string(),
                DataType::FloatVector,
                false,
                false
            ),
        ]
    );
    let by_name = |n: &str| {
        desc.get_schema()
            .get_fields()
            .iter()
            .find(|f| f.get_name() == n)
            .unwrap()
    };
    assert_eq!(by_name("filepath").get_max_length(), 200);
    assert_eq!(by_name("image_embedding").get_dimension(), 2048);
}

#[test]
fn two_instances_run_side_by_side() {
    // The shared one and an owned one at once: no port or etcd collision.
    let shared = Milvus::shared();
    let mut own = Milvus::start().expect("second milvus");
    assert_ne!(shared.uri(), own.uri());
    own.stop();
    own.resume().expect("restart on the same ports and data");
}
