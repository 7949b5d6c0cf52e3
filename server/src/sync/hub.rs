//! The hub: every sync session's query set, the shared live queries behind
//! them, and the update cycle that turns the engine's invalidations into
//! Transitions.
//!
//! # Invariants
//!
//! 1. **One snapshot per Transition.** Each update cycle reads the
//!    subscription manager's processed timestamp `P` and then drains the
//!    invalidations queued so far, which include every report of commits
//!    up to `P`. A live query not reported by then read nothing any commit
//!    up to `P` wrote, so its result is still the result at `P`; every
//!    reported or new query is rerun at `P` itself. Every Transition of the
//!    cycle therefore ends at `P` with all of the session's results true at
//!    `P`. A session's Transition is written as soon as the last of its
//!    own entries' reruns is done, while other entries still run: by then
//!    every one of its results is the one at `P`.
//! 2. **Shared execution.** Sessions asking for the same function, args,
//!    identity and journal share one [`Entry`]: one execution per cycle and
//!    one engine subscription, however many sessions watch it.
//! 3. **Nothing waits on a client.** The hub writes to a session's socket
//!    without blocking ([`SocketWriter::send`]): what the kernel does not
//!    take is queued, bounded; a session whose queue is full is closed with
//!    1013 and forgotten, so a stalled client never delays the hub, other
//!    sessions or the committer. A cycle's Transitions are queued in
//!    batches ([`SocketWriter::enqueue`]) and each batch's sockets are
//!    written by the hub's thread and its write helpers together, also
//!    without blocking; a session's frames keep the order the hub queued
//!    them in, whichever thread writes them.
//! 4. **A mutation is reflected.** After a successful mutation's response
//!    the session is owed a Transition ending at or after the commit; the
//!    hub sends one as soon as the subscription manager has processed it.
//! 5. **Versions chain.** A session's Transitions start where the previous
//!    one ended, from `{0,0,0}` on each socket.

use std::collections::{HashMap, HashSet, VecDeque};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{SystemTime, UNIX_EPOCH};

use bytes::Bytes;
use engine::db::Database;
use engine::subs::{Invalidation, Invalidations, SubscriptionId};
use engine::ts::Ts;
use engine::value::json::to_json;
use runtime::execute::{Call, CallOutcome, Caller, Executor, SessionRequest};
use runtime::UdfType;
use serde_json::Value as JsonValue;
use tokio::sync::{mpsc, watch};

use super::protocol::{self, ClientMessage, QuerySetModification, StateVersion};
use super::socket::{self, SendError, SocketWriter};
use crate::admin::keys_equal;
use crate::functions::parse_args;

/// Names one socket's session in the hub.
pub type SessionKey = u64;

/// Why a session is closed (1013) when its socket's queue is full.
pub const QUEUE_FULL: &str =
    "SubscriptionsWorkerFullError: this client is not reading its updates fast enough";
/// Mutations (and, separately, actions) one session may have in flight.
pub const MAX_IN_FLIGHT: usize = 1000;
/// Commands queued for the hub before sessions wait.
const HUB_QUEUE: usize = 16 * 1024;
/// Threads writing a cycle's Transitions to the sockets, the hub's own
/// included, at most (and at most one per CPU).
const MAX_WRITERS: usize = 4;
/// A Transition up to this size is queued and written with the rest of
/// its batch; a larger one (or one in chunks) is written at once, so the
/// kernel takes what it can before the next part is queued, as for any
/// other frame.
const BATCHED_FRAME_MAX: usize = 256 << 10;

/// Who a session's functions run as.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Identity {
    None,
    Admin,
}

impl Identity {
    fn caller(self) -> Caller {
        match self {
            Identity::None => Caller::Public,
            Identity::Admin => Caller::Admin,
        }
    }
}

/// A request to the hub.
#[derive(Debug)]
pub enum Cmd {
    Connect {
        key: SessionKey,
        session_id: String,
        writer: Arc<SocketWriter>,
        clock_skew: Option<f64>,
    },
    Message {
        key: SessionKey,
        message: ClientMessage,
    },
    Disconnected {
        key: SessionKey,
    },
    MutationDone {
        key: SessionKey,
        request_id: u32,
        outcome: CallOutcome,
    },
    ActionDone {
        key: SessionKey,
        request_id: u32,
        outcome: CallOutcome,
    },
    /// New code was deployed: rerun every live query.
    InvalidateAll,
}

/// The handle sessions and the deploy endpoints hold.
#[derive(Debug, Clone)]
pub struct Hub {
    tx: mpsc::Sender<Cmd>,
    next_key: Arc<AtomicU64>,
}

impl Hub {
    /// Starts the hub's task on the current tokio runtime. It takes the
    /// database's invalidations: one hub per database.
    pub fn start(
        db: Arc<Database>,
        executor: Arc<Executor>,
        admin_key: String,
        concurrency: usize,
    ) -> Result<Hub, String> {
        let invalidations = db
            .take_invalidations()
            .ok_or("the database's invalidations are already taken")?;
        let (tx, rx) = mpsc::channel(HUB_QUEUE);
        let processed = db.subscriptions().watch_processed();
        let epoch = db.subscriptions().processed_ts();
        let state = HubState {
            db,
            executor,
            admin_key,
            tx: tx.clone(),
            invalidations,
            processed,
            concurrency: concurrency.max(1),
            sessions: HashMap::new(),
            queries: HashMap::new(),
            by_subscription: HashMap::new(),
            pending: HashSet::new(),
            dirty: HashSet::new(),
            owed: HashSet::new(),
            epoch,
            epoch_text: Arc::from(protocol::encode_ts(epoch)),
            zero_ts_text: Arc::from(protocol::encode_ts(Ts(0))),
            transition_ids: 0,
            batch: Vec::new(),
            helpers: start_write_helpers()?,
        };
        // Its own thread and runtime: with thousands of socket tasks on the
        // server's runtime, the hub would otherwise wait in their queue
        // each time it wakes. The calls it starts run on this runtime's
        // blocking pool.
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .map_err(|e| format!("cannot start the sync hub's runtime: {e}"))?;
        std::thread::Builder::new()
            .name("sync-hub".into())
            .spawn(move || runtime.block_on(state.run(rx)))
            .map_err(|e| format!("cannot start the sync hub's thread: {e}"))?;
        Ok(Hub {
            tx,
            next_key: Arc::new(AtomicU64::new(1)),
        })
    }

    pub fn next_key(&self) -> SessionKey {
        self.next_key.fetch_add(1, Ordering::Relaxed)
    }

    /// Queues `cmd`, waiting while the hub's queue is full. Fails only
    /// when the hub is gone.
    pub async fn send(&self, cmd: Cmd) -> Result<(), ()> {
        self.tx.send(cmd).await.map_err(|_| ())
    }

    /// Reruns every live query (after a deploy).
    pub async fn invalidate_all(&self) {
        let _ = self.tx.send(Cmd::InvalidateAll).await;
    }
}

/// A live query's identity: sessions with equal keys share it.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
struct QueryKey {
    path: String,
    /// The args object as canonical Convex JSON text.
    args: String,
    identity: Identity,
    /// The journal the client added it with.
    journal: Option<String>,
}

/// One shared live query.
struct Entry {
    /// Its modification's fields after `queryId` (see
    /// [`protocol::query_result_fields`]); `None` before the first run.
    result: Option<Arc<str>>,
    /// Bumped when `result` changes.
    version: u64,
    /// The engine subscription of the current result; `None` once
    /// reported.
    subscription: Option<SubscriptionId>,
    /// The journal to rerun with.
    journal: Option<String>,
    subscribers: HashSet<(SessionKey, u32)>,
}

struct SessionQuery {
    key: Arc<QueryKey>,
    /// The entry version this session last received; 0 for none.
    sent_version: u64,
}

struct Session {
    session_id: String,
    writer: Arc<SocketWriter>,
    clock_skew: Option<f64>,
    /// The end version of the last Transition sent, and its ts as text.
    sent: StateVersion,
    sent_ts_text: Arc<str>,
    /// The last query set version received.
    query_set: u32,
    identity_version: u32,
    identity: Identity,
    queries: HashMap<u32, SessionQuery>,
    removed: Vec<u32>,
    /// A successful mutation's commit the client awaits a Transition for.
    owed_ts: Option<Ts>,
    mutations: Option<mpsc::Sender<MutationJob>>,
    actions_in_flight: Arc<AtomicU64>,
}

/// What makes two sessions' Transitions in one cycle the same text (all
/// but `serverTs`, which is when the text was written).
#[derive(PartialEq, Eq, Hash)]
struct TransitionShape {
    start: StateVersion,
    end: StateVersion,
    /// `f64::to_bits` of the clock skew.
    clock_skew: Option<u64>,
    removed: Vec<u32>,
    /// `(query id, result)`, by query id.
    modified: Vec<(u32, SameResult)>,
}

/// A shared result compared by identity: within a cycle an entry's result
/// is one `Arc`, and equal results in different entries are merely not
/// shared.
struct SameResult(Arc<str>);

impl PartialEq for SameResult {
    fn eq(&self, other: &Self) -> bool {
        Arc::ptr_eq(&self.0, &other.0)
    }
}

impl Eq for SameResult {}

impl std::hash::Hash for SameResult {
    fn hash<H: std::hash::Hasher>(&self, state: &mut H) {
        std::ptr::hash(Arc::as_ptr(&self.0).cast::<u8>(), state);
    }
}

struct MutationJob {
    request_id: u32,
    call: Call,
}

struct HubState {
    db: Arc<Database>,
    executor: Arc<Executor>,
    admin_key: String,
    tx: mpsc::Sender<Cmd>,
    invalidations: Invalidations,
    processed: watch::Receiver<Ts>,
    /// Bounds the queries run at once in a cycle.
    concurrency: usize,
    sessions: HashMap<SessionKey, Session>,
    queries: HashMap<Arc<QueryKey>, Entry>,
    by_subscription: HashMap<SubscriptionId, Arc<QueryKey>>,
    /// Entries to run in the next cycle: new, or invalidated.
    pending: HashSet<Arc<QueryKey>>,
    /// Sessions to send a Transition in the next cycle.
    dirty: HashSet<SessionKey>,
    /// Sessions owed a Transition at or after a commit (`owed_ts`).
    owed: HashSet<SessionKey>,
    /// The timestamp of the last cycle: every entry with a result and no
    /// pending rerun is true at it.
    epoch: Ts,
    /// `epoch` as the protocol writes it, made once per cycle.
    epoch_text: Arc<str>,
    zero_ts_text: Arc<str>,
    transition_ids: u64,
    /// Sockets with Transitions queued and not yet written (see
    /// [`HubState::write_batch`]).
    batch: Vec<Arc<SocketWriter>>,
    /// The write helpers' queues: each takes a share of every batch.
    helpers: Vec<std::sync::mpsc::Sender<Vec<Arc<SocketWriter>>>>,
}

enum Wake {
    Cmd(Cmd),
    Invalidated(Invalidation),
    Processed,
    Stop,
}

fn now_ns() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_nanos() as u64)
}

fn split_error(outcome: &CallOutcome) -> Result<JsonValue, (String, Option<JsonValue>)> {
    match &outcome.result {
        Ok(v) => Ok(to_json(v)),
        Err(e) => Err((e.message.clone(), e.data.as_ref().map(to_json))),
    }
}

impl HubState {
    async fn run(mut self, mut rx: mpsc::Receiver<Cmd>) {
        loop {
            let waiting = !self.owed.is_empty();
            let wake = tokio::select! {
                biased;
                cmd = rx.recv() => cmd.map_or(Wake::Stop, Wake::Cmd),
                inv = self.invalidations.recv() => inv.map_or(Wake::Stop, Wake::Invalidated),
                changed = self.processed.changed(), if waiting => {
                    if changed.is_ok() { Wake::Processed } else { Wake::Stop }
                }
            };
            match wake {
                Wake::Stop => return,
                Wake::Cmd(cmd) => {
                    self.handle(cmd);
                    // Take what else is queued, so one cycle serves it all.
                    for _ in 0..4096 {
                        match rx.try_recv() {
                            Ok(cmd) => self.handle(cmd),
                            Err(_) => break,
                        }
                    }
                }
                Wake::Invalidated(inv) => self.invalidated(inv),
                Wake::Processed => {}
            }
            self.cycle().await;
        }
    }

    fn handle(&mut self, cmd: Cmd) {
        match cmd {
            Cmd::Connect {
                key,
                session_id,
                writer,
                clock_skew,
            } => {
                self.sessions.insert(
                    key,
                    Session {
                        session_id,
                        writer,
                        clock_skew,
                        sent: StateVersion::default(),
                        sent_ts_text: Arc::clone(&self.zero_ts_text),
                        query_set: 0,
                        identity_version: 0,
                        identity: Identity::None,
                        queries: HashMap::new(),
                        removed: Vec::new(),
                        owed_ts: None,
                        mutations: None,
                        actions_in_flight: Arc::new(AtomicU64::new(0)),
                    },
                );
            }
            Cmd::Message { key, message } => {
                if let Err(e) = self.message(key, message) {
                    self.fatal(key, &e);
                }
            }
            Cmd::Disconnected { key } => self.drop_session(key),
            Cmd::MutationDone {
                key,
                request_id,
                outcome,
            } => {
                let result = split_error(&outcome).and_then(|v| match outcome.ts {
                    Some(ts) => Ok((v, ts)),
                    None => Err((
                        "Server Error: the mutation has no commit timestamp".into(),
                        None,
                    )),
                });
                let text = protocol::mutation_response(request_id, &result, &outcome.log_lines);
                if !self.push(key, socket::text_frame(&text)) {
                    return;
                }
                if let (Ok((_, ts)), Some(s)) = (&result, self.sessions.get_mut(&key)) {
                    s.owed_ts = Some(s.owed_ts.map_or(*ts, |o| o.max(*ts)));
                    self.owed.insert(key);
                }
            }
            Cmd::ActionDone {
                key,
                request_id,
                outcome,
            } => {
                if let Some(s) = self.sessions.get(&key) {
                    s.actions_in_flight.fetch_sub(1, Ordering::Relaxed);
                }
                let text = protocol::action_response(
                    request_id,
                    &split_error(&outcome),
                    &outcome.log_lines,
                );
                self.push(key, socket::text_frame(&text));
            }
            Cmd::InvalidateAll => {
                for (key, entry) in self.queries.iter_mut() {
                    if let Some(sub) = entry.subscription.take() {
                        self.by_subscription.remove(&sub);
                        self.db.subscriptions().unsubscribe(sub);
                    }
                    self.pending.insert(Arc::clone(key));
                }
            }
        }
    }

    /// One client message; an `Err` is a protocol violation (FatalError).
    fn message(&mut self, key: SessionKey, message: ClientMessage) -> Result<(), String> {
        let Some(session) = self.sessions.get_mut(&key) else {
            return Ok(());
        };
        match message {
            ClientMessage::Connect { .. } => {
                Err("BadRequest: Connect was sent twice on one socket".into())
            }
            ClientMessage::Event {} => Ok(()),
            ClientMessage::ModifyQuerySet {
                base_version,
                new_version,
                modifications,
            } => self.modify_query_set(key, base_version, new_version, modifications),
            ClientMessage::Authenticate {
                base_version,
                token_type,
                value,
            } => {
                if base_version != session.identity_version {
                    return Err(format!(
                        "BadRequest: BaseVersionMismatch: Authenticate's baseVersion {base_version} is not the identity version {}",
                        session.identity_version
                    ));
                }
                let identity = match token_type.as_str() {
                    "None" => Identity::None,
                    "Admin" => {
                        if !value
                            .as_deref()
                            .is_some_and(|v| keys_equal(v, &self.admin_key))
                        {
                            self.auth_error(
                                key,
                                "The provided admin key is invalid for this deployment",
                                base_version,
                            );
                            return Ok(());
                        }
                        Identity::Admin
                    }
                    "User" => {
                        self.auth_error(
                            key,
                            "User authentication (JWT) is not supported by this server yet",
                            base_version,
                        );
                        return Ok(());
                    }
                    other => return Err(format!("BadRequest: unknown tokenType {other:?}")),
                };
                self.set_identity(key, identity);
                Ok(())
            }
            ClientMessage::Mutation {
                request_id,
                udf_path,
                args,
                component_path,
            } => {
                let result = self.call_for(key, &udf_path, args, component_path, UdfType::Mutation);
                let session = self.sessions.get_mut(&key).expect("checked above");
                let mut call = match result {
                    Ok(call) => call,
                    Err(message) => {
                        let text =
                            protocol::mutation_response(request_id, &Err((message, None)), &[]);
                        self.push(key, socket::text_frame(&text));
                        return Ok(());
                    }
                };
                call.session_request = Some(SessionRequest {
                    session_id: session.session_id.clone(),
                    request_id,
                });
                let queue = session.mutations.get_or_insert_with(|| {
                    let (tx, rx) = mpsc::channel(MAX_IN_FLIGHT);
                    tokio::spawn(run_mutations(
                        rx,
                        self.tx.clone(),
                        Arc::clone(&self.executor),
                        key,
                    ));
                    tx
                });
                if queue.try_send(MutationJob { request_id, call }).is_err() {
                    self.overloaded(key, "TooManyConcurrentRequests: more than 1000 mutations in flight on one connection");
                }
                Ok(())
            }
            ClientMessage::Action {
                request_id,
                udf_path,
                args,
                component_path,
            } => {
                let call =
                    match self.call_for(key, &udf_path, args, component_path, UdfType::Action) {
                        Ok(call) => call,
                        Err(message) => {
                            let text =
                                protocol::action_response(request_id, &Err((message, None)), &[]);
                            self.push(key, socket::text_frame(&text));
                            return Ok(());
                        }
                    };
                let session = self.sessions.get(&key).expect("checked above");
                let in_flight = Arc::clone(&session.actions_in_flight);
                if in_flight.fetch_add(1, Ordering::Relaxed) >= MAX_IN_FLIGHT as u64 {
                    in_flight.fetch_sub(1, Ordering::Relaxed);
                    self.overloaded(key, "TooManyConcurrentRequests: more than 1000 actions in flight on one connection");
                    return Ok(());
                }
                let executor = Arc::clone(&self.executor);
                let tx = self.tx.clone();
                tokio::spawn(async move {
                    let outcome = run_blocking(executor, call).await;
                    let _ = tx
                        .send(Cmd::ActionDone {
                            key,
                            request_id,
                            outcome,
                        })
                        .await;
                });
                Ok(())
            }
        }
    }

    /// The call a Mutation or Action message asks for, or the message to
    /// fail it with.
    fn call_for(
        &self,
        key: SessionKey,
        udf_path: &str,
        args: Vec<JsonValue>,
        component_path: Option<String>,
        kind: UdfType,
    ) -> Result<Call, String> {
        if component_path.as_deref().is_some_and(|p| !p.is_empty()) {
            return Err("Components are not supported by this server yet".into());
        }
        let args = parse_args(Some(&JsonValue::Array(args))).map_err(|e| e.message)?;
        let identity = self
            .sessions
            .get(&key)
            .map_or(Identity::None, |s| s.identity);
        Ok(Call::new(udf_path, Some(kind), args, identity.caller()))
    }

    fn modify_query_set(
        &mut self,
        key: SessionKey,
        base_version: u32,
        new_version: u32,
        modifications: Vec<QuerySetModification>,
    ) -> Result<(), String> {
        let session = self.sessions.get_mut(&key).expect("caller checked");
        if base_version != session.query_set {
            return Err(format!(
                "BadRequest: BaseVersionMismatch: ModifyQuerySet's baseVersion {base_version} is not the query set version {}",
                session.query_set
            ));
        }
        if new_version <= base_version {
            return Err(format!(
                "BadRequest: ModifyQuerySet's newVersion {new_version} is not above its baseVersion {base_version}"
            ));
        }
        let identity = session.identity;
        for m in modifications {
            match m {
                QuerySetModification::Add {
                    query_id,
                    udf_path,
                    args,
                    journal,
                    component_path,
                } => {
                    if component_path.as_deref().is_some_and(|p| !p.is_empty()) {
                        return Err(
                            "BadRequest: components are not supported by this server yet".into(),
                        );
                    }
                    let session = self.sessions.get_mut(&key).expect("caller checked");
                    if session.queries.contains_key(&query_id) {
                        return Err(format!("BadRequest: query {query_id} was added twice"));
                    }
                    let args = parse_args(Some(&JsonValue::Array(args)))
                        .map_err(|e| format!("BadRequest: {}", e.message))?;
                    let (module, name) = runtime::worker::canonicalize_udf_path(&udf_path);
                    let qkey = QueryKey {
                        path: format!("{module}:{name}"),
                        args: to_json(&args).to_string(),
                        identity,
                        journal,
                    };
                    let qkey = self.subscribe_entry(qkey, key, query_id);
                    self.sessions
                        .get_mut(&key)
                        .expect("caller checked")
                        .queries
                        .insert(
                            query_id,
                            SessionQuery {
                                key: qkey,
                                sent_version: 0,
                            },
                        );
                }
                QuerySetModification::Remove { query_id } => {
                    let session = self.sessions.get_mut(&key).expect("caller checked");
                    let Some(q) = session.queries.remove(&query_id) else {
                        return Err(format!(
                            "BadRequest: query {query_id} was removed but is not in the query set"
                        ));
                    };
                    session.removed.push(query_id);
                    self.unsubscribe_entry(&q.key, key, query_id);
                }
            }
        }
        self.sessions
            .get_mut(&key)
            .expect("caller checked")
            .query_set = new_version;
        self.dirty.insert(key);
        Ok(())
    }

    /// Adds `(session, query_id)` to the entry of `qkey`, creating it (to
    /// be run in the next cycle) if needed.
    fn subscribe_entry(
        &mut self,
        qkey: QueryKey,
        session: SessionKey,
        query_id: u32,
    ) -> Arc<QueryKey> {
        if let Some(k) = self
            .queries
            .get_key_value(&qkey)
            .map(|(k, _)| Arc::clone(k))
        {
            let entry = self.queries.get_mut(&k).expect("just found");
            entry.subscribers.insert((session, query_id));
            return k;
        }
        let k = Arc::new(qkey);
        self.queries.insert(
            Arc::clone(&k),
            Entry {
                result: None,
                version: 0,
                subscription: None,
                journal: k.journal.clone(),
                subscribers: HashSet::from([(session, query_id)]),
            },
        );
        self.pending.insert(Arc::clone(&k));
        k
    }

    fn unsubscribe_entry(&mut self, qkey: &Arc<QueryKey>, session: SessionKey, query_id: u32) {
        let Some(entry) = self.queries.get_mut(qkey) else {
            return;
        };
        entry.subscribers.remove(&(session, query_id));
        if entry.subscribers.is_empty() {
            if let Some(sub) = entry.subscription.take() {
                self.by_subscription.remove(&sub);
                self.db.subscriptions().unsubscribe(sub);
            }
            self.queries.remove(qkey);
            self.pending.remove(qkey);
        }
    }

    fn set_identity(&mut self, key: SessionKey, identity: Identity) {
        let session = self.sessions.get_mut(&key).expect("caller checked");
        session.identity_version += 1;
        session.identity = identity;
        let moved: Vec<(u32, Arc<QueryKey>)> = session
            .queries
            .iter()
            .map(|(id, q)| (*id, Arc::clone(&q.key)))
            .collect();
        for (query_id, old) in moved {
            self.unsubscribe_entry(&old, key, query_id);
            let qkey = QueryKey {
                identity,
                ..(*old).clone()
            };
            let new = self.subscribe_entry(qkey, key, query_id);
            let session = self.sessions.get_mut(&key).expect("caller checked");
            session.queries.insert(
                query_id,
                SessionQuery {
                    key: new,
                    sent_version: 0,
                },
            );
        }
        self.dirty.insert(key);
    }

    fn invalidated(&mut self, inv: Invalidation) {
        if let Some(qkey) = self.by_subscription.remove(&inv.id) {
            if let Some(entry) = self.queries.get_mut(&qkey) {
                entry.subscription = None;
                self.pending.insert(qkey);
            }
        }
    }

    /// Sends `frame` to session `key`; a full queue closes the session
    /// (1013). Returns whether the session is still there.
    fn push(&mut self, key: SessionKey, frame: Bytes) -> bool {
        let Some(session) = self.sessions.get(&key) else {
            return false;
        };
        match session.writer.send(frame) {
            Ok(()) => true,
            Err(SendError::Full) => {
                self.overloaded(key, QUEUE_FULL);
                false
            }
            Err(SendError::Closed) => {
                self.drop_session(key);
                false
            }
        }
    }

    fn overloaded(&mut self, key: SessionKey, reason: &str) {
        if let Some(session) = self.sessions.get(&key) {
            tracing::warn!(session = %session.session_id, reason, "closing a sync session (1013)");
            session
                .writer
                .close(socket::close_frame(Some((1013, reason))), true);
        }
        self.drop_session(key);
    }

    /// Queues the close after what is queued for session `key`.
    fn close(&mut self, key: SessionKey) {
        if let Some(session) = self.sessions.get(&key) {
            session.writer.close(socket::close_frame(None), false);
        }
    }

    /// Sends a FatalError and closes, as upstream does for a client's
    /// protocol error.
    fn fatal(&mut self, key: SessionKey, error: &str) {
        if let Some(session) = self.sessions.get(&key) {
            tracing::info!(session = %session.session_id, error, "sync protocol error");
        }
        if self.push(key, socket::text_frame(&protocol::fatal_error(error))) {
            self.close(key);
        }
        self.drop_session(key);
    }

    fn auth_error(&mut self, key: SessionKey, error: &str, base_version: u32) {
        if self.push(
            key,
            socket::text_frame(&protocol::auth_error(error, base_version, true)),
        ) {
            self.close(key);
        }
        self.drop_session(key);
    }

    fn drop_session(&mut self, key: SessionKey) {
        let Some(session) = self.sessions.remove(&key) else {
            return;
        };
        for (query_id, q) in session.queries {
            self.unsubscribe_entry(&q.key, key, query_id);
        }
        self.dirty.remove(&key);
        self.owed.remove(&key);
        // Its mutation queue closes with it; queued mutations still run
        // and commit (their sessions' records make a re-send harmless).
    }

    /// One update cycle (see the module's invariants).
    async fn cycle(&mut self) {
        let p = self.db.subscriptions().processed_ts();
        let mut reports = Vec::new();
        self.invalidations.drain_into(&mut reports);
        for inv in reports {
            self.invalidated(inv);
        }
        for key in &self.owed {
            if self.sessions[key].owed_ts.is_some_and(|ts| ts <= p) {
                self.dirty.insert(*key);
            }
        }
        if self.pending.is_empty() && self.dirty.is_empty() {
            return;
        }
        let t = p.max(self.epoch);
        if t != self.epoch {
            self.epoch = t;
            self.epoch_text = Arc::from(protocol::encode_ts(t));
        }
        let mut shared = HashMap::new();
        self.run_pending(t, &mut shared).await;
        let dirty: Vec<SessionKey> = self.dirty.drain().collect();
        for key in dirty {
            self.send_transition(key, t, &mut shared);
        }
        self.write_batch();
    }

    /// Runs every pending entry at `t`, at most `concurrency` at once, and
    /// writes each dirty session's Transition (in the batch of the outcome
    /// that completed it) as soon as none of its entries is still running:
    /// the sessions of a result are written while the other results are
    /// computed, instead of all after the slowest. A session still dirty
    /// at the end (one whose entry went away during the cycle) is left in
    /// `dirty` for the caller.
    async fn run_pending(&mut self, t: Ts, shared: &mut HashMap<TransitionShape, Vec<Bytes>>) {
        let pending: Vec<Arc<QueryKey>> = self.pending.drain().collect();
        // How many of its entries each session still waits for.
        let mut waiting: HashMap<SessionKey, usize> = HashMap::new();
        let mut calls = VecDeque::with_capacity(pending.len());
        for qkey in pending {
            let Some(entry) = self.queries.get_mut(&qkey) else {
                continue;
            };
            if let Some(sub) = entry.subscription.take() {
                self.by_subscription.remove(&sub);
                self.db.subscriptions().unsubscribe(sub);
            }
            for (session, _) in &entry.subscribers {
                *waiting.entry(*session).or_default() += 1;
            }
            let mut call = Call::new(
                qkey.path.clone(),
                Some(UdfType::Query),
                engine::value::json::from_json(
                    &serde_json::from_str::<JsonValue>(&qkey.args)
                        .expect("args were written as JSON"),
                )
                .expect("args were valid Convex JSON"),
                qkey.identity.caller(),
            );
            call.at_ts = Some(t);
            call.journal = entry.journal.clone();
            call.subscribe = true;
            calls.push_back((qkey, call));
        }
        let mut results = run_all(&self.executor, calls, self.concurrency);
        let ready: Vec<SessionKey> = self
            .dirty
            .iter()
            .filter(|key| !waiting.contains_key(key))
            .copied()
            .collect();
        for key in ready {
            self.dirty.remove(&key);
            self.send_transition(key, t, shared);
        }
        self.write_batch();
        while let Some((qkey, outcome)) = results.recv().await {
            let subscribers: Vec<SessionKey> = self
                .queries
                .get(&qkey)
                .map(|entry| entry.subscribers.iter().map(|(key, _)| *key).collect())
                .unwrap_or_default();
            self.apply(qkey, outcome);
            for key in subscribers {
                let Some(n) = waiting.get_mut(&key) else {
                    continue;
                };
                *n -= 1;
                if *n == 0 {
                    waiting.remove(&key);
                    if self.dirty.remove(&key) {
                        self.send_transition(key, t, shared);
                    }
                }
            }
            self.write_batch();
        }
    }

    fn apply(&mut self, qkey: Arc<QueryKey>, outcome: CallOutcome) {
        let Some(entry) = self.queries.get_mut(&qkey) else {
            if let Some(sub) = outcome.subscription {
                self.db.subscriptions().unsubscribe(sub);
            }
            return;
        };
        if let Some(sub) = outcome.subscription {
            entry.subscription = Some(sub);
            self.by_subscription.insert(sub, Arc::clone(&qkey));
        } else {
            // The call failed before reading anything (no such function,
            // bad args): nothing to watch, so it reruns after the next
            // deploy, which is what can change that.
            tracing::debug!(path = %qkey.path, "live query ran without a subscription");
        }
        entry.journal = outcome.journal.clone();
        let fields = protocol::query_result_fields(
            &split_error(&outcome),
            &outcome.log_lines,
            outcome.journal.as_deref(),
        );
        if entry.result.as_deref() != Some(fields.as_str()) {
            entry.result = Some(Arc::from(fields));
            entry.version += 1;
            for (session, _) in &entry.subscribers {
                self.dirty.insert(*session);
            }
        }
    }

    /// Queues session `key`'s Transition ending at `t`. Its text is looked
    /// up in `shared` by [`TransitionShape`] first: the sessions watching
    /// the same results from the same versions get one buffer between
    /// them, written once.
    fn send_transition(
        &mut self,
        key: SessionKey,
        t: Ts,
        shared: &mut HashMap<TransitionShape, Vec<Bytes>>,
    ) {
        let Some(session) = self.sessions.get_mut(&key) else {
            return;
        };
        let end = StateVersion {
            query_set: session.query_set,
            identity: session.identity_version,
            ts: t,
        };
        let mut modified = Vec::new();
        for (query_id, q) in session.queries.iter_mut() {
            let entry = &self.queries[&q.key];
            let Some(result) = &entry.result else {
                continue;
            };
            if q.sent_version == entry.version {
                continue;
            }
            q.sent_version = entry.version;
            modified.push((*query_id, SameResult(Arc::clone(result))));
        }
        // The order of a session's modifications is free (each names its
        // own query); sorted, equal sets read as equal shapes.
        modified.sort_unstable_by_key(|(query_id, _)| *query_id);
        let shape = TransitionShape {
            start: session.sent,
            end,
            clock_skew: session.clock_skew.map(f64::to_bits),
            removed: std::mem::take(&mut session.removed),
            modified,
        };
        let start_ts_text =
            std::mem::replace(&mut session.sent_ts_text, Arc::clone(&self.epoch_text));
        let clock_skew = session.clock_skew;
        session.sent = end;
        if session.owed_ts.is_some_and(|ts| ts <= t) {
            session.owed_ts = None;
            self.owed.remove(&key);
        }
        let parts = match shared.entry(shape) {
            std::collections::hash_map::Entry::Occupied(e) => e.into_mut(),
            std::collections::hash_map::Entry::Vacant(v) => {
                let shape = v.key();
                let mut text =
                    protocol::transition_head(shape.start, &start_ts_text, end, &self.epoch_text);
                let mut first = true;
                for query_id in &shape.removed {
                    if !first {
                        text.push(',');
                    }
                    first = false;
                    text.push_str(&protocol::query_removed(*query_id));
                }
                for (query_id, result) in &shape.modified {
                    if !first {
                        text.push(',');
                    }
                    first = false;
                    protocol::query_modification(&mut text, *query_id, &result.0);
                }
                // `serverTs` is when this text was written, for every
                // session it goes to.
                protocol::transition_tail(&mut text, clock_skew, now_ns());
                self.transition_ids += 1;
                v.insert(
                    protocol::chunk_transition(text, self.transition_ids)
                        .into_iter()
                        .map(|part| socket::text_frame(&part))
                        .collect(),
                )
            }
        };
        if let [frame] = parts.as_slice() {
            if frame.len() <= BATCHED_FRAME_MAX {
                let frame = frame.clone();
                self.push_batched(key, frame);
                return;
            }
        }
        for part in parts.iter() {
            if !self.push(key, part.clone()) {
                return;
            }
        }
    }

    /// Queues `frame` for session `key` to be written with the batch (by
    /// [`HubState::write_batch`]); a full queue closes the session (1013),
    /// as [`HubState::push`] does.
    fn push_batched(&mut self, key: SessionKey, frame: Bytes) {
        let Some(session) = self.sessions.get(&key) else {
            return;
        };
        match session.writer.enqueue(frame) {
            Ok(true) => self.batch.push(Arc::clone(&session.writer)),
            Ok(false) => {}
            Err(SendError::Full) => self.overloaded(key, QUEUE_FULL),
            Err(SendError::Closed) => self.drop_session(key),
        }
    }

    /// Writes the batch's sockets: an equal share to each write helper,
    /// the first share on this thread.
    fn write_batch(&mut self) {
        if self.batch.is_empty() {
            return;
        }
        let mut batch = std::mem::take(&mut self.batch);
        let share = batch.len().div_ceil(self.helpers.len() + 1);
        let mut shares = Vec::new();
        while batch.len() > share {
            shares.push(batch.split_off(batch.len() - share));
        }
        for (helper, part) in self.helpers.iter().zip(shares) {
            if let Err(std::sync::mpsc::SendError(part)) = helper.send(part) {
                // The helper is gone: write its share here.
                for writer in part {
                    writer.write_queued();
                }
            }
        }
        for writer in batch {
            writer.write_queued();
        }
    }
}

/// Starts the threads that write the hub's batches with it: one per CPU
/// beyond the hub's own, at most [`MAX_WRITERS`] in all. Each ends when
/// the hub drops its queue.
fn start_write_helpers() -> Result<Vec<std::sync::mpsc::Sender<Vec<Arc<SocketWriter>>>>, String> {
    let cpus = std::thread::available_parallelism().map_or(1, |n| n.get());
    (1..cpus.min(MAX_WRITERS))
        .map(|i| {
            let (tx, rx) = std::sync::mpsc::channel::<Vec<Arc<SocketWriter>>>();
            std::thread::Builder::new()
                .name(format!("sync-write-{i}"))
                .spawn(move || {
                    while let Ok(share) = rx.recv() {
                        for writer in share {
                            writer.write_queued();
                        }
                    }
                })
                .map_err(|e| format!("cannot start a sync write helper: {e}"))?;
            Ok(tx)
        })
        .collect()
}

/// Runs one call on a blocking thread; a panic becomes a server error.
async fn run_blocking(executor: Arc<Executor>, call: Call) -> CallOutcome {
    match tokio::task::spawn_blocking(move || executor.call(call)).await {
        Ok(outcome) => outcome,
        Err(e) => failed(&e.to_string()),
    }
}

/// The outcome of a call whose thread panicked.
fn failed(why: &str) -> CallOutcome {
    CallOutcome {
        result: Err(runtime::execute::FunctionError {
            message: format!("Server Error: the call failed: {why}"),
            data: None,
        }),
        log_lines: Vec::new(),
        ts: None,
        journal: None,
        subscription: None,
    }
}

/// Runs `calls` on at most `concurrency` blocking threads, which take the
/// next call as each finishes without waiting for the hub's thread; each
/// outcome arrives on the returned channel as it is done.
fn run_all(
    executor: &Arc<Executor>,
    calls: VecDeque<(Arc<QueryKey>, Call)>,
    concurrency: usize,
) -> mpsc::UnboundedReceiver<(Arc<QueryKey>, CallOutcome)> {
    let (tx, rx) = mpsc::unbounded_channel();
    let runners = concurrency.max(1).min(calls.len());
    let calls = Arc::new(Mutex::new(calls));
    for _ in 0..runners {
        let calls = Arc::clone(&calls);
        let executor = Arc::clone(executor);
        let tx = tx.clone();
        tokio::task::spawn_blocking(move || loop {
            let Some((qkey, call)) = calls.lock().unwrap_or_else(|e| e.into_inner()).pop_front()
            else {
                return;
            };
            let outcome =
                std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| executor.call(call)))
                    .unwrap_or_else(|panic| {
                        let message = panic
                            .downcast_ref::<&str>()
                            .map(|s| s.to_string())
                            .or_else(|| panic.downcast_ref::<String>().cloned())
                            .unwrap_or_default();
                        failed(&message)
                    });
            if tx.send((qkey, outcome)).is_err() {
                return;
            }
        });
    }
    rx
}

/// One session's mutations, one at a time in the order sent.
async fn run_mutations(
    mut rx: mpsc::Receiver<MutationJob>,
    hub: mpsc::Sender<Cmd>,
    executor: Arc<Executor>,
    key: SessionKey,
) {
    while let Some(job) = rx.recv().await {
        let outcome = run_blocking(Arc::clone(&executor), job.call).await;
        if hub
            .send(Cmd::MutationDone {
                key,
                request_id: job.request_id,
                outcome,
            })
            .await
            .is_err()
        {
            return;
        }
    }
}
