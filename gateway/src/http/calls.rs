//! Each route as the gRPC call it names: the request message read from
//! the body (JSON, a form, or lines), the path's collection put in it, the
//! call made through [`Backend`], and its answer written back as JSON or
//! lines.

use std::{
    convert::Infallible,
    future::Future,
    sync::{Arc, OnceLock},
};

use axum::{
    body::Body,
    http::{header, HeaderMap, HeaderValue, Request},
    response::{IntoResponse, Response},
    Json,
};
use futures::StreamExt;
use imgsearch_proto::v1::{
    image_search_client::ImageSearchClient, CountRequest, CreateCollectionRequest, DeleteRequest,
    DescribeCollectionRequest, DropCollectionRequest, FindDuplicatesRequest, FindFilepathsRequest,
    InsertRequest, InsertResponse, ListCollectionsRequest, SearchRequest, SearchStreamRequest,
    SearchStreamResponse,
};
use serde::{de::DeserializeOwned, Serialize};
use tonic::{Status, Streaming};

use super::{
    backend::{self, Backend, Service},
    body::Bodies,
    problem::{Outcome, Problem},
    routes::{RequestBody, Route},
    upload,
};

/// The media type of a stream's lines.
pub const NDJSON: &str = "application/x-ndjson";

/// A request message whose collection a path may name.
pub trait Addressed {
    /// The collection field, where the message has one.
    fn collection_field(&mut self) -> Option<&mut String>;

    /// Puts the path's `collection` in the message, unless the body named
    /// another.
    fn address(&mut self, collection: &str) -> Result<(), String> {
        let Some(field) = self.collection_field() else {
            return Ok(());
        };
        if field.is_empty() {
            collection.clone_into(field);
        } else if field != collection {
            return Err(format!(
                "the path names collection {collection:?} and the body {field:?}"
            ));
        }
        Ok(())
    }
}

macro_rules! addressed {
    ($($message:ident . $field:ident),* ; $($bare:ident),*) => {
        $(impl Addressed for $message {
            fn collection_field(&mut self) -> Option<&mut String> {
                Some(&mut self.$field)
            }
        })*
        $(impl Addressed for $bare {
            fn collection_field(&mut self) -> Option<&mut String> {
                None
            }
        })*
    };
}

addressed!(
    DescribeCollectionRequest.name, DropCollectionRequest.name, InsertRequest.collection,
    SearchRequest.collection, SearchStreamRequest.collection, DeleteRequest.collection,
    FindFilepathsRequest.collection, CountRequest.collection, FindDuplicatesRequest.collection;
    ListCollectionsRequest, CreateCollectionRequest
);

/// What the routes share.
#[derive(Clone)]
pub struct Calls {
    pub backend: Backend,
    pub bodies: Bodies,
}

type Client = ImageSearchClient<Service>;

impl Calls {
    /// Answers `request` by `route`.
    pub async fn answer(
        &self,
        route: &'static Route,
        collection: Option<&str>,
        request: Request<Body>,
    ) -> Response {
        /// A call whose request and answer are single JSON messages.
        macro_rules! unary {
            ($message:ty, $method:ident) => {
                self.unary::<$message, _, _, _>(route, collection, request, |mut c, r| async move {
                    c.$method(r).await
                })
                .await
            };
        }
        let answered = match route.name {
            "ListCollections" => unary!(ListCollectionsRequest, list_collections),
            "CreateCollection" => unary!(CreateCollectionRequest, create_collection),
            "DescribeCollection" => unary!(DescribeCollectionRequest, describe_collection),
            "DropCollection" => unary!(DropCollectionRequest, drop_collection),
            "Delete" => unary!(DeleteRequest, delete),
            "FindFilepaths" => unary!(FindFilepathsRequest, find_filepaths),
            "Count" => unary!(CountRequest, count),
            "Search" => self.search(collection, request).await,
            "Insert" => {
                self.lines::<InsertRequest, InsertResponse>("Insert", collection, request)
                    .await
            }
            "SearchStream" => {
                self.lines::<SearchStreamRequest, SearchStreamResponse>(
                    "SearchStream",
                    collection,
                    request,
                )
                .await
            }
            "FindDuplicates" => self.find_duplicates(route, collection, request).await,
            other => Err(Status::internal(format!("route {other} has no handler")).into()),
        };
        answered.unwrap_or_else(IntoResponse::into_response)
    }

    /// The request message of a route whose body is JSON (or nothing).
    async fn message<Req>(
        &self,
        route: &Route,
        collection: Option<&str>,
        headers: &HeaderMap,
        body: Body,
    ) -> Result<(Req, Option<tokio::sync::OwnedSemaphorePermit>), Problem>
    where
        Req: DeserializeOwned + Default + Addressed,
    {
        let (mut message, charge) = if route.body == RequestBody::Empty {
            (Req::default(), None)
        } else {
            let (bytes, charge) = self.bodies.read(headers, body).await?;
            (parse_json(&bytes)?, Some(charge))
        };
        if let Some(collection) = collection {
            message.address(collection).map_err(Problem::invalid)?;
        }
        Ok((message, charge))
    }

    async fn unary<Req, Resp, F, Fut>(
        &self,
        route: &Route,
        collection: Option<&str>,
        request: Request<Body>,
        call: F,
    ) -> Result<Response, Problem>
    where
        Req: DeserializeOwned + Default + Addressed,
        Resp: Serialize,
        F: FnOnce(Client, tonic::Request<Req>) -> Fut,
        Fut: Future<Output = Result<tonic::Response<Resp>, Status>>,
    {
        let (parts, body) = request.into_parts();
        let (message, _charge) = self
            .message::<Req>(route, collection, &parts.headers, body)
            .await?;
        let answer = call(
            self.backend.client(),
            backend::request(&parts.headers, message),
        )
        .await?;
        Ok(Json(answer.into_inner()).into_response())
    }

    /// Search, its images in base64 JSON or as the parts of a form.
    async fn search(
        &self,
        collection: Option<&str>,
        request: Request<Body>,
    ) -> Result<Response, Problem> {
        let (parts, body) = request.into_parts();
        let (bytes, _charge) = self.bodies.read(&parts.headers, body).await?;
        let mut message = if upload::is_form(&parts.headers) {
            upload::search_request(parts.clone(), bytes).await?
        } else {
            parse_json::<SearchRequest>(&bytes)?
        };
        if let Some(collection) = collection {
            message.address(collection).map_err(Problem::invalid)?;
        }
        let answer = self
            .backend
            .client()
            .search(backend::request(&parts.headers, message))
            .await?;
        Ok(Json(answer.into_inner()).into_response())
    }

    async fn find_duplicates(
        &self,
        route: &Route,
        collection: Option<&str>,
        request: Request<Body>,
    ) -> Result<Response, Problem> {
        let (parts, body) = request.into_parts();
        let (message, charge) = self
            .message::<FindDuplicatesRequest>(route, collection, &parts.headers, body)
            .await?;
        drop(charge);
        let answers = self
            .backend
            .client()
            .find_duplicates(backend::request(&parts.headers, message))
            .await?;
        Ok(lines_answer(answers.into_inner(), None))
    }

    /// A call whose requests come one per line, and answers go one per
    /// line. A line that is not a request breaks the request stream there,
    /// after the lines before it were sent.
    async fn lines<Req, Resp>(
        &self,
        rpc: &'static str,
        collection: Option<&str>,
        request: Request<Body>,
    ) -> Result<Response, Problem>
    where
        Req: DeserializeOwned + Default + Addressed + prost::Message + Send + 'static,
        Resp: Serialize + prost::Message + Default + Send + 'static,
    {
        let (parts, body) = request.into_parts();
        let collection = collection.map(str::to_owned);
        let broken = Arc::new(OnceLock::new());
        let broke = broken.clone();
        let messages = self
            .bodies
            .lines(body)
            .enumerate()
            .map(move |(i, line)| {
                let mut message: Req = serde_json::from_slice(&line?).map_err(|e| {
                    Status::invalid_argument(format!("line {}: not a {rpc} request: {e}", i + 1))
                })?;
                if let Some(collection) = &collection {
                    message
                        .address(collection)
                        .map_err(|e| Status::invalid_argument(format!("line {}: {e}", i + 1)))?;
                }
                Ok(message)
            })
            .then(move |message: Result<Req, Status>| {
                let broke = broke.clone();
                async move {
                    if let Err(e) = &message {
                        let _ = broke.set(e.message().to_string());
                        // The encoder drops what it holds unsent when its
                        // stream fails: a pause first lets it send the
                        // lines before this one.
                        tokio::task::yield_now().await;
                    }
                    message
                }
            });
        let answers = self
            .backend
            .streaming::<Req, Resp>(rpc, backend::request(&parts.headers, messages))
            .await?;
        Ok(lines_answer(answers.into_inner(), Some((rpc, broken))))
    }
}

/// `bytes` as the message `T` in proto3 JSON; an empty body is the empty
/// message.
fn parse_json<T: DeserializeOwned + Default>(bytes: &[u8]) -> Result<T, Problem> {
    if bytes.iter().all(u8::is_ascii_whitespace) {
        return Ok(T::default());
    }
    serde_json::from_slice(bytes).map_err(|e| Problem::invalid(format!("the JSON body: {e}")))
}

#[derive(Serialize)]
struct ResultLine<'a, T> {
    result: &'a T,
}

#[derive(Serialize)]
struct StatusLine {
    status: Outcome,
}

fn line(value: &impl Serialize) -> bytes::Bytes {
    let mut text = serde_json::to_vec(value).unwrap_or_else(|e| {
        let failed = Outcome::of(&Status::internal(format!("an answer did not encode: {e}")));
        serde_json::to_vec(&StatusLine { status: failed }).expect("plain JSON")
    });
    text.push(b'\n');
    text.into()
}

/// Where a request stream broke (the RPC, and why), for the last line.
type Broken = Option<(&'static str, Arc<OnceLock<String>>)>;

/// The answers of a stream as lines, ending with how the call ended: a
/// body that ends without that line was cut. Where the request stream
/// broke, the last line says where, rather than the service's view of it
/// (a stream that failed).
fn lines_answer<T: Serialize + Send + 'static>(answers: Streaming<T>, broken: Broken) -> Response {
    let lines = futures::stream::unfold(Some(answers), move |answers| {
        let broken = broken.clone();
        async move {
            let mut answers = answers?;
            let ended = match answers.message().await {
                Ok(Some(m)) => return Some((line(&ResultLine { result: &m }), Some(answers))),
                Ok(None) => Outcome::ok(),
                Err(s) => {
                    let mut outcome = Outcome::of(&s);
                    if let Some((rpc, why)) = broken.as_ref().and_then(|(r, b)| Some((r, b.get()?)))
                    {
                        outcome.message = format!("the {rpc} request stream broke: {why}");
                    }
                    outcome
                }
            };
            Some((line(&StatusLine { status: ended }), None))
        }
    });
    let mut response = Body::from_stream(lines.map(Ok::<_, Infallible>)).into_response();
    response
        .headers_mut()
        .insert(header::CONTENT_TYPE, HeaderValue::from_static(NDJSON));
    response
}
