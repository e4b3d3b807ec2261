//! `imgsearch collection create|drop|describe|list`.

use imgsearch_proto::v1::{
    CollectionInfo, CollectionProfile, CreateCollectionRequest, DescribeCollectionRequest,
    DropCollectionRequest, ListCollectionsRequest,
};
use serde_json::json;

use crate::{error::CliError, gateway::Client};

pub async fn create(
    client: &mut Client,
    name: &str,
    keep_existing: bool,
    extended: bool,
) -> Result<CollectionInfo, CliError> {
    let resp = client
        .create_collection(CreateCollectionRequest {
            name: name.to_string(),
            drop_if_exists: Some(!keep_existing),
            extended,
        })
        .await?
        .into_inner();
    resp.collection.ok_or_else(|| {
        CliError::Rpc(tonic::Status::internal(
            "CreateCollection returned no description",
        ))
    })
}

pub async fn drop(client: &mut Client, name: &str) -> Result<(), CliError> {
    client
        .drop_collection(DropCollectionRequest {
            name: name.to_string(),
        })
        .await?;
    Ok(())
}

pub async fn describe(client: &mut Client, name: &str) -> Result<CollectionInfo, CliError> {
    Ok(client
        .describe_collection(DescribeCollectionRequest {
            name: name.to_string(),
        })
        .await?
        .into_inner())
}

pub async fn list(client: &mut Client) -> Result<Vec<String>, CliError> {
    Ok(client
        .list_collections(ListCollectionsRequest {})
        .await?
        .into_inner()
        .names)
}

/// A collection for people: schema, index, rows, load state.
pub fn render(info: &CollectionInfo) -> String {
    let mut out = format!(
        "collection {}: {} rows, {}, index {} ({}), {} profile\n",
        info.name,
        info.row_count,
        info.load_state,
        info.index_type,
        info.metric_type,
        profile_name(info)
    );
    for f in &info.fields {
        let mut extra = Vec::new();
        if f.primary_key {
            extra.push("primary key".to_string());
        }
        if f.auto_id {
            extra.push("auto id".to_string());
        }
        if f.dimension > 0 {
            extra.push(format!("dim {}", f.dimension));
        }
        if f.max_length > 0 {
            extra.push(format!("max length {}", f.max_length));
        }
        out += &format!(
            "  {:<16} {:<12} {}\n",
            f.name,
            f.data_type,
            extra.join(", ")
        );
    }
    out
}

/// "tutorial" (the three fields), "extended", or "other".
fn profile_name(info: &CollectionInfo) -> &'static str {
    match info.profile() {
        CollectionProfile::Tutorial => "tutorial",
        CollectionProfile::Extended => "extended",
        CollectionProfile::Unspecified => "other",
    }
}

/// A collection for scripts.
pub fn to_json(info: &CollectionInfo) -> serde_json::Value {
    json!({
        "name": info.name,
        "profile": profile_name(info),
        "row_count": info.row_count,
        "load_state": info.load_state,
        "index_type": info.index_type,
        "metric_type": info.metric_type,
        "fields": info.fields.iter().map(|f| json!({
            "name": f.name,
            "data_type": f.data_type,
            "primary_key": f.primary_key,
            "auto_id": f.auto_id,
            "dimension": f.dimension,
            "max_length": f.max_length,
        })).collect::<Vec<_>>(),
    })
}
