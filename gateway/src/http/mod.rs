//! The HTTP/JSON API beside gRPC, on its own port: every
//! `imgsearch.v1.ImageSearch` call as a JSON route under `/v1/` ([`routes`]),
//! query images as multipart forms or base64, streams as NDJSON, errors as
//! JSON naming the gRPC code with its HTTP status ([`problem`]), and an
//! OpenAPI document of it all at `/v1/openapi.json` ([`openapi`]); and,
//! for people, a search page at `/` ([`page`]) with thumbnails of stored
//! images from `--media-root` ([`media`]).
//!
//! No rule of the API lives here: each route becomes the gRPC call it
//! names, made in-process through the same telemetry layer, key gate and
//! limits as the gRPC port ([`backend`]). What this module adds is the
//! translation, and bounds on what it buffers before a call is admitted
//! ([`body`]). The port takes the gRPC port's TLS certificate, with
//! HTTP/1.1 and HTTP/2.

mod backend;
mod body;
mod calls;
mod listener;
mod media;
pub mod openapi;
mod page;
pub mod problem;
pub mod routes;
mod upload;

use std::{net::SocketAddr, sync::Arc, time::Duration};

use axum::{
    extract::{DefaultBodyLimit, Request, State},
    http::{header, HeaderValue, Method},
    response::{IntoResponse, Response},
    Router,
};
use imgsearch_common::{
    grpc::{self, ListenError},
    tls::{Protocols, ServerTlsArgs},
};
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;
use tonic::Status;
use tower_http::cors::{AllowOrigin, CorsLayer};
use tracing::{info, warn};

pub use backend::Service;
pub use media::MediaRoot;

use crate::auth::guard::Guard;

use self::{
    backend::Backend,
    body::Bodies,
    calls::Calls,
    problem::Problem,
    routes::{Answer, Found},
};

/// The HTTP port's settings.
#[derive(Debug, Clone)]
pub struct HttpOptions {
    pub listen: SocketAddr,
    pub tls: ServerTlsArgs,
    /// Origins whose pages may call from a browser.
    pub cors: Option<CorsLayer>,
    pub max_message_bytes: usize,
    /// How long open calls may run on after the stop.
    pub grace: Duration,
    /// Serve the search page at `/`.
    pub web: bool,
    /// Where stored filepaths' images are served from.
    pub media_root: Option<MediaRoot>,
}

/// The HTTP port, serving.
pub struct HttpServing {
    stop: CancellationToken,
    task: JoinHandle<std::io::Result<()>>,
    grace: Duration,
}

#[derive(Clone)]
struct App {
    calls: Calls,
    openapi: Arc<String>,
    page: Option<Arc<page::Page>>,
    media_root: Option<MediaRoot>,
    guard: Guard,
}

/// Opens the HTTP port and serves the API on it, calling `service`.
/// `guard` is the gRPC port's key check: the media route asks it which
/// tenant a caller is confined to.
pub async fn serve(
    options: &HttpOptions,
    service: Service,
    guard: Guard,
) -> Result<HttpServing, ListenError> {
    let (incoming, local) = grpc::listen(
        "HTTP",
        options.listen,
        &options.tls,
        Protocols::Http2AndHttp1,
    )
    .await?;
    let app = App {
        calls: Calls {
            backend: Backend::new(service, options.max_message_bytes),
            bodies: Bodies::new(options.max_message_bytes),
        },
        openapi: Arc::new(openapi::document_json()),
        page: options
            .web
            .then(|| Arc::new(page::Page::new(options.media_root.is_some()))),
        media_root: options.media_root.clone(),
        guard,
    };
    let router = Router::new()
        .fallback(dispatch)
        .with_state(app)
        // Bodies are read within the budget of `body`, not axum's default.
        .layer(DefaultBodyLimit::disable())
        .layer(tower::util::option_layer(options.cors.clone()));
    let stop = CancellationToken::new();
    let server = axum::serve(listener::Connections::new(incoming, local), router)
        .with_graceful_shutdown(stop.clone().cancelled_owned());
    let task = tokio::spawn(async move { server.await });
    Ok(HttpServing {
        stop,
        task,
        grace: options.grace,
    })
}

impl HttpServing {
    /// No new calls; open ones finish within the grace period.
    pub async fn stop(self) {
        self.stop.cancel();
        match tokio::time::timeout(self.grace, self.task).await {
            Ok(Ok(Ok(()))) => info!("HTTP stopped"),
            Ok(Ok(Err(e))) => warn!(error = %e, "HTTP server failed"),
            Ok(Err(e)) => warn!(error = %e, "HTTP server task failed"),
            Err(_) => warn!("HTTP calls still open after the grace period; exiting"),
        }
    }
}

/// CORS for `origins` (none: no CORS, so only same-origin pages call).
/// `headers` are the request headers a page may send, `expose` the
/// response headers it may read.
pub fn cors(
    origins: &[String],
    headers: &[&'static str],
    expose: &[&'static str],
) -> Result<Option<CorsLayer>, String> {
    if origins.is_empty() {
        return Ok(None);
    }
    let origins = origins
        .iter()
        .map(|o| HeaderValue::from_str(o.trim()).map_err(|_| format!("origin {o:?}")))
        .collect::<Result<Vec<_>, _>>()?;
    let name = |h: &&'static str| header::HeaderName::from_static(h);
    Ok(Some(
        CorsLayer::new()
            .allow_origin(AllowOrigin::list(origins))
            .allow_methods([Method::GET, Method::POST, Method::DELETE])
            .allow_headers(headers.iter().map(name).collect::<Vec<_>>())
            .expose_headers(expose.iter().map(name).collect::<Vec<_>>())
            .max_age(Duration::from_secs(600)),
    ))
}

async fn dispatch(State(app): State<App>, request: Request) -> Response {
    let path = request.uri().path().to_owned();
    if let Some(page) = app
        .page
        .as_ref()
        .and_then(|p| p.answer(request.method(), &path))
    {
        return page;
    }
    match routes::find(request.method(), &path) {
        Found::Route(route, _) if route.answer == Answer::Document => (
            [(header::CONTENT_TYPE, "application/json")],
            app.openapi.as_str().to_owned(),
        )
            .into_response(),
        Found::Route(route, Some(collection)) if route.answer == Answer::Media => {
            let media = media::Media {
                backend: &app.calls.backend,
                guard: &app.guard,
                root: app.media_root.as_ref(),
            };
            media
                .answer(collection, request)
                .await
                .unwrap_or_else(IntoResponse::into_response)
        }
        Found::Route(route, collection) => app.calls.answer(route, collection, request).await,
        Found::OtherMethods(methods) => {
            let allow = methods
                .iter()
                .map(Method::as_str)
                .collect::<Vec<_>>()
                .join(", ");
            let mut response = Problem::method_not_allowed(format!(
                "{} {path}: this path takes {allow}",
                request.method()
            ))
            .into_response();
            if let Ok(allow) = HeaderValue::from_str(&allow) {
                response.headers_mut().insert(header::ALLOW, allow);
            }
            response
        }
        Found::NoSuchPath => Problem::from(Status::not_found(format!(
            "no route {path}: see /v1/openapi.json"
        )))
        .into_response(),
    }
}
