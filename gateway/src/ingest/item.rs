//! One item of an Insert stream: its position, and the rules its filepath
//! must meet before its image costs anything.

use imgsearch_proto::v1::{ErrorKind, ItemError, ItemFailure};

use crate::schema::FILEPATH_MAX_BYTES;

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
