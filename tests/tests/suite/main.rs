//! Every cross-service test, in one binary: each file here used to be a test
//! binary of its own, and compiling 27 copies of the same tonic, tokio and
//! Milvus client code made CI compile its tests for 10.7 minutes (4.7 as one
//! binary); one binary also starts one shared Milvus
//! ([`imgsearch_tests::milvus::Milvus::shared`]) instead of one per file.
//! `containers.rs` and `milvus_script.rs` stay binaries of their own: they
//! hold fixed ports (the manifests', the local Milvus's) that a test of this
//! binary could otherwise hold or be given at the same time. A file's tests run alone with
//! `cargo test --release -p imgsearch-tests --test suite FILE::`.
//!
//! Tests that share the suite's Milvus or stack use collection names of their
//! own; those that count metrics or read logs start their own servers.

mod cli;
mod data_duplicates;
mod data_filters;
mod data_near_duplicates;
mod data_rows;
mod data_tenants;
mod deploy_manifests;
mod embedder_hostile;
mod embedder_service;
mod gateway_auth;
mod gateway_faults;
mod gateway_hostile;
mod gateway_lifecycle;
mod gateway_tls;
mod gateway_tutorial;
mod http_api;
mod http_media;
mod http_page;
mod ingest_faults;
mod ingest_items;
mod milvus_faults;
mod milvus_harness;
mod readme_config;
mod readme_grpcurl;
mod search_levels;
mod search_reads;
mod search_stream;
mod server_tls;
mod silent_ends;
mod under_load;
