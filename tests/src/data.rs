//! Rows with attributes, as tests of the extended schema build them: typed
//! values and filter conditions in one word each, vector items, and the
//! filter semantics the API documents, evaluated here over rows read back
//! from Milvus, so a test compares the gateway with an independent reading.

use std::collections::BTreeMap;

use imgsearch_proto::v1::{
    attribute_value::Value, condition, AttributeValue, AttributeValues, Condition, Filter,
    InsertRequest, TextList, Vector,
};
use serde_json::Value as Json;

use crate::stack::{Client, Stack, TestCollection};

pub fn text(s: &str) -> AttributeValue {
    AttributeValue {
        value: Some(Value::Text(s.into())),
    }
}
pub fn int(i: i64) -> AttributeValue {
    AttributeValue {
        value: Some(Value::Integer(i)),
    }
}
pub fn num(f: f64) -> AttributeValue {
    AttributeValue {
        value: Some(Value::Number(f)),
    }
}
pub fn flag(b: bool) -> AttributeValue {
    AttributeValue {
        value: Some(Value::Flag(b)),
    }
}
pub fn texts(l: &[&str]) -> AttributeValue {
    AttributeValue {
        value: Some(Value::Texts(TextList {
            values: l.iter().map(|s| s.to_string()).collect(),
        })),
    }
}

pub type Attributes = BTreeMap<String, AttributeValue>;

/// Attributes from (key, value) pairs.
pub fn attrs(pairs: Vec<(&str, AttributeValue)>) -> Attributes {
    pairs.into_iter().map(|(k, v)| (k.to_string(), v)).collect()
}

/// A condition on an attribute.
pub fn on(key: &str, test: condition::Test) -> Condition {
    Condition {
        subject: Some(condition::Subject::Attribute(key.into())),
        test: Some(test),
    }
}

/// A condition on the filepath.
pub fn on_filepath(test: condition::Test) -> Condition {
    Condition {
        subject: Some(condition::Subject::Filepath(true)),
        test: Some(test),
    }
}

pub fn any_of(values: Vec<AttributeValue>) -> condition::Test {
    condition::Test::In(AttributeValues { values })
}

pub fn all(conditions: Vec<Condition>) -> Filter {
    Filter { all: conditions }
}

/// Creates `name` afresh with the extended schema.
pub async fn extended(stack: &Stack, name: &str) -> TestCollection {
    stack.extended_collection(name).await
}

/// A deterministic vector of `dim` values in [0, 1) for `seed`.
pub fn vector(seed: u64, dim: usize) -> Vec<f32> {
    let mut x = seed
        .wrapping_mul(6364136223846793005)
        .wrapping_add(1442695040888963407);
    (0..dim)
        .map(|_| {
            x = x
                .wrapping_mul(6364136223846793005)
                .wrapping_add(1442695040888963407);
            (x >> 40) as f32 / (1u64 << 24) as f32
        })
        .collect()
}

/// One item carrying its own vector.
pub fn vector_item(filepath: &str, vector: Vec<f32>, attributes: Attributes) -> InsertRequest {
    InsertRequest {
        filepath: filepath.into(),
        vector: Some(Vector { values: vector }),
        attributes,
        ..Default::default()
    }
}

/// Sends `items` on one stream whose first message names `collection` and
/// states `fingerprint` (none when empty).
pub async fn insert_items(
    client: &mut Client,
    collection: &str,
    fingerprint: &str,
    mut items: Vec<InsertRequest>,
) -> crate::insert::Answers {
    if let Some(first) = items.first_mut() {
        first.collection = collection.into();
        first.fingerprint = fingerprint.into();
    }
    crate::insert::collect(client.insert(tokio_stream::iter(items)).await).await
}

/// Whether a stored row passes `filter`, by the API's documented rules:
/// every condition holds; values of different types are unequal and
/// unordered; a missing attribute passes only `exists: false`.
pub fn passes(filter: &Filter, filepath: &str, attributes: &Json) -> bool {
    filter.all.iter().all(|c| holds(c, filepath, attributes))
}

fn holds(c: &Condition, filepath: &str, attributes: &Json) -> bool {
    use condition::Test as T;
    let path = Json::String(filepath.into());
    let value = match c.subject.as_ref().expect("a subject") {
        condition::Subject::Attribute(k) => attributes.get(k),
        condition::Subject::Filepath(_) => Some(&path),
    };
    let test = c.test.as_ref().expect("a test");
    let Some(v) = value else {
        return matches!(test, T::Exists(false));
    };
    let cmp = |l: &AttributeValue| compare(v, l);
    use std::cmp::Ordering::*;
    match test {
        T::Eq(l) => cmp(l) == Some(Equal),
        T::Ne(l) => cmp(l) != Some(Equal),
        T::In(ls) => ls.values.iter().any(|l| cmp(l) == Some(Equal)),
        T::Lt(l) => cmp(l) == Some(Less),
        T::Le(l) => matches!(cmp(l), Some(Less | Equal)),
        T::Gt(l) => cmp(l) == Some(Greater),
        T::Ge(l) => matches!(cmp(l), Some(Greater | Equal)),
        T::Prefix(p) => v.as_str().is_some_and(|s| s.starts_with(p.as_str())),
        T::Exists(e) => *e,
        T::Contains(s) => v
            .as_array()
            .is_some_and(|a| a.iter().any(|i| i.as_str() == Some(s.as_str()))),
    }
}

fn compare(stored: &Json, l: &AttributeValue) -> Option<std::cmp::Ordering> {
    match (stored, l.value.as_ref()?) {
        (Json::String(s), Value::Text(t)) => Some(s.as_bytes().cmp(t.as_bytes())),
        (Json::Number(n), Value::Integer(i)) => n.as_f64()?.partial_cmp(&(*i as f64)),
        (Json::Number(n), Value::Number(f)) => n.as_f64()?.partial_cmp(f),
        (Json::Bool(b), Value::Flag(f)) => Some(b.cmp(f)),
        _ => None,
    }
}

/// What a FindDuplicates call sent: its groups (as member ids, in order)
/// with their members, and the last progress, which must say done.
pub struct Scanned {
    pub groups: Vec<Vec<imgsearch_proto::v1::DuplicateMember>>,
    pub last: imgsearch_proto::v1::DuplicateScan,
}

impl Scanned {
    /// Each group's filepaths, sorted, and the groups sorted.
    pub fn filepath_sets(&self) -> Vec<Vec<String>> {
        let mut sets: Vec<Vec<String>> = self
            .groups
            .iter()
            .map(|g| {
                let mut s: Vec<String> = g.iter().map(|m| m.filepath.clone()).collect();
                s.sort();
                s
            })
            .collect();
        sets.sort();
        sets
    }
}

/// Runs FindDuplicates to its end, calling `each` after every message.
pub async fn find_duplicates(
    client: &mut Client,
    req: impl tonic::IntoRequest<imgsearch_proto::v1::FindDuplicatesRequest>,
    mut each: impl FnMut(),
) -> Result<Scanned, tonic::Status> {
    use imgsearch_proto::v1::find_duplicates_response::Event;
    let mut stream = client.find_duplicates(req).await?.into_inner();
    let (mut groups, mut last) = (Vec::new(), None);
    while let Some(m) = stream.message().await? {
        match m.event.expect("every message is a group or progress") {
            Event::Group(g) => groups.push(g.members),
            Event::Progress(p) => last = Some(p),
        }
        each();
    }
    let last = last.expect("progress at the end");
    assert!(last.done, "the last progress says done: {last:?}");
    Ok(Scanned { groups, last })
}

/// A copy of `img` as a catalogue gets one: re-encoded as JPEG at
/// quality 70.
pub fn jpeg_70(img: &image::DynamicImage) -> Vec<u8> {
    let mut out = Vec::new();
    image::codecs::jpeg::JpegEncoder::new_with_quality(&mut out, 70)
        .encode_image(&img.to_rgb8())
        .expect("encode JPEG");
    out
}

/// A copy of `img` resized to half its sides, as PNG.
pub fn half(img: &image::DynamicImage) -> Vec<u8> {
    let (w, h) = (img.width() / 2, img.height() / 2);
    let small = img.resize_exact(w, h, image::imageops::FilterType::Triangle);
    let mut out = std::io::Cursor::new(Vec::new());
    small
        .write_to(&mut out, image::ImageFormat::Png)
        .expect("encode PNG");
    out.into_inner()
}
