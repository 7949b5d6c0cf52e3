//! The WebSocket sync protocol (`/api/{version}/sync`, `/api/sync`) that
//! `ConvexClient` and `ConvexReactClient` speak: live queries, mutations
//! and actions over one socket. Each socket has a reader task that parses
//! the client's messages for the [`hub::Hub`], and a task that writes what
//! the hub could not write at once ([`socket`]); the hub keeps every
//! session's state, runs the live queries and writes their Transitions.

pub mod hub;
pub mod protocol;
pub mod socket;

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use axum::body::Body;
use axum::extract::{Request, State};
use axum::http::{header, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use bytes::Bytes;
use futures_util::StreamExt;
use hyper_util::rt::TokioIo;
use tokio::net::TcpStream;
use tokio::time::Instant;
use tokio_tungstenite::tungstenite::protocol::{Role, WebSocketConfig};
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::WebSocketStream;

use crate::AppState;
use hub::{Cmd, Hub, SessionKey};
use protocol::ClientMessage;
use socket::{ReadIo, SendError, SocketWriter};

/// A JSON Ping after this long without sending anything (the client
/// reconnects after 60 s of silence).
pub const PING_AFTER: Duration = Duration::from_secs(15);
/// Largest message a client may send (a mutation's args are at most 8 MiB
/// of values, more as JSON text).
const MAX_CLIENT_MESSAGE: usize = 64 << 20;
/// Read buffer: small, so an idle session costs little memory; it grows
/// while a large message passes.
const SOCKET_BUFFER: usize = 4096;
/// How long a close frame waits for a client that does not read.
const CLOSE_WAIT: Duration = Duration::from_secs(1);

/// `GET /api/sync` and `GET /api/{version}/sync`: the WebSocket upgrade.
/// The socket is served below axum's `WebSocket` (see [`socket`]), so the
/// upgrade is done here; it answers as axum's would.
pub async fn sync_handler(State(state): State<Arc<AppState>>, mut req: Request) -> Response {
    let accept = match socket::check_upgrade(req.method(), req.headers()) {
        Ok(accept) => accept,
        Err((status, message)) => return (status, message).into_response(),
    };
    let Some(on_upgrade) = req.extensions_mut().remove::<hyper::upgrade::OnUpgrade>() else {
        return (
            StatusCode::UPGRADE_REQUIRED,
            "WebSocket request couldn't be upgraded since no upgrade state was present",
        )
            .into_response();
    };
    tokio::spawn(async move {
        let upgraded = match on_upgrade.await {
            Ok(upgraded) => upgraded,
            Err(e) => {
                tracing::debug!(error = %e, "a sync socket's upgrade failed");
                return;
            }
        };
        // The server's connections are TCP streams (see `serve`).
        let parts =
            match hyper_util::server::conn::auto::upgrade::downcast::<TokioIo<TcpStream>>(upgraded)
            {
                Ok(parts) => parts,
                Err(_) => {
                    tracing::error!("a sync socket is not a TCP stream; closing it");
                    return;
                }
            };
        // Copied: as a slice it would keep hyper's whole read buffer (8 KiB
        // or more) alive for as long as the socket.
        let prefix = Bytes::copy_from_slice(&parts.read_buf);
        drop(parts.read_buf);
        match state.sync_hub() {
            Ok(hub) => serve_socket(state, hub, parts.io.into_inner(), prefix).await,
            Err(e) => tracing::error!(error = %e, "the sync hub cannot start"),
        }
    });
    let mut response = Response::new(Body::empty());
    *response.status_mut() = StatusCode::SWITCHING_PROTOCOLS;
    let headers = response.headers_mut();
    headers.insert(header::CONNECTION, HeaderValue::from_static("upgrade"));
    headers.insert(header::UPGRADE, HeaderValue::from_static("websocket"));
    headers.insert(header::SEC_WEBSOCKET_ACCEPT, accept);
    response
}

/// Queues a FatalError and then the close, as upstream does for a client's
/// protocol error.
fn fatal(writer: &SocketWriter, error: &str) {
    let _ = writer.send(socket::text_frame(&protocol::fatal_error(error)));
    writer.close(socket::close_frame(None), false);
}

/// Reads the client's messages and hands them to the hub; a protocol error
/// queues a FatalError and a close and ends the reading. Sets `connected`
/// before it hands over the session's `Connect`.
async fn read_socket(
    state: Arc<AppState>,
    hub: Hub,
    key: SessionKey,
    mut stream: WebSocketStream<ReadIo>,
    writer: Arc<SocketWriter>,
    connected: Arc<AtomicBool>,
) {
    while let Some(incoming) = stream.next().await {
        let text = match incoming {
            Ok(Message::Text(t)) => t,
            Ok(Message::Binary(_)) => {
                fatal(
                    &writer,
                    "BadRequest: binary messages are not part of the protocol",
                );
                return;
            }
            // tungstenite answers a ping, and a close, on the next read (a
            // close's next read then ends the stream).
            Ok(Message::Ping(_) | Message::Pong(_) | Message::Frame(_) | Message::Close(_)) => {
                continue
            }
            Err(_) => return,
        };
        let message: ClientMessage = match serde_json::from_str(text.as_str()) {
            Ok(m) => m,
            Err(e) => {
                fatal(&writer, &format!("BadRequest: invalid message: {e}"));
                return;
            }
        };
        if !connected.load(Ordering::Relaxed) {
            let ClientMessage::Connect {
                session_id,
                max_observed_timestamp,
                client_ts,
                ..
            } = message
            else {
                fatal(&writer, "BadRequest: the first message must be Connect");
                return;
            };
            if let Some(observed) = max_observed_timestamp.as_deref().map(protocol::decode_ts) {
                match observed {
                    Ok(observed) if observed > state.db.snapshot_ts() => {
                        // Upstream closes too: the client has seen data
                        // this server does not have.
                        tracing::warn!(%session_id, observed = %observed, "client is ahead of this server");
                        let reason = "InternalServerError: the client has observed a timestamp newer than this server's latest";
                        writer.close(socket::close_frame(Some((1011, reason))), false);
                        return;
                    }
                    Ok(_) => {}
                    Err(e) => {
                        fatal(&writer, &format!("BadRequest: {e}"));
                        return;
                    }
                }
            }
            let now_ms = SystemTime::now()
                .duration_since(UNIX_EPOCH)
                .map_or(0.0, |d| d.as_secs_f64() * 1000.0);
            let clock_skew = client_ts.map(|c| (c - now_ms).round());
            let cmd = Cmd::Connect {
                key,
                session_id,
                writer: Arc::clone(&writer),
                clock_skew,
            };
            connected.store(true, Ordering::Relaxed);
            if hub.send(cmd).await.is_err() {
                return;
            }
            continue;
        }
        if hub.send(Cmd::Message { key, message }).await.is_err() {
            return;
        }
    }
}

/// One socket: a reader task ([`read_socket`]) and this task, which writes
/// what the socket's [`SocketWriter`] could not write at once (the hub and
/// its write helpers write the rest themselves), sends the JSON Ping after
/// silence, and ends the socket once its close frame is out or the client
/// is gone.
async fn serve_socket(state: Arc<AppState>, hub: Hub, tcp: TcpStream, prefix: Bytes) {
    let key = hub.next_key();
    let (read, write) = tcp.into_split();
    let writer = Arc::new(SocketWriter::new(write));
    let io = ReadIo {
        prefix,
        read,
        writer: Arc::clone(&writer),
    };
    let config = WebSocketConfig::default()
        .read_buffer_size(SOCKET_BUFFER)
        .write_buffer_size(0)
        .max_message_size(Some(MAX_CLIENT_MESSAGE));
    let stream = WebSocketStream::from_raw_socket(io, Role::Server, Some(config)).await;
    let connected = Arc::new(AtomicBool::new(false));
    let mut reader = tokio::spawn(read_socket(
        state,
        hub.clone(),
        key,
        stream,
        Arc::clone(&writer),
        Arc::clone(&connected),
    ));
    let mut reader_done = false;
    // Moved forward only when it fires: the hub's writes do not wake this
    // task.
    let ping = tokio::time::sleep_until(Instant::now() + PING_AFTER);
    tokio::pin!(ping);
    loop {
        tokio::select! {
            () = writer.wake.notified() => {
                if !writer.drain(CLOSE_WAIT).await {
                    break;
                }
            }
            () = &mut ping => {
                let next = ping_due(&writer, Instant::now());
                ping.as_mut().reset(next);
            }
            // The reader ended: the client is gone or closed, or it broke
            // the protocol and the reader queued a FatalError and a close,
            // which go out with the rest of the queue.
            _ = &mut reader, if !reader_done => {
                reader_done = true;
                if !writer.is_closing() {
                    break;
                }
            }
        }
    }
    writer.finish();
    if !reader_done {
        reader.abort();
        let _ = reader.await;
    }
    if connected.load(Ordering::Relaxed) {
        let _ = hub.send(Cmd::Disconnected { key }).await;
    }
}

/// The ping timer fired at `now`: sends the JSON Ping when nothing was
/// written for [`PING_AFTER`], and closes with 1013 when the queue is full.
/// Returns when the timer is to fire next.
fn ping_due(writer: &SocketWriter, now: Instant) -> Instant {
    let ping_at = writer.last_write() + PING_AFTER;
    if now < ping_at {
        return ping_at;
    }
    // Closing or gone: the socket's task finds that out on its own. Full:
    // the client has not read for a while, and no Transition will find
    // that out if the hub sends none.
    if writer.send(socket::text_frame(protocol::PING)) == Err(SendError::Full) {
        tracing::warn!(reason = hub::QUEUE_FULL, "closing a sync session (1013)");
        writer.close(socket::close_frame(Some((1013, hub::QUEUE_FULL))), true);
    }
    now + PING_AFTER
}

#[cfg(test)]
mod tests {
    use super::socket::tests::{pair, read_frame};
    use super::*;

    #[tokio::test]
    async fn a_quiet_socket_gets_a_ping_and_a_full_one_a_1013() {
        // Written to a moment ago: not due yet.
        let (writer, _read, mut client) = pair().await;
        writer.send(socket::text_frame("first")).unwrap();
        let now = Instant::now();
        let next = ping_due(&writer, now);
        assert_eq!(next, writer.last_write() + PING_AFTER);
        assert!(next > now);
        // Due: the Ping goes out after what was sent.
        let due = writer.last_write() + PING_AFTER;
        assert_eq!(ping_due(&writer, due), due + PING_AFTER);
        assert_eq!(read_frame(&mut client).await, (1, b"first".to_vec()));
        assert_eq!(
            read_frame(&mut client).await,
            (1, protocol::PING.as_bytes().to_vec())
        );
        assert!(!writer.is_closing());

        // A client that stopped reading: the queue fills, the Ping is
        // refused, and the socket closes with 1013 after whole frames.
        let (writer, _read, mut client) = pair().await;
        let big = socket::text_frame(&"x".repeat(1 << 20));
        let mut sent = 0;
        while writer.send(big.clone()).is_ok() {
            sent += 1;
            assert!(sent < 1000, "never refused");
        }
        // Then small ones, until not even a Ping fits.
        let small = socket::text_frame("y");
        let mut small_sent = 0;
        while writer.send(small.clone()).is_ok() {
            small_sent += 1;
            assert!(small_sent < 1 << 20, "never refused");
        }
        let due = writer.last_write() + PING_AFTER;
        assert_eq!(ping_due(&writer, due), due + PING_AFTER);
        assert!(writer.is_closing());
        let drained = {
            let writer = Arc::clone(&writer);
            tokio::spawn(async move { writer.drain(Duration::from_secs(10)).await })
        };
        let mut texts = 0;
        let close = loop {
            let (opcode, payload) = read_frame(&mut client).await;
            if opcode == 8 {
                break payload;
            }
            assert_eq!(opcode, 1);
            assert!([1 << 20, 1].contains(&payload.len()));
            texts += 1;
        };
        assert_eq!(&close[..2], &1013u16.to_be_bytes());
        assert_eq!(std::str::from_utf8(&close[2..]).unwrap(), hub::QUEUE_FULL);
        assert!((1..=sent + small_sent).contains(&texts), "{texts} frames");
        assert!(!drained.await.unwrap(), "the close ends the socket");
    }
}
