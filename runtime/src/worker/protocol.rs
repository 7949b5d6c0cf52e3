//! The frames spoken over a worker's stdin/stdout.
//!
//! A frame is a `u32` little-endian byte length followed by that many bytes
//! of UTF-8 JSON: an object whose `t` field names the message. The shim's
//! header comment (`runtime/js/worker.js`) lists every message; this module
//! is its Rust half. Invariant: a frame longer than [`MAX_FRAME_BYTES`] is
//! never buffered, it marks the worker as broken.

use std::collections::BTreeMap;
use std::io::{self, Read, Write};

use serde::{Deserialize, Deserializer, Serialize};

use crate::analyze::AnalyzedModule;

/// The largest frame either side accepts: above the 16 MiB argument and
/// result limits with room for JSON escaping.
pub(crate) const MAX_FRAME_BYTES: usize = 64 << 20;

/// Writes one frame (header and body in one write).
pub(crate) fn write_frame(w: &mut impl Write, body: &[u8]) -> io::Result<()> {
    let len = u32::try_from(body.len())
        .ok()
        .filter(|&n| n as usize <= MAX_FRAME_BYTES)
        .ok_or_else(|| io::Error::new(io::ErrorKind::InvalidInput, "frame too large"))?;
    let mut buf = Vec::with_capacity(4 + body.len());
    buf.extend_from_slice(&len.to_le_bytes());
    buf.extend_from_slice(body);
    w.write_all(&buf)?;
    w.flush()
}

/// What reading the next frame gave.
#[derive(Debug)]
pub(crate) enum ReadFrame {
    /// A whole frame's body.
    Frame(Vec<u8>),
    /// The stream ended cleanly between frames.
    Eof,
    /// The stream ended inside a frame, or announced an oversized frame.
    Broken(String),
}

/// Reads the next frame, blocking.
pub(crate) fn read_frame(r: &mut impl Read) -> ReadFrame {
    let mut header = [0u8; 4];
    let mut got = 0;
    while got < 4 {
        match r.read(&mut header[got..]) {
            Ok(0) if got == 0 => return ReadFrame::Eof,
            Ok(0) => return ReadFrame::Broken("stream ended inside a frame header".into()),
            Ok(n) => got += n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return ReadFrame::Broken(format!("reading a frame header: {e}")),
        }
    }
    let len = u32::from_le_bytes(header) as usize;
    if len > MAX_FRAME_BYTES {
        return ReadFrame::Broken(format!(
            "frame of {len} bytes announced, the limit is {MAX_FRAME_BYTES}"
        ));
    }
    let mut body = vec![0u8; len];
    if let Err(e) = r.read_exact(&mut body) {
        return ReadFrame::Broken(format!("reading a {len}-byte frame: {e}"));
    }
    ReadFrame::Frame(body)
}

/// A failure as the worker reports it: `data` present (even `null`) only
/// for a `ConvexError`.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub(crate) struct ErrorPayload {
    pub message: String,
    #[serde(
        default,
        deserialize_with = "present",
        skip_serializing_if = "Option::is_none"
    )]
    pub data: Option<serde_json::Value>,
}

fn present<'de, D: Deserializer<'de>>(d: D) -> Result<Option<serde_json::Value>, D::Error> {
    serde_json::Value::deserialize(d).map(Some)
}

/// Messages from the worker.
#[derive(Debug, Deserialize)]
#[serde(tag = "t", rename_all = "lowercase")]
pub(crate) enum FromWorker {
    Ready {
        deno: String,
    },
    Syscall {
        op: String,
        args: String,
        #[serde(rename = "async")]
        is_async: bool,
    },
    Log {
        line: String,
    },
    Imported,
    Done {
        #[serde(default)]
        ok: Option<String>,
        #[serde(default)]
        error: Option<ErrorPayload>,
    },
    Analysis {
        modules: BTreeMap<String, AnalyzedModule>,
        schema: Option<serde_json::Value>,
    },
}

/// Messages to the worker.
#[derive(Debug, Serialize)]
#[serde(tag = "t", rename_all = "lowercase", rename_all_fields = "camelCase")]
pub(crate) enum ToWorker<'a> {
    Run {
        dir_url: &'a str,
        module: &'a str,
        name: &'a str,
        udf_type: &'static str,
        args: &'a str,
        seed: String,
        now_ms: u64,
        request_id: &'a str,
        import_seed: String,
        import_now_ms: u64,
        /// The host times this call's import apart (the worker answers
        /// with `imported` once the module is loaded).
        importing: bool,
        #[serde(skip_serializing_if = "Option::is_none")]
        env: Option<&'a BTreeMap<String, String>>,
    },
    Analyze {
        dir_url: &'a str,
        modules: Vec<&'a str>,
        import_seed: String,
        import_now_ms: u64,
    },
    Result {
        #[serde(skip_serializing_if = "Option::is_none")]
        ok: Option<String>,
        #[serde(skip_serializing_if = "Option::is_none")]
        error: Option<ErrorPayload>,
    },
}

/// Lowercase hex of `bytes`.
pub(crate) fn hex(bytes: &[u8]) -> String {
    const DIGITS: &[u8; 16] = b"0123456789abcdef";
    let mut out = String::with_capacity(bytes.len() * 2);
    for b in bytes {
        out.push(DIGITS[(b >> 4) as usize] as char);
        out.push(DIGITS[(b & 15) as usize] as char);
    }
    out
}

/// A `file://` URL for a directory, ending in `/`, with every byte outside
/// the unreserved set and `/` percent-encoded.
pub(crate) fn dir_url(path: &std::path::Path) -> String {
    let text = path.to_string_lossy();
    let mut out = String::from("file://");
    for b in text.bytes() {
        if b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'_' | b'~' | b'/') {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    if !out.ends_with('/') {
        out.push('/');
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn frames_round_trip() {
        let mut buf = Vec::new();
        write_frame(&mut buf, b"{\"t\":\"imported\"}").unwrap();
        write_frame(&mut buf, b"").unwrap();
        let mut r = &buf[..];
        assert!(matches!(read_frame(&mut r), ReadFrame::Frame(b) if b == b"{\"t\":\"imported\"}"));
        assert!(matches!(read_frame(&mut r), ReadFrame::Frame(b) if b.is_empty()));
        assert!(matches!(read_frame(&mut r), ReadFrame::Eof));
    }

    #[test]
    fn torn_and_oversized_frames_are_broken() {
        let mut r: &[u8] = &[5, 0, 0, 0, b'a'];
        assert!(matches!(read_frame(&mut r), ReadFrame::Broken(_)));
        let mut r: &[u8] = &[1, 0];
        assert!(matches!(read_frame(&mut r), ReadFrame::Broken(_)));
        let mut r: &[u8] = &[0xff, 0xff, 0xff, 0xff];
        assert!(matches!(read_frame(&mut r), ReadFrame::Broken(_)));
    }

    #[test]
    fn error_data_keeps_null_apart_from_absent() {
        let e: ErrorPayload = serde_json::from_str(r#"{"message":"m","data":null}"#).unwrap();
        assert_eq!(e.data, Some(serde_json::Value::Null));
        let e: ErrorPayload = serde_json::from_str(r#"{"message":"m"}"#).unwrap();
        assert_eq!(e.data, None);
    }

    #[test]
    fn messages_have_the_shims_field_names() {
        let seed = hex(&[0xab; 2]);
        let text = serde_json::to_string(&ToWorker::Run {
            dir_url: "file:///x/",
            module: "m.js",
            name: "f",
            udf_type: "Query",
            args: "[{}]",
            seed,
            now_ms: 5,
            request_id: "",
            import_seed: String::new(),
            import_now_ms: 0,
            importing: false,
            env: None,
        })
        .unwrap();
        assert!(
            text.starts_with(r#"{"t":"run","dirUrl":"file:///x/""#),
            "{text}"
        );
        assert!(text.contains(r#""udfType":"Query""#), "{text}");
        assert!(text.contains(r#""seed":"abab""#), "{text}");
        let m: FromWorker =
            serde_json::from_str(r#"{"t":"syscall","op":"1.0/get","args":"{}","async":true}"#)
                .unwrap();
        assert!(matches!(m, FromWorker::Syscall { is_async: true, .. }));
    }

    #[test]
    fn dir_urls_are_encoded() {
        assert_eq!(
            dir_url(std::path::Path::new("/tmp/a b/c%")),
            "file:///tmp/a%20b/c%25/"
        );
    }
}
