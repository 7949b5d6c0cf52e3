//! The sync protocol's messages as the official client writes and reads
//! them (`convex/src/browser/sync/protocol.ts`): client messages parsed
//! with serde, server messages written as JSON text.

use base64::engine::general_purpose::STANDARD;
use base64::Engine;
use engine::ts::Ts;
use serde::Deserialize;
use serde_json::{json, Value as JsonValue};

/// A message from the client.
#[derive(Debug, Deserialize)]
#[serde(tag = "type", rename_all_fields = "camelCase")]
pub enum ClientMessage {
    Connect {
        session_id: String,
        #[serde(default)]
        connection_count: u32,
        #[serde(default)]
        last_close_reason: Option<String>,
        #[serde(default)]
        max_observed_timestamp: Option<String>,
        #[serde(default)]
        client_ts: Option<f64>,
    },
    ModifyQuerySet {
        base_version: u32,
        new_version: u32,
        modifications: Vec<QuerySetModification>,
    },
    Mutation {
        request_id: u32,
        udf_path: String,
        args: Vec<JsonValue>,
        #[serde(default)]
        component_path: Option<String>,
    },
    Action {
        request_id: u32,
        udf_path: String,
        args: Vec<JsonValue>,
        #[serde(default)]
        component_path: Option<String>,
    },
    Authenticate {
        base_version: u32,
        token_type: String,
        #[serde(default)]
        value: Option<String>,
    },
    /// Telemetry: ignored.
    Event {},
}

/// One change of a query set.
#[derive(Debug, Deserialize)]
#[serde(tag = "type", rename_all_fields = "camelCase")]
pub enum QuerySetModification {
    Add {
        query_id: u32,
        udf_path: String,
        args: Vec<JsonValue>,
        #[serde(default)]
        journal: Option<String>,
        #[serde(default)]
        component_path: Option<String>,
    },
    Remove {
        query_id: u32,
    },
}

/// A timestamp as the protocol writes it: base64 of its 8 little-endian
/// bytes.
pub fn encode_ts(ts: Ts) -> String {
    STANDARD.encode(ts.get().to_le_bytes())
}

pub fn decode_ts(s: &str) -> Result<Ts, String> {
    let bytes = STANDARD
        .decode(s)
        .map_err(|e| format!("Invalid timestamp {s:?}: {e}"))?;
    let bytes: [u8; 8] = bytes
        .try_into()
        .map_err(|_| format!("Invalid timestamp {s:?}: expected 8 bytes"))?;
    Ok(Ts(u64::from_le_bytes(bytes)))
}

/// `{querySet, identity, ts}`.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub struct StateVersion {
    pub query_set: u32,
    pub identity: u32,
    pub ts: Ts,
}

fn write_version(out: &mut String, v: StateVersion, ts_text: &str) {
    use std::fmt::Write;
    let _ = write!(
        out,
        r#"{{"querySet":{},"identity":{},"ts":"{}"}}"#,
        v.query_set, v.identity, ts_text
    );
}

/// The start of a Transition, up to its modifications' opening bracket;
/// the caller appends modifications and [`transition_tail`]. The versions'
/// timestamps come already encoded ([`encode_ts`]), as one cycle shares
/// them across sessions.
pub fn transition_head(
    start: StateVersion,
    start_ts: &str,
    end: StateVersion,
    end_ts: &str,
) -> String {
    debug_assert_eq!(start_ts, encode_ts(start.ts));
    debug_assert_eq!(end_ts, encode_ts(end.ts));
    let mut out = String::with_capacity(256);
    out.push_str(r#"{"type":"Transition","startVersion":"#);
    write_version(&mut out, start, start_ts);
    out.push_str(r#","endVersion":"#);
    write_version(&mut out, end, end_ts);
    out.push_str(r#","modifications":["#);
    out
}

pub fn transition_tail(out: &mut String, client_clock_skew: Option<f64>, server_ts_ns: u64) {
    out.push_str("],\"clientClockSkew\":");
    match client_clock_skew {
        Some(s) if s.is_finite() => out.push_str(&json!(s).to_string()),
        _ => out.push_str("null"),
    }
    out.push_str(",\"serverTs\":");
    out.push_str(&server_ts_ns.to_string());
    out.push('}');
}

/// `{"type":"QueryRemoved","queryId":N}`.
pub fn query_removed(query_id: u32) -> String {
    format!(r#"{{"type":"QueryRemoved","queryId":{query_id}}}"#)
}

/// What a query produced, written once and shared by every session that
/// subscribes to it: the fields after `queryId` of its modification.
pub fn query_result_fields(
    result: &Result<JsonValue, (String, Option<JsonValue>)>,
    log_lines: &[String],
    journal: Option<&str>,
) -> String {
    let mut out = match result {
        Ok(value) => json!({"type": "QueryUpdated", "value": value}),
        Err((message, data)) => {
            let mut m = json!({"type": "QueryFailed", "errorMessage": message});
            // Left out rather than null: the client tests `!== undefined`.
            if let Some(d) = data {
                m["errorData"] = d.clone();
            }
            m
        }
    };
    out["logLines"] = json!(log_lines);
    out["journal"] = json!(journal);
    let text = out.to_string();
    // Strip the braces: the caller writes `{"queryId":N,` before it.
    text[1..text.len() - 1].to_string()
}

/// `{"queryId":N,<fields>}`.
pub fn query_modification(out: &mut String, query_id: u32, fields: &str) {
    out.push_str("{\"queryId\":");
    out.push_str(&query_id.to_string());
    out.push(',');
    out.push_str(fields);
    out.push('}');
}

pub fn mutation_response(
    request_id: u32,
    result: &Result<(JsonValue, Ts), (String, Option<JsonValue>)>,
    log_lines: &[String],
) -> String {
    let m = match result {
        Ok((value, ts)) => json!({
            "type": "MutationResponse", "requestId": request_id, "success": true,
            "result": value, "ts": encode_ts(*ts), "logLines": log_lines,
        }),
        Err((message, data)) => {
            let mut m = json!({
                "type": "MutationResponse", "requestId": request_id, "success": false,
                "result": message, "ts": null, "logLines": log_lines,
            });
            if let Some(d) = data {
                m["errorData"] = d.clone();
            }
            m
        }
    };
    m.to_string()
}

pub fn action_response(
    request_id: u32,
    result: &Result<JsonValue, (String, Option<JsonValue>)>,
    log_lines: &[String],
) -> String {
    let m = match result {
        Ok(value) => json!({
            "type": "ActionResponse", "requestId": request_id, "success": true,
            "result": value, "logLines": log_lines,
        }),
        Err((message, data)) => {
            let mut m = json!({
                "type": "ActionResponse", "requestId": request_id, "success": false,
                "result": message, "logLines": log_lines,
            });
            if let Some(d) = data {
                m["errorData"] = d.clone();
            }
            m
        }
    };
    m.to_string()
}

pub fn fatal_error(error: &str) -> String {
    json!({"type": "FatalError", "error": error}).to_string()
}

pub fn auth_error(error: &str, base_version: u32, auth_update_attempted: bool) -> String {
    json!({
        "type": "AuthError", "error": error, "baseVersion": base_version,
        "authUpdateAttempted": auth_update_attempted,
    })
    .to_string()
}

pub const PING: &str = r#"{"type":"Ping"}"#;

/// Transitions longer than this are sent as `TransitionChunk`s.
pub const CHUNK_BYTES: usize = 4 << 20;

/// Splits a long Transition into `TransitionChunk` messages on UTF-8
/// boundaries; a short one is returned as is.
pub fn chunk_transition(text: String, transition_id: u64) -> Vec<String> {
    if text.len() <= CHUNK_BYTES {
        return vec![text];
    }
    let mut parts = Vec::new();
    let mut rest = text.as_str();
    while !rest.is_empty() {
        let mut cut = rest.len().min(CHUNK_BYTES);
        while !rest.is_char_boundary(cut) {
            cut -= 1;
        }
        parts.push(&rest[..cut]);
        rest = &rest[cut..];
    }
    let total = parts.len();
    parts
        .iter()
        .enumerate()
        .map(|(i, chunk)| {
            json!({
                "type": "TransitionChunk", "chunk": chunk, "partNumber": i,
                "totalParts": total, "transitionId": transition_id.to_string(),
            })
            .to_string()
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn timestamps_are_base64_of_little_endian_u64() {
        assert_eq!(encode_ts(Ts(0)), "AAAAAAAAAAA=");
        // The reference's example.
        assert_eq!(encode_ts(Ts(1732170000123456789)), "FW3yC3DnCRg=");
        assert_eq!(decode_ts("FW3yC3DnCRg=").unwrap(), Ts(1732170000123456789));
        assert!(decode_ts("AAAA").is_err());
    }

    #[test]
    fn client_messages_parse_as_the_client_writes_them() {
        let m: ClientMessage = serde_json::from_str(
            r#"{"connectionCount":0,"lastCloseReason":"InitialConnect","clientTs":1732170000000,"type":"Connect","sessionId":"3b241101-e2bb-4255-8caf-4136c566a962"}"#,
        )
        .unwrap();
        assert!(matches!(
            m,
            ClientMessage::Connect {
                connection_count: 0,
                ..
            }
        ));
        let m: ClientMessage = serde_json::from_str(
            r#"{"type":"ModifyQuerySet","baseVersion":1,"newVersion":2,"modifications":[{"type":"Add","queryId":0,"udfPath":"messages:list","args":[{}]},{"type":"Remove","queryId":3}]}"#,
        )
        .unwrap();
        let ClientMessage::ModifyQuerySet { modifications, .. } = m else {
            panic!()
        };
        assert!(matches!(
            modifications[0],
            QuerySetModification::Add { query_id: 0, .. }
        ));
        assert!(matches!(
            modifications[1],
            QuerySetModification::Remove { query_id: 3 }
        ));
        let m: ClientMessage =
            serde_json::from_str(r#"{"type":"Event","eventType":"x","event":{"a":1}}"#).unwrap();
        assert!(matches!(m, ClientMessage::Event {}));
        assert!(serde_json::from_str::<ClientMessage>(r#"{"type":"Nope"}"#).is_err());
    }

    #[test]
    fn a_transition_is_valid_json_with_both_versions() {
        let start = StateVersion::default();
        let end = StateVersion {
            query_set: 2,
            identity: 1,
            ts: Ts(1732170000123456789),
        };
        let mut t = transition_head(start, &encode_ts(start.ts), end, &encode_ts(end.ts));
        query_modification(&mut t, 0, &query_result_fields(&Ok(json!([1])), &[], None));
        transition_tail(&mut t, Some(-4.0), 7);
        let v: JsonValue = serde_json::from_str(&t).unwrap();
        assert_eq!(
            v["startVersion"],
            json!({"querySet": 0, "identity": 0, "ts": "AAAAAAAAAAA="})
        );
        assert_eq!(
            v["endVersion"],
            json!({"querySet": 2, "identity": 1, "ts": "FW3yC3DnCRg="})
        );
        assert_eq!(v["modifications"][0]["value"], json!([1]));
        assert_eq!(v["clientClockSkew"], -4.0);
        assert_eq!(v["serverTs"], 7);
    }

    #[test]
    fn failed_results_leave_error_data_out_unless_there_is_some() {
        let f = query_result_fields(&Err(("boom".into(), None)), &[], None);
        assert!(!f.contains("errorData"), "{f}");
        let mut m = String::new();
        query_modification(&mut m, 7, &f);
        let v: JsonValue = serde_json::from_str(&m).unwrap();
        assert_eq!(v["queryId"], 7);
        assert_eq!(v["type"], "QueryFailed");
        assert_eq!(v["journal"], JsonValue::Null);
        let r = mutation_response(1, &Err(("no".into(), Some(json!({"code": 1})))), &[]);
        let v: JsonValue = serde_json::from_str(&r).unwrap();
        assert_eq!(v["errorData"]["code"], 1);
        assert_eq!(v["ts"], JsonValue::Null);
    }

    #[test]
    fn long_transitions_are_chunked_on_character_boundaries() {
        let text = "é".repeat(CHUNK_BYTES); // two bytes each
        let parts = chunk_transition(text.clone(), 9);
        assert_eq!(parts.len(), 2);
        let mut joined = String::new();
        for (i, p) in parts.iter().enumerate() {
            let v: JsonValue = serde_json::from_str(p).unwrap();
            assert_eq!(v["partNumber"], i);
            assert_eq!(v["totalParts"], 2);
            assert_eq!(v["transitionId"], "9");
            joined.push_str(v["chunk"].as_str().unwrap());
        }
        assert_eq!(joined, text);
        assert_eq!(chunk_transition("{}".into(), 1), vec!["{}".to_string()]);
    }
}
