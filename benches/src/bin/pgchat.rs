//! pgchat: the chat workload's baseline, what a user would otherwise build
//! for live chat without convexd: a small WebSocket server over PostgreSQL
//! that fans changes out with LISTEN/NOTIFY.
//!
//! - A message is one autocommitted statement that inserts it and calls
//!   `pg_notify('chat', room)`; PostgreSQL delivers the notification after
//!   the commit, which is durable (`synchronous_commit=on`). The sender gets
//!   `{"type":"sent","id"}` once it is committed.
//! - One connection LISTENs. On a room's notification the server reads the
//!   room's newest `limit` messages once (while a read of that room is under
//!   way, further notifications only mark it to be read again) and sends
//!   the result to every socket subscribed to the room, as convexd shares
//!   one live query among the sessions that ask for it.
//! - A socket sends `{"type":"subscribe","room","limit"}` and gets
//!   `{"type":"messages","room","messages":[...]}` at once and after every
//!   change; `{"type":"send","id","room","author","body","sentAt","seq"}`
//!   posts a message.
//!
//! It listens on 127.0.0.1 only, prints `listening on PORT` once ready, and
//! runs until killed. Each socket's outgoing queue is bounded
//! ([`SOCKET_QUEUE_MAX`]); a socket that lets it fill is dropped from its
//! rooms.

use std::collections::HashMap;
use std::process::ExitCode;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use clap::Parser;
use futures_util::{SinkExt, StreamExt};
use serde::{Deserialize, Serialize};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::mpsc;
use tokio_postgres::{AsyncMessage, Client, NoTls};
use tokio_tungstenite::tungstenite::Message;

/// Messages one socket may have queued before it is dropped from its
/// rooms.
const SOCKET_QUEUE_MAX: usize = 4096;
/// Messages one socket may have being inserted at once; its reads wait
/// beyond that.
const SENDS_IN_FLIGHT_MAX: usize = 1024;
/// Notifications received and not yet handled; the LISTEN connection is
/// not read further while this many wait.
const NOTIFICATIONS_QUEUED_MAX: usize = 65_536;
/// Most messages a subscription may ask for.
const LIMIT_MAX: i64 = 1000;
/// Connections to PostgreSQL opening at start must be up within this.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(30);

#[derive(Parser, Debug)]
#[command(about = "Chat over PostgreSQL LISTEN/NOTIFY and WebSockets: the suite's baseline")]
struct Args {
    /// Loopback port of the PostgreSQL server.
    #[arg(long)]
    pg_port: u16,
    /// Port to listen on (127.0.0.1); 0 picks a free one.
    #[arg(long, default_value_t = 0)]
    port: u16,
    /// Connections that insert messages (round robin): concurrent commits
    /// need several, as PostgreSQL commits one transaction at a time per
    /// connection.
    #[arg(long, default_value_t = 16, value_parser = clap::value_parser!(u16).range(1..=200))]
    writers: u16,
    /// Connections that read rooms (round robin).
    #[arg(long, default_value_t = 4, value_parser = clap::value_parser!(u16).range(1..=200))]
    readers: u16,
    /// Worker threads of the runtime (default: one per CPU).
    #[arg(long)]
    threads: Option<usize>,
}

const SCHEMA: &str = "
    CREATE TABLE IF NOT EXISTS messages (
        id bigserial PRIMARY KEY,
        room text NOT NULL,
        author text NOT NULL,
        body text NOT NULL,
        sent_at double precision NOT NULL,
        seq bigint NOT NULL
    );
    CREATE INDEX IF NOT EXISTS messages_by_room ON messages (room, id DESC);";

const INSERT: &str = "WITH ins AS (
        INSERT INTO messages (room, author, body, sent_at, seq) VALUES ($1, $2, $3, $4, $5)
        RETURNING room)
    SELECT pg_notify('chat', room) FROM ins";

const LATEST: &str = "SELECT id, author, body, sent_at, seq FROM messages
    WHERE room = $1 ORDER BY id DESC LIMIT $2";

#[derive(Deserialize, Debug)]
#[serde(tag = "type", rename_all = "lowercase")]
enum ClientMessage {
    Subscribe {
        room: String,
        limit: i64,
    },
    Send {
        id: u64,
        room: String,
        author: String,
        body: String,
        #[serde(rename = "sentAt")]
        sent_at: f64,
        seq: i64,
    },
}

#[derive(Serialize, Debug)]
struct ChatMessage {
    id: i64,
    author: String,
    body: String,
    #[serde(rename = "sentAt")]
    sent_at: f64,
    seq: i64,
}

/// A pool of connections used round robin (each pipelines its queries).
struct Pool {
    clients: Vec<Client>,
    next: AtomicUsize,
}

impl Pool {
    fn get(&self) -> &Client {
        &self.clients[self.next.fetch_add(1, Ordering::Relaxed) % self.clients.len()]
    }
}

type Outbox = mpsc::Sender<Arc<str>>;

#[derive(Default)]
struct Room {
    /// Subscribed sockets and the limit each asked for.
    subscribers: Vec<(u64, Outbox)>,
    limit: i64,
    reading: bool,
    /// A notification came while the room was being read.
    dirty: bool,
}

struct Hub {
    rooms: Mutex<HashMap<String, Room>>,
    writers: Pool,
    readers: Pool,
}

impl std::fmt::Debug for Hub {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Hub").finish_non_exhaustive()
    }
}

fn main() -> ExitCode {
    let args = Args::parse();
    let threads = args
        .threads
        .unwrap_or_else(|| std::thread::available_parallelism().map_or(2, |n| n.get()));
    let rt = match tokio::runtime::Builder::new_multi_thread()
        .worker_threads(threads.max(1))
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("pgchat: cannot start tokio: {e}");
            return ExitCode::FAILURE;
        }
    };
    match rt.block_on(serve(args)) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("pgchat: {e}");
            ExitCode::FAILURE
        }
    }
}

async fn connect(
    port: u16,
) -> Result<
    (
        Client,
        tokio_postgres::Connection<tokio_postgres::Socket, tokio_postgres::tls::NoTlsStream>,
    ),
    String,
> {
    let mut config = tokio_postgres::Config::new();
    config
        .host("127.0.0.1")
        .port(port)
        .user("postgres")
        .dbname("postgres")
        .connect_timeout(CONNECT_TIMEOUT);
    config
        .connect(NoTls)
        .await
        .map_err(|e| format!("connecting to PostgreSQL on 127.0.0.1:{port}: {e}"))
}

async fn pool(port: u16, n: u16) -> Result<Pool, String> {
    let mut clients = Vec::new();
    for _ in 0..n {
        let (client, connection) = connect(port).await?;
        tokio::spawn(async move {
            if let Err(e) = connection.await {
                eprintln!("pgchat: a PostgreSQL connection failed: {e}");
            }
        });
        clients.push(client);
    }
    Ok(Pool {
        clients,
        next: AtomicUsize::new(0),
    })
}

async fn serve(args: Args) -> Result<(), String> {
    let writers = pool(args.pg_port, args.writers).await?;
    writers
        .get()
        .batch_execute(SCHEMA)
        .await
        .map_err(|e| format!("creating the table: {e}"))?;
    let readers = pool(args.pg_port, args.readers).await?;
    let hub = Arc::new(Hub {
        rooms: Mutex::new(HashMap::new()),
        writers,
        readers,
    });

    // The listening connection: its notifications come through polling it.
    let (listen_client, mut connection) = connect(args.pg_port).await?;
    let (notes_tx, mut notes_rx) = mpsc::channel::<String>(NOTIFICATIONS_QUEUED_MAX);
    tokio::spawn(async move {
        let mut messages = futures_util::stream::poll_fn(move |cx| connection.poll_message(cx));
        while let Some(m) = messages.next().await {
            match m {
                Ok(AsyncMessage::Notification(n)) => {
                    if notes_tx.send(n.payload().to_string()).await.is_err() {
                        return;
                    }
                }
                Ok(_) => {}
                Err(e) => {
                    eprintln!("pgchat: the LISTEN connection failed: {e}");
                    std::process::exit(1);
                }
            }
        }
    });
    listen_client
        .batch_execute("LISTEN chat")
        .await
        .map_err(|e| format!("LISTEN: {e}"))?;
    {
        let hub = Arc::clone(&hub);
        tokio::spawn(async move {
            while let Some(room) = notes_rx.recv().await {
                changed(&hub, room);
            }
        });
    }

    let listener = TcpListener::bind(("127.0.0.1", args.port))
        .await
        .map_err(|e| format!("listening on 127.0.0.1:{}: {e}", args.port))?;
    let port = listener.local_addr().map_err(|e| e.to_string())?.port();
    println!("listening on {port}");
    let mut next_socket = 0u64;
    loop {
        let (tcp, _) = listener
            .accept()
            .await
            .map_err(|e| format!("accept: {e}"))?;
        next_socket += 1;
        tokio::spawn(socket(Arc::clone(&hub), next_socket, tcp));
    }
}

/// A room's notification: read it now, or once more after the read under
/// way.
fn changed(hub: &Arc<Hub>, room: String) {
    {
        let mut rooms = hub.rooms.lock().unwrap_or_else(|p| p.into_inner());
        let Some(r) = rooms.get_mut(&room) else {
            return;
        };
        if r.subscribers.is_empty() {
            return;
        }
        if r.reading {
            r.dirty = true;
            return;
        }
        r.reading = true;
    }
    let hub = Arc::clone(hub);
    tokio::spawn(async move {
        loop {
            let limit = {
                let mut rooms = hub.rooms.lock().unwrap_or_else(|p| p.into_inner());
                let r = rooms.entry(room.clone()).or_default();
                r.dirty = false;
                r.limit
            };
            let text = match latest(&hub, &room, limit).await {
                Ok(t) => t,
                Err(e) => error_text(None, &e),
            };
            let mut rooms = hub.rooms.lock().unwrap_or_else(|p| p.into_inner());
            let r = rooms.entry(room.clone()).or_default();
            // A socket whose queue is full is dropped from the room; its
            // writer closes it when the queue's other end goes away.
            r.subscribers
                .retain(|(_, out)| out.try_send(Arc::clone(&text)).is_ok());
            if !r.dirty {
                r.reading = false;
                return;
            }
        }
    });
}

async fn latest(hub: &Hub, room: &str, limit: i64) -> Result<Arc<str>, String> {
    let rows = hub
        .readers
        .get()
        .query(LATEST, &[&room, &limit])
        .await
        .map_err(|e| format!("reading room {room}: {e}"))?;
    let mut messages = Vec::with_capacity(rows.len());
    for row in rows {
        messages.push(ChatMessage {
            id: row.try_get(0).map_err(|e| e.to_string())?,
            author: row.try_get(1).map_err(|e| e.to_string())?,
            body: row.try_get(2).map_err(|e| e.to_string())?,
            sent_at: row.try_get(3).map_err(|e| e.to_string())?,
            seq: row.try_get(4).map_err(|e| e.to_string())?,
        });
    }
    let text = serde_json::json!({"type": "messages", "room": room, "messages": messages});
    Ok(Arc::from(text.to_string()))
}

fn error_text(id: Option<u64>, message: &str) -> Arc<str> {
    Arc::from(serde_json::json!({"type": "error", "id": id, "message": message}).to_string())
}

async fn socket(hub: Arc<Hub>, id: u64, tcp: TcpStream) {
    let _ = tcp.set_nodelay(true);
    let Ok(ws) = tokio_tungstenite::accept_async(tcp).await else {
        return;
    };
    let (mut sink, mut stream) = ws.split();
    let (out, mut queue) = mpsc::channel::<Arc<str>>(SOCKET_QUEUE_MAX);
    let sends = Arc::new(tokio::sync::Semaphore::new(SENDS_IN_FLIGHT_MAX));
    let writer = tokio::spawn(async move {
        while let Some(text) = queue.recv().await {
            if sink.send(Message::text(text.as_ref())).await.is_err() {
                return;
            }
        }
        let _ = sink.close().await;
    });
    while let Some(Ok(msg)) = stream.next().await {
        let Message::Text(text) = msg else {
            if matches!(msg, Message::Close(_)) {
                break;
            }
            continue;
        };
        match serde_json::from_str::<ClientMessage>(text.as_str()) {
            Ok(ClientMessage::Subscribe { room, limit }) => {
                let limit = limit.clamp(1, LIMIT_MAX);
                {
                    let mut rooms = hub.rooms.lock().unwrap_or_else(|p| p.into_inner());
                    let r = rooms.entry(room.clone()).or_default();
                    r.limit = r.limit.max(limit);
                    r.subscribers.push((id, out.clone()));
                }
                let text = match latest(&hub, &room, limit).await {
                    Ok(t) => t,
                    Err(e) => error_text(None, &e),
                };
                if out.try_send(text).is_err() {
                    break;
                }
            }
            Ok(ClientMessage::Send {
                id: request,
                room,
                author,
                body,
                sent_at,
                seq,
            }) => {
                let hub = Arc::clone(&hub);
                let out = out.clone();
                let Ok(permit) = Arc::clone(&sends).acquire_owned().await else {
                    break;
                };
                tokio::spawn(async move {
                    let _permit = permit;
                    let done = hub
                        .writers
                        .get()
                        .execute(INSERT, &[&room, &author, &body, &sent_at, &seq])
                        .await;
                    let reply = match done {
                        Ok(_) => Arc::from(
                            serde_json::json!({"type": "sent", "id": request}).to_string(),
                        ),
                        Err(e) => error_text(Some(request), &format!("insert: {e}")),
                    };
                    let _ = out.try_send(reply);
                });
            }
            Err(e) => {
                let _ = out.try_send(error_text(None, &format!("bad message: {e}")));
            }
        }
    }
    // Unsubscribe this socket everywhere.
    {
        let mut rooms = hub.rooms.lock().unwrap_or_else(|p| p.into_inner());
        for r in rooms.values_mut() {
            r.subscribers.retain(|(s, _)| *s != id);
        }
    }
    drop(out);
    let _ = writer.await;
}
