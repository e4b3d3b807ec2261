//! The gateway: the public image search API and the only component that
//! talks to Milvus.
//!
//! Everything Milvus-specific stays in `milvus` (and `schema`) so the rest
//! sees collections, rows and hits, never SDK types. `ingest`, `search`,
//! `delete` and `filepaths` are the core flows; `service` and `server` wire them to gRPC,
//! behind `auth`'s check of the caller's key.

pub mod admission;
pub mod answers;
pub mod attributes;
pub mod auth;
pub mod collections;
pub mod config;
pub mod count;
pub mod delete;
pub mod duplicates;
pub mod embedders;
pub mod error;
pub mod fault;
pub mod filepaths;
pub mod filter;
pub mod http;
pub mod ingest;
pub mod metrics;
pub mod milvus;
pub mod schema;
pub mod search;
pub mod server;
pub mod service;
