//! From the core's types to the wire's, at the edge, so the store and the
//! search code do not depend on how the API spells things.

use imgsearch_proto::v1::{CollectionInfo, CollectionProfile, FieldInfo};

use crate::{
    milvus::{Described, Field},
    schema::Profile,
};

impl From<Field> for FieldInfo {
    fn from(f: Field) -> Self {
        Self {
            name: f.name,
            data_type: f.data_type,
            primary_key: f.primary_key,
            auto_id: f.auto_id,
            dimension: f.dimension,
            max_length: f.max_length,
        }
    }
}

impl From<Described> for CollectionInfo {
    fn from(c: Described) -> Self {
        Self {
            name: c.name,
            fields: c.fields.into_iter().map(FieldInfo::from).collect(),
            index_type: c.index_type,
            metric_type: c.metric_type,
            row_count: c.row_count,
            load_state: c.load_state,
            fingerprint: c.fingerprint,
            profile: match c.profile {
                Profile::Tutorial => CollectionProfile::Tutorial,
                Profile::Extended => CollectionProfile::Extended,
            } as i32,
        }
    }
}
