//! A search as a form, the way `curl -F image=@q.jpg -F top_k=3` sends it:
//! each `image` part is one query image, each other part one field of
//! `SearchRequest` by its proto or JSON name, its text read as JSON where
//! it is JSON (`3`, `true`, a filter object) and as a string otherwise.

use axum::{
    body::Body,
    extract::{FromRequest, Multipart},
    http::{header, request::Parts, HeaderMap, Request},
};
use bytes::Bytes;
use imgsearch_proto::v1::SearchRequest;
use serde_json::{Map, Value};

use super::problem::Problem;

/// Parts that carry query images.
const IMAGE_PARTS: [&str; 2] = ["image", "images"];

/// The other repeated fields of `SearchRequest`: a list even when the form
/// gives one.
const LISTS: [&str; 2] = ["vectors", "like"];

pub fn is_form(headers: &HeaderMap) -> bool {
    headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.to_ascii_lowercase().starts_with("multipart/form-data"))
}

/// The search a form asks for. `parts` are the request's (its extensions
/// lift axum's own body limit: the body was read within ours).
pub async fn search_request(parts: Parts, body: Bytes) -> Result<SearchRequest, Problem> {
    let request = Request::from_parts(parts, Body::from(body));
    let mut form = Multipart::from_request(request, &())
        .await
        .map_err(|e| Problem::invalid(format!("the form: {}", e.body_text())))?;
    let (mut images, mut fields) = (Vec::new(), Map::new());
    while let Some(part) = form
        .next_field()
        .await
        .map_err(|e| Problem::invalid(format!("the form: {}", e.body_text())))?
    {
        let name = part.name().unwrap_or_default().to_string();
        let bytes = part
            .bytes()
            .await
            .map_err(|e| Problem::invalid(format!("form part {name:?}: {}", e.body_text())))?;
        if IMAGE_PARTS.contains(&name.as_str()) {
            images.push(bytes);
            continue;
        }
        let text = std::str::from_utf8(&bytes)
            .map_err(|_| Problem::invalid(format!("form field {name:?} is not UTF-8 text")))?;
        let value = serde_json::from_str(text).unwrap_or_else(|_| Value::String(text.into()));
        match fields.get_mut(&name) {
            None => {
                fields.insert(name, value);
            }
            Some(Value::Array(values)) => values.push(value),
            Some(first) => *first = Value::Array(vec![first.take(), value]),
        }
    }
    for list in LISTS {
        if let Some(value) = fields.get_mut(list).filter(|v| !v.is_array()) {
            *value = Value::Array(vec![value.take()]);
        }
    }
    let mut search: SearchRequest = serde_json::from_value(Value::Object(fields))
        .map_err(|e| Problem::invalid(format!("the form's fields: {e}")))?;
    search.images.extend(images);
    Ok(search)
}
