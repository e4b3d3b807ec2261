//! Attributes and filters as the command line spells them.
//!
//! - `--attr KEY=VALUE` stores a text; `KEY:int=3`, `KEY:float=2.5`,
//!   `KEY:bool=true`, `KEY:list=red,blue` and `KEY:text=3` choose the type.
//! - `--attrs-file F`: JSON lines `{"filepath": ..., "attributes": {...}}`,
//!   typed as JSON types them (a whole number is an integer, `2.0` a
//!   float, a list of strings a list); they win over `--attr` for a key.
//! - `--where`: `KEY=V`, `KEY!=V`, `KEY<V`, `KEY<=V`, `KEY>V`, `KEY>=V`,
//!   `KEY^=PREFIX`, `KEY in V1,V2`, `KEY has V` (a list holding V),
//!   `KEY exists`, `KEY missing`. A value is an integer, float, true or
//!   false when it reads as one, a text otherwise; in double quotes it is
//!   always a text (`sku="007"`).

use std::{
    collections::{BTreeMap, HashMap},
    path::Path,
};

use imgsearch_proto::v1::{
    attribute_value::Value, condition, AttributeValue, AttributeValues, Condition, Filter, TextList,
};
use serde_json::Value as Json;

use crate::error::CliError;

pub type Attributes = BTreeMap<String, AttributeValue>;

fn value(v: Value) -> AttributeValue {
    AttributeValue { value: Some(v) }
}

/// One `--attr KEY[:TYPE]=VALUE`.
pub fn parse_attr(s: &str) -> Result<(String, AttributeValue), String> {
    let (lhs, raw) = s
        .split_once('=')
        .ok_or_else(|| format!("{s:?}: write KEY=VALUE or KEY:TYPE=VALUE"))?;
    let (key, kind) = lhs.split_once(':').unwrap_or((lhs, "text"));
    let bad = |what: &str| format!("{s:?}: {raw:?} is not {what}");
    let v = match kind {
        "text" => Value::Text(raw.to_string()),
        "int" => Value::Integer(raw.parse().map_err(|_| bad("an integer"))?),
        "float" => Value::Number(
            raw.parse::<f64>()
                .ok()
                .filter(|f| f.is_finite())
                .ok_or_else(|| bad("a finite number"))?,
        ),
        "bool" => Value::Flag(raw.parse().map_err(|_| bad("true or false"))?),
        "list" => Value::Texts(TextList {
            values: if raw.is_empty() {
                vec![]
            } else {
                raw.split(',').map(str::to_string).collect()
            },
        }),
        other => {
            return Err(format!(
                "{s:?}: unknown type {other:?} (text, int, float, bool, list)"
            ))
        }
    };
    Ok((key.to_string(), value(v)))
}

/// A JSON value as an attribute, typed by its JSON type.
pub fn from_json(key: &str, j: &Json) -> Result<AttributeValue, String> {
    let v = match j {
        Json::String(s) => Value::Text(s.clone()),
        Json::Bool(b) => Value::Flag(*b),
        Json::Number(n) => match n.as_i64() {
            Some(i) if !n.to_string().contains(['.', 'e', 'E']) => Value::Integer(i),
            _ => Value::Number(n.as_f64().ok_or("a number out of range")?),
        },
        Json::Array(items) => Value::Texts(TextList {
            values: items
                .iter()
                .map(|i| i.as_str().map(str::to_string))
                .collect::<Option<_>>()
                .ok_or_else(|| format!("attribute {key:?}: a list holds strings only"))?,
        }),
        Json::Null | Json::Object(_) => {
            return Err(format!(
                "attribute {key:?}: a text, number, bool or list of texts"
            ))
        }
    };
    Ok(value(v))
}

/// An attribute as JSON, for `--json` output and tables.
pub fn to_json(v: &AttributeValue) -> Json {
    match &v.value {
        Some(Value::Text(s)) => Json::String(s.clone()),
        Some(Value::Integer(i)) => Json::from(*i),
        Some(Value::Number(f)) => Json::from(*f),
        Some(Value::Flag(b)) => Json::Bool(*b),
        Some(Value::Texts(l)) => Json::from(l.values.clone()),
        None => Json::Null,
    }
}

/// Attributes for each ingested file: those of `--attr`, and a sidecar's.
#[derive(Debug, Default)]
pub struct IngestAttributes {
    pub common: Attributes,
    pub per_file: HashMap<String, Attributes>,
}

impl IngestAttributes {
    pub fn load(
        common: Vec<(String, AttributeValue)>,
        file: Option<&Path>,
    ) -> Result<Self, CliError> {
        let mut out = Self {
            common: common.into_iter().collect(),
            per_file: HashMap::new(),
        };
        let Some(path) = file else { return Ok(out) };
        let text = std::fs::read_to_string(path).map_err(|e| {
            CliError::Usage(format!("cannot read --attrs-file {}: {e}", path.display()))
        })?;
        for (n, line) in text.lines().enumerate() {
            if line.trim().is_empty() {
                continue;
            }
            let bad = |m: String| CliError::Usage(format!("{}:{}: {m}", path.display(), n + 1));
            let j: Json = serde_json::from_str(line).map_err(|e| bad(e.to_string()))?;
            let filepath = j["filepath"]
                .as_str()
                .ok_or_else(|| bad("no \"filepath\" string".into()))?;
            let attrs = j["attributes"]
                .as_object()
                .ok_or_else(|| bad("no \"attributes\" object".into()))?;
            let entry = out.per_file.entry(filepath.to_string()).or_default();
            for (k, v) in attrs {
                entry.insert(k.clone(), from_json(k, v).map_err(bad)?);
            }
        }
        Ok(out)
    }

    /// What the file stored as `filepath` carries.
    pub fn of(&self, filepath: &str) -> Attributes {
        let mut a = self.common.clone();
        if let Some(own) = self.per_file.get(filepath) {
            a.extend(own.iter().map(|(k, v)| (k.clone(), v.clone())));
        }
        a
    }
}

/// A `--where` value: quoted, a text; otherwise what it reads as.
fn literal(raw: &str) -> AttributeValue {
    let raw = raw.trim();
    if let Some(text) = raw.strip_prefix('"').and_then(|r| r.strip_suffix('"')) {
        return value(Value::Text(text.to_string()));
    }
    value(if let Ok(i) = raw.parse::<i64>() {
        Value::Integer(i)
    } else if let Some(f) = raw.parse::<f64>().ok().filter(|f| f.is_finite()) {
        Value::Number(f)
    } else if let Ok(b) = raw.parse::<bool>() {
        Value::Flag(b)
    } else {
        Value::Text(raw.to_string())
    })
}

/// Builds a test from its value.
type MakeTest = fn(AttributeValue) -> condition::Test;

/// One `--where` condition.
pub fn parse_where(s: &str) -> Result<Condition, String> {
    use condition::Test as T;
    let attribute = |key: &str| Some(condition::Subject::Attribute(key.trim().to_string()));
    let words: Vec<&str> = s.splitn(3, ' ').collect();
    // The word forms need a plain key: `title=born in 1990` is a `=`.
    let plain = |k: &str| k.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_');
    let (key, test) = match words.as_slice() {
        [key, "exists"] if plain(key) => (*key, T::Exists(true)),
        [key, "missing"] if plain(key) => (*key, T::Exists(false)),
        [key, "in", list] if plain(key) => (
            *key,
            T::In(AttributeValues {
                values: list.split(',').map(literal).collect(),
            }),
        ),
        [key, "has", v] if plain(key) => (*key, T::Contains(v.trim_matches('"').to_string())),
        _ => {
            // The longest operator that occurs first.
            let ops: [(&str, MakeTest); 7] = [
                ("!=", T::Ne),
                ("<=", T::Le),
                (">=", T::Ge),
                ("^=", |v| T::Prefix(text_of(v))),
                ("=", T::Eq),
                ("<", T::Lt),
                (">", T::Gt),
            ];
            let found = ops
                .iter()
                .filter_map(|(op, make)| s.find(op).map(|at| (at, op.len(), make)))
                .min_by_key(|(at, len, _)| (*at, std::cmp::Reverse(*len)));
            let Some((at, len, make)) = found else {
                return Err(format!(
                    "{s:?}: write KEY=V, KEY!=V, KEY<V, KEY<=V, KEY>V, KEY>=V, KEY^=PREFIX, \
                     'KEY in V1,V2', 'KEY has V', 'KEY exists' or 'KEY missing'"
                ));
            };
            return Ok(Condition {
                subject: attribute(&s[..at]),
                test: Some(make(literal(&s[at + len..]))),
            });
        }
    };
    Ok(Condition {
        subject: attribute(key),
        test: Some(test),
    })
}

fn text_of(v: AttributeValue) -> String {
    match v.value {
        Some(Value::Text(t)) => t,
        Some(other) => to_json(&value(other)).to_string(),
        None => String::new(),
    }
}

/// The filter of `--where` conditions and a `--prefix`; `None` when empty.
pub fn filter(wheres: &[Condition], prefix: Option<&str>) -> Option<Filter> {
    let mut all = wheres.to_vec();
    if let Some(p) = prefix {
        all.push(Condition {
            subject: Some(condition::Subject::Filepath(true)),
            test: Some(condition::Test::Prefix(p.to_string())),
        });
    }
    (!all.is_empty()).then_some(Filter { all })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn attrs_are_typed_by_their_suffix() {
        assert_eq!(parse_attr("n:int=3").unwrap().1, value(Value::Integer(3)));
        assert_eq!(
            parse_attr("cat=a=b").unwrap(),
            ("cat".into(), value(Value::Text("a=b".into())))
        );
        assert_eq!(
            parse_attr("tags:list=a,b").unwrap().1,
            value(Value::Texts(TextList {
                values: vec!["a".into(), "b".into()]
            }))
        );
        assert!(parse_attr("n:int=x").is_err());
        assert!(parse_attr("f:float=NaN").is_err());
        assert!(parse_attr("novalue").is_err());
    }

    #[test]
    fn json_numbers_keep_their_kind() {
        assert_eq!(
            from_json("k", &serde_json::json!(3)).unwrap(),
            value(Value::Integer(3))
        );
        assert_eq!(
            from_json("k", &serde_json::json!(3.0)).unwrap(),
            value(Value::Number(3.0))
        );
        assert!(from_json("k", &serde_json::json!([1])).is_err());
    }

    #[test]
    fn where_conditions_take_the_first_longest_operator() {
        let c = parse_where("price<=100").unwrap();
        assert_eq!(
            c.test,
            Some(condition::Test::Le(value(Value::Integer(100))))
        );
        let c = parse_where("sku=\"007\"").unwrap();
        assert_eq!(
            c.test,
            Some(condition::Test::Eq(value(Value::Text("007".into()))))
        );
        let c = parse_where("name=a<b").unwrap();
        assert_eq!(
            c.subject,
            Some(condition::Subject::Attribute("name".into()))
        );
        assert_eq!(
            c.test,
            Some(condition::Test::Eq(value(Value::Text("a<b".into()))))
        );
        let c = parse_where("cat in shoes,hats").unwrap();
        assert!(matches!(c.test, Some(condition::Test::In(ref l)) if l.values.len() == 2));
        assert_eq!(
            parse_where("tags missing").unwrap().test,
            Some(condition::Test::Exists(false))
        );
        assert_eq!(
            parse_where("path^=a/b").unwrap().test,
            Some(condition::Test::Prefix("a/b".into()))
        );
        assert!(parse_where("nothing").is_err());
        let c = parse_where("title=born in 1990").unwrap();
        assert_eq!(
            c.test,
            Some(condition::Test::Eq(value(Value::Text(
                "born in 1990".into()
            ))))
        );
    }
}
