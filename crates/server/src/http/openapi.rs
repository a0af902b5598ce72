//! The OpenAPI document, made exact enough for outside tools to test the server against it.
//!
//! Handlers document their own successes and the errors particular to them. What every route
//! of a kind can answer is added here once, from the shape of the operation, so no route can
//! forget it:
//! - a JSON body: `400 malformed_json`, `413 payload_too_large`, `422 invalid_body` /
//!   `validation_failed`;
//! - path parameters: `400 invalid_path`; query parameters: `400 invalid_query`;
//! - a bearer token: `401` (`unauthorized`, `invalid_token`, `token_expired`, `token_revoked`)
//!   and `503 service_unavailable` (its database is unreachable);
//!
//! and every error body is a problem document served as `application/problem+json`.

use serde_json::{Map, Value, json};

/// Constraints of request schemas that utoipa's attributes cannot state.
fn schema_constraints() -> [(&'static str, Value); 2] {
    [
        (
            // `{}` joins yourself; `user_id` or `username` (not both) adds someone.
            "AddMemberRequest",
            json!({"not": {
                "required": ["user_id", "username"],
                "properties": {"user_id": {"type": "string"}, "username": {"type": "string"}},
            }}),
        ),
        (
            // `POST /dms`, `POST /contacts/requests`: someone must be named.
            "UserRef",
            json!({"anyOf": [{"required": ["user_id"]}, {"required": ["username"]}]}),
        ),
    ]
}

/// Operations whose body may be empty, by path and method.
const OPTIONAL_BODIES: [(&str, &str); 1] = [("/rooms/{room_id}/members", "post")];

/// Refines a generated document in place (see the module docs).
pub fn refine(document: &mut Value) {
    if let Some(schemas) = document
        .pointer_mut("/components/schemas")
        .and_then(Value::as_object_mut)
    {
        for (name, constraint) in schema_constraints() {
            if let (Some(schema), Value::Object(extra)) = (
                schemas.get_mut(name).and_then(Value::as_object_mut),
                constraint,
            ) {
                schema.extend(extra);
            }
        }
    }
    for (path, method) in OPTIONAL_BODIES {
        let pointer = format!("/paths/{}/{method}/requestBody", path.replace('/', "~1"));
        if let Some(body) = document
            .pointer_mut(&pointer)
            .and_then(Value::as_object_mut)
        {
            body.insert("required".to_owned(), Value::Bool(false));
        }
    }
    let Some(paths) = document.get_mut("paths").and_then(Value::as_object_mut) else {
        return;
    };
    for item in paths.values_mut() {
        let Some(item) = item.as_object_mut() else {
            continue;
        };
        for (method, operation) in item.iter_mut() {
            if !is_method(method) {
                continue;
            }
            if let Some(operation) = operation.as_object_mut() {
                refine_operation(operation);
            }
        }
    }
}

fn is_method(key: &str) -> bool {
    matches!(
        key,
        "get" | "put" | "post" | "delete" | "options" | "head" | "patch" | "trace"
    )
}

fn refine_operation(operation: &mut Map<String, Value>) {
    let has_body = operation.contains_key("requestBody");
    let parameters: Vec<String> = operation
        .get("parameters")
        .and_then(Value::as_array)
        .map(|parameters| {
            parameters
                .iter()
                .filter_map(|p| p.get("in").and_then(Value::as_str).map(str::to_owned))
                .collect()
        })
        .unwrap_or_default();
    let authenticated = operation
        .get("security")
        .and_then(Value::as_array)
        .is_some_and(|security| !security.is_empty());
    let responses = operation
        .entry("responses")
        .or_insert_with(|| json!({}))
        .as_object_mut();
    let Some(responses) = responses else {
        return;
    };
    let mut bad_request = Vec::new();
    if has_body {
        bad_request.push("`malformed_json`: the body is not JSON");
    }
    if parameters.iter().any(|p| p == "path") {
        bad_request.push("`invalid_path`: a path parameter is malformed");
    }
    if parameters.iter().any(|p| p == "query") {
        bad_request.push("`invalid_query`: a query parameter is malformed or out of range");
    }
    if !bad_request.is_empty() {
        add_problem(responses, "400", &bad_request.join("; "));
    }
    if has_body {
        add_problem(
            responses,
            "413",
            "`payload_too_large`: the body is over `BODY_LIMIT_BYTES`",
        );
        add_problem(
            responses,
            "422",
            "`invalid_body` (wrong types, missing fields) / `validation_failed` (a value out of its limits)",
        );
    }
    if authenticated {
        add_problem(
            responses,
            "401",
            "`unauthorized` (no token) / `invalid_token` / `token_expired` / `token_revoked`",
        );
        add_problem(
            responses,
            "503",
            "`service_unavailable`: the database is unreachable; retry later",
        );
    }
    for response in responses.values_mut() {
        as_problem_json(response);
    }
}

/// Adds a problem response for `status` unless the operation documents one already.
fn add_problem(responses: &mut Map<String, Value>, status: &str, description: &str) {
    responses.entry(status.to_owned()).or_insert_with(|| {
        json!({
            "description": description,
            "content": {"application/problem+json": {"schema": {"$ref": "#/components/schemas/Problem"}}},
        })
    });
}

/// Serves a response whose body is a problem document as `application/problem+json`.
fn as_problem_json(response: &mut Value) {
    let Some(content) = response.get_mut("content").and_then(Value::as_object_mut) else {
        return;
    };
    let is_problem = content.get("application/json").is_some_and(|media| {
        media.pointer("/schema/$ref").and_then(Value::as_str)
            == Some("#/components/schemas/Problem")
    });
    if is_problem && let Some(media) = content.remove("application/json") {
        content.insert("application/problem+json".to_owned(), media);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn errors_are_problem_json_and_common_statuses_are_added() {
        let mut document = json!({"paths": {"/rooms/{room_id}": {
            "post": {
                "parameters": [{"in": "path", "name": "room_id"}],
                "requestBody": {},
                "security": [{"bearer": []}],
                "responses": {
                    "201": {"description": "ok", "content": {"application/json": {"schema": {"$ref": "#/components/schemas/Room"}}}},
                    "404": {"description": "`room_not_found`", "content": {"application/json": {"schema": {"$ref": "#/components/schemas/Problem"}}}},
                },
            },
        }}});
        refine(&mut document);
        let responses = &document["paths"]["/rooms/{room_id}"]["post"]["responses"];
        assert!(responses["201"]["content"]["application/json"].is_object());
        assert!(responses["404"]["content"]["application/problem+json"].is_object());
        for status in ["400", "401", "413", "422", "503"] {
            assert!(
                responses[status]["content"]["application/problem+json"].is_object(),
                "{status}"
            );
        }
        assert!(
            responses["400"]["description"]
                .as_str()
                .is_some_and(|d| d.contains("invalid_path") && d.contains("malformed_json"))
        );
    }
}
