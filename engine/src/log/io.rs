//! How the writer makes a batch durable: one write followed by one
//! fdatasync, through `pwrite` + `fdatasync` (the default) or io_uring (the
//! write linked before the sync). Behind a small trait so tests can tear writes and
//! fail syncs.
//!
//! Invariant: `write_and_sync` returns `Ok` only when every byte of the
//! buffer has been written and an fdatasync that started after the last
//! byte was written has completed successfully.

use std::fs::File;
use std::io;
use std::os::unix::fs::FileExt;
use std::sync::Arc;

use crate::sys::Uring;

/// Makes one batch durable.
pub trait SyncWriter: Send + std::fmt::Debug {
    /// Writes all of `buf` at `offset` in `file`, then fdatasyncs `file`.
    fn write_and_sync(&mut self, file: &File, buf: &[u8], offset: u64) -> io::Result<()>;
    /// Short name for logs and reports ("io_uring", "pwrite").
    fn name(&self) -> &'static str;
}

/// Which I/O path the writer uses.
#[derive(Clone, Default)]
pub enum IoChoice {
    /// The default: `pwrite` + `fdatasync`. Measured faster than io_uring
    /// on this project's machines at every concurrency (see BENCHMARKS.md):
    /// io_uring hands fdatasync to a kernel worker thread, which costs two
    /// context switches per batch, and the writer waits for every batch.
    #[default]
    Auto,
    /// A write linked to an fdatasync through io_uring; opening fails if
    /// the kernel does not offer it.
    IoUring,
    Pwrite,
    /// A caller-supplied writer (fault injection in tests).
    Custom(Arc<dyn Fn() -> Box<dyn SyncWriter> + Send + Sync>),
}

impl std::fmt::Debug for IoChoice {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            IoChoice::Auto => f.write_str("Auto"),
            IoChoice::IoUring => f.write_str("IoUring"),
            IoChoice::Pwrite => f.write_str("Pwrite"),
            IoChoice::Custom(_) => f.write_str("Custom"),
        }
    }
}

impl IoChoice {
    /// Reads `CONVEX_LOG_IO` (`auto`, `io_uring`, `pwrite`), default auto.
    pub fn from_env() -> Result<IoChoice, String> {
        match std::env::var("CONVEX_LOG_IO").as_deref() {
            Err(_) | Ok("") | Ok("auto") => Ok(IoChoice::Auto),
            Ok("io_uring") => Ok(IoChoice::IoUring),
            Ok("pwrite") => Ok(IoChoice::Pwrite),
            Ok(other) => Err(format!(
                "CONVEX_LOG_IO={other:?} is not one of auto, io_uring, pwrite"
            )),
        }
    }

    /// Builds the writer.
    pub(crate) fn build(&self) -> io::Result<Box<dyn SyncWriter>> {
        match self {
            IoChoice::Auto | IoChoice::Pwrite => Ok(Box::new(PwriteWriter)),
            IoChoice::IoUring => Ok(Box::new(UringWriter::new().map_err(|e| {
                io::Error::new(
                    e.kind(),
                    format!(
                        "io_uring was asked for (CONVEX_LOG_IO=io_uring) but is unavailable: {e}"
                    ),
                )
            })?)),
            IoChoice::Custom(make) => Ok(make()),
        }
    }
}

/// `pwrite` + `fdatasync`.
#[derive(Debug)]
pub struct PwriteWriter;

impl SyncWriter for PwriteWriter {
    fn write_and_sync(&mut self, file: &File, buf: &[u8], offset: u64) -> io::Result<()> {
        file.write_all_at(buf, offset)?;
        file.sync_data()
    }

    fn name(&self) -> &'static str {
        "pwrite"
    }
}

/// io_uring: a write linked to an fdatasync, submitted together.
#[derive(Debug)]
pub struct UringWriter {
    ring: Uring,
}

impl UringWriter {
    pub fn new() -> io::Result<UringWriter> {
        Ok(UringWriter {
            ring: Uring::new()?,
        })
    }
}

impl SyncWriter for UringWriter {
    fn write_and_sync(&mut self, file: &File, buf: &[u8], offset: u64) -> io::Result<()> {
        let mut done = 0usize;
        loop {
            let (n, sync) =
                self.ring
                    .write_then_datasync(file, &buf[done..], offset + done as u64)?;
            if n == 0 && done < buf.len() {
                return Err(io::Error::new(
                    io::ErrorKind::WriteZero,
                    "io_uring write wrote nothing",
                ));
            }
            done += n;
            match sync {
                // The sync ran after the whole remaining buffer was written.
                Some(result) if done == buf.len() => return result,
                // A failed sync is final even if a write was short.
                Some(Err(e)) => return Err(e),
                // Short write: the linked sync was cancelled or ran early;
                // write the rest and sync again.
                Some(Ok(())) | None => continue,
            }
        }
    }

    fn name(&self) -> &'static str {
        "io_uring"
    }
}
