//! A sync socket below the WebSocket library: the HTTP/1.1 upgrade
//! (RFC 6455 §4.2) and the socket's write side, which the hub writes to
//! directly.
//!
//! Every Transition goes to up to thousands of sockets. Through a
//! per-socket task (the WebSocket library's sink) each one cost a queue
//! push, a task wake-up and poll on another thread, and a copy of the
//! message into the socket's own frame buffer, which also grew per socket
//! while messages waited. Instead the hub encodes each distinct frame once
//! ([`frame`]) and hands the shared buffer to [`SocketWriter::send`], which
//! writes it at once when nothing is queued before it (a non-blocking
//! write: the hub never waits on a client), or queues a cycle's
//! Transitions with [`SocketWriter::enqueue`] and has them written in
//! batches, by its own thread and its write helpers
//! ([`SocketWriter::write_queued`], also non-blocking). What the kernel
//! does not take stays queued, bounded, and the socket's task writes it
//! when the socket becomes writable.
//!
//! Reading stays with tungstenite (masking, fragments, UTF-8, limits, and
//! its replies to pings and closes) over [`ReadIo`], whose writes go into
//! the same [`SocketWriter`], so frames from both never interleave.

use std::collections::VecDeque;
use std::io::{self, IoSlice};
use std::pin::Pin;
use std::sync::{Mutex, MutexGuard};
use std::task::{Context, Poll};
use std::time::Duration;

use axum::http::{header, HeaderMap, HeaderValue, Method, StatusCode};
use bytes::{Buf, BufMut, Bytes, BytesMut};
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::tcp::{OwnedReadHalf, OwnedWriteHalf};
use tokio::sync::Notify;
use tokio::time::Instant;

/// Bytes queued for one socket (beyond what the kernel took) before it is
/// closed as too slow. Each queued frame also counts [`FRAME_OVERHEAD`], so
/// many small frames are bounded too.
pub const QUEUE_BYTES: usize = 16 << 20;
/// What a queued frame costs beyond its bytes (its `Bytes` and queue slot).
const FRAME_OVERHEAD: usize = 64;
/// Most frames given to one vectored write.
const WRITE_SLICES: usize = 64;

const OP_TEXT: u8 = 0x1;
const OP_CLOSE: u8 = 0x8;

/// Checks an upgrade request as RFC 6455 §4.2.1 asks and returns its
/// `Sec-WebSocket-Accept`, or the status and message to refuse it with
/// (those axum's own upgrade gives).
pub fn check_upgrade(
    method: &Method,
    headers: &HeaderMap,
) -> Result<HeaderValue, (StatusCode, &'static str)> {
    if method != Method::GET {
        return Err((
            StatusCode::METHOD_NOT_ALLOWED,
            "Request method must be `GET`",
        ));
    }
    let has_token = |name: header::HeaderName, token: &str| {
        headers.get_all(name).iter().any(|v| {
            v.to_str()
                .is_ok_and(|v| v.split(',').any(|t| t.trim().eq_ignore_ascii_case(token)))
        })
    };
    if !has_token(header::CONNECTION, "upgrade") {
        return Err((
            StatusCode::BAD_REQUEST,
            "Connection header did not include 'upgrade'",
        ));
    }
    if !has_token(header::UPGRADE, "websocket") {
        return Err((
            StatusCode::BAD_REQUEST,
            "`Upgrade` header did not include 'websocket'",
        ));
    }
    if headers
        .get(header::SEC_WEBSOCKET_VERSION)
        .is_none_or(|v| v.as_bytes() != b"13")
    {
        return Err((
            StatusCode::BAD_REQUEST,
            "`Sec-WebSocket-Version` header did not include '13'",
        ));
    }
    let Some(key) = headers.get(header::SEC_WEBSOCKET_KEY) else {
        return Err((
            StatusCode::BAD_REQUEST,
            "`Sec-WebSocket-Key` header missing",
        ));
    };
    let accept = tokio_tungstenite::tungstenite::handshake::derive_accept_key(key.as_bytes());
    Ok(HeaderValue::from_str(&accept).expect("base64 is a valid header value"))
}

/// One unmasked, unfragmented frame as a server sends it (RFC 6455 §5.2).
fn frame(opcode: u8, payload: &[u8]) -> Bytes {
    let mut buf = BytesMut::with_capacity(payload.len() + 10);
    buf.put_u8(0x80 | opcode);
    match payload.len() {
        n if n < 126 => buf.put_u8(n as u8),
        n if n <= 0xffff => {
            buf.put_u8(126);
            buf.put_u16(n as u16);
        }
        n => {
            buf.put_u8(127);
            buf.put_u64(n as u64);
        }
    }
    buf.extend_from_slice(payload);
    buf.freeze()
}

/// A text frame (`text` is UTF-8 by its type).
pub fn text_frame(text: &str) -> Bytes {
    frame(OP_TEXT, text.as_bytes())
}

/// A close frame: with a status code and reason (cut to the 123 bytes a
/// control frame leaves, at a character boundary), or without.
pub fn close_frame(close: Option<(u16, &str)>) -> Bytes {
    let Some((code, reason)) = close else {
        return frame(OP_CLOSE, &[]);
    };
    let mut end = reason.len().min(123);
    while !reason.is_char_boundary(end) {
        end -= 1;
    }
    let mut payload = Vec::with_capacity(2 + end);
    payload.extend_from_slice(&code.to_be_bytes());
    payload.extend_from_slice(&reason.as_bytes()[..end]);
    frame(OP_CLOSE, &payload)
}

/// Why [`SocketWriter::send`] did not take a frame.
#[derive(Debug, PartialEq, Eq)]
pub enum SendError {
    /// [`QUEUE_BYTES`] are already queued: the client is not reading.
    Full,
    /// The socket is closing or gone.
    Closed,
}

/// What [`SocketWriter::flush`] left.
#[derive(Debug, PartialEq, Eq)]
enum Flushed {
    /// Nothing is queued.
    Empty,
    /// The kernel took no more; wait until the socket is writable.
    Blocked,
    /// The close frame is written, or the socket failed: the socket is done.
    Done,
}

/// The write side of one socket, shared by the hub, the socket's task and
/// its reader. Frames go out whole and in the order given.
#[derive(Debug)]
pub struct SocketWriter {
    tcp: OwnedWriteHalf,
    state: Mutex<WriteState>,
    /// Wakes the socket's task: a backlog to write, or a close.
    pub wake: Notify,
}

#[derive(Debug)]
struct WriteState {
    /// Frames the kernel has not taken yet; the front one may be a
    /// partly written frame's rest (`partial`).
    queue: VecDeque<Bytes>,
    partial: bool,
    queued_bytes: usize,
    /// A close frame is queued: nothing more is taken.
    closing: bool,
    /// The close frame is written or the socket failed.
    done: bool,
    last_write: Instant,
}

impl WriteState {
    /// Whether `frame` may go after what is queued, and whether the queue
    /// is empty: an empty queue takes a frame of any size (the kernel takes
    /// what it can first), one that is not is bounded by [`QUEUE_BYTES`].
    fn admit(&self, frame: &Bytes) -> Result<bool, SendError> {
        if self.closing || self.done {
            return Err(SendError::Closed);
        }
        let empty = self.queue.is_empty();
        if !empty && self.queued_bytes + frame.len() + FRAME_OVERHEAD > QUEUE_BYTES {
            return Err(SendError::Full);
        }
        Ok(empty)
    }

    fn push(&mut self, frame: Bytes) {
        self.queued_bytes += frame.len() + FRAME_OVERHEAD;
        self.queue.push_back(frame);
    }

    /// Takes `n` written bytes off the front of the queue.
    fn advance(&mut self, mut n: usize) {
        while n > 0 {
            let front = self
                .queue
                .front_mut()
                .expect("the kernel took no more than was given");
            if n < front.len() {
                front.advance(n);
                self.queued_bytes -= n;
                self.partial = true;
                return;
            }
            n -= front.len();
            self.queued_bytes -= front.len() + FRAME_OVERHEAD;
            self.queue.pop_front();
            self.partial = false;
        }
    }
}

impl SocketWriter {
    pub fn new(tcp: OwnedWriteHalf) -> SocketWriter {
        SocketWriter {
            tcp,
            state: Mutex::new(WriteState {
                queue: VecDeque::new(),
                partial: false,
                queued_bytes: 0,
                closing: false,
                done: false,
                last_write: Instant::now(),
            }),
            wake: Notify::new(),
        }
    }

    fn lock(&self) -> MutexGuard<'_, WriteState> {
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Sends `frame` after what is queued: written now if nothing is
    /// queued and the kernel takes it, else queued for the socket's task.
    /// Never waits.
    pub fn send(&self, frame: Bytes) -> Result<(), SendError> {
        let mut st = self.lock();
        if !st.admit(&frame)? {
            // Whoever queued the front frame writes this one with it: the
            // socket's task, woken then, or a batch's `write_queued`.
            st.push(frame);
            return Ok(());
        }
        match self.tcp.try_write(&frame) {
            Ok(n) if n == frame.len() => {
                st.last_write = Instant::now();
                return Ok(());
            }
            Ok(n) => {
                st.last_write = Instant::now();
                st.push(frame.slice(n..));
                st.partial = n > 0;
            }
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => st.push(frame),
            Err(_) => {
                st.done = true;
                drop(st);
                self.wake.notify_one();
                return Err(SendError::Closed);
            }
        }
        drop(st);
        self.wake.notify_one();
        Ok(())
    }

    /// Queues `frame` after what is queued without writing it: a later
    /// [`SocketWriter::write_queued`], from any thread, writes it. Returns
    /// whether the queue was empty, in which case the caller owes that
    /// call; otherwise whoever queued the front frame (or the socket's
    /// task, waiting for the socket) writes this one with it. Never waits.
    pub fn enqueue(&self, frame: Bytes) -> Result<bool, SendError> {
        let mut st = self.lock();
        let was_empty = st.admit(&frame)?;
        st.push(frame);
        Ok(was_empty)
    }

    /// Writes what is queued as far as the kernel takes it, without
    /// waiting; the socket's task writes the rest once the socket is
    /// writable.
    pub fn write_queued(&self) {
        if self.flush() != Flushed::Empty {
            self.wake.notify_one();
        }
    }

    /// Queues a close frame; nothing is taken after it. With `discard`
    /// (for a client that does not read) what is queued and not yet begun
    /// is dropped first.
    pub fn close(&self, close: Bytes, discard: bool) {
        let mut st = self.lock();
        if st.closing || st.done {
            return;
        }
        if discard {
            let keep = usize::from(st.partial).min(st.queue.len());
            while st.queue.len() > keep {
                let dropped = st.queue.pop_back().expect("longer than keep");
                st.queued_bytes -= dropped.len() + FRAME_OVERHEAD;
            }
        }
        st.closing = true;
        st.push(close);
        drop(st);
        self.wake.notify_one();
    }

    pub fn is_closing(&self) -> bool {
        self.lock().closing
    }

    /// When something was last written.
    pub fn last_write(&self) -> Instant {
        self.lock().last_write
    }

    /// Marks the socket done: later sends fail, and what is queued is
    /// dropped.
    pub fn finish(&self) {
        let mut st = self.lock();
        st.done = true;
        st.queue.clear();
        st.queued_bytes = 0;
    }

    /// Writes what is queued as far as the kernel takes it.
    fn flush(&self) -> Flushed {
        let mut st = self.lock();
        loop {
            if st.done {
                return Flushed::Done;
            }
            if st.queue.is_empty() {
                if st.closing {
                    st.done = true;
                    return Flushed::Done;
                }
                return Flushed::Empty;
            }
            // On the stack: every batched Transition is written here.
            let mut slices = [IoSlice::new(&[]); WRITE_SLICES];
            let mut n = 0;
            for (slot, b) in slices.iter_mut().zip(st.queue.iter()) {
                *slot = IoSlice::new(b);
                n += 1;
            }
            let written = self.tcp.try_write_vectored(&slices[..n]);
            match written {
                Ok(0) => {
                    st.done = true;
                    return Flushed::Done;
                }
                Ok(n) => {
                    st.last_write = Instant::now();
                    st.advance(n);
                }
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => return Flushed::Blocked,
                Err(_) => {
                    st.done = true;
                    return Flushed::Done;
                }
            }
        }
    }

    /// Writes the queue out, waiting for the socket to take it; returns
    /// whether the socket is still open (`false` once its close frame is
    /// written or it failed). A close waits at most `close_wait` for a
    /// client that does not read.
    pub async fn drain(&self, close_wait: Duration) -> bool {
        let mut deadline = None;
        loop {
            match self.flush() {
                Flushed::Empty => return true,
                Flushed::Done => return false,
                Flushed::Blocked => {}
            }
            if self.is_closing() {
                let deadline = *deadline.get_or_insert_with(|| Instant::now() + close_wait);
                tokio::select! {
                    ready = self.tcp.writable() => if ready.is_err() { return false },
                    () = tokio::time::sleep_until(deadline) => return false,
                }
            } else {
                // A close queued meanwhile (its `wake`) starts the
                // deadline above.
                tokio::select! {
                    ready = self.tcp.writable() => if ready.is_err() { return false },
                    () = self.wake.notified() => {}
                }
            }
        }
    }
}

/// The socket as tungstenite reads it: the bytes hyper read past the
/// upgrade request first, then the socket's read half. What tungstenite
/// writes (its replies to pings and closes) goes through the
/// [`SocketWriter`], between whole frames.
#[derive(Debug)]
pub struct ReadIo {
    pub prefix: Bytes,
    pub read: OwnedReadHalf,
    pub writer: std::sync::Arc<SocketWriter>,
}

impl AsyncRead for ReadIo {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        if !self.prefix.is_empty() {
            let n = self.prefix.len().min(buf.remaining());
            buf.put_slice(&self.prefix[..n]);
            self.prefix.advance(n);
            if self.prefix.is_empty() {
                // An empty slice still holds its buffer: let it go.
                self.prefix = Bytes::new();
            }
            return Poll::Ready(Ok(()));
        }
        Pin::new(&mut self.read).poll_read(cx, buf)
    }
}

impl AsyncWrite for ReadIo {
    fn poll_write(
        self: Pin<&mut Self>,
        _: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        // tungstenite writes whole frames from its buffer; a short write
        // is never returned, so frames stay whole.
        match self.writer.send(Bytes::copy_from_slice(buf)) {
            Ok(()) => Poll::Ready(Ok(buf.len())),
            Err(_) => Poll::Ready(Err(io::ErrorKind::BrokenPipe.into())),
        }
    }

    fn poll_flush(self: Pin<&mut Self>, _: &mut Context<'_>) -> Poll<io::Result<()>> {
        Poll::Ready(Ok(()))
    }

    fn poll_shutdown(self: Pin<&mut Self>, _: &mut Context<'_>) -> Poll<io::Result<()>> {
        Poll::Ready(Ok(()))
    }
}

#[cfg(test)]
pub(super) mod tests {
    use super::*;
    use std::sync::Arc;
    use tokio::io::AsyncReadExt;
    use tokio::net::{TcpListener, TcpStream};

    /// A connected pair on loopback: (the server's writer, the client).
    pub(in crate::sync) async fn pair() -> (Arc<SocketWriter>, OwnedReadHalf, TcpStream) {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let client = TcpStream::connect(listener.local_addr().unwrap())
            .await
            .unwrap();
        let (server, _) = listener.accept().await.unwrap();
        let (read, write) = server.into_split();
        // The first write readiness arrives from the reactor.
        write.writable().await.unwrap();
        (Arc::new(SocketWriter::new(write)), read, client)
    }

    #[test]
    fn frames_have_the_length_forms_of_rfc_6455() {
        let short = text_frame("hi");
        assert_eq!(&short[..], b"\x81\x02hi");
        let medium = frame(OP_TEXT, &[b'a'; 300]);
        assert_eq!(&medium[..4], &[0x81, 126, 0x01, 0x2c]);
        assert_eq!(medium.len(), 304);
        let long = frame(OP_TEXT, &vec![b'a'; 70_000]);
        assert_eq!(&long[..2], &[0x81, 127]);
        assert_eq!(u64::from_be_bytes(long[2..10].try_into().unwrap()), 70_000);
        assert_eq!(long.len(), 70_010);
        assert_eq!(&close_frame(None)[..], &[0x88, 0]);
        let close = close_frame(Some((1013, "busy")));
        assert_eq!(&close[..], b"\x88\x06\x03\xf5busy");
        // A long reason is cut to fit a control frame, at a char boundary.
        let reason = "é".repeat(100);
        let close = close_frame(Some((1011, &reason)));
        assert_eq!(close[1] as usize, close.len() - 2);
        assert!(close.len() - 2 <= 125);
        assert!(std::str::from_utf8(&close[4..]).is_ok());
    }

    #[test]
    fn upgrade_requests_are_checked_and_answered_as_rfc_6455_asks() {
        let mut headers = HeaderMap::new();
        headers.insert(header::CONNECTION, "keep-alive, Upgrade".parse().unwrap());
        headers.insert(header::UPGRADE, "websocket".parse().unwrap());
        headers.insert(header::SEC_WEBSOCKET_VERSION, "13".parse().unwrap());
        headers.insert(
            header::SEC_WEBSOCKET_KEY,
            "dGhlIHNhbXBsZSBub25jZQ==".parse().unwrap(),
        );
        // The example of RFC 6455 §1.3.
        assert_eq!(
            check_upgrade(&Method::GET, &headers).unwrap(),
            "s3pPLMBiTxaQ9kYGzzhZRbK+xOo="
        );
        assert_eq!(
            check_upgrade(&Method::POST, &headers).unwrap_err().0,
            StatusCode::METHOD_NOT_ALLOWED
        );
        for (name, value) in [
            (header::CONNECTION, "keep-alive"),
            (header::UPGRADE, "h2c"),
            (header::SEC_WEBSOCKET_VERSION, "8"),
        ] {
            let mut bad = headers.clone();
            bad.insert(name.clone(), value.parse().unwrap());
            let (status, message) = check_upgrade(&Method::GET, &bad).unwrap_err();
            assert_eq!(status, StatusCode::BAD_REQUEST, "{name}");
            assert!(
                message.to_ascii_lowercase().contains(name.as_str()),
                "{message}"
            );
        }
        let mut bad = headers.clone();
        bad.remove(header::SEC_WEBSOCKET_KEY);
        assert!(check_upgrade(&Method::GET, &bad)
            .unwrap_err()
            .1
            .contains("Key"));
    }

    #[tokio::test]
    async fn frames_go_out_whole_and_in_order_when_the_client_is_slow() {
        let (writer, _read, mut client) = pair().await;
        // Far more than the socket buffers hold, so most of it queues and
        // the front frame is cut by the kernel at some point.
        let frames: Vec<Bytes> = (0..400u32)
            .map(|i| frame(OP_TEXT, &vec![(i % 251) as u8; 10_000 + i as usize]))
            .collect();
        let expected: Vec<u8> = frames.iter().flat_map(|f| f.iter().copied()).collect();
        for f in &frames {
            writer.send(f.clone()).unwrap();
        }
        assert!(writer.lock().queued_bytes > 0, "the kernel took it all");
        let task = {
            let writer = Arc::clone(&writer);
            tokio::spawn(async move {
                while writer.lock().queued_bytes > 0 {
                    assert!(writer.drain(Duration::from_secs(1)).await);
                }
            })
        };
        let mut got = vec![0u8; expected.len()];
        client.read_exact(&mut got).await.unwrap();
        task.await.unwrap();
        assert!(
            got == expected,
            "the bytes read differ from the frames sent"
        );
        assert_eq!(writer.lock().queued_bytes, 0);
    }

    #[tokio::test]
    async fn a_full_queue_refuses_and_a_discarding_close_keeps_the_frame_begun() {
        let (writer, _read, mut client) = pair().await;
        let big = frame(OP_TEXT, &vec![b'x'; 1 << 20]);
        let mut sent = 0;
        let refused = loop {
            match writer.send(big.clone()) {
                Ok(()) => sent += 1,
                Err(e) => break e,
            }
            assert!(sent < 1000, "never refused");
        };
        assert_eq!(refused, SendError::Full);
        assert!(sent >= QUEUE_BYTES >> 20, "refused at {sent} MiB");
        writer.close(close_frame(Some((1013, "slow"))), true);
        assert_eq!(writer.send(text_frame("late")), Err(SendError::Closed));
        let partial = writer.lock().partial;
        assert_eq!(writer.lock().queue.len(), 1 + usize::from(partial));
        // The client reads again: it gets whole frames, then the close.
        let drained = {
            let writer = Arc::clone(&writer);
            tokio::spawn(async move { writer.drain(Duration::from_secs(10)).await })
        };
        let mut texts = 0;
        loop {
            let (opcode, payload) = read_frame(&mut client).await;
            if opcode == OP_CLOSE {
                assert_eq!(payload, b"\x03\xf5slow");
                break;
            }
            assert_eq!(opcode, OP_TEXT);
            assert_eq!(payload.len(), 1 << 20);
            texts += 1;
        }
        assert!(!drained.await.unwrap(), "the close ends the socket");
        assert!((1..=sent).contains(&texts), "{texts} of {sent}");
    }

    #[tokio::test]
    async fn queued_frames_wait_for_write_queued_and_keep_their_order() {
        let (writer, _read, mut client) = pair().await;
        assert_eq!(writer.enqueue(text_frame("one")), Ok(true));
        assert_eq!(writer.enqueue(text_frame("two")), Ok(false));
        // A direct send behind queued frames waits its turn.
        writer.send(text_frame("three")).unwrap();
        assert_eq!(writer.lock().queue.len(), 3, "nothing was written yet");
        // From another thread, as the hub's write helpers do.
        let helper = {
            let writer = Arc::clone(&writer);
            std::thread::spawn(move || writer.write_queued())
        };
        helper.join().unwrap();
        for want in ["one", "two", "three"] {
            let (opcode, payload) = read_frame(&mut client).await;
            assert_eq!((opcode, payload.as_slice()), (OP_TEXT, want.as_bytes()));
        }
        assert_eq!(writer.lock().queued_bytes, 0);
        // An empty queue takes a frame of any size; a queue that is not
        // empty is bounded as `send`'s is.
        let huge = frame(OP_TEXT, &vec![b'x'; QUEUE_BYTES + 1]);
        assert_eq!(writer.enqueue(huge), Ok(true));
        assert_eq!(writer.enqueue(text_frame("more")), Err(SendError::Full));
        writer.close(close_frame(None), true);
        assert_eq!(writer.enqueue(text_frame("late")), Err(SendError::Closed));
    }

    /// Reads one unmasked frame: (opcode, payload).
    pub(in crate::sync) async fn read_frame(client: &mut TcpStream) -> (u8, Vec<u8>) {
        let mut head = [0u8; 2];
        client.read_exact(&mut head).await.unwrap();
        let len = match head[1] {
            127 => client.read_u64().await.unwrap() as usize,
            126 => client.read_u16().await.unwrap() as usize,
            n => n as usize,
        };
        let mut payload = vec![0u8; len];
        client.read_exact(&mut payload).await.unwrap();
        (head[0] & 0x0f, payload)
    }
}
