//! The event as registry:2 sends it (`application/vnd.docker.distribution.events.v1+json`,
//! an envelope `{"events": [...]}`), and the CloudEvents 1.0 form.

use serde::{Deserialize, Serialize};

pub const ENVELOPE_MEDIA_TYPE: &str = "application/vnd.docker.distribution.events.v1+json";
pub const CLOUDEVENTS_MEDIA_TYPE: &str = "application/cloudevents+json";

fn empty(s: &str) -> bool {
    s.is_empty()
}

// Go's `omitempty`, as registry:2 writes these fields.
fn zero(n: &u64) -> bool {
    *n == 0
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct Event {
    pub id: String,
    pub timestamp: String,
    pub action: String,
    pub target: Target,
    pub request: RequestInfo,
    pub actor: Actor,
    pub source: SourceInfo,
}

#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "camelCase")]
pub struct Target {
    #[serde(default, skip_serializing_if = "empty")]
    pub media_type: String,
    #[serde(default, skip_serializing_if = "zero")]
    pub size: u64,
    #[serde(default, skip_serializing_if = "empty")]
    pub digest: String,
    #[serde(default, skip_serializing_if = "zero")]
    pub length: u64,
    pub repository: String,
    #[serde(default, skip_serializing_if = "empty")]
    pub from_repository: String,
    #[serde(default, skip_serializing_if = "empty")]
    pub url: String,
    #[serde(default, skip_serializing_if = "empty")]
    pub tag: String,
}

#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq, Eq)]
pub struct RequestInfo {
    pub id: String,
    pub addr: String,
    pub host: String,
    pub method: String,
    pub useragent: String,
}

#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq, Eq)]
pub struct Actor {
    #[serde(default, skip_serializing_if = "empty")]
    pub name: String,
}

#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq, Eq)]
pub struct SourceInfo {
    pub addr: String,
    #[serde(rename = "instanceID")]
    pub instance_id: String,
}

/// registry:2's body for a batch of events.
pub fn envelope(events: &[serde_json::Value]) -> Vec<u8> {
    serde_json::to_vec(&serde_json::json!({ "events": events })).expect("JSON")
}

/// One event as a CloudEvent (structured mode): the registry:2 event is its
/// `data`, the repository its `subject`.
pub fn cloudevent(event: &serde_json::Value) -> Vec<u8> {
    let field = |k: &str| event.get(k).cloned().unwrap_or_default();
    let target = field("target");
    serde_json::to_vec(&serde_json::json!({
        "specversion": "1.0",
        "id": field("id"),
        "source": format!("/registry/{}", event["source"]["instanceID"].as_str().unwrap_or("")),
        "type": format!("org.cncf.distribution.{}", event["action"].as_str().unwrap_or("")),
        "subject": target["repository"],
        "time": field("timestamp"),
        "datacontenttype": "application/json",
        "data": event,
    }))
    .expect("JSON")
}
