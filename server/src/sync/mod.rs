//! The WebSocket sync protocol (`/api/{version}/sync`, `/api/sync`) that
//! `ConvexClient` and `ConvexReactClient` speak: live queries, mutations
//! and actions over one socket. Each socket is one task that parses the
//! client's messages for the [`hub::Hub`] and writes what the hub queues
//! for it; the hub keeps every session's state and runs the live queries.

pub mod hub;
pub mod protocol;

use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use axum::extract::ws::{CloseFrame, Message, WebSocket, WebSocketUpgrade};
use axum::extract::State;
use axum::response::Response;
use futures_util::SinkExt;
use tokio::sync::mpsc;
use tokio::time::Instant;

use crate::AppState;
use hub::{Cmd, Hub, Outgoing, SessionLink, SESSION_QUEUE};
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

async fn serve_socket(state: Arc<AppState>, hub: Hub, mut socket: WebSocket) {
    let key = hub.next_key();
    let (out_tx, mut out_rx) = mpsc::channel::<Outgoing>(SESSION_QUEUE);
    let link = Arc::new(SessionLink::default());
    let mut connected = false;
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
            incoming = socket.recv() => {
                let text = match incoming {
                    Some(Ok(Message::Text(t))) => t,
                    Some(Ok(Message::Binary(_))) => {
                        let _ = socket
                            .send(Message::Text(protocol::fatal_error("BadRequest: binary messages are not part of the protocol").into()))
                            .await;
                        break;
                    }
                    Some(Ok(Message::Ping(_) | Message::Pong(_))) => continue,
                    Some(Ok(Message::Close(_))) | Some(Err(_)) | None => break,
                };
                let message: ClientMessage = match serde_json::from_str(text.as_str()) {
                    Ok(m) => m,
                    Err(e) => {
                        let _ = socket
                            .send(Message::Text(protocol::fatal_error(&format!("BadRequest: invalid message: {e}")).into()))
                            .await;
                        break;
                    }
                };
                if !connected {
                    let ClientMessage::Connect { session_id, max_observed_timestamp, client_ts, .. } = message else {
                        let _ = socket
                            .send(Message::Text(protocol::fatal_error("BadRequest: the first message must be Connect").into()))
                            .await;
                        break;
                    };
                    if let Some(observed) = max_observed_timestamp.as_deref().map(protocol::decode_ts) {
                        match observed {
                            Ok(observed) if observed > state.db.snapshot_ts() => {
                                // Upstream closes too: the client has seen
                                // data this server does not have.
                                tracing::warn!(%session_id, observed = %observed, "client is ahead of this server");
                                let _ = socket.send(close_frame(1011, "InternalServerError: the client has observed a timestamp newer than this server's latest")).await;
                                break;
                            }
                            Ok(_) => {}
                            Err(e) => {
                                let _ = socket.send(Message::Text(protocol::fatal_error(&format!("BadRequest: {e}")).into())).await;
                                break;
                            }
                        }
                    }
                    let now_ms = SystemTime::now().duration_since(UNIX_EPOCH).map_or(0.0, |d| d.as_secs_f64() * 1000.0);
                    let clock_skew = client_ts.map(|c| (c - now_ms).round());
                    let cmd = Cmd::Connect { key, session_id, out: out_tx.clone(), link: Arc::clone(&link), clock_skew };
                    if hub.send(cmd).await.is_err() {
                        break;
                    }
                    connected = true;
                    continue;
                }
                if hub.send(Cmd::Message { key, message }).await.is_err() {
                    break;
                }
            }
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
                                link.queued_bytes.fetch_sub(text.len(), std::sync::atomic::Ordering::Relaxed);
                                socket.feed(Message::Text(text)).await?;
                                fed += 1;
                                if fed < WRITE_BATCH {
                                    match out_rx.try_recv() {
                                        Ok(Outgoing::Text(t)) => next = Some(t),
                                        Ok(Outgoing::Close(frame)) => close = Some(frame),
                                        Err(_) => {}
                                    }
                                }
                            }
                            socket.flush().await?;
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
                            let _ = socket.send(msg).await;
                            break;
                        }
                    }
                    Some(Outgoing::Close(frame)) => {
                        let msg = match frame {
                            Some((code, reason)) => close_frame(code, &reason),
                            None => Message::Close(None),
                        };
                        let _ = socket.send(msg).await;
                        break;
                    }
                    None => break,
                }
            }
            () = &mut kill => {
                let frame = link.close.lock().unwrap_or_else(|p| p.into_inner()).take();
                let (code, reason) = frame.unwrap_or((1013, "SubscriptionsWorkerFullError".into()));
                // The client may not be reading: do not wait for it long.
                let _ = tokio::time::timeout(Duration::from_secs(1), socket.send(close_frame(code, &reason))).await;
                break;
            }
            () = &mut ping => {
                let ping_at = last_sent + PING_AFTER;
                if Instant::now() >= ping_at {
                    if socket.send(Message::Text(protocol::PING.into())).await.is_err() {
                        break;
                    }
                    last_sent = Instant::now();
                    ping.as_mut().reset(last_sent + PING_AFTER);
                } else {
                    ping.as_mut().reset(ping_at);
                }
            }
        }
    }
    if connected {
        let _ = hub.send(Cmd::Disconnected { key }).await;
    }
}
