//! The WebSocket sync protocol (`/api/{version}/sync`, `/api/sync`) that
//! `ConvexClient` and `ConvexReactClient` speak: live queries, mutations
//! and actions over one socket. Each socket is one task that parses the
//! client's messages for the [`hub::Hub`] and writes what the hub queues
//! for it; the hub keeps every session's state and runs the live queries.

pub mod hub;
pub mod protocol;

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use axum::extract::ws::{CloseFrame, Message, WebSocket, WebSocketUpgrade};
use axum::extract::State;
use axum::response::Response;
use futures_util::stream::SplitStream;
use futures_util::{SinkExt, StreamExt};
use tokio::sync::mpsc;
use tokio::time::Instant;

use crate::AppState;
use hub::{Cmd, Hub, Outgoing, SessionKey, SessionLink, SESSION_QUEUE};
use protocol::ClientMessage;

/// A JSON Ping after this long without sending anything (the client
/// reconnects after 60 s of silence).
pub const PING_AFTER: Duration = Duration::from_secs(15);
/// Largest message a client may send (a mutation's args are at most 8 MiB
/// of values, more as JSON text).
const MAX_CLIENT_MESSAGE: usize = 64 << 20;
/// Socket buffers: small, so an idle session costs little memory; they
/// grow while a large message passes.
const SOCKET_BUFFER: usize = 4096;
/// Most queued messages written with one flush.
const WRITE_BATCH: usize = 64;

/// `GET /api/sync` and `GET /api/{version}/sync`.
pub async fn sync_handler(State(state): State<Arc<AppState>>, ws: WebSocketUpgrade) -> Response {
    ws.read_buffer_size(SOCKET_BUFFER)
        .write_buffer_size(SOCKET_BUFFER)
        .max_message_size(MAX_CLIENT_MESSAGE)
        .on_upgrade(move |socket| async move {
            match state.sync_hub() {
                Ok(hub) => serve_socket(state, hub, socket).await,
                Err(e) => tracing::error!(error = %e, "the sync hub cannot start"),
            }
        })
}

fn close_frame(code: u16, reason: &str) -> Message {
    Message::Close(Some(CloseFrame {
        code,
        reason: reason.into(),
    }))
}

/// Queues a message of the socket's own (not the hub's) for the writer,
/// counted in the session's queued bytes as the hub's are.
async fn queue_own(out: &mpsc::Sender<Outgoing>, link: &SessionLink, message: Outgoing) {
    if let Outgoing::Text(text) = &message {
        link.queued_bytes.fetch_add(text.len(), Ordering::Relaxed);
    }
    let _ = out.send(message).await;
}

/// Reads the client's messages and hands them to the hub; a protocol error
/// queues a FatalError and a close for the writer and ends the reading.
/// Sets `connected` before it hands over the session's `Connect`. Returns
/// whether it queued a close (the writer sends what is queued up to it)
/// rather than finding the client gone.
async fn read_socket(
    state: Arc<AppState>,
    hub: Hub,
    key: SessionKey,
    mut stream: SplitStream<WebSocket>,
    out: mpsc::Sender<Outgoing>,
    link: Arc<SessionLink>,
    connected: Arc<AtomicBool>,
) -> bool {
    let fatal = |error: String| {
        let (out, link) = (out.clone(), Arc::clone(&link));
        async move {
            queue_own(
                &out,
                &link,
                Outgoing::Text(protocol::fatal_error(&error).into()),
            )
            .await;
            queue_own(&out, &link, Outgoing::Close(None)).await;
        }
    };
    while let Some(incoming) = stream.next().await {
        let text = match incoming {
            Ok(Message::Text(t)) => t,
            Ok(Message::Binary(_)) => {
                fatal("BadRequest: binary messages are not part of the protocol".into()).await;
                return true;
            }
            Ok(Message::Ping(_) | Message::Pong(_)) => continue,
            Ok(Message::Close(_)) | Err(_) => return false,
        };
        let message: ClientMessage = match serde_json::from_str(text.as_str()) {
            Ok(m) => m,
            Err(e) => {
                fatal(format!("BadRequest: invalid message: {e}")).await;
                return true;
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
                fatal("BadRequest: the first message must be Connect".into()).await;
                return true;
            };
            if let Some(observed) = max_observed_timestamp.as_deref().map(protocol::decode_ts) {
                match observed {
                    Ok(observed) if observed > state.db.snapshot_ts() => {
                        // Upstream closes too: the client has seen data
                        // this server does not have.
                        tracing::warn!(%session_id, observed = %observed, "client is ahead of this server");
                        let reason = "InternalServerError: the client has observed a timestamp newer than this server's latest";
                        queue_own(&out, &link, Outgoing::Close(Some((1011, reason.into())))).await;
                        return true;
                    }
                    Ok(_) => {}
                    Err(e) => {
                        fatal(format!("BadRequest: {e}")).await;
                        return true;
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
                out: out.clone(),
                link: Arc::clone(&link),
                clock_skew,
            };
            connected.store(true, Ordering::Relaxed);
            if hub.send(cmd).await.is_err() {
                return false;
            }
            continue;
        }
        if hub.send(Cmd::Message { key, message }).await.is_err() {
            return false;
        }
    }
    false
}

/// One socket: a reader task ([`read_socket`]) and this task, the writer,
/// which sends what the hub queues. Apart, the writer's wake-up for each
/// message polls only its queue, not the socket's read side too.
async fn serve_socket(state: Arc<AppState>, hub: Hub, socket: WebSocket) {
    let key = hub.next_key();
    let (out_tx, mut out_rx) = mpsc::channel::<Outgoing>(SESSION_QUEUE);
    let link = Arc::new(SessionLink::default());
    let connected = Arc::new(AtomicBool::new(false));
    let (mut sink, stream) = socket.split();
    let mut reader = tokio::spawn(read_socket(
        state,
        hub.clone(),
        key,
        stream,
        out_tx,
        Arc::clone(&link),
        Arc::clone(&connected),
    ));
    let mut reader_done = false;
    let mut last_sent = Instant::now();
    // Made once, not per wake-up: a socket task wakes for every message it
    // sends, and a fresh timer and waiter each time cost more than the
    // message. The ping timer is moved forward only when it fires.
    let kill = link.kill.notified();
    tokio::pin!(kill);
    let ping = tokio::time::sleep_until(last_sent + PING_AFTER);
    tokio::pin!(ping);
    loop {
        tokio::select! {
            out = out_rx.recv() => {
                match out {
                    Some(Outgoing::Text(text)) => {
                        // Everything queued goes out with one flush (one
                        // write for many messages), up to a bound. A client
                        // that stops reading blocks these writes; the hub
                        // then gives up on it (its queue fills) and the
                        // socket is dropped without waiting any longer.
                        let write = async {
                            let mut next = Some(text);
                            let mut fed = 0;
                            let mut close = None;
                            while let Some(text) = next.take() {
                                link.queued_bytes.fetch_sub(text.len(), Ordering::Relaxed);
                                sink.feed(Message::Text(text)).await?;
                                fed += 1;
                                if fed < WRITE_BATCH {
                                    match out_rx.try_recv() {
                                        Ok(Outgoing::Text(t)) => next = Some(t),
                                        Ok(Outgoing::Close(frame)) => close = Some(frame),
                                        Err(_) => {}
                                    }
                                }
                            }
                            sink.flush().await?;
                            Ok::<_, axum::Error>(close)
                        };
                        let close = tokio::select! {
                            sent = write => match sent {
                                Ok(close) => close,
                                Err(_) => break,
                            },
                            () = &mut kill => break,
                        };
                        last_sent = Instant::now();
                        if let Some(frame) = close {
                            let msg = match frame {
                                Some((code, reason)) => close_frame(code, &reason),
                                None => Message::Close(None),
                            };
                            let _ = sink.send(msg).await;
                            break;
                        }
                    }
                    Some(Outgoing::Close(frame)) => {
                        let msg = match frame {
                            Some((code, reason)) => close_frame(code, &reason),
                            None => Message::Close(None),
                        };
                        let _ = sink.send(msg).await;
                        break;
                    }
                    None => break,
                }
            }
            () = &mut kill => {
                let frame = link.close.lock().unwrap_or_else(|p| p.into_inner()).take();
                let (code, reason) = frame.unwrap_or((1013, "SubscriptionsWorkerFullError".into()));
                // The client may not be reading: do not wait for it long.
                let _ = tokio::time::timeout(Duration::from_secs(1), sink.send(close_frame(code, &reason))).await;
                break;
            }
            () = &mut ping => {
                let ping_at = last_sent + PING_AFTER;
                if Instant::now() >= ping_at {
                    if sink.send(Message::Text(protocol::PING.into())).await.is_err() {
                        break;
                    }
                    last_sent = Instant::now();
                    ping.as_mut().reset(last_sent + PING_AFTER);
                } else {
                    ping.as_mut().reset(ping_at);
                }
            }
            // The reader ended: the client is gone, or it broke the
            // protocol and the reader queued a FatalError and a Close,
            // which go out like the rest of the queue.
            done = &mut reader, if !reader_done => {
                reader_done = true;
                if !matches!(done, Ok(true)) {
                    break;
                }
            }
        }
    }
    if !reader_done {
        reader.abort();
        let _ = reader.await;
    }
    if connected.load(Ordering::Relaxed) {
        let _ = hub.send(Cmd::Disconnected { key }).await;
    }
}
