//! The gateway's HTTP/JSON API against the real stack, with reqwest: each
//! route's answer against gRPC's for the same call, rows counted in Milvus,
//! errors as gRPC code names with their HTTP statuses, the key table, the
//! body limits, the OpenAPI document (validated), CORS, TLS and gRPC-Web.

use std::{collections::BTreeSet, time::Duration};

use imgsearch_proto::v1::{image_search_client::ImageSearchClient, SearchRequest};
use imgsearch_tests::{
    deps,
    embedder::EmbedderProcess,
    gateway::{GatewayFlags, GatewayProcess},
    milvus::Milvus,
    pki::Pki,
    rest::{base64, Answer, Rest},
    stack::{Stack, TestCollection},
};
use reqwest::Method;
use serde_json::{json, Value};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

use crate::{
    gateway_auth::{guarded_gateway, RPCS},
    readme_grpcurl::{photos, readme_lines, run_all},
};

fn image(i: usize) -> Vec<u8> {
    std::fs::read(&deps::fixture_images()[i]).unwrap()
}

/// Insert lines for the first `n` fixture images, named `img{i}.jpg`.
fn insert_lines(n: usize) -> Vec<Value> {
    (0..n)
        .map(|i| json!({"filepath": format!("img{i}.jpg"), "image": base64(&image(i))}))
        .collect()
}

/// A collection holding the first `n` fixture images, inserted over gRPC.
async fn filled(stack: &Stack, name: &str, n: usize) -> TestCollection {
    let mut collection = stack.collection(name).await;
    let items = (0..n).map(|i| (format!("img{i}.jpg"), image(i))).collect();
    let answers = collection.insert(items).await;
    assert_eq!(
        answers.summary().inserted as usize,
        n,
        "{:?}",
        answers.error
    );
    collection
}

/// The hits of a JSON search answer: (id, filepath, distance) per query.
fn hits(answer: &Answer) -> Vec<Vec<(String, String, f64)>> {
    assert_eq!(answer.status, 200, "{}", answer.text);
    answer.json()["results"]
        .as_array()
        .expect("results")
        .iter()
        .map(|r| {
            r["hits"]
                .as_array()
                .expect("hits")
                .iter()
                .map(|h| {
                    (
                        h["id"].as_str().expect("id as a string").to_string(),
                        h["filepath"].as_str().unwrap().to_string(),
                        // proto3 JSON leaves out a distance of 0.
                        h["distance"].as_f64().unwrap_or(0.0),
                    )
                })
                .collect()
        })
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_ndjson_insert_acknowledges_every_line_and_milvus_holds_the_rows() {
    let stack = Stack::shared().await;
    let collection = stack.collection("http_insert").await;
    let answer = stack
        .gateway
        .rest()
        .post_lines("/v1/collections/http_insert:insert", &insert_lines(5))
        .await;
    assert_eq!(answer.status, 200, "{}", answer.text);
    assert_eq!(answer.headers["content-type"], "application/x-ndjson");
    let lines = answer.lines();
    let acked: usize = lines
        .iter()
        .filter_map(|l| l["result"]["ack"]["stored"].as_array())
        .map(Vec::len)
        .sum();
    assert_eq!(acked, 5, "{lines:#?}");
    let summary = lines.iter().find_map(|l| l["result"].get("summary"));
    assert_eq!(summary.expect("a summary")["inserted"], "5");
    assert_eq!(lines.last().unwrap()["status"]["status"], "OK");
    assert_eq!(collection.count().await, 5);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_line_that_is_not_a_request_ends_the_insert_after_storing_the_lines_before_it() {
    let stack = Stack::shared().await;
    let collection = stack.collection("http_bad_line").await;
    let mut lines = insert_lines(2);
    lines.push(json!({"filepath": "x.jpg", "no_such_field": 1}));
    let answer = stack
        .gateway
        .rest()
        .post_lines("/v1/collections/http_bad_line:insert", &lines)
        .await;
    let lines = answer.lines();
    let last = &lines.last().unwrap()["status"];
    assert_eq!(last["status"], "INVALID_ARGUMENT", "{lines:#?}");
    assert!(
        last["message"].as_str().unwrap().contains("line 3"),
        "{last}"
    );
    assert_eq!(collection.count().await, 2);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_form_search_finds_what_the_grpc_search_finds() {
    let stack = Stack::shared().await;
    let mut collection = filled(&stack, "http_form", 6).await;
    let rest = stack.gateway.rest();
    // As the README writes it: curl -F image=@q.jpg -F top_k=3
    let form = rest
        .post_form(
            "/v1/collections/http_form:search",
            &[image(2)],
            &[("top_k", "3")],
        )
        .await;
    let form = hits(&form);
    let grpc = collection.search_file(&deps::fixture_images()[2], 3).await;
    assert_eq!(form[0].len(), 3);
    assert_eq!(form[0][0].1, "img2.jpg");
    assert!(form[0][0].2 < 1e-3, "{form:?}");
    for (http, grpc) in form[0].iter().zip(&grpc) {
        assert_eq!(http.0, grpc.id.to_string());
        assert_eq!(http.1, grpc.filepath);
        assert!(
            (http.2 - f64::from(grpc.distance)).abs() < 1e-2,
            "{http:?} {grpc:?}"
        );
    }
    // The same images as base64 in JSON.
    let json = rest
        .post(
            "/v1/collections/http_form:search",
            &json!({"images": [base64(&image(2))], "topK": 3}),
        )
        .await;
    assert_eq!(hits(&json), form);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_collection_routes_create_describe_list_count_and_drop() {
    let stack = Stack::shared().await;
    let rest = stack.gateway.rest();
    let created = rest
        .post(
            "/v1/collections",
            &json!({"name": "http_made", "dropIfExists": true}),
        )
        .await;
    assert_eq!(created.status, 200, "{}", created.text);
    assert_eq!(created.json()["collection"]["metricType"], "L2");
    let described = rest.get("/v1/collections/http_made").await.json();
    assert_eq!(described["name"], "http_made");
    assert_eq!(described["loadState"], "Loaded");
    let listed = rest.get("/v1/collections").await.json();
    assert!(listed["names"]
        .as_array()
        .unwrap()
        .contains(&json!("http_made")));
    let counted = rest
        .post("/v1/collections/http_made:count", &json!({}))
        .await;
    // A count of 0 is proto3 JSON's default, left out.
    assert_eq!(
        counted
            .json()
            .get("count")
            .and_then(Value::as_str)
            .unwrap_or("0"),
        "0"
    );
    assert_eq!(rest.delete("/v1/collections/http_made").await.status, 200);
    assert_eq!(
        rest.get("/v1/collections/http_made").await.code(),
        "NOT_FOUND"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_row_routes_find_delete_stream_and_group_as_grpc_does() {
    let stack = Stack::shared().await;
    let collection = filled(&stack, "http_rows", 4).await;
    let rest = stack.gateway.rest();
    let found = rest
        .post(
            "/v1/collections/http_rows:findFilepaths",
            &json!({"filepaths": ["img1.jpg", "never.jpg"]}),
        )
        .await;
    assert_eq!(found.json()["found"], json!(["img1.jpg"]), "{}", found.text);

    let streamed = rest
        .post_lines(
            "/v1/collections/http_rows:searchStream",
            &[
                json!({"image": base64(&image(0)), "topK": 1}),
                json!({"image": base64(&image(3))}),
            ],
        )
        .await
        .lines();
    assert_eq!(streamed.len(), 3, "{streamed:#?}");
    assert_eq!(
        streamed[1]["result"]["result"]["hits"][0]["filepath"],
        "img3.jpg"
    );
    assert_eq!(streamed[2]["status"]["status"], "OK");

    let groups = rest
        .post(
            "/v1/collections/http_rows:findDuplicates",
            &json!({"maxDistance": 1.0}),
        )
        .await
        .lines();
    assert_eq!(
        groups.last().unwrap()["status"]["status"],
        "OK",
        "{groups:#?}"
    );

    let deleted = rest
        .post(
            "/v1/collections/http_rows:delete",
            &json!({"filepaths": ["img1.jpg"]}),
        )
        .await;
    assert_eq!(deleted.json()["deleted"], "1", "{}", deleted.text);
    assert_eq!(collection.count().await, 3);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn errors_name_the_grpc_code_with_its_http_status() {
    let stack = Stack::shared().await;
    filled(&stack, "http_errors", 1).await;
    let rest = stack.gateway.rest();
    let search = "/v1/collections/http_errors:search";
    let cases = [
        (
            rest.get("/v1/collections/no_such_one").await,
            404,
            "NOT_FOUND",
        ),
        (
            rest.post(
                search,
                &json!({"topK": 5000, "images": [base64(&image(0))]}),
            )
            .await,
            400,
            "INVALID_ARGUMENT",
        ),
        (
            Rest::send(rest.request(Method::POST, search).body("{not json")).await,
            400,
            "INVALID_ARGUMENT",
        ),
        (
            rest.post(search, &json!({"collection": "another"})).await,
            400,
            "INVALID_ARGUMENT",
        ),
        (
            rest.post(
                "/v1/collections",
                &json!({"name": "http_errors", "dropIfExists": false}),
            )
            .await,
            409,
            "ALREADY_EXISTS",
        ),
        (rest.get("/v1/no/such/route").await, 404, "NOT_FOUND"),
        (
            rest.post("/v1/collections/http_errors:explode", &json!({}))
                .await,
            404,
            "NOT_FOUND",
        ),
        (
            Rest::send(rest.request(Method::PUT, "/v1/collections/http_errors")).await,
            405,
            "UNIMPLEMENTED",
        ),
    ];
    for (i, (answer, status, code)) in cases.iter().enumerate() {
        assert_eq!(answer.status, *status, "case {i}: {}", answer.text);
        assert_eq!(answer.code(), *code, "case {i}: {}", answer.text);
        assert_eq!(answer.json()["error"]["code"], *status, "case {i}");
    }
    assert_eq!(cases[7].0.headers["allow"], "GET, DELETE");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_route_answers_each_kind_of_caller_as_grpc_does() {
    // Held whole: the embedder lives as long as it.
    let guarded = guarded_gateway().await;
    let (gateway, keys) = (&guarded.gateway, &guarded.keys);
    let rest = gateway.rest();
    let admin = rest.key(Some(&keys[2]));
    let made = admin
        .post(
            "/v1/collections",
            &json!({"name": "http_auth", "dropIfExists": true}),
        )
        .await;
    assert_eq!(made.status, 200, "{}", made.text);
    let mut wrong = Vec::new();
    for (rpc, least) in RPCS {
        let mut callers = vec![
            ("no key", None, 401),
            ("unknown key", Some("isk_nobody"), 401),
        ];
        for (i, role) in ["read", "write", "admin"].into_iter().enumerate() {
            callers.push((
                role,
                Some(keys[i].as_str()),
                if i >= least { 200 } else { 403 },
            ));
        }
        for (who, key, expected) in callers {
            let answer = call(&rest.key(key), rpc).await;
            if answer.status != expected {
                wrong.push(format!("{rpc} as {who}: {} {}", answer.status, answer.text));
            }
            if expected == 401 {
                assert_eq!(
                    answer.headers["www-authenticate"],
                    "Bearer realm=\"imgsearch\""
                );
            }
        }
    }
    assert!(wrong.is_empty(), "{wrong:#?}");
    // HTTP calls are counted where gRPC calls are, by method and code.
    let refused =
        gateway.metric(r#"gateway_requests_total{code="Unauthenticated",method="Search"}"#);
    assert_eq!(refused, 2.0);
}

/// One call of `rpc` over HTTP, on the collection `http_auth`.
async fn call(rest: &Rest, rpc: &str) -> Answer {
    let path = |verb: &str| format!("/v1/collections/http_auth:{verb}");
    let vector = json!({"values": vec![0.0; 2048]});
    match rpc {
        "CreateCollection" => {
            rest.post("/v1/collections", &json!({"name": "http_auth_made"}))
                .await
        }
        "DropCollection" => rest.delete("/v1/collections/http_auth_made").await,
        "DescribeCollection" => rest.get("/v1/collections/http_auth").await,
        "ListCollections" => rest.get("/v1/collections").await,
        "Insert" => rest.post_lines(&path("insert"), &insert_lines(1)).await,
        "Search" => {
            rest.post(&path("search"), &json!({"vectors": [vector]}))
                .await
        }
        "SearchStream" => {
            rest.post_lines(&path("searchStream"), &[json!({"vector": vector})])
                .await
        }
        "Delete" => {
            rest.post(&path("delete"), &json!({"filepaths": ["never.jpg"]}))
                .await
        }
        "FindFilepaths" => {
            rest.post(&path("findFilepaths"), &json!({"filepaths": ["a.jpg"]}))
                .await
        }
        "Count" => rest.post(&path("count"), &json!({})).await,
        "FindDuplicates" => {
            rest.post(&path("findDuplicates"), &json!({"maxDistance": 1.0}))
                .await
        }
        other => panic!("no HTTP call for {other}"),
    }
}

/// A stack whose gateway takes messages of up to 1 MiB.
async fn small_messages() -> Stack {
    Stack::with()
        .gateway(GatewayFlags {
            max_message_bytes: Some(1 << 20),
            ..Default::default()
        })
        .start()
        .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_body_over_the_message_limit_is_refused_413_unread() {
    let stack = small_messages().await;
    // Only the head is sent: the answer comes before any of the body.
    let mut tcp = tokio::net::TcpStream::connect(("127.0.0.1", stack.gateway.http_port))
        .await
        .unwrap();
    let head = "POST /v1/collections/x:search HTTP/1.1\r\nhost: imgsearch\r\n\
                content-type: application/json\r\ncontent-length: 4194304\r\n\r\n";
    tcp.write_all(head.as_bytes()).await.unwrap();
    let mut answer = vec![0; 4096];
    let n = tokio::time::timeout(Duration::from_secs(10), tcp.read(&mut answer))
        .await
        .expect("an answer before the body")
        .unwrap();
    let answer = String::from_utf8_lossy(&answer[..n]);
    assert!(answer.starts_with("HTTP/1.1 413"), "{answer}");
    assert!(answer.contains("\"OUT_OF_RANGE\""), "{answer}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bodies_beyond_the_budget_wait_outside_with_429_and_retry_after() {
    let stack = small_messages().await;
    let rest = stack.gateway.rest();
    // Four bodies of the largest size that never finish arriving hold the
    // whole budget (imgsearch_proto::limits::HTTP_BODIES_AT_ONCE).
    let largest = (1usize << 20).div_ceil(3) * 4 + imgsearch_proto::limits::HTTP_JSON_SLACK_BYTES;
    let mut held = Vec::new();
    for _ in 0..imgsearch_proto::limits::HTTP_BODIES_AT_ONCE {
        let (tx, rx) = tokio::sync::mpsc::channel::<Result<Vec<u8>, std::io::Error>>(1);
        tx.send(Ok(b"{".to_vec())).await.unwrap();
        let body = reqwest::Body::wrap_stream(tokio_stream::wrappers::ReceiverStream::new(rx));
        let request = rest
            .request(Method::POST, "/v1/collections/x:search")
            .header("content-length", largest)
            .body(body);
        held.push((tx, tokio::spawn(request.send())));
    }
    tokio::time::sleep(Duration::from_millis(500)).await;
    let refused = rest
        .post("/v1/collections/x:search", &json!({"topK": 1}))
        .await;
    assert_eq!(refused.status, 429, "{}", refused.text);
    assert_eq!(refused.code(), "RESOURCE_EXHAUSTED");
    assert!(refused.headers.contains_key("retry-after"));
    // Once those callers leave, their share comes back.
    for (tx, call) in held {
        drop(tx);
        call.abort();
    }
    tokio::time::sleep(Duration::from_millis(500)).await;
    let served = rest
        .post("/v1/collections/x:search", &json!({"topK": 1}))
        .await;
    // Read, and judged by the service: a search with no query.
    assert_eq!(served.code(), "INVALID_ARGUMENT", "{}", served.text);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_openapi_document_validates_and_has_every_method_and_route() {
    let stack = Stack::shared().await;
    let rest = stack.gateway.rest();
    let document = rest.get("/v1/openapi.json").await;
    assert_eq!(document.status, 200);
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("openapi.json");
    std::fs::write(&file, &document.text).unwrap();
    let validated = std::process::Command::new(deps::openapi_validator())
        .arg(&file)
        .output()
        .unwrap();
    assert!(
        validated.status.success(),
        "{}{}",
        String::from_utf8_lossy(&validated.stdout),
        String::from_utf8_lossy(&validated.stderr)
    );
    let document = document.json();
    let mut operations = BTreeSet::new();
    for (path, item) in document["paths"].as_object().unwrap() {
        for (method, operation) in item.as_object().unwrap() {
            operations.insert(operation["operationId"].as_str().unwrap().to_string());
            // The server answers it (a missing collection, not a missing route).
            let concrete = path.replace("{collection}", "no_such_collection");
            let method = Method::from_bytes(method.to_uppercase().as_bytes()).unwrap();
            let answer = Rest::send(rest.request(method.clone(), &concrete).body("{}")).await;
            assert!(
                !answer.text.contains("no route") && answer.status != 405,
                "{method} {concrete}: {}",
                answer.text
            );
        }
    }
    let mut methods: BTreeSet<_> = imgsearch_proto::methods_of("imgsearch.v1.ImageSearch")
        .into_iter()
        .collect();
    // Beside the calls: stored images, for the search page.
    methods.insert("Media".into());
    assert_eq!(operations, methods);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cors_answers_only_the_origins_it_is_given() {
    let stack = Stack::shared().await;
    let preflight = |rest: Rest| async move {
        Rest::send(
            rest.request(Method::OPTIONS, "/v1/collections/x:search")
                .header("origin", "https://app.example")
                .header("access-control-request-method", "POST")
                .header("access-control-request-headers", "authorization"),
        )
        .await
    };
    let closed = preflight(stack.gateway.rest()).await;
    assert!(!closed.headers.contains_key("access-control-allow-origin"));
    let open = Stack::with()
        .gateway(GatewayFlags {
            cors_origin: Some("https://app.example".into()),
            ..Default::default()
        })
        .start()
        .await;
    let allowed = preflight(open.gateway.rest()).await;
    assert_eq!(
        allowed.headers["access-control-allow-origin"],
        "https://app.example"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_http_port_serves_tls_with_the_grpc_certificate() {
    let pki = Pki::new("imgsearch test CA");
    let embedder = EmbedderProcess::start(&[]).await;
    let flags = GatewayFlags {
        tls: Some(pki.issue("server", false)),
        ..Default::default()
    };
    let gateway = GatewayProcess::start_tls(
        &Milvus::shared().uri(),
        &[embedder.uri()],
        &flags,
        pki.client(None),
    )
    .await;
    let ca = reqwest::Certificate::from_pem(&std::fs::read(pki.ca()).unwrap()).unwrap();
    let client = reqwest::Client::builder()
        .add_root_certificate(ca)
        .build()
        .unwrap();
    let https = Rest::with_client(&format!("https://localhost:{}", gateway.http_port), client);
    let listed = https.get("/v1/collections").await;
    assert_eq!(listed.status, 200, "{}", listed.text);
    let plain = reqwest::get(format!(
        "http://127.0.0.1:{}/v1/collections",
        gateway.http_port
    ))
    .await;
    assert!(
        plain.map_or(true, |r| !r.status().is_success()),
        "plaintext was served"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_grpc_web_search_returns_the_same_hits_as_grpc() {
    let stack = Stack::shared().await;
    let mut collection = filled(&stack, "http_grpc_web", 4).await;
    let expected = collection.search_file(&deps::fixture_images()[1], 3).await;
    let http1 = hyper_util::client::legacy::Client::builder(hyper_util::rt::TokioExecutor::new())
        .build_http();
    let web = tower::ServiceBuilder::new()
        .layer(tonic_web::GrpcWebClientLayer::new())
        .service(http1);
    let mut client = ImageSearchClient::with_origin(web, stack.gateway.uri().parse().unwrap());
    let answer = client
        .search(SearchRequest {
            collection: "http_grpc_web".into(),
            images: vec![image(1).into()],
            top_k: 3,
            ..Default::default()
        })
        .await
        .expect("a gRPC-Web search")
        .into_inner();
    assert_eq!(answer.results[0].hits, expected);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn readme_curl_examples_work() {
    let examples = readme_lines("curl-examples", "curl ");
    assert!(
        examples.len() >= 6,
        "README lost its curl examples: {examples:#?}"
    );
    let stack = Stack::shared().await;
    let dir = photos();
    let port = [(
        "localhost:8080",
        format!("127.0.0.1:{}", stack.gateway.http_port),
    )];
    let outputs = run_all(&examples, &port, dir.path());
    let output = |needle: &str| &outputs.iter().find(|(e, _)| e.contains(needle)).unwrap().1;
    assert!(
        output(":insert").contains(r#""inserted":"1""#),
        "{}",
        output(":insert")
    );
    let search = output(":search");
    assert!(search.contains(r#""filepath":"photo.jpg""#), "{search}");
    assert!(output(":count").contains(r#""count":"1""#));
    assert!(output("openapi.json").contains(r#""openapi""#));
    let described = output("curl -s localhost:8080/v1/collections/readme_http");
    assert!(described.contains(r#""loadState":"Loaded""#), "{described}");
}
