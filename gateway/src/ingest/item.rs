//! One item of an Insert stream: its position, and the rules its filepath,
//! payload (an image or a vector) and attributes must meet before it costs
//! anything.

use imgsearch_proto::{
    v1::{ErrorKind, InsertRequest, ItemError, ItemFailure},
    Bytes,
};
use sha2::{Digest, Sha256};

use crate::{
    attributes,
    milvus::CollectionSpec,
    schema::{Profile, FILEPATH_MAX_BYTES},
};

/// Which items a stream skips before embedding them.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Skip {
    Nothing,
    /// Those whose filepath is stored (`skip_existing`).
    SameFilepath,
    /// Those whose bytes a stored row holds (`skip_same_content`).
    SameContent,
}

/// What an item brings to be stored.
pub enum Payload {
    /// An encoded image, for the embedder.
    Image(Bytes),
    /// A vector of the collection's model, stored as it is.
    Vector(Vec<f32>),
}

impl Payload {
    /// Bytes it holds while in flight: what the stream's budget is charged.
    pub fn cost(&self) -> usize {
        match self {
            Payload::Image(b) => b.len(),
            Payload::Vector(v) => std::mem::size_of_val(v.as_slice()),
        }
    }
}

/// What a row of an extended collection stores beside its filepath and
/// vector; nothing for a tutorial one.
#[derive(Clone, Debug, Default)]
pub struct RowFacts {
    /// The attributes' JSON object; `None` stores `{}`.
    pub attributes: Option<serde_json::Value>,
    /// SHA-256 of the image's bytes, lowercase hex; empty for a vector.
    pub content_sha256: String,
    /// Whose row it is; empty without a tenant.
    pub tenant: String,
}

/// What an item is checked against, fixed by the stream's first message.
pub struct ItemRules {
    pub spec: CollectionSpec,
    /// The stream stated the collection's fingerprint: vectors may come.
    pub vectors_stated: bool,
    /// The caller's tenant, whose rows alone it writes and sees.
    pub tenant: Option<String>,
    /// Those rows, as a Milvus expression (`None`: every row).
    pub scope: Option<String>,
}

impl ItemRules {
    /// Where a filepath is claimed: one tenant's filepaths are not
    /// another's. (Collection names hold no `@`.)
    /// Contents are claimed apart from filepaths.
    pub fn claim_space(&self, skip: Skip) -> String {
        let mut space = self.spec.name.clone();
        if let Some(t) = &self.tenant {
            space = format!("{space}@{t}");
        }
        if skip == Skip::SameContent {
            space.push_str("#sha256");
        }
        space
    }

    /// The item's payload and facts, or why it must fail alone.
    pub fn check(
        &self,
        req: &mut InsertRequest,
    ) -> Result<(Payload, RowFacts), (ErrorKind, String)> {
        let invalid = |m: String| Err((ErrorKind::InvalidArgument, m));
        let mut facts = RowFacts {
            tenant: self.tenant.clone().unwrap_or_default(),
            ..RowFacts::default()
        };
        if !req.attributes.is_empty() {
            if let Err(e) = self.spec.require_extended("storing attributes") {
                return invalid(e.to_string());
            }
            let json = attributes::to_json(&req.attributes);
            facts.attributes = Some(json.map_err(|m| (ErrorKind::InvalidArgument, m))?);
        }
        let payload = match req.vector.take() {
            Some(_) if !req.image.is_empty() => {
                return invalid("give an image or a vector, not both".into())
            }
            Some(_) if !self.vectors_stated => {
                return invalid(
                    "an item with a vector needs the stream's first message to state the \
                     collection's model fingerprint (`fingerprint`)"
                        .into(),
                )
            }
            Some(v) if v.values.len() != self.spec.dimension as usize => {
                return invalid(format!(
                    "the vector has {} values; the collection holds {}",
                    v.values.len(),
                    self.spec.dimension
                ))
            }
            Some(v) if v.values.iter().any(|x| !x.is_finite()) => {
                return invalid("the vector holds a value that is not finite".into())
            }
            Some(v) => Payload::Vector(v.values),
            None => {
                let image = std::mem::take(&mut req.image);
                if self.spec.profile == Profile::Extended {
                    facts.content_sha256 = format!("{:x}", Sha256::digest(&image));
                }
                Payload::Image(image)
            }
        };
        Ok((payload, facts))
    }
}

/// 0-based position of an item in its stream. It travels to the embedder as
/// the request id and comes back with the answer; an answer whose id does
/// not parse, or names no item in flight, is the embedder's bug and is
/// logged, never stored.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct ItemIndex(pub u64);

impl ItemIndex {
    pub fn embed_id(self) -> String {
        self.0.to_string()
    }

    pub fn parse(id: &str) -> Option<ItemIndex> {
        id.parse().ok().map(ItemIndex)
    }
}

/// Why a filepath cannot be stored, or `None`. Milvus limits VARCHAR by
/// bytes of UTF-8, not characters: 101 × "é" is 105 characters and 202
/// bytes, and Milvus would refuse the whole insert over it. Control
/// characters are fine: they round-trip (see `milvus::string_literal`).
pub fn filepath_problem(filepath: &str) -> Option<String> {
    let n = filepath.len();
    (n == 0 || n > FILEPATH_MAX_BYTES).then(|| {
        format!(
            "filepath is {n} bytes of UTF-8; it must be 1 to {FILEPATH_MAX_BYTES} bytes \
             (Milvus counts bytes, not characters)"
        )
    })
}

/// A filepath as a failure echoes it: one over the limit is cut at a
/// character boundary, so an acknowledgement never carries a huge string.
pub fn echoed(mut filepath: String) -> String {
    if filepath.len() > FILEPATH_MAX_BYTES {
        let mut end = FILEPATH_MAX_BYTES;
        while !filepath.is_char_boundary(end) {
            end -= 1;
        }
        filepath.truncate(end);
        filepath.push_str("...");
    }
    filepath
}

/// A failure of one item, with its filepath echoed.
pub fn failure(
    index: ItemIndex,
    filepath: String,
    kind: ErrorKind,
    message: impl Into<String>,
) -> ItemFailure {
    ItemFailure {
        index: index.0,
        filepath: echoed(filepath),
        error: Some(ItemError {
            kind: kind as i32,
            message: message.into(),
        }),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn filepaths_are_measured_in_bytes() {
        assert!(filepath_problem(&"é".repeat(100)).is_none());
        let over = filepath_problem(&"é".repeat(101)).expect("202 bytes");
        assert!(over.contains("202 bytes"), "{over}");
        assert!(filepath_problem("").is_some());
        assert!(filepath_problem(&"a".repeat(200)).is_none());
        assert!(filepath_problem("a\nb\r\"'\\\0").is_none());
    }

    #[test]
    fn echoes_are_cut_at_a_character_boundary() {
        let cut = echoed(format!("a{}", "é".repeat(200)));
        assert_eq!(cut.len(), 199 + 3);
        assert!(cut.ends_with("..."));
        assert_eq!(echoed("short".into()), "short");
    }

    #[test]
    fn indices_round_trip_through_embed_ids() {
        let i = ItemIndex(4_000_000_123);
        assert_eq!(ItemIndex::parse(&i.embed_id()), Some(i));
        assert_eq!(ItemIndex::parse("x"), None);
    }
}
