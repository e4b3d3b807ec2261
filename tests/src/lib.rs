//! Harness for imgsearch's integration tests: real processes on free ports,
//! waited on until healthy, torn down even when a test fails.
//!
//! - [`deps`]: where `scripts/setup.sh` put Milvus, weights, fixtures, Python.
//! - [`milvus`]: an embedded Milvus 2.3.5 standalone per test binary (or per
//!   test, for tests that stop and restart it).
//! - [`pyref`]: the tutorial's PyTorch pipeline, run to get reference vectors.

pub mod deps;
pub mod milvus;
pub mod ports;
pub mod pyref;
