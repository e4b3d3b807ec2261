//! The imgsearch gRPC contract, generated from `proto/imgsearch/v1/*.proto`.
//!
//! Both services (`imgsearch.v1.Embedder`, `imgsearch.v1.ImageSearch`) and
//! their messages live in [`v1`]; [`FILE_DESCRIPTOR_SET`] feeds server
//! reflection so `grpcurl list/describe` work with no proto files at hand;
//! [`limits`] holds the API's limits, for servers and clients alike.

/// The type of every image field.
pub use bytes::Bytes;

pub mod api_key;
pub mod limits;

/// Version 1 of the API (`package imgsearch.v1`).
#[allow(clippy::all, missing_docs)]
pub mod v1 {
    tonic::include_proto!("imgsearch.v1");
    // proto3's JSON mapping: lowerCamelCase names, 64-bit integers and
    // bytes as strings (decimal, base64), enums by name; what grpcurl prints.
    include!(concat!(env!("OUT_DIR"), "/imgsearch.v1.serde.rs"));
}

impl v1::ErrorKind {
    /// The value's name without the `ERROR_KIND_` every value carries (the
    /// proto style guide's prefix): `INVALID_IMAGE`, for people to read.
    pub fn short_name(self) -> &'static str {
        let name = self.as_str_name();
        name.strip_prefix("ERROR_KIND_").unwrap_or(name)
    }
}

/// The method names of `service` (a full name, as
/// `imgsearch.v1.ImageSearch`), read from [`FILE_DESCRIPTOR_SET`].
pub fn methods_of(service: &str) -> Vec<String> {
    use prost::Message;
    let set = prost_types::FileDescriptorSet::decode(FILE_DESCRIPTOR_SET).expect("our descriptors");
    set.file
        .iter()
        .flat_map(|f| {
            f.service
                .iter()
                .filter(move |s| format!("{}.{}", f.package(), s.name()) == service)
        })
        .flat_map(|s| s.method.iter().map(|m| m.name().to_string()))
        .collect()
}

/// Encoded `FileDescriptorSet` of every imgsearch proto, for reflection.
pub const FILE_DESCRIPTOR_SET: &[u8] = tonic::include_file_descriptor_set!("imgsearch_descriptor");

#[cfg(test)]
mod tests {
    #[test]
    fn the_descriptors_list_each_services_methods() {
        let methods = super::methods_of("imgsearch.v1.Embedder");
        assert_eq!(methods, ["Embed", "EmbedBatch", "Info"]);
        assert!(super::methods_of("imgsearch.v1.ImageSearch").contains(&"SearchStream".into()));
        assert!(super::methods_of("no.Such").is_empty());
    }
}
