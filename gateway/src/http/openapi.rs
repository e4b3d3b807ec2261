//! The OpenAPI document of the HTTP API, built (with utoipa's model) from
//! the two things the API itself runs on: the route table ([`ROUTES`])
//! for paths and operations, and the protos' descriptors (the ones gRPC
//! reflection serves, comments included) for every message's schema in
//! proto3's JSON mapping, which is what pbjson makes the bodies speak. A
//! field added to a proto or a route added to the table is in the document
//! without anyone writing it there.

use std::collections::BTreeMap;

use imgsearch_proto::FILE_DESCRIPTOR_SET;
use prost::Message;
use prost_types::{
    field_descriptor_proto::{Label, Type as ProtoType},
    DescriptorProto, EnumDescriptorProto, FieldDescriptorProto, FileDescriptorProto,
    FileDescriptorSet,
};
use utoipa::openapi::{
    content::ContentBuilder,
    path::{HttpMethod, OperationBuilder, ParameterBuilder, ParameterIn},
    request_body::RequestBodyBuilder,
    response::ResponseBuilder,
    schema::{
        AdditionalProperties, ArrayBuilder, KnownFormat, ObjectBuilder, OneOfBuilder, Schema,
        SchemaFormat, Type,
    },
    security::{HttpAuthScheme, HttpBuilder, SecurityRequirement, SecurityScheme},
    ComponentsBuilder, InfoBuilder, OpenApi, OpenApiBuilder, Paths, Ref, RefOr, Required,
};

use super::{
    calls::NDJSON,
    routes::{Answer, RequestBody, Route, COLLECTION, ROUTES},
};

const PACKAGE: &str = "imgsearch.v1";
const SERVICE: &str = "ImageSearch";
/// Schemas that are not messages.
const ERROR: &str = "Error";
const OUTCOME: &str = "Outcome";
const BEARER: &str = "bearer";

/// The document, as served at `/v1/openapi.json`.
pub fn document_json() -> String {
    document()
        .to_pretty_json()
        .expect("the document is plain JSON")
}

/// The document.
pub fn document() -> OpenApi {
    let protos = Protos::load();
    let mut paths = Paths::new();
    for route in ROUTES.iter().filter(|r| r.answer != Answer::Document) {
        let method = match route.method.as_str() {
            "GET" => HttpMethod::Get,
            "DELETE" => HttpMethod::Delete,
            _ => HttpMethod::Post,
        };
        paths.add_path_operation(route.path, vec![method], operation(route, &protos));
    }
    let mut components = ComponentsBuilder::new()
        .security_scheme(
            BEARER,
            SecurityScheme::Http(
                HttpBuilder::new()
                    .scheme(HttpAuthScheme::Bearer)
                    .description(Some(
                        "An API key (`imgsearch key create`), when the gateway checks keys",
                    ))
                    .build(),
            ),
        )
        .schema(OUTCOME, outcome_schema())
        .schema(
            ERROR,
            ObjectBuilder::new()
                .property("error", Ref::from_schema_name(OUTCOME))
                .required("error")
                .build(),
        );
    for (name, schema) in protos.schemas() {
        components = components.schema(name, schema);
    }
    for route in ROUTES.iter().filter(|r| r.answer == Answer::Lines) {
        components = components.schema(line_schema_name(route), line_schema(route));
    }
    OpenApiBuilder::new()
        .info(
            InfoBuilder::new()
                .title("imgsearch")
                .version(env!("CARGO_PKG_VERSION"))
                .description(Some(
                    "Reverse image search over Milvus: the calls of gRPC's \
                     imgsearch.v1.ImageSearch as HTTP/JSON. Bodies are proto3 JSON (int64 \
                     as strings, bytes as base64). Streams are NDJSON: one `{\"result\": ...}` \
                     per message, and a last line `{\"status\": ...}` saying how the call \
                     ended.",
                ))
                .build(),
        )
        .paths(paths)
        .components(Some(components.build()))
        .security(Some(vec![
            SecurityRequirement::new(BEARER, Vec::<String>::new()),
            SecurityRequirement::default(),
        ]))
        .build()
}

fn operation(route: &Route, protos: &Protos) -> utoipa::openapi::path::Operation {
    let description = match route.answer {
        Answer::Media => Some(
            "A stored row's image, for thumbnails: served only when the gateway has \
             --media-root, a row of the collection holds exactly this filepath, and it \
             resolves to an image file inside the media root"
                .to_owned(),
        ),
        _ => protos.method_comment(route.name),
    };
    let mut op = OperationBuilder::new()
        .operation_id(Some(route.name))
        .tag(SERVICE)
        .description(description);
    if route.path.contains(COLLECTION) {
        op = op.parameter(
            ParameterBuilder::new()
                .name("collection")
                .parameter_in(ParameterIn::Path)
                .required(Required::True)
                .description(Some(format!(
                    "The collection: sets the request's `{}`",
                    route.path_field.unwrap_or("collection")
                )))
                .schema(Some(ObjectBuilder::new().schema_type(Type::String))),
        );
    }
    if route.answer == Answer::Media {
        op = op.parameter(
            ParameterBuilder::new()
                .name("filepath")
                .parameter_in(ParameterIn::Query)
                .required(Required::True)
                .description(Some("The row's filepath, relative to the media root"))
                .schema(Some(ObjectBuilder::new().schema_type(Type::String))),
        );
    }
    let json = |name: &str| {
        ContentBuilder::new()
            .schema(Some(Ref::from_schema_name(name)))
            .build()
    };
    let body = match route.body {
        RequestBody::Empty => None,
        RequestBody::Json => {
            Some(RequestBodyBuilder::new().content("application/json", json(route.request)))
        }
        RequestBody::JsonOrForm => Some(
            RequestBodyBuilder::new()
                .content("application/json", json(route.request))
                .content(
                    "multipart/form-data",
                    ContentBuilder::new().schema(Some(form_schema())).build(),
                ),
        ),
        RequestBody::Lines => Some(
            RequestBodyBuilder::new()
                .description(Some(format!("One {} per line", route.request)))
                .content(NDJSON, json(route.request)),
        ),
    };
    if let Some(body) = body {
        op = op.request_body(Some(body.required(Some(Required::True)).build()));
    }
    let ok = match route.answer {
        Answer::Media => ResponseBuilder::new()
            .description("The image file, as JPEG, PNG, GIF, WebP or BMP")
            .content("image/*", ContentBuilder::new().build()),
        Answer::Lines => ResponseBuilder::new()
            .description("One line per answer, then how the call ended")
            .content(NDJSON, json(&line_schema_name(route))),
        _ => ResponseBuilder::new()
            .description("The answer")
            .content("application/json", json(route.response)),
    };
    op.response("200", ok.build())
        .response(
            "default",
            ResponseBuilder::new()
                .description(
                    "The call failed: the gRPC code's name in `error.status`, the HTTP status \
                     its code maps to",
                )
                .content("application/json", json(ERROR))
                .build(),
        )
        .build()
}

fn outcome_schema() -> Schema {
    let text = || ObjectBuilder::new().schema_type(Type::String);
    ObjectBuilder::new()
        .description(Some("How a call ended"))
        .property(
            "code",
            ObjectBuilder::new()
                .schema_type(Type::Integer)
                .description(Some("The HTTP status")),
        )
        .property(
            "status",
            text().description(Some("The gRPC code's name: OK, NOT_FOUND, ...")),
        )
        .property("message", text())
        .property(
            "retryAfterMs",
            ObjectBuilder::new()
                .schema_type(Type::Integer)
                .description(Some("When a busy gateway suggests trying again")),
        )
        .required("code")
        .required("status")
        .required("message")
        .into()
}

fn line_schema_name(route: &Route) -> String {
    format!("{}Line", route.response)
}

fn line_schema(route: &Route) -> Schema {
    OneOfBuilder::new()
        .item(
            ObjectBuilder::new()
                .property("result", Ref::from_schema_name(route.response))
                .required("result"),
        )
        .item(
            ObjectBuilder::new()
                .property("status", Ref::from_schema_name(OUTCOME))
                .required("status"),
        )
        .into()
}

fn form_schema() -> Schema {
    ObjectBuilder::new()
        .description(Some(
            "One `image` part per query image; any other field of SearchRequest as a part of \
             its own (`top_k=3`), its text read as JSON where it is JSON",
        ))
        .property(
            "image",
            ArrayBuilder::new().items(
                ObjectBuilder::new()
                    .schema_type(Type::String)
                    .content_media_type("application/octet-stream"),
            ),
        )
        .additional_properties(Some(AdditionalProperties::FreeForm(true)))
        .into()
}

/// The descriptors of `imgsearch.v1`.
struct Protos {
    files: Vec<FileDescriptorProto>,
}

impl Protos {
    fn load() -> Self {
        let set = FileDescriptorSet::decode(FILE_DESCRIPTOR_SET).expect("our descriptors");
        let files = set
            .file
            .into_iter()
            .filter(|f| f.package() == PACKAGE)
            .collect();
        Self { files }
    }

    /// The comment above the element at `path` in `file`.
    fn comment(file: &FileDescriptorProto, path: &[i32]) -> Option<String> {
        let info = file.source_code_info.as_ref()?;
        let location = info.location.iter().find(|l| l.path == path)?;
        let text = location.leading_comments().trim();
        (!text.is_empty()).then(|| text.replace("\n ", "\n"))
    }

    fn method_comment(&self, method: &str) -> Option<String> {
        self.files.iter().find_map(|f| {
            let (s, service) = f
                .service
                .iter()
                .enumerate()
                .find(|(_, s)| s.name() == SERVICE)?;
            let m = service.method.iter().position(|m| m.name() == method)?;
            Self::comment(f, &[6, s as i32, 2, m as i32])
        })
    }

    fn schemas(&self) -> BTreeMap<String, Schema> {
        let mut schemas = BTreeMap::new();
        for file in &self.files {
            for (i, message) in file.message_type.iter().enumerate() {
                let schema = message_schema(file, message, i as i32);
                schemas.insert(message.name().to_string(), schema);
            }
            for (i, e) in file.enum_type.iter().enumerate() {
                schemas.insert(e.name().to_string(), enum_schema(file, e, i as i32));
            }
        }
        schemas
    }
}

fn message_schema(file: &FileDescriptorProto, message: &DescriptorProto, index: i32) -> Schema {
    let mut object = ObjectBuilder::new()
        .schema_type(Type::Object)
        .description(Protos::comment(file, &[4, index]));
    for (j, field) in message.field.iter().enumerate() {
        let mut description = Protos::comment(file, &[4, index, 2, j as i32]);
        if let Some(oneof) = field
            .oneof_index
            .filter(|_| !field.proto3_optional())
            .and_then(|o| message.oneof_decl.get(o as usize))
        {
            let note = format!("(one of `{}`)", oneof.name());
            description = Some(description.map_or(note.clone(), |d| format!("{d} {note}")));
        }
        let schema = field_schema(message, field);
        object = object.property(field.json_name(), with_description(schema, description));
    }
    object.into()
}

fn with_description(schema: RefOr<Schema>, description: Option<String>) -> RefOr<Schema> {
    match (schema, description) {
        (RefOr::Ref(mut r), Some(d)) => {
            r.description = d;
            RefOr::Ref(r)
        }
        (RefOr::T(Schema::Object(mut o)), d @ Some(_)) => {
            o.description = d;
            RefOr::T(Schema::Object(o))
        }
        (RefOr::T(Schema::Array(mut a)), d @ Some(_)) => {
            a.description = d;
            RefOr::T(Schema::Array(a))
        }
        (schema, _) => schema,
    }
}

fn field_schema(message: &DescriptorProto, field: &FieldDescriptorProto) -> RefOr<Schema> {
    if let Some(entry) = map_entry(message, field) {
        let value = scalar_or_ref(&entry.field[1]);
        return ObjectBuilder::new()
            .schema_type(Type::Object)
            .additional_properties(Some(AdditionalProperties::RefOr(value)))
            .into();
    }
    let single = scalar_or_ref(field);
    if field.label() == Label::Repeated {
        ArrayBuilder::new().items(single).into()
    } else {
        single
    }
}

/// The generated entry message of a map field.
fn map_entry<'a>(
    message: &'a DescriptorProto,
    field: &FieldDescriptorProto,
) -> Option<&'a DescriptorProto> {
    let entry = field.type_name().rsplit('.').next()?;
    message
        .nested_type
        .iter()
        .find(|n| n.name() == entry && n.options.as_ref().is_some_and(|o| o.map_entry()))
}

/// One value of `field`, in proto3's JSON mapping.
fn scalar_or_ref(field: &FieldDescriptorProto) -> RefOr<Schema> {
    let typed = |t: Type, format: Option<SchemaFormat>| {
        ObjectBuilder::new().schema_type(t).format(format).into()
    };
    let known = |f: KnownFormat| Some(SchemaFormat::KnownFormat(f));
    let custom = |f: &str| Some(SchemaFormat::Custom(f.into()));
    match field.r#type() {
        ProtoType::Message | ProtoType::Enum | ProtoType::Group => {
            let name = field.type_name().rsplit('.').next().unwrap_or_default();
            Ref::from_schema_name(name).into()
        }
        ProtoType::Double => typed(Type::Number, known(KnownFormat::Double)),
        ProtoType::Float => typed(Type::Number, known(KnownFormat::Float)),
        // 64-bit integers are decimal strings: JSON numbers lose precision
        // past 2^53 in most readers.
        ProtoType::Int64 | ProtoType::Sint64 | ProtoType::Sfixed64 => {
            typed(Type::String, known(KnownFormat::Int64))
        }
        ProtoType::Uint64 | ProtoType::Fixed64 => typed(Type::String, custom("uint64")),
        ProtoType::Int32 | ProtoType::Sint32 | ProtoType::Sfixed32 => {
            typed(Type::Integer, known(KnownFormat::Int32))
        }
        ProtoType::Uint32 | ProtoType::Fixed32 => typed(Type::Integer, custom("uint32")),
        ProtoType::Bool => typed(Type::Boolean, None),
        ProtoType::String => typed(Type::String, None),
        ProtoType::Bytes => typed(Type::String, known(KnownFormat::Byte)),
    }
}

fn enum_schema(file: &FileDescriptorProto, e: &EnumDescriptorProto, index: i32) -> Schema {
    ObjectBuilder::new()
        .schema_type(Type::String)
        .description(Protos::comment(file, &[5, index]))
        .enum_values(Some(e.value.iter().map(|v| v.name().to_string())))
        .into()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_message_a_route_names_has_a_schema() {
        let document = document();
        let schemas = document.components.expect("components").schemas;
        for route in ROUTES.iter().filter(|r| !r.request.is_empty()) {
            assert!(schemas.contains_key(route.request), "{}", route.request);
            assert!(schemas.contains_key(route.response), "{}", route.response);
        }
    }

    #[test]
    fn sixty_four_bit_integers_are_strings_and_names_are_json_names() {
        let json: serde_json::Value = serde_json::from_str(&document_json()).unwrap();
        let hit = &json["components"]["schemas"]["Hit"]["properties"];
        assert_eq!(hit["id"]["type"], "string");
        assert_eq!(hit["id"]["format"], "int64");
        let search = &json["components"]["schemas"]["SearchRequest"]["properties"];
        assert!(search.get("topK").is_some(), "{search}");
        assert!(search["topK"]["description"]
            .as_str()
            .unwrap()
            .contains("Hits per query"));
    }
}
