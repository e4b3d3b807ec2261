//! CreateCollection: the tutorial's collection (or the extended one), bound
//! to the model the embedders run.

use crate::{
    embedders::Embedders,
    error::GatewayError,
    milvus::{Described, MilvusStore},
    schema::Profile,
};

/// Creates `name` with the dimension the embedders produce, recording
/// which model made its vectors, and describes it once loaded.
pub async fn create(
    store: &MilvusStore,
    embedders: &Embedders,
    name: &str,
    profile: Profile,
    drop_if_exists: bool,
) -> Result<Described, GatewayError> {
    let info = embedders.info().await?;
    store
        .create_collection(
            name,
            info.dimension,
            &info.fingerprint,
            profile,
            drop_if_exists,
        )
        .await?;
    store.describe(name, None).await
}
