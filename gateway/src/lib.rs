//! The gateway: the only component that talks to Milvus.
//!
//! Everything Milvus-specific stays in this crate so the rest of the system
//! sees collections, rows and hits, never SDK types.

pub mod schema;
