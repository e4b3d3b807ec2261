//! `deploy/`: the Kubernetes overlays render and pass schema validation and
//! the Dockerfile lints clean (`scripts/check_deploy.py`), and what the
//! manifests say of ports, probes and flags agrees with the binaries: their
//! `--help` defaults, and the health services they really serve.

use std::{collections::BTreeMap, process::Command};

use imgsearch_proto::v1::SearchRequest;
use imgsearch_tests::{
    deploy::{find, rendered},
    deps,
    embedder::EmbedderProcess,
    gateway::{GatewayFlags, GatewayProcess},
    insert::create,
    milvus::Milvus,
    server_process::workspace_binary,
};
use serde_json::Value;
use tonic_health::pb::health_check_response::ServingStatus;

/// The `--help` of a binary.
fn help(bin: &str) -> String {
    let out = Command::new(workspace_binary(bin))
        .arg("--help")
        .output()
        .unwrap();
    assert!(out.status.success());
    String::from_utf8(out.stdout).unwrap()
}

/// `(env var, default)` of long flag `flag` in a clap `--help` text.
fn flag(help: &str, flag: &str) -> (String, Option<String>) {
    let lines: Vec<&str> = help.lines().collect();
    let start = lines
        .iter()
        .position(|l| {
            let t = l.trim_start();
            t.starts_with('-') && t.split([' ', ',']).any(|w| w == flag)
        })
        .unwrap_or_else(|| panic!("{flag} not in --help"));
    let block: String = lines[start..]
        .iter()
        .enumerate()
        .take_while(|(i, l)| *i == 0 || !l.trim_start().starts_with('-'))
        .map(|(_, l)| *l)
        .collect::<Vec<_>>()
        .join(" ");
    let between = |open: &str| {
        block
            .find(open)
            .map(|i| &block[i + open.len()..])
            .map(|rest| rest[..rest.find(']').unwrap()].to_string())
    };
    let env = between("[env: ").expect("env twin");
    let env = env.split('=').next().unwrap().to_string();
    (env, between("[default: "))
}

fn port_of(addr: &str) -> u64 {
    addr.rsplit(':').next().unwrap().parse().unwrap()
}

fn named_port(container: &Value, name: &str) -> u64 {
    container["ports"]
        .as_array()
        .unwrap()
        .iter()
        .find(|p| p["name"] == name)
        .unwrap_or_else(|| panic!("no container port {name}"))["containerPort"]
        .as_u64()
        .unwrap()
}

/// What the manifests say of one server's ports and probes, checked against
/// its binary.
fn check_server(
    objects: &[Value],
    deployment: &str,
    config: &str,
    bin: &str,
    listen_env: &str,
    metrics_env: &str,
) {
    let help = help(bin);
    let defaults: BTreeMap<String, String> = ["--listen", "--metrics-listen"]
        .iter()
        .map(|f| {
            let (env, default) = flag(&help, f);
            (env, default.unwrap())
        })
        .collect();
    let (grpc_default, metrics_default) = (
        port_of(&defaults[listen_env]),
        port_of(&defaults[metrics_env]),
    );

    // Every key of the ConfigMap is an env var of the binary (a typo would be
    // silently ignored), and the ports in it are the defaults (the addresses
    // are all interfaces, where the binaries default to loopback).
    let cm = find(objects, "ConfigMap", config);
    for (key, value) in cm["data"].as_object().unwrap() {
        if key != "RUST_LOG" {
            assert!(
                help.contains(&format!("[env: {key}")),
                "{config}: {key} is no env var of {bin}"
            );
        }
        if key == listen_env || key == metrics_env {
            let value = value.as_str().unwrap();
            assert_eq!(port_of(value), port_of(&defaults[key]), "{config}: {key}");
        }
    }

    let pod = &find(objects, "Deployment", deployment)["spec"]["template"]["spec"];
    let container = &pod["containers"][0];
    let grpc = named_port(container, "grpc");
    assert_eq!(grpc, grpc_default, "{deployment}: gRPC port");
    assert_eq!(
        named_port(container, "metrics"),
        metrics_default,
        "{deployment}: metrics port"
    );
    assert_eq!(
        container["envFrom"][0]["configMapRef"]["name"],
        find(objects, "ConfigMap", config)["metadata"]["name"],
        "{deployment} reads its ConfigMap"
    );
    // The probes ask the plaintext health-only port the binary opens.
    let probe_env = listen_env.replace("_LISTEN", "_PROBE_LISTEN");
    assert!(
        help.contains(&format!("[env: {probe_env}")),
        "{bin}: {probe_env}"
    );
    let probe_port = named_port(container, "probe");
    assert_eq!(
        port_of(cm["data"][&probe_env].as_str().unwrap()),
        probe_port,
        "{config}: {probe_env}"
    );
    for probe in ["startupProbe", "readinessProbe", "livenessProbe"] {
        let p = &container[probe];
        if !p.is_null() {
            assert_eq!(
                p["grpc"]["port"].as_u64(),
                Some(probe_port),
                "{deployment}: {probe}"
            );
        }
    }
    assert!(!container["readinessProbe"].is_null() && !container["livenessProbe"].is_null());

    let service = find(objects, "Service", deployment);
    for port in service["spec"]["ports"].as_array().unwrap() {
        let target = port["targetPort"].as_str().unwrap();
        assert_eq!(
            port["port"].as_u64(),
            Some(named_port(container, target)),
            "Service {deployment}: port {target}"
        );
    }
}

#[test]
fn overlays_agree_with_the_binaries() {
    let all = rendered();
    assert_eq!(all.keys().collect::<Vec<_>>(), ["cpu", "gpu"]);
    for (overlay, objects) in all {
        println!("overlay {overlay}: {} objects", objects.len());
        check_server(
            objects,
            "embedder",
            "embedder-config",
            "imgsearch-embedder",
            "IMGSEARCH_EMBEDDER_LISTEN",
            "IMGSEARCH_EMBEDDER_METRICS_LISTEN",
        );
        check_server(
            objects,
            "gateway",
            "gateway-config",
            "imgsearch-gateway",
            "IMGSEARCH_GATEWAY_LISTEN",
            "IMGSEARCH_GATEWAY_METRICS_LISTEN",
        );

        // The gateway dials the embedders' headless Service, by name and port.
        let embedder_service = find(objects, "Service", "embedder");
        assert_eq!(embedder_service["spec"]["clusterIP"], "None", "headless");
        let namespace = embedder_service["metadata"]["namespace"].as_str().unwrap();
        let gateway_env = &find(objects, "ConfigMap", "gateway-config")["data"];
        assert_eq!(
            gateway_env["IMGSEARCH_EMBEDDERS"],
            format!(
                "https://embedder.{namespace}.svc.cluster.local:{}",
                embedder_service["spec"]["ports"][0]["port"]
            )
        );
        assert_eq!(gateway_env["IMGSEARCH_EMBEDDER_DNS"], "true");

        let gateway = &find(objects, "Deployment", "gateway")["spec"];
        assert!(gateway["replicas"].as_u64().unwrap() >= 2);
        // The HTTP API: the binary's default port, the container's `http`
        // port, which the Service exposes (checked above with every port).
        let (_, http_default) = flag(&help("imgsearch-gateway"), "--http-listen");
        let http = port_of(
            gateway_env["IMGSEARCH_GATEWAY_HTTP_LISTEN"]
                .as_str()
                .unwrap(),
        );
        assert_eq!(http, port_of(&http_default.unwrap()));
        let container = &gateway["template"]["spec"]["containers"][0];
        assert_eq!(named_port(container, "http"), http);
        let service = find(objects, "Service", "gateway");
        assert!(service["spec"]["ports"]
            .as_array()
            .unwrap()
            .iter()
            .any(|p| p["targetPort"] == "http"));
        let pdb = find(objects, "PodDisruptionBudget", "gateway");
        assert_eq!(
            pdb["spec"]["selector"]["matchLabels"],
            gateway["selector"]["matchLabels"]
        );
        let hpa = find(objects, "HorizontalPodAutoscaler", "gateway");
        assert_eq!(hpa["spec"]["scaleTargetRef"]["name"], "gateway");
        assert!(hpa["spec"]["minReplicas"].as_u64().unwrap() >= 2);

        let embedder = &find(objects, "Deployment", "embedder")["spec"]["template"]["spec"];
        let resources = &embedder["containers"][0]["resources"];
        let image = embedder["containers"][0]["image"].as_str().unwrap();
        let device =
            &find(objects, "ConfigMap", "embedder-config")["data"]["IMGSEARCH_EMBEDDER_DEVICE"];
        if overlay == "gpu" {
            assert_eq!(resources["limits"]["nvidia.com/gpu"], 1);
            assert!(!embedder["tolerations"].is_null() && !embedder["nodeSelector"].is_null());
            assert_eq!(device, "cuda");
            assert!(!image.ends_with("-cpu"), "{image}");
        } else {
            assert!(resources["limits"].get("nvidia.com/gpu").is_none());
            assert!(embedder["tolerations"].is_null() && embedder["nodeSelector"].is_null());
            assert_eq!(device, "cpu");
            assert!(image.ends_with("-cpu"), "{image}");
        }
    }
}

/// The probes ask for health services the real binaries serve, and the
/// gateway runs with the manifests' DNS discovery of embedders.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn probes_ask_for_services_the_binaries_serve() {
    let all = rendered();
    let objects = &all["gpu"];
    let probes = |deployment: &str| -> Vec<String> {
        let c =
            &find(objects, "Deployment", deployment)["spec"]["template"]["spec"]["containers"][0];
        ["startupProbe", "readinessProbe", "livenessProbe"]
            .iter()
            .filter_map(|p| c[*p]["grpc"]["service"].as_str().map(String::from))
            .collect()
    };

    let milvus = Milvus::shared();
    let embedder = EmbedderProcess::start(&[]).await;
    for service in probes("embedder") {
        assert_eq!(
            embedder.health(&service).await,
            Some(ServingStatus::Serving),
            "embedder health service {service:?}"
        );
    }

    // A hostname, as a headless Service's, with discovery on as deployed.
    let by_name = format!("http://localhost:{}", embedder.grpc_port);
    let gateway = GatewayProcess::start(
        &milvus.uri(),
        &[by_name],
        &GatewayFlags {
            embedder_dns: true,
            ..Default::default()
        },
    )
    .await;
    for service in probes("gateway") {
        assert_eq!(
            gateway.health(&service).await,
            Some(ServingStatus::Serving),
            "gateway health service {service:?}"
        );
    }
    assert!(gateway.metric("gateway_embedder_replicas") >= 1.0);
    let mut client = gateway.client().await;
    create(&mut client, "deploy_dns").await;
    let before = embedder.metric("embedder_images_total");
    let image = std::fs::read(&deps::fixture_images()[0]).unwrap();
    client
        .search(SearchRequest {
            collection: "deploy_dns".into(),
            images: vec![image.into()],
            vectors: vec![],
            top_k: 3,
            ..Default::default()
        })
        .await
        .expect("search through the resolved embedder");
    assert_eq!(embedder.metric("embedder_images_total"), before + 1.0);
}
