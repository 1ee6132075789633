//! The OpenAPI 3.1 document (`GET /openapi.json`): the vocabulary a route is described with
//! ([`RouteDoc`]) and the document built from the route table, every body, query and answer
//! with a schema derived from its Rust type (schemars).

use schemars::generate::{Contract, SchemaSettings};
use schemars::{JsonSchema, Schema, SchemaGenerator};
use serde_json::{Map, Value, json};

/// Writes the schema of one Rust type into the document (a `$ref` into `components`).
pub type SchemaFn = fn(&mut SchemaGenerator) -> Schema;

pub fn schema_of<T: JsonSchema>(generator: &mut SchemaGenerator) -> Schema {
    generator.subschema_for::<T>()
}

/// What a request or response carries.
#[derive(Clone, Copy)]
pub enum Content {
    /// `application/json` of this type.
    Json(SchemaFn),
    /// `multipart/form-data` whose parts this type describes.
    Multipart(SchemaFn),
    /// Anything else, by media type (a CSV, a script, an executable): no JSON schema.
    Raw(&'static str),
}

/// One documented API route.
#[derive(Clone)]
pub struct RouteDoc {
    pub method: &'static str,
    pub path: &'static str,
    pub tag: &'static str,
    pub summary: &'static str,
    pub body: Option<Content>,
    /// The query string, one parameter per field of this type.
    pub query: Option<SchemaFn>,
    /// Success statuses and what they carry; every error is the `Error` shape.
    pub responses: Vec<(u16, Content)>,
}

fn content(generator: &mut SchemaGenerator, content: Content) -> Value {
    match content {
        Content::Json(schema) => json!({"application/json": {"schema": schema(generator)}}),
        Content::Multipart(schema) => {
            json!({"multipart/form-data": {"schema": schema(generator)}})
        }
        Content::Raw(mime) if mime == "application/octet-stream" => {
            json!({mime: {"schema": {"type": "string", "format": "binary"}}})
        }
        Content::Raw(mime) => json!({mime: {"schema": {"type": "string"}}}),
    }
}

/// An absent query parameter is how a client says "none": `null` is no value of its.
fn not_null(schema: &mut Value) {
    if let Some(Value::Array(types)) = schema.get_mut("type") {
        types.retain(|t| t != "null");
        if types.len() == 1 {
            let only = types[0].clone();
            schema["type"] = only;
        }
    }
    if let Some(Value::Array(any)) = schema.get_mut("anyOf") {
        any.retain(|s| s.get("type").and_then(Value::as_str) != Some("null"));
        if any.len() == 1 {
            let only = any[0].clone();
            let object = schema
                .as_object_mut()
                .expect("a schema with anyOf is an object");
            object.remove("anyOf");
            if let Value::Object(inner) = only {
                object.extend(inner);
            }
        }
    }
}

/// One `in: query` parameter per field of the query type (its schema inlined, an absent value
/// meaning "not given" rather than `null`).
fn query_parameters(generator: &mut SchemaGenerator, query: SchemaFn) -> Vec<Value> {
    let schema = query(generator);
    let required: Vec<&str> = schema
        .get("required")
        .and_then(Value::as_array)
        .map(|r| r.iter().filter_map(Value::as_str).collect())
        .unwrap_or_default();
    let Some(properties) = schema.get("properties").and_then(Value::as_object) else {
        return Vec::new();
    };
    properties
        .iter()
        .map(|(name, property)| {
            let mut property = property.clone();
            not_null(&mut property);
            let description = property
                .as_object_mut()
                .and_then(|p| p.remove("description"))
                .unwrap_or(Value::Null);
            let mut parameter = json!({
                "name": name,
                "in": "query",
                "required": required.contains(&name.as_str()),
                "schema": property,
            });
            if !description.is_null() {
                parameter["description"] = description;
            }
            parameter
        })
        .collect()
}

/// The request and response definitions together. A type both read and written is described
/// the same way by both contracts in this API; if it ever were not, the response's wins and
/// the unit test below says so.
fn merge(requests: Map<String, Value>, responses: Map<String, Value>) -> Map<String, Value> {
    let mut all = requests;
    for (name, schema) in responses {
        all.insert(name, schema);
    }
    all
}

/// The OpenAPI 3.1 document built from [`docs`]: every request body, query and response
/// with the schema of the Rust type the server reads or writes.
/// The OpenAPI 3.1 document of `routes`, of which those in `public` need no bearer token.
pub fn document(routes: &[RouteDoc], public: &[&str]) -> Value {
    let settings = |contract| {
        SchemaSettings::draft2020_12().with(|s| {
            s.definitions_path = "/components/schemas".into();
            s.contract = contract;
        })
    };
    // What the server reads and what it writes are described apart: a field it may leave out
    // of an answer is required of no client, and one a client may leave out has a default.
    let mut requests = settings(Contract::Deserialize).into_generator();
    let mut generator = settings(Contract::Serialize).into_generator();
    let mut queries = settings(Contract::Deserialize)
        .with(|s| s.inline_subschemas = true)
        .into_generator();
    let error = schema_of::<crate::protocol::ApiError>(&mut generator);
    let mut paths = Map::new();
    for r in routes {
        let mut parameters: Vec<Value> = r
            .path
            .split('/')
            .filter_map(|seg| seg.strip_prefix('{').and_then(|s| s.strip_suffix('}')))
            .map(|name| {
                json!({"name": name, "in": "path", "required": true,
                       "schema": {"type": "string", "format": "uuid"}})
            })
            .collect();
        if let Some(query) = r.query {
            parameters.extend(query_parameters(&mut queries, query));
        }
        let mut responses = Map::new();
        for (status, body) in &r.responses {
            let reason = actix_web::http::StatusCode::from_u16(*status)
                .ok()
                .and_then(|s| s.canonical_reason())
                .unwrap_or("Success");
            responses.insert(
                status.to_string(),
                json!({"description": reason, "content": content(&mut generator, *body)}),
            );
        }
        responses.insert(
            "default".into(),
            json!({
                "description": "Error: {\"error\": code, \"message\": text}",
                "content": {"application/json": {"schema": error.clone()}}
            }),
        );
        let mut op = json!({
            "summary": r.summary,
            "tags": [r.tag],
            "operationId": format!("{}_{}", r.method, r.path.trim_matches('/').replace(['/', '{', '}', '.', '-'], "_")),
            "responses": responses,
        });
        if !parameters.is_empty() {
            op["parameters"] = Value::Array(parameters);
        }
        if let Some(body) = r.body {
            op["requestBody"] = json!({"required": true, "content": content(&mut requests, body)});
        }
        if public.contains(&r.path) {
            op["security"] = json!([]);
        }
        let entry = paths.entry(r.path.to_owned()).or_insert_with(|| json!({}));
        entry[r.method] = op;
    }
    json!({
        "openapi": "3.1.0",
        "info": {"title": "CertHub API", "version": env!("CARGO_PKG_VERSION")},
        "security": [{"bearer": []}],
        "paths": paths,
        "components": {
            "schemas": merge(requests.take_definitions(true), generator.take_definitions(true)),
            "securitySchemes": {"bearer": {"type": "http", "scheme": "bearer", "bearerFormat": "JWT"}}
        }
    })
}
