//! Typed filters: the API's conditions checked into domain terms, never a
//! caller's expression text. `milvus::expr` compiles them, quoting every
//! value, so no filter can change what the expression means.

use imgsearch_proto::{
    limits::{MAX_FILTER_CONDITIONS, MAX_FILTER_IN_VALUES, MAX_FILTER_TEXT_BYTES},
    v1::{self as pb, attribute_value::Value, condition},
};

use crate::{attributes::key_problem, error::GatewayError};

/// What a condition tests.
#[derive(Clone, Debug, PartialEq)]
pub enum Subject {
    Attribute(String),
    Filepath,
}

/// One value a condition compares with.
#[derive(Clone, Debug, PartialEq)]
pub enum Literal {
    Text(String),
    Integer(i64),
    Number(f64),
    Flag(bool),
}

#[derive(Clone, Debug, PartialEq)]
pub enum Test {
    Eq(Literal),
    /// Present and different.
    Ne(Literal),
    In(Vec<Literal>),
    Lt(Literal),
    Le(Literal),
    Gt(Literal),
    Ge(Literal),
    Prefix(String),
    Exists(bool),
    Contains(String),
}

#[derive(Clone, Debug, PartialEq)]
pub struct Condition {
    pub subject: Subject,
    pub test: Test,
}

/// Conditions that must all hold; none selects every row.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Filter {
    pub all: Vec<Condition>,
}

impl Filter {
    /// Checks an API filter; `None` is the empty filter.
    pub fn parse(raw: Option<pb::Filter>) -> Result<Self, GatewayError> {
        let conditions = raw.map(|f| f.all).unwrap_or_default();
        if conditions.len() > MAX_FILTER_CONDITIONS {
            return Err(bad(format!(
                "the filter has {} conditions; at most {MAX_FILTER_CONDITIONS} \
                 (MAX_FILTER_CONDITIONS)",
                conditions.len()
            )));
        }
        let all = conditions
            .into_iter()
            .enumerate()
            .map(|(i, c)| {
                Condition::parse(c).map_err(|m| bad(format!("filter condition {i}: {m}")))
            })
            .collect::<Result<_, _>>()?;
        Ok(Self { all })
    }

    pub fn is_empty(&self) -> bool {
        self.all.is_empty()
    }

    /// Whether it tests attributes, which only an extended collection has.
    pub fn tests_attributes(&self) -> bool {
        self.all
            .iter()
            .any(|c| matches!(c.subject, Subject::Attribute(_)))
    }
}

fn bad(m: String) -> GatewayError {
    GatewayError::InvalidArgument(m)
}

impl Condition {
    fn parse(c: pb::Condition) -> Result<Self, String> {
        let subject = match c.subject {
            Some(condition::Subject::Attribute(key)) => match key_problem(&key) {
                Some(problem) => return Err(problem),
                None => Subject::Attribute(key),
            },
            Some(condition::Subject::Filepath(true)) => Subject::Filepath,
            Some(condition::Subject::Filepath(false)) | None => {
                return Err("name an `attribute`, or set `filepath: true`".into())
            }
        };
        use condition::Test as T;
        let test = match c.test {
            None => {
                return Err(
                    "give a test (eq, ne, in, lt, le, gt, ge, prefix, exists, contains)".into(),
                )
            }
            Some(T::Eq(v)) => Test::Eq(literal(v)?),
            Some(T::Ne(v)) => Test::Ne(literal(v)?),
            Some(T::In(list)) => {
                let n = list.values.len();
                if n == 0 || n > MAX_FILTER_IN_VALUES {
                    return Err(format!(
                        "`in` has {n} values; 1 to {MAX_FILTER_IN_VALUES} (MAX_FILTER_IN_VALUES)"
                    ));
                }
                Test::In(
                    list.values
                        .into_iter()
                        .map(literal)
                        .collect::<Result<_, _>>()?,
                )
            }
            Some(T::Lt(v)) => Test::Lt(ordered(v)?),
            Some(T::Le(v)) => Test::Le(ordered(v)?),
            Some(T::Gt(v)) => Test::Gt(ordered(v)?),
            Some(T::Ge(v)) => Test::Ge(ordered(v)?),
            Some(T::Prefix(p)) => Test::Prefix(text(p)?),
            Some(T::Exists(e)) => Test::Exists(e),
            Some(T::Contains(s)) => Test::Contains(text(s)?),
        };
        if subject == Subject::Filepath {
            let texts_only = match &test {
                Test::Eq(l)
                | Test::Ne(l)
                | Test::Lt(l)
                | Test::Le(l)
                | Test::Gt(l)
                | Test::Ge(l) => {
                    matches!(l, Literal::Text(_))
                }
                Test::In(ls) => ls.iter().all(|l| matches!(l, Literal::Text(_))),
                Test::Prefix(_) => true,
                Test::Exists(_) | Test::Contains(_) => {
                    return Err("the filepath takes eq, ne, in, lt, le, gt, ge and prefix".into())
                }
            };
            if !texts_only {
                return Err("the filepath is compared with texts only".into());
            }
        }
        Ok(Self { subject, test })
    }
}

fn text(s: String) -> Result<String, String> {
    if s.len() > MAX_FILTER_TEXT_BYTES {
        return Err(format!(
            "a text of {} bytes; at most {MAX_FILTER_TEXT_BYTES} (MAX_FILTER_TEXT_BYTES)",
            s.len()
        ));
    }
    Ok(s)
}

fn literal(v: pb::AttributeValue) -> Result<Literal, String> {
    match v.value {
        Some(Value::Text(s)) => Ok(Literal::Text(text(s)?)),
        Some(Value::Integer(i)) => Ok(Literal::Integer(i)),
        Some(Value::Number(f)) if f.is_finite() => Ok(Literal::Number(f)),
        Some(Value::Number(f)) => Err(format!("{f} is not a finite number")),
        Some(Value::Flag(b)) => Ok(Literal::Flag(b)),
        Some(Value::Texts(_)) => {
            Err("a list is no value to compare with; test a list with `contains`".into())
        }
        None => Err("a condition's value is missing".into()),
    }
}

/// A value with an order: not a flag.
fn ordered(v: pb::AttributeValue) -> Result<Literal, String> {
    match literal(v)? {
        Literal::Flag(_) => Err("true and false have no order".into()),
        l => Ok(l),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cond(subject: condition::Subject, test: condition::Test) -> pb::Condition {
        pb::Condition {
            subject: Some(subject),
            test: Some(test),
        }
    }

    fn text_value(s: &str) -> pb::AttributeValue {
        pb::AttributeValue {
            value: Some(Value::Text(s.into())),
        }
    }

    fn parse(c: pb::Condition) -> Result<Filter, GatewayError> {
        Filter::parse(Some(pb::Filter { all: vec![c] }))
    }

    #[test]
    fn bad_keys_lists_flags_and_filepath_tests_are_refused() {
        let attr = |k: &str| condition::Subject::Attribute(k.into());
        assert!(parse(cond(attr("a b"), condition::Test::Exists(true))).is_err());
        let list = pb::AttributeValue {
            value: Some(Value::Texts(pb::TextList::default())),
        };
        assert!(parse(cond(attr("k"), condition::Test::Eq(list))).is_err());
        let flag = pb::AttributeValue {
            value: Some(Value::Flag(true)),
        };
        assert!(parse(cond(attr("k"), condition::Test::Lt(flag))).is_err());
        let fp = condition::Subject::Filepath(true);
        assert!(parse(cond(fp.clone(), condition::Test::Exists(true))).is_err());
        let one = pb::AttributeValue {
            value: Some(Value::Integer(1)),
        };
        assert!(parse(cond(fp.clone(), condition::Test::Eq(one))).is_err());
        assert!(parse(cond(fp, condition::Test::Eq(text_value("a")))).is_ok());
        let empty_in = condition::Test::In(pb::AttributeValues::default());
        assert!(parse(cond(attr("k"), empty_in)).is_err());
        let long = condition::Test::Prefix("x".repeat(MAX_FILTER_TEXT_BYTES + 1));
        assert!(parse(cond(attr("k"), long)).is_err());
    }

    #[test]
    fn too_many_conditions_are_refused_naming_the_limit() {
        let c = cond(
            condition::Subject::Filepath(true),
            condition::Test::Prefix("a".into()),
        );
        let e = Filter::parse(Some(pb::Filter {
            all: vec![c; MAX_FILTER_CONDITIONS + 1],
        }))
        .unwrap_err();
        assert!(e.to_string().contains("MAX_FILTER_CONDITIONS"), "{e}");
    }
}
