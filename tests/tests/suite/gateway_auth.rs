//! API keys and roles through the real gateway: every RPC against every
//! kind of caller, keys re-read from their file, destructive calls logged
//! by key name, and the refusal to serve beyond loopback without keys.

use std::{
    path::PathBuf,
    process::Command,
    time::{Duration, Instant},
};

use imgsearch_proto::v1::{
    image_search_client::ImageSearchClient, search_stream_request::Query, CountRequest,
    CreateCollectionRequest, DeleteRequest, DescribeCollectionRequest, DropCollectionRequest,
    FindDuplicatesRequest, FindFilepathsRequest, InsertRequest, ListCollectionsRequest,
    SearchRequest, SearchStreamRequest, Vector,
};
use imgsearch_tests::{
    cli::{create_key, keys_file},
    deps,
    embedder::EmbedderProcess,
    gateway::{GatewayFlags, GatewayProcess},
    milvus::Milvus,
    ports::free_ports,
    server_process::{workspace_binary, ServerProcess},
};
use tonic::{transport::Channel, Code, Request, Streaming};

type Client = ImageSearchClient<Channel>;

/// A gateway checking keys, with one key per role in `keys`.
pub(crate) struct Guarded {
    pub(crate) gateway: GatewayProcess,
    _embedder: EmbedderProcess,
    dir: tempfile::TempDir,
    keys_file: PathBuf,
    /// read, write and admin keys.
    pub(crate) keys: [String; 3],
}

pub(crate) async fn guarded_gateway() -> Guarded {
    let dir = tempfile::tempdir().unwrap();
    let roles = [
        ("read-key", "read"),
        ("write-key", "write"),
        ("admin-key", "admin"),
    ];
    let (keys_file, keys) = keys_file(dir.path(), &roles);
    let embedder = EmbedderProcess::start(&[]).await;
    let gateway = GatewayProcess::start(
        &Milvus::shared().uri(),
        &[embedder.uri()],
        &GatewayFlags {
            api_keys_file: Some(keys_file.clone()),
            ..Default::default()
        },
    )
    .await;
    Guarded {
        gateway,
        _embedder: embedder,
        dir,
        keys_file,
        keys: keys.try_into().unwrap(),
    }
}

fn with_key<T>(message: T, key: Option<&str>) -> Request<T> {
    let mut request = Request::new(message);
    if let Some(key) = key {
        let value = format!("Bearer {key}").parse().unwrap();
        request.metadata_mut().insert("authorization", value);
    }
    request
}

/// How a streaming call ended: its first error, or OK once it closed.
async fn drained<T>(call: Result<tonic::Response<Streaming<T>>, tonic::Status>) -> Code {
    let mut answers = match call {
        Err(s) => return s.code(),
        Ok(r) => r.into_inner(),
    };
    loop {
        match answers.message().await {
            Ok(Some(_)) => continue,
            Ok(None) => return Code::Ok,
            Err(s) => return s.code(),
        }
    }
}

fn code<T>(result: Result<T, tonic::Status>) -> Code {
    result.map_or_else(|s| s.code(), |_| Code::Ok)
}

const COLLECTION: &str = "auth_main";

/// Calls `rpc` as the holder of `key`, with a request that succeeds when
/// the key may make it.
async fn call(client: &mut Client, rpc: &str, key: Option<&str>) -> Code {
    let collection = COLLECTION.to_string();
    let vector = || Vector {
        values: vec![0.0; 2048],
    };
    match rpc {
        "CreateCollection" => code(
            client
                .create_collection(with_key(
                    CreateCollectionRequest {
                        name: "auth_made".into(),
                        drop_if_exists: Some(true),
                        ..Default::default()
                    },
                    key,
                ))
                .await,
        ),
        "DropCollection" => code(
            client
                .drop_collection(with_key(
                    DropCollectionRequest {
                        name: "auth_made".into(),
                    },
                    key,
                ))
                .await,
        ),
        "DescribeCollection" => code(
            client
                .describe_collection(with_key(
                    DescribeCollectionRequest { name: collection },
                    key,
                ))
                .await,
        ),
        "ListCollections" => code(
            client
                .list_collections(with_key(ListCollectionsRequest {}, key))
                .await,
        ),
        "Insert" => {
            let item = InsertRequest {
                collection,
                filepath: "auth.jpg".into(),
                image: std::fs::read(&deps::fixture_images()[0]).unwrap().into(),
                ..Default::default()
            };
            drained(
                client
                    .insert(with_key(tokio_stream::iter([item]), key))
                    .await,
            )
            .await
        }
        "Search" => code(
            client
                .search(with_key(
                    SearchRequest {
                        collection,
                        vectors: vec![vector()],
                        top_k: 1,
                        ..Default::default()
                    },
                    key,
                ))
                .await,
        ),
        "SearchStream" => {
            let query = SearchStreamRequest {
                collection,
                top_k: 1,
                query: Some(Query::Vector(vector())),
                ..Default::default()
            };
            drained(
                client
                    .search_stream(with_key(tokio_stream::iter([query]), key))
                    .await,
            )
            .await
        }
        "Delete" => code(
            client
                .delete(with_key(
                    DeleteRequest {
                        collection,
                        filepaths: vec!["never-stored.jpg".into()],
                        ..Default::default()
                    },
                    key,
                ))
                .await,
        ),
        "FindFilepaths" => code(
            client
                .find_filepaths(with_key(
                    FindFilepathsRequest {
                        collection,
                        filepaths: vec!["auth.jpg".into()],
                    },
                    key,
                ))
                .await,
        ),
        "Count" => code(
            client
                .count(with_key(
                    CountRequest {
                        collection,
                        ..Default::default()
                    },
                    key,
                ))
                .await,
        ),
        "FindDuplicates" => {
            let scan = FindDuplicatesRequest {
                collection,
                max_distance: 1.0,
                ..Default::default()
            };
            drained(client.find_duplicates(with_key(scan, key)).await).await
        }
        other => panic!("no request for {other}"),
    }
}

/// Every RPC of imgsearch.v1.ImageSearch and the least role it needs
/// (0 read, 1 write, 2 admin), as the README's roles table says.
pub(crate) const RPCS: [(&str, usize); 11] = [
    ("CreateCollection", 2),
    ("DropCollection", 2),
    ("DescribeCollection", 0),
    ("ListCollections", 0),
    ("Insert", 1),
    ("Search", 0),
    ("SearchStream", 0),
    ("Delete", 1),
    ("FindFilepaths", 0),
    ("Count", 0),
    ("FindDuplicates", 0),
];

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_rpc_answers_each_kind_of_caller_as_its_role_says() {
    let g = guarded_gateway().await;
    let mut client = g.gateway.client().await;
    let admin = Some(g.keys[2].as_str());
    let made = client
        .create_collection(with_key(
            CreateCollectionRequest {
                name: COLLECTION.into(),
                drop_if_exists: Some(true),
                ..Default::default()
            },
            admin,
        ))
        .await;
    made.expect("the admin key creates the collection");

    let mut wrong = Vec::new();
    for (rpc, least) in RPCS {
        let callers = [
            ("no key", None, Code::Unauthenticated),
            (
                "unknown key",
                Some("isk_not-a-key-anyone-has"),
                Code::Unauthenticated,
            ),
        ]
        .into_iter()
        .chain(
            ["read", "write", "admin"]
                .into_iter()
                .enumerate()
                .map(|(i, role)| {
                    let expected = if i >= least {
                        Code::Ok
                    } else {
                        Code::PermissionDenied
                    };
                    (role, Some(g.keys[i].as_str()), expected)
                }),
        );
        for (who, key, expected) in callers {
            let got = call(&mut client, rpc, key).await;
            if got != expected {
                wrong.push(format!("{rpc} as {who}: {got:?}, expected {expected:?}"));
            }
        }
    }
    assert!(wrong.is_empty(), "{wrong:#?}");
    // Refusals are counted like any other outcome: by method and code.
    for (rpc, least) in RPCS {
        let count = |code: &str| {
            g.gateway.metric(&format!(
                r#"gateway_requests_total{{code="{code}",method="{rpc}"}}"#
            ))
        };
        assert_eq!(count("Unauthenticated"), 2.0, "{rpc}");
        assert_eq!(count("PermissionDenied"), least as f64, "{rpc}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn drops_are_logged_with_the_name_of_the_callers_key() {
    let g = guarded_gateway().await;
    let mut client = g.gateway.client().await;
    let admin = Some(g.keys[2].as_str());
    let name = "auth_logged".to_string();
    for _ in 0..2 {
        // The second create drops the first one's collection.
        let create = CreateCollectionRequest {
            name: name.clone(),
            drop_if_exists: Some(true),
            ..Default::default()
        };
        client
            .create_collection(with_key(create, admin))
            .await
            .unwrap();
    }
    let drop = DropCollectionRequest { name };
    client.drop_collection(with_key(drop, admin)).await.unwrap();
    let log = g.gateway.log();
    let drops: Vec<&str> = log
        .lines()
        .filter(|l| l.contains("dropping the collection"))
        .collect();
    assert_eq!(drops.len(), 2, "{log}");
    for line in drops {
        // Without the terminal colours the text format adds.
        let mut pieces = line.split('\x1b');
        let mut plain = pieces.next().unwrap_or_default().to_string();
        plain.extend(pieces.map(|p| p.split_once('m').map_or(p, |(_, t)| t)));
        assert!(
            plain.contains("caller=\"admin-key\"") && plain.contains("auth_logged"),
            "{plain}"
        );
    }
}

/// Waits until `key`'s ListCollections answers `want` (the keys file is
/// re-read every 2 s).
async fn until(client: &mut Client, key: &str, want: Code) {
    let deadline = Instant::now() + Duration::from_secs(15);
    loop {
        let got = call(client, "ListCollections", Some(key)).await;
        if got == want {
            return;
        }
        assert!(Instant::now() < deadline, "still {got:?}, not {want:?}");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn keys_added_to_or_removed_from_the_file_count_without_a_restart() {
    let g = guarded_gateway().await;
    let mut client = g.gateway.client().await;
    let (key, line) = create_key(g.dir.path(), "late-key", "read");
    let original = std::fs::read_to_string(&g.keys_file).unwrap();
    assert_eq!(
        call(&mut client, "ListCollections", Some(&key)).await,
        Code::Unauthenticated
    );
    std::fs::write(&g.keys_file, format!("{original}{line}")).unwrap();
    until(&mut client, &key, Code::Ok).await;
    // A broken file is refused whole: the keys in force stay.
    std::fs::write(&g.keys_file, format!("{original}{line}oops\n")).unwrap();
    tokio::time::sleep(Duration::from_secs(5)).await;
    assert_eq!(
        call(&mut client, "ListCollections", Some(&key)).await,
        Code::Ok
    );
    assert!(g.gateway.log().contains("not reloaded"));
    std::fs::write(&g.keys_file, original).unwrap();
    until(&mut client, &key, Code::Unauthenticated).await;
}

fn gateway_args(listen: &str, extra: &[&str]) -> Vec<String> {
    let ports = free_ports(2);
    let mut args: Vec<String> = [
        "--listen",
        listen,
        "--metrics-listen",
        &format!("127.0.0.1:{}", ports[0]),
        "--milvus-uri",
        &Milvus::shared().uri(),
    ]
    .map(String::from)
    .to_vec();
    if !extra.contains(&"--http-listen") {
        args.extend(["--http-listen".into(), format!("127.0.0.1:{}", ports[1])]);
    }
    args.extend(extra.iter().map(|s| s.to_string()));
    args
}

#[test]
fn beyond_loopback_without_keys_the_gateway_refuses_to_start_and_says_how_to_add_keys() {
    let port = free_ports(1)[0];
    let out = Command::new(workspace_binary("imgsearch-gateway"))
        .args(gateway_args(&format!("0.0.0.0:{port}"), &[]))
        .output()
        .unwrap();
    assert!(!out.status.success());
    let said = String::from_utf8_lossy(&out.stderr);
    for hint in [
        "imgsearch key create",
        "--api-keys-file",
        "--allow-unauthenticated",
    ] {
        assert!(said.contains(hint), "{hint} missing from: {said}");
    }
}

#[test]
fn an_http_port_beyond_loopback_without_keys_also_refuses_to_start() {
    let ports = free_ports(2);
    let http = format!("0.0.0.0:{}", ports[1]);
    let out = Command::new(workspace_binary("imgsearch-gateway"))
        .args(gateway_args(
            &format!("127.0.0.1:{}", ports[0]),
            &["--http-listen", &http],
        ))
        .output()
        .unwrap();
    assert!(!out.status.success());
    let said = String::from_utf8_lossy(&out.stderr);
    assert!(
        said.contains(&http) && said.contains("--api-keys-file"),
        "{said}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn beyond_loopback_the_no_auth_flag_lets_it_start() {
    let embedder = EmbedderProcess::start(&[]).await;
    let port = free_ports(1)[0];
    let args = gateway_args(
        &format!("0.0.0.0:{port}"),
        &["--allow-unauthenticated", "--embedder", &embedder.uri()],
    );
    let gateway = ServerProcess::start(
        "imgsearch-gateway",
        &args,
        &[],
        port,
        "imgsearch.v1.ImageSearch",
    )
    .await;
    let mut client = ImageSearchClient::new(gateway.channel().await.unwrap());
    assert_eq!(call(&mut client, "ListCollections", None).await, Code::Ok);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reflection_can_be_turned_off() {
    let embedder = EmbedderProcess::start(&[]).await;
    let gateway = GatewayProcess::start(
        &Milvus::shared().uri(),
        &[embedder.uri()],
        &GatewayFlags {
            reflection: Some(false),
            ..Default::default()
        },
    )
    .await;
    let out = Command::new(deps::grpcurl())
        .args([
            "-plaintext",
            &format!("127.0.0.1:{}", gateway.grpc_port),
            "list",
        ])
        .output()
        .unwrap();
    assert!(!out.status.success());
    let said = String::from_utf8_lossy(&out.stderr);
    assert!(
        said.contains("Unimplemented") || said.contains("reflection"),
        "{said}"
    );
}
