//! A row's typed attributes: checked against the limits of
//! `imgsearch_proto::limits` before an item costs anything, stored as one
//! JSON object in the extended schema's `attributes` field, and read back
//! into the same types. Integers are written as JSON integers and numbers
//! always with a fraction or exponent (`3.0`), so each value comes back as
//! the type it went in as.

use std::collections::BTreeMap;

use imgsearch_proto::{
    limits::{ATTRIBUTE_KEY_MAX_BYTES, MAX_ATTRIBUTES, MAX_ATTRIBUTES_BYTES, MAX_ATTRIBUTE_LIST},
    v1::{attribute_value::Value, AttributeValue, TextList},
};
use serde_json::{Map, Number, Value as Json};

/// Why a key cannot name an attribute, if it cannot.
pub fn key_problem(key: &str) -> Option<String> {
    let ok = !key.is_empty()
        && key.len() <= ATTRIBUTE_KEY_MAX_BYTES
        && key.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_');
    (!ok).then(|| {
        format!(
            "attribute key {:?} must be 1 to {ATTRIBUTE_KEY_MAX_BYTES} ASCII letters, digits \
             or `_` (ATTRIBUTE_KEY_MAX_BYTES)",
            shown(key)
        )
    })
}

/// A caller's string as an error message echoes it: its first 80
/// characters at most.
pub fn shown(s: &str) -> String {
    match s.char_indices().nth(80) {
        Some((at, _)) => format!("{}...", &s[..at]),
        None => s.to_string(),
    }
}

/// One value as JSON; `Err` names what is wrong with it.
pub fn value_to_json(key: &str, v: &AttributeValue) -> Result<Json, String> {
    Ok(match &v.value {
        None => return Err(format!("attribute {key:?} has no value")),
        Some(Value::Text(s)) => Json::String(s.clone()),
        Some(Value::Integer(i)) => Json::Number((*i).into()),
        Some(Value::Number(f)) => Json::Number(
            Number::from_f64(*f)
                .ok_or_else(|| format!("attribute {key:?} is {f}; numbers must be finite"))?,
        ),
        Some(Value::Flag(b)) => Json::Bool(*b),
        Some(Value::Texts(list)) => {
            if list.values.len() > MAX_ATTRIBUTE_LIST {
                return Err(format!(
                    "attribute {key:?} lists {} strings; at most {MAX_ATTRIBUTE_LIST} \
                     (MAX_ATTRIBUTE_LIST)",
                    list.values.len()
                ));
            }
            Json::Array(list.values.iter().cloned().map(Json::String).collect())
        }
    })
}

/// An item's attributes as the JSON object stored, or why they cannot be
/// stored (naming the limit).
pub fn to_json(attributes: &BTreeMap<String, AttributeValue>) -> Result<Json, String> {
    if attributes.len() > MAX_ATTRIBUTES {
        return Err(format!(
            "{} attributes; at most {MAX_ATTRIBUTES} per item (MAX_ATTRIBUTES)",
            attributes.len()
        ));
    }
    let mut object = Map::new();
    for (key, value) in attributes {
        if let Some(problem) = key_problem(key) {
            return Err(problem);
        }
        object.insert(key.clone(), value_to_json(key, value)?);
    }
    let json = Json::Object(object);
    let bytes = json.to_string().len();
    if bytes > MAX_ATTRIBUTES_BYTES {
        return Err(format!(
            "the attributes are {bytes} bytes of JSON; at most {MAX_ATTRIBUTES_BYTES} per item \
             (MAX_ATTRIBUTES_BYTES)"
        ));
    }
    Ok(json)
}

/// Stored JSON back as typed attributes. Values of other shapes (written
/// by another tool) are left out rather than guessed at.
pub fn from_json(bytes: &[u8]) -> BTreeMap<String, AttributeValue> {
    let Ok(Json::Object(object)) = serde_json::from_slice::<Json>(bytes) else {
        return BTreeMap::new();
    };
    object
        .into_iter()
        .filter_map(|(k, v)| {
            let value = match v {
                Json::String(s) => Value::Text(s),
                Json::Bool(b) => Value::Flag(b),
                Json::Number(n) => match n.as_i64() {
                    Some(i) => Value::Integer(i),
                    None => Value::Number(n.as_f64()?),
                },
                Json::Array(items) => Value::Texts(TextList {
                    values: items
                        .into_iter()
                        .map(|i| match i {
                            Json::String(s) => Some(s),
                            _ => None,
                        })
                        .collect::<Option<_>>()?,
                }),
                Json::Null | Json::Object(_) => return None,
            };
            Some((k, AttributeValue { value: Some(value) }))
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn attrs(pairs: &[(&str, Value)]) -> BTreeMap<String, AttributeValue> {
        pairs
            .iter()
            .map(|(k, v)| {
                (
                    k.to_string(),
                    AttributeValue {
                        value: Some(v.clone()),
                    },
                )
            })
            .collect()
    }

    #[test]
    fn every_type_round_trips_through_the_stored_json() {
        let a = attrs(&[
            ("t", Value::Text("a\"b\n".into())),
            ("i", Value::Integer(-3)),
            ("big", Value::Integer(i64::MAX)),
            ("f", Value::Number(3.0)),
            ("b", Value::Flag(true)),
            (
                "l",
                Value::Texts(TextList {
                    values: vec!["x".into(), "".into()],
                }),
            ),
        ]);
        let stored = to_json(&a).expect("valid").to_string();
        assert_eq!(from_json(stored.as_bytes()), a);
    }

    #[test]
    fn keys_and_limits_are_checked_and_named() {
        let bad_key = to_json(&attrs(&[("a-b", Value::Flag(true))])).unwrap_err();
        assert!(bad_key.contains("ATTRIBUTE_KEY_MAX_BYTES"), "{bad_key}");
        let long_key = "k".repeat(65);
        assert!(to_json(&attrs(&[(&long_key, Value::Flag(true))])).is_err());
        let many: Vec<(String, Value)> = (0..33)
            .map(|i| (format!("k{i}"), Value::Integer(i)))
            .collect();
        let many: Vec<(&str, Value)> = many.iter().map(|(k, v)| (k.as_str(), v.clone())).collect();
        assert!(to_json(&attrs(&many))
            .unwrap_err()
            .contains("MAX_ATTRIBUTES"));
        let big = to_json(&attrs(&[("t", Value::Text("x".repeat(5000)))])).unwrap_err();
        assert!(big.contains("MAX_ATTRIBUTES_BYTES"), "{big}");
        let list = Value::Texts(TextList {
            values: vec!["x".into(); 33],
        });
        assert!(to_json(&attrs(&[("l", list)]))
            .unwrap_err()
            .contains("MAX_ATTRIBUTE_LIST"));
        assert!(to_json(&attrs(&[("n", Value::Number(f64::NAN))])).is_err());
    }
}
