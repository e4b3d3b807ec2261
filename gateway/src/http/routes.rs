//! The HTTP API's routes, in one table that both the dispatcher and the
//! OpenAPI document read, so the document lists exactly what is answered.
//!
//! Paths follow the usual mapping of gRPC to HTTP (Google's AIP-136):
//! collections are resources, and calls that are not reads or deletes of
//! one are custom methods, `POST /v1/collections/{collection}:search`.

use axum::http::Method;

/// What a route's request body is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RequestBody {
    /// None is read.
    Empty,
    /// The request message as JSON.
    Json,
    /// JSON, or a multipart form with one `image` part per query image.
    JsonOrForm,
    /// One request message per line (NDJSON).
    Lines,
}

/// What a route answers with on success.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Answer {
    /// The response message as JSON.
    Json,
    /// One `{"result": message}` per line, then `{"status": outcome}`.
    Lines,
    /// A document that is not a message (the OpenAPI document).
    Document,
    /// A stored image's bytes (`--media-root`).
    Media,
}

/// One route.
#[derive(Debug)]
pub struct Route {
    /// The gRPC method it calls, or what it serves.
    pub name: &'static str,
    pub method: Method,
    /// Path template; `{collection}` is the only parameter.
    pub path: &'static str,
    /// The request message (its proto name in `imgsearch.v1`).
    pub request: &'static str,
    /// The field of `request` the path's `{collection}` fills.
    pub path_field: Option<&'static str>,
    pub body: RequestBody,
    /// The response message.
    pub response: &'static str,
    pub answer: Answer,
}

/// The parameter every collection path holds.
pub const COLLECTION: &str = "{collection}";

const fn rpc(
    name: &'static str,
    method: Method,
    path: &'static str,
    (request, path_field, body): (&'static str, Option<&'static str>, RequestBody),
    (response, answer): (&'static str, Answer),
) -> Route {
    Route {
        name,
        method,
        path,
        request,
        path_field,
        body,
        response,
        answer,
    }
}

/// Every route. A gRPC method missing here has no HTTP route: the tests
/// check that every method of `imgsearch.v1.ImageSearch` has one.
pub static ROUTES: [Route; 13] = [
    rpc(
        "ListCollections",
        Method::GET,
        "/v1/collections",
        ("ListCollectionsRequest", None, RequestBody::Empty),
        ("ListCollectionsResponse", Answer::Json),
    ),
    rpc(
        "CreateCollection",
        Method::POST,
        "/v1/collections",
        ("CreateCollectionRequest", None, RequestBody::Json),
        ("CreateCollectionResponse", Answer::Json),
    ),
    rpc(
        "DescribeCollection",
        Method::GET,
        "/v1/collections/{collection}",
        (
            "DescribeCollectionRequest",
            Some("name"),
            RequestBody::Empty,
        ),
        ("CollectionInfo", Answer::Json),
    ),
    rpc(
        "DropCollection",
        Method::DELETE,
        "/v1/collections/{collection}",
        ("DropCollectionRequest", Some("name"), RequestBody::Empty),
        ("DropCollectionResponse", Answer::Json),
    ),
    rpc(
        "Insert",
        Method::POST,
        "/v1/collections/{collection}:insert",
        ("InsertRequest", Some("collection"), RequestBody::Lines),
        ("InsertResponse", Answer::Lines),
    ),
    rpc(
        "Search",
        Method::POST,
        "/v1/collections/{collection}:search",
        ("SearchRequest", Some("collection"), RequestBody::JsonOrForm),
        ("SearchResponse", Answer::Json),
    ),
    rpc(
        "SearchStream",
        Method::POST,
        "/v1/collections/{collection}:searchStream",
        (
            "SearchStreamRequest",
            Some("collection"),
            RequestBody::Lines,
        ),
        ("SearchStreamResponse", Answer::Lines),
    ),
    rpc(
        "Delete",
        Method::POST,
        "/v1/collections/{collection}:delete",
        ("DeleteRequest", Some("collection"), RequestBody::Json),
        ("DeleteResponse", Answer::Json),
    ),
    rpc(
        "FindFilepaths",
        Method::POST,
        "/v1/collections/{collection}:findFilepaths",
        (
            "FindFilepathsRequest",
            Some("collection"),
            RequestBody::Json,
        ),
        ("FindFilepathsResponse", Answer::Json),
    ),
    rpc(
        "Count",
        Method::POST,
        "/v1/collections/{collection}:count",
        ("CountRequest", Some("collection"), RequestBody::Json),
        ("CountResponse", Answer::Json),
    ),
    rpc(
        "FindDuplicates",
        Method::POST,
        "/v1/collections/{collection}:findDuplicates",
        (
            "FindDuplicatesRequest",
            Some("collection"),
            RequestBody::Json,
        ),
        ("FindDuplicatesResponse", Answer::Lines),
    ),
    Route {
        name: "Media",
        method: Method::GET,
        path: "/v1/collections/{collection}/media",
        request: "",
        path_field: None,
        body: RequestBody::Empty,
        response: "",
        answer: Answer::Media,
    },
    Route {
        name: "OpenApi",
        method: Method::GET,
        path: "/v1/openapi.json",
        request: "",
        path_field: None,
        body: RequestBody::Empty,
        response: "",
        answer: Answer::Document,
    },
];

/// A request's route, and the collection its path names.
#[derive(Debug)]
pub enum Found<'a> {
    Route(&'static Route, Option<&'a str>),
    /// The path exists, not for this method: the methods it takes.
    OtherMethods(Vec<Method>),
    NoSuchPath,
}

impl Route {
    /// The collection `path` names, if it fits this route's template.
    fn fit<'a>(&self, path: &'a str) -> Option<Option<&'a str>> {
        let Some((prefix, suffix)) = self.path.split_once(COLLECTION) else {
            return (self.path == path).then_some(None);
        };
        let name = path.strip_prefix(prefix)?.strip_suffix(suffix)?;
        let plain = !name.is_empty() && !name.contains(['/', ':']);
        plain.then_some(Some(name))
    }
}

/// The route for `method` on `path`.
pub fn find<'a>(method: &Method, path: &'a str) -> Found<'a> {
    let mut others = Vec::new();
    for route in &ROUTES {
        if let Some(collection) = route.fit(path) {
            if route.method == *method {
                return Found::Route(route, collection);
            }
            others.push(route.method.clone());
        }
    }
    if others.is_empty() {
        Found::NoSuchPath
    } else {
        Found::OtherMethods(others)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn name(method: Method, path: &str) -> Option<(&'static str, Option<&str>)> {
        match find(&method, path) {
            Found::Route(r, c) => Some((r.name, c)),
            _ => None,
        }
    }

    #[test]
    fn custom_methods_are_told_apart_from_the_resource() {
        assert_eq!(
            name(Method::POST, "/v1/collections/images:search"),
            Some(("Search", Some("images")))
        );
        assert_eq!(
            name(Method::GET, "/v1/collections/images"),
            Some(("DescribeCollection", Some("images")))
        );
        assert_eq!(
            name(Method::GET, "/v1/collections"),
            Some(("ListCollections", None))
        );
    }

    #[test]
    fn unknown_verbs_and_nested_paths_have_no_route() {
        assert!(matches!(
            find(&Method::POST, "/v1/collections/images:explode"),
            Found::NoSuchPath
        ));
        assert!(matches!(
            find(&Method::GET, "/v1/collections/a/b"),
            Found::NoSuchPath
        ));
        assert!(matches!(
            find(&Method::GET, "/v1/collections/a/b/media"),
            Found::NoSuchPath
        ));
        assert!(matches!(
            find(&Method::GET, "/v1/collections/:search"),
            Found::NoSuchPath
        ));
    }

    #[test]
    fn a_known_path_with_another_method_lists_the_methods_it_takes() {
        let Found::OtherMethods(methods) = find(&Method::PUT, "/v1/collections/images") else {
            panic!("expected other methods");
        };
        assert_eq!(methods, [Method::GET, Method::DELETE]);
    }
}
