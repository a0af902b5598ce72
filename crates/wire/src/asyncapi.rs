//! The WebSocket protocol as an AsyncAPI 3.0 document, generated from `ClientEvent` and
//! `ServerEvent` so it cannot drift from them.
//!
//! Each variant of the two enums becomes one message (`client.<type>` / `server.<type>`) whose
//! payload is the variant's JSON Schema as utoipa derives it (the same schemas the OpenAPI
//! document uses, so `Message`, `User`… are shared). Both endpoints (`/ws` and
//! `/ws/rooms/{room_id}`) carry every message: a client sends the client events and receives
//! the server events.

use serde_json::{Map, Value, json};
use utoipa::OpenApi;

use crate::{ClientEvent, ServerEvent};

#[derive(OpenApi)]
#[openapi(components(schemas(ClientEvent, ServerEvent)))]
struct EventSchemas;

/// Who sends a message: the client (`send` operations) or the server (`receive`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Direction {
    Client,
    Server,
}

impl Direction {
    fn prefix(self) -> &'static str {
        match self {
            Direction::Client => "client",
            Direction::Server => "server",
        }
    }
}

/// The id of the message of `type_name` sent by `direction` (a key of `components/messages`).
pub fn message_id(direction: Direction, type_name: &str) -> String {
    format!("{}.{type_name}", direction.prefix())
}

/// The `type` a variant's schema fixes (`properties.type.enum[0]`).
fn variant_type(schema: &Value) -> Option<&str> {
    schema
        .pointer("/properties/type/enum/0")
        .and_then(Value::as_str)
}

/// The AsyncAPI 3.0 document of the WebSocket protocol of a server of `version`.
pub fn document(version: &str, description: &str) -> Value {
    // Serializing utoipa's plain structs cannot fail.
    let openapi = serde_json::to_value(EventSchemas::openapi()).unwrap_or_default();
    let schemas = openapi
        .pointer("/components/schemas")
        .cloned()
        .unwrap_or_else(|| json!({}));
    let mut messages = Map::new();
    let mut by_direction: Vec<(Direction, Vec<String>)> = Vec::new();
    for (direction, name) in [
        (Direction::Client, "ClientEvent"),
        (Direction::Server, "ServerEvent"),
    ] {
        let variants = schemas
            .pointer(&format!("/{name}/oneOf"))
            .and_then(Value::as_array)
            .cloned()
            .unwrap_or_default();
        let mut ids = Vec::new();
        for variant in variants {
            let Some(type_name) = variant_type(&variant).map(str::to_owned) else {
                continue;
            };
            let id = message_id(direction, &type_name);
            let mut message = json!({
                "name": type_name,
                "title": format!("{type_name} ({} → {})", direction.prefix(), match direction {
                    Direction::Client => "server",
                    Direction::Server => "client",
                }),
                "contentType": "application/json",
                "payload": variant,
            });
            if let Some(summary) = message.pointer("/payload/description").cloned() {
                message["summary"] = summary;
            }
            messages.insert(id.clone(), message);
            ids.push(id);
        }
        by_direction.push((direction, ids));
    }
    let channel_messages = |ids: &[String]| -> Map<String, Value> {
        ids.iter()
            .map(|id| {
                (
                    id.clone(),
                    json!({"$ref": format!("#/components/messages/{id}")}),
                )
            })
            .collect()
    };
    let all_ids: Vec<String> = by_direction
        .iter()
        .flat_map(|(_, ids)| ids.iter().cloned())
        .collect();
    let query = |room: bool| {
        let mut properties = json!({
            "token": {"type": "string", "description": "The JWT (or send `Authorization: Bearer <JWT>`)."},
        });
        if room {
            properties["since_seq"] = json!({"type": "integer", "format": "int64", "minimum": 0,
                "description": "Replay messages with a higher `seq` first, as `subscribe` does."});
            properties["since_rev"] = json!({"type": "integer", "format": "int64", "minimum": 0,
                "description": "Then replay changes after this `rev` as `message.updated`."});
        }
        json!({"ws": {"method": "GET", "query": {"type": "object", "properties": properties}, "bindingVersion": "0.1.0"}})
    };
    let mut channels = Map::new();
    channels.insert(
        "socket".to_owned(),
        json!({
            "address": "/ws",
            "title": "A socket; subscribe to rooms with `subscribe` events",
            "messages": channel_messages(&all_ids),
            "bindings": query(false),
        }),
    );
    channels.insert(
        "room".to_owned(),
        json!({
            "address": "/ws/rooms/{room_id}",
            "title": "A socket already subscribed to one room (`subscribed` first, then the replay)",
            "parameters": {"room_id": {"description": "The room's id (a UUID)."}},
            "messages": channel_messages(&all_ids),
            "bindings": query(true),
        }),
    );
    let mut operations = Map::new();
    for channel in ["socket", "room"] {
        for (direction, ids) in &by_direction {
            let (action, verb) = match direction {
                Direction::Client => ("send", "send"),
                Direction::Server => ("receive", "receive"),
            };
            let refs: Vec<Value> = ids
                .iter()
                .map(|id| json!({"$ref": format!("#/channels/{channel}/messages/{id}")}))
                .collect();
            operations.insert(
                format!("{verb}_{channel}"),
                json!({
                    "action": action,
                    "channel": {"$ref": format!("#/channels/{channel}")},
                    "messages": refs,
                }),
            );
        }
    }
    json!({
        "asyncapi": "3.0.0",
        "info": {
            "title": "Nebula WebSocket protocol",
            "version": version,
            "description": description,
        },
        "defaultContentType": "application/json",
        "channels": channels,
        "operations": operations,
        "components": {
            "messages": messages,
            "schemas": schemas,
        },
    })
}

/// The message ids a document holds for `direction`.
pub fn message_types(document: &Value, direction: Direction) -> Vec<String> {
    let prefix = format!("{}.", direction.prefix());
    document
        .pointer("/components/messages")
        .and_then(Value::as_object)
        .map(|messages| {
            messages
                .keys()
                .filter_map(|id| id.strip_prefix(&prefix).map(str::to_owned))
                .collect()
        })
        .unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeSet;

    use super::*;

    fn set(names: &[&str]) -> BTreeSet<String> {
        names.iter().map(|n| (*n).to_owned()).collect()
    }

    #[test]
    fn every_event_type_is_a_message_and_nothing_else() {
        let document = document("0", "");
        let client: BTreeSet<_> = message_types(&document, Direction::Client)
            .into_iter()
            .collect();
        let server: BTreeSet<_> = message_types(&document, Direction::Server)
            .into_iter()
            .collect();
        assert_eq!(client, set(&ClientEvent::TYPES));
        assert_eq!(server, set(&ServerEvent::TYPES));
        for name in ServerEvent::ROOM_EVENT_TYPES {
            assert!(server.contains(name), "{name}");
        }
    }

    #[test]
    fn references_resolve() {
        let document = document("0", "");
        let mut refs = Vec::new();
        collect_refs(&document, &mut refs);
        assert!(refs.len() > 20);
        for reference in refs {
            let pointer = reference.strip_prefix('#').expect("local reference");
            assert!(document.pointer(pointer).is_some(), "{reference}");
        }
        // Both channels carry every message, and each operation names its channel's.
        for (id, operation) in document["operations"].as_object().unwrap() {
            assert!(
                !operation["messages"].as_array().unwrap().is_empty(),
                "{id}"
            );
        }
    }

    #[test]
    fn payloads_validate_the_serialized_events() {
        let document = document("0", "");
        let event = ClientEvent::Read {
            room_id: uuid::Uuid::nil(),
            seq: 3,
        };
        let json = serde_json::to_value(&event).unwrap();
        let payload = &document["components"]["messages"]["client.read"]["payload"];
        let required = payload["required"].as_array().unwrap();
        for field in required {
            assert!(json.get(field.as_str().unwrap()).is_some(), "{field}");
        }
        for key in json.as_object().unwrap().keys() {
            assert!(payload["properties"].get(key).is_some(), "{key}");
        }
    }

    fn collect_refs(value: &Value, out: &mut Vec<String>) {
        match value {
            Value::Object(map) => {
                for (key, value) in map {
                    if key == "$ref"
                        && let Some(reference) = value.as_str()
                    {
                        out.push(reference.to_owned());
                    } else {
                        collect_refs(value, out);
                    }
                }
            }
            Value::Array(items) => items.iter().for_each(|v| collect_refs(v, out)),
            _ => {}
        }
    }
}
