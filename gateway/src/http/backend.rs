//! The HTTP API's way into the service: a gRPC client of the very service
//! the gRPC port serves, in-process (no socket), through the same
//! telemetry layer. So an HTTP call passes the same key gate, call cap and
//! request budgets, is counted in the same metrics and logged on the same
//! line as the gRPC call it becomes, and no rule of the API is written
//! twice.
//!
//! Streams the caller sends (Insert, SearchStream) go through a codec that
//! can fail: a line the HTTP layer cannot parse breaks the stream the way a
//! malformed gRPC frame would, so the service answers it as it answers
//! gRPC (everything committed acknowledged, then INVALID_ARGUMENT).

use std::marker::PhantomData;

use axum::http::{HeaderMap, HeaderName};
use futures::Stream;
use imgsearch_common::telemetry::Traced;
use imgsearch_proto::v1::{
    image_search_client::ImageSearchClient, image_search_server::ImageSearchServer,
};
use tonic::{
    codec::{Codec, DecodeBuf, Decoder, EncodeBuf, Encoder, ProstCodec},
    codegen::http::uri::PathAndQuery,
    metadata::{AsciiMetadataKey, AsciiMetadataValue},
    Status, Streaming,
};

use crate::service::ImageSearchService;

/// The gRPC service as the gRPC port serves it.
pub type Service = Traced<ImageSearchServer<ImageSearchService>>;

/// The headers an HTTP caller's call carries on: its key and its trace.
const CARRIED: [HeaderName; 2] = [
    axum::http::header::AUTHORIZATION,
    HeaderName::from_static(imgsearch_common::trace::TRACEPARENT),
];

/// Makes gRPC calls of the in-process service.
#[derive(Clone)]
pub struct Backend {
    service: Service,
    max_message_bytes: usize,
}

impl Backend {
    pub fn new(service: Service, max_message_bytes: usize) -> Self {
        Self {
            service,
            max_message_bytes,
        }
    }

    /// A typed client, for the calls whose requests are single messages.
    pub fn client(&self) -> ImageSearchClient<Service> {
        ImageSearchClient::new(self.service.clone())
            .max_decoding_message_size(self.max_message_bytes)
            .max_encoding_message_size(self.max_message_bytes)
    }

    /// A streaming call (`Insert`, `SearchStream`) whose request stream may
    /// end in an error.
    pub async fn streaming<Req, Resp>(
        &self,
        rpc: &'static str,
        request: tonic::Request<impl Stream<Item = Result<Req, Status>> + Send + 'static>,
    ) -> Result<tonic::Response<Streaming<Resp>>, Status>
    where
        Req: prost::Message + Send + 'static,
        Resp: prost::Message + Default + Send + 'static,
    {
        let mut grpc = tonic::client::Grpc::new(self.service.clone())
            .max_decoding_message_size(self.max_message_bytes)
            .max_encoding_message_size(self.max_message_bytes);
        grpc.ready()
            .await
            .map_err(|e| Status::unknown(format!("the service is not ready: {e}")))?;
        let path = PathAndQuery::try_from(format!("/imgsearch.v1.ImageSearch/{rpc}"))
            .map_err(|e| Status::internal(e.to_string()))?;
        grpc.streaming(request, path, FallibleCodec::<Req, Resp>::default())
            .await
    }
}

/// `message` as a gRPC request carrying the caller's key and trace.
pub fn request<T>(headers: &HeaderMap, message: T) -> tonic::Request<T> {
    let mut request = tonic::Request::new(message);
    for name in CARRIED {
        let value = headers
            .get(&name)
            .and_then(|v| AsciiMetadataValue::try_from(v.as_bytes()).ok());
        let key = AsciiMetadataKey::from_bytes(name.as_str().as_bytes());
        if let (Some(value), Ok(key)) = (value, key) {
            request.metadata_mut().insert(key, value);
        }
    }
    request
}

/// Prost's codec, taking `Result`s on the way out.
struct FallibleCodec<Req, Resp>(PhantomData<(Req, Resp)>);

impl<Req, Resp> Default for FallibleCodec<Req, Resp> {
    fn default() -> Self {
        Self(PhantomData)
    }
}

impl<Req, Resp> Codec for FallibleCodec<Req, Resp>
where
    Req: prost::Message + Send + 'static,
    Resp: prost::Message + Default + Send + 'static,
{
    type Encode = Result<Req, Status>;
    type Decode = Resp;
    type Encoder = FallibleEncoder<<ProstCodec<Req, Resp> as Codec>::Encoder>;
    type Decoder = PassDecoder<<ProstCodec<Req, Resp> as Codec>::Decoder>;

    fn encoder(&mut self) -> Self::Encoder {
        FallibleEncoder(ProstCodec::<Req, Resp>::default().encoder())
    }

    fn decoder(&mut self) -> Self::Decoder {
        PassDecoder(ProstCodec::<Req, Resp>::default().decoder())
    }
}

struct FallibleEncoder<E>(E);

impl<E: Encoder<Error = Status>> Encoder for FallibleEncoder<E> {
    type Item = Result<E::Item, Status>;
    type Error = Status;

    fn encode(&mut self, item: Self::Item, dst: &mut EncodeBuf<'_>) -> Result<(), Status> {
        self.0.encode(item?, dst)
    }

    fn buffer_settings(&self) -> tonic::codec::BufferSettings {
        self.0.buffer_settings()
    }
}

struct PassDecoder<D>(D);

impl<D: Decoder<Error = Status>> Decoder for PassDecoder<D> {
    type Item = D::Item;
    type Error = Status;

    fn decode(&mut self, src: &mut DecodeBuf<'_>) -> Result<Option<D::Item>, Status> {
        self.0.decode(src)
    }

    fn buffer_settings(&self) -> tonic::codec::BufferSettings {
        self.0.buffer_settings()
    }
}
