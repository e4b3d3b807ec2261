//! Tenants through the real gateway: keys confined to a tenant write rows
//! tagged with it and see, count, like and delete only those; an
//! untenanted admin sees all. Rows and their tenants are read from Milvus
//! directly.

use std::collections::BTreeSet;

use imgsearch_proto::v1::{
    image_search_client::ImageSearchClient, search_stream_request::Query, CountRequest,
    CreateCollectionRequest, DeleteRequest, DescribeCollectionRequest, DropCollectionRequest,
    FindDuplicatesRequest, FindFilepathsRequest, InsertRequest, SearchRequest, SearchStreamRequest,
    Vector,
};
use imgsearch_tests::{
    cli::create_tenant_key,
    data::{all, find_duplicates, on_filepath, vector, vector_item},
    embedder::EmbedderProcess,
    gateway::{GatewayFlags, GatewayProcess},
    insert::{collect, Answers},
    milvus::Milvus,
    search::{by_filepath, by_id},
};
use tonic::{transport::Channel, Code, Request};

type Client = ImageSearchClient<Channel>;
const DIM: usize = 2048;

/// A gateway checking keys: two tenants' write keys, a tenant's admin key,
/// and an untenanted admin.
struct Tenants {
    _embedder: EmbedderProcess,
    gateway: GatewayProcess,
    _dir: tempfile::TempDir,
    acme: String,
    globex: String,
    acme_admin: String,
    admin: String,
}

async fn tenants() -> Tenants {
    let dir = tempfile::tempdir().unwrap();
    let keys = [
        ("acme", "write", Some("acme")),
        ("globex", "write", Some("globex")),
        ("acme-admin", "admin", Some("acme")),
        ("admin", "admin", None),
    ];
    let (keys, lines): (Vec<String>, String) = keys
        .iter()
        .map(|(name, role, tenant)| create_tenant_key(dir.path(), name, role, *tenant))
        .unzip();
    let file = dir.path().join("keys");
    std::fs::write(&file, lines).unwrap();
    let embedder = EmbedderProcess::start(&[]).await;
    let flags = GatewayFlags {
        api_keys_file: Some(file),
        ..Default::default()
    };
    let gateway = GatewayProcess::start(&Milvus::shared().uri(), &[embedder.uri()], &flags).await;
    Tenants {
        _embedder: embedder,
        gateway,
        _dir: dir,
        acme: keys[0].clone(),
        globex: keys[1].clone(),
        acme_admin: keys[2].clone(),
        admin: keys[3].clone(),
    }
}

fn with_key<T>(message: T, key: &str) -> Request<T> {
    let mut request = Request::new(message);
    let value = format!("Bearer {key}").parse().unwrap();
    request.metadata_mut().insert("authorization", value);
    request
}

impl Tenants {
    async fn client(&self) -> Client {
        self.gateway.client().await
    }

    /// An extended collection made by the admin.
    async fn collection(&self, name: &str) -> (Client, String) {
        let mut c = self.client().await;
        let create = CreateCollectionRequest {
            name: name.into(),
            drop_if_exists: Some(true),
            extended: true,
        };
        let info = c.create_collection(with_key(create, &self.admin)).await;
        let fingerprint = info.unwrap().into_inner().collection.unwrap().fingerprint;
        (c, fingerprint)
    }

    /// Stores one vector row per filepath with `key`.
    async fn insert(
        &self,
        key: &str,
        collection: &str,
        fingerprint: &str,
        paths: &[&str],
        seed: u64,
    ) -> Answers {
        let mut items: Vec<InsertRequest> = paths
            .iter()
            .enumerate()
            .map(|(i, p)| vector_item(p, vector(seed + i as u64, DIM), Default::default()))
            .collect();
        items[0].collection = collection.into();
        items[0].fingerprint = fingerprint.into();
        let request = with_key(tokio_stream::iter(items), key);
        collect(self.client().await.insert(request).await).await
    }

    async fn count(&self, key: &str, collection: &str) -> u64 {
        let req = CountRequest {
            collection: collection.into(),
            ..Default::default()
        };
        let mut c = self.client().await;
        c.count(with_key(req, key))
            .await
            .unwrap()
            .into_inner()
            .count
    }

    /// Filepaths of the hits of a search by a vector, top 100.
    async fn found(&self, key: &str, collection: &str) -> BTreeSet<String> {
        let req = SearchRequest {
            collection: collection.into(),
            vectors: vec![Vector {
                values: vector(500, DIM),
            }],
            top_k: 100,
            ..Default::default()
        };
        let mut c = self.client().await;
        let resp = c.search(with_key(req, key)).await.unwrap().into_inner();
        resp.results[0]
            .hits
            .iter()
            .map(|h| h.filepath.clone())
            .collect()
    }
}

/// acme's a/0..2 and shared.jpg, globex's g/0..1 and shared.jpg, and one
/// untenanted row of the admin.
async fn filled(t: &Tenants, name: &str) -> String {
    let (_, fingerprint) = t.collection(name).await;
    let acme = t
        .insert(
            &t.acme,
            name,
            &fingerprint,
            &["a/0", "a/1", "a/2", "shared.jpg"],
            0,
        )
        .await;
    assert_eq!(acme.summary().inserted, 4, "{:?}", acme.error);
    let globex = t
        .insert(
            &t.globex,
            name,
            &fingerprint,
            &["g/0", "g/1", "shared.jpg"],
            10,
        )
        .await;
    assert_eq!(globex.summary().inserted, 3);
    let admin = t.insert(&t.admin, name, &fingerprint, &["x/0"], 20).await;
    assert_eq!(admin.summary().inserted, 1);
    fingerprint
}

fn set(paths: &[&str]) -> BTreeSet<String> {
    paths.iter().map(|p| p.to_string()).collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn each_tenant_writes_tagged_rows_and_reads_counts_and_describes_only_its_own() {
    let t = tenants().await;
    let name = "data_tenants_reads";
    filled(&t, name).await;
    let stored = Milvus::shared().strings(name, "tenant").await;
    let tags: Vec<&str> = stored.iter().map(|(_, tenant)| tenant.as_str()).collect();
    assert_eq!(
        tags,
        ["acme", "acme", "acme", "acme", "globex", "globex", "globex", ""],
        "the tenant column in Milvus, by id"
    );

    assert_eq!(t.count(&t.acme, name).await, 4);
    assert_eq!(t.count(&t.globex, name).await, 3);
    assert_eq!(t.count(&t.admin, name).await, 8);
    assert_eq!(
        t.found(&t.acme, name).await,
        set(&["a/0", "a/1", "a/2", "shared.jpg"])
    );
    assert_eq!(
        t.found(&t.globex, name).await,
        set(&["g/0", "g/1", "shared.jpg"])
    );
    assert_eq!(
        t.found(&t.admin, name).await.len(),
        7,
        "shared.jpg twice, as one path"
    );

    let mut c = t.client().await;
    let describe = DescribeCollectionRequest { name: name.into() };
    let info = c.describe_collection(with_key(describe, &t.globex)).await;
    assert_eq!(info.unwrap().into_inner().row_count, 3);
    let ask = FindFilepathsRequest {
        collection: name.into(),
        filepaths: vec!["a/0".into(), "g/0".into()],
    };
    let found = c.find_filepaths(with_key(ask, &t.globex)).await.unwrap();
    assert_eq!(found.into_inner().found, ["g/0"]);

    let first = SearchStreamRequest {
        collection: name.into(),
        top_k: 100,
        query: Some(Query::Vector(Vector {
            values: vector(7, DIM),
        })),
        ..Default::default()
    };
    let answers = c
        .search_stream(with_key(tokio_stream::iter(vec![first]), &t.globex))
        .await
        .unwrap()
        .into_inner()
        .message()
        .await
        .unwrap()
        .unwrap();
    let hits = answers.result.unwrap().hits;
    assert_eq!(hits.len(), 3, "a SearchStream sees globex's rows alone");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_like_by_another_tenants_row_is_not_found() {
    let t = tenants().await;
    let name = "data_tenants_likes";
    filled(&t, name).await;
    let rows = Milvus::shared().strings(name, "tenant").await;
    let globex_id = rows
        .iter()
        .find(|(_, tenant)| tenant == "globex")
        .unwrap()
        .0;
    let acme_id = rows.iter().find(|(_, tenant)| tenant == "acme").unwrap().0;
    let mut c = t.client().await;
    let like = |row| SearchRequest {
        collection: name.into(),
        like: vec![row],
        top_k: 10,
        ..Default::default()
    };
    for theirs in [by_id(globex_id), by_filepath("g/0")] {
        let e = c.search(with_key(like(theirs), &t.acme)).await.unwrap_err();
        assert_eq!(e.code(), Code::NotFound, "{e:?}");
    }
    let own = c.search(with_key(like(by_id(acme_id)), &t.acme)).await;
    let hits = own.unwrap().into_inner().results[0].hits.clone();
    assert_eq!(hits.len(), 3, "acme's other rows");
    let mine = c
        .search(with_key(like(by_filepath("shared.jpg")), &t.globex))
        .await;
    let paths: BTreeSet<String> = mine.unwrap().into_inner().results[0]
        .hits
        .iter()
        .map(|h| h.filepath.clone())
        .collect();
    assert_eq!(
        paths,
        set(&["g/0", "g/1"]),
        "globex's own shared.jpg, left out"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_tenants_deletes_and_resumes_touch_only_its_own_rows() {
    let t = tenants().await;
    let name = "data_tenants_deletes";
    let fingerprint = filled(&t, name).await;
    let mut c = t.client().await;
    let by_path = DeleteRequest {
        collection: name.into(),
        filepaths: vec!["shared.jpg".into(), "g/0".into()],
        ..Default::default()
    };
    let deleted = c.delete(with_key(by_path, &t.acme)).await.unwrap();
    assert_eq!(
        deleted.into_inner().deleted,
        1,
        "acme's shared.jpg, not globex's g/0"
    );
    let everything = DeleteRequest {
        collection: name.into(),
        filter: Some(all(vec![on_filepath(
            imgsearch_proto::v1::condition::Test::Prefix(String::new()),
        )])),
        ..Default::default()
    };
    let deleted = c.delete(with_key(everything, &t.acme)).await.unwrap();
    assert_eq!(deleted.into_inner().deleted, 3, "acme's a/0..2");
    let left: BTreeSet<String> = Milvus::shared()
        .strings(name, "tenant")
        .await
        .into_iter()
        .map(|(_, tenant)| tenant)
        .collect();
    assert_eq!(left, set(&["globex", ""]), "tenants left in Milvus");
    assert_eq!(Milvus::shared().rows(name).await.len(), 4);

    // acme resumes with shared.jpg: globex's row does not make it skip.
    let mut items = vec![vector_item(
        "shared.jpg",
        vector(99, DIM),
        Default::default(),
    )];
    items[0].collection = name.into();
    items[0].fingerprint = fingerprint;
    items[0].skip_existing = true;
    let resumed = collect(c.insert(with_key(tokio_stream::iter(items), &t.acme)).await).await;
    assert_eq!(resumed.summary().inserted, 1, "{:?}", resumed.skipped());
    assert_eq!(t.count(&t.acme, name).await, 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_tenants_key_makes_and_drops_no_collection_and_needs_an_extended_one() {
    let t = tenants().await;
    let mut c = t.client().await;
    let create = |name: &str, extended| CreateCollectionRequest {
        name: name.into(),
        drop_if_exists: Some(true),
        extended,
    };
    let e = c
        .create_collection(with_key(create("data_tenants_mine", true), &t.acme_admin))
        .await
        .unwrap_err();
    assert_eq!(e.code(), Code::PermissionDenied, "{e:?}");
    c.create_collection(with_key(create("data_tenants_plain", false), &t.admin))
        .await
        .unwrap();
    let drop = DropCollectionRequest {
        name: "data_tenants_plain".into(),
    };
    let e = c
        .drop_collection(with_key(drop, &t.acme_admin))
        .await
        .unwrap_err();
    assert_eq!(e.code(), Code::PermissionDenied);

    let count = CountRequest {
        collection: "data_tenants_plain".into(),
        ..Default::default()
    };
    let e = c.count(with_key(count, &t.acme)).await.unwrap_err();
    assert_eq!(
        e.code(),
        Code::FailedPrecondition,
        "a tutorial collection has no tenants"
    );
    let refused = t
        .insert(&t.acme, "data_tenants_plain", "", &["a.jpg"], 0)
        .await;
    assert_eq!(refused.error.unwrap().code(), Code::FailedPrecondition);
    assert_eq!(t.count(&t.admin, "data_tenants_plain").await, 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_tenants_duplicate_scan_groups_only_its_own_rows() {
    let t = tenants().await;
    let name = "data_tenants_duplicates";
    let (_, fingerprint) = t.collection(name).await;
    // Three rows of one vector: two of acme's, one of globex's.
    for (key, path) in [
        (&t.acme, "a/orig"),
        (&t.acme, "a/copy"),
        (&t.globex, "g/copy"),
    ] {
        let stored = t.insert(key, name, &fingerprint, &[path], 100).await;
        assert_eq!(stored.summary().inserted, 1);
    }
    let request = FindDuplicatesRequest {
        collection: name.into(),
        max_distance: 1.0,
        ..Default::default()
    };
    let c = t.client().await;
    let scan = |key: &str| {
        let (mut c, request) = (c.clone(), with_key(request.clone(), key));
        async move { find_duplicates(&mut c, request, || {}).await }
    };
    let acme = scan(&t.acme).await.unwrap();
    assert_eq!(
        acme.filepath_sets(),
        [["a/copy", "a/orig"]],
        "acme's pair alone"
    );
    let globex = scan(&t.globex).await.unwrap();
    assert!(globex.groups.is_empty(), "globex's one row has no fellow");
    assert_eq!(globex.last.rows_scanned, 1);
    let admin = scan(&t.admin).await.unwrap();
    assert_eq!(admin.filepath_sets(), [["a/copy", "a/orig", "g/copy"]]);
}
