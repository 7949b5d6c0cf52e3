//! Every `unsafe` operation of the engine lives here: io_uring submission,
//! read-only maps of immutable files, the advisory lock on the data
//! directory, and a background thread's scheduling class.
//!
//! Invariant: a mapped file is never written, truncated or removed while it
//! is mapped. Only files that are immutable while this process holds the
//! data-directory lock are mapped, and the lock keeps other processes out.
#![expect(unsafe_code, reason = "the engine's one home for unsafe code")]

use std::fs::File;
use std::io;
use std::os::fd::AsRawFd;

/// A read-only map of a whole file that nobody writes while it is mapped.
pub(crate) fn map_readonly(file: &File) -> io::Result<memmap2::Mmap> {
    // SAFETY: callers only map sealed segments and checkpoint files, which
    // are never modified after they are made durable; the data-directory
    // lock (see `lock_exclusive`) keeps other processes of ours from
    // truncating or rewriting them while this process runs.
    unsafe { memmap2::Mmap::map(file) }
}

/// Takes an exclusive, non-blocking advisory lock on `file`.
/// Returns `Ok(false)` if another process holds it.
pub(crate) fn lock_exclusive(file: &File) -> io::Result<bool> {
    // SAFETY: flock only reads the descriptor number, which `file` keeps
    // open for the duration of the call.
    let rc = unsafe { libc::flock(file.as_raw_fd(), libc::LOCK_EX | libc::LOCK_NB) };
    if rc == 0 {
        return Ok(true);
    }
    let err = io::Error::last_os_error();
    if err.raw_os_error() == Some(libc::EWOULDBLOCK) {
        Ok(false)
    } else {
        Err(err)
    }
}

/// A small io_uring used by the log writer: one linked write + fdatasync
/// per group commit.
pub(crate) struct Uring {
    ring: io_uring::IoUring,
}

impl std::fmt::Debug for Uring {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Uring").finish_non_exhaustive()
    }
}

impl Uring {
    /// Sets up a ring and checks that the kernel supports the two opcodes
    /// the writer needs.
    pub(crate) fn new() -> io::Result<Uring> {
        use io_uring::opcode;
        let ring = io_uring::IoUring::new(8)?;
        let mut probe = io_uring::Probe::new();
        ring.submitter().register_probe(&mut probe)?;
        if !probe.is_supported(opcode::Write::CODE) || !probe.is_supported(opcode::Fsync::CODE) {
            return Err(io::Error::new(
                io::ErrorKind::Unsupported,
                "io_uring lacks the write or fsync opcode",
            ));
        }
        Ok(Uring { ring })
    }

    /// Writes `buf` at `offset` and then runs fdatasync on `file`, the
    /// fsync linked behind the write so it starts only once the write has
    /// completed. Returns the number of bytes written (which may be short;
    /// the caller then writes the rest and syncs again) and the fsync's
    /// outcome (`None` when it was cancelled by a short write).
    pub(crate) fn write_then_datasync(
        &mut self,
        file: &File,
        buf: &[u8],
        offset: u64,
    ) -> io::Result<(usize, Option<io::Result<()>>)> {
        use io_uring::{opcode, squeue, types};
        const WRITE: u64 = 1;
        const SYNC: u64 = 2;
        let fd = types::Fd(file.as_raw_fd());
        let len = u32::try_from(buf.len())
            .map_err(|_| io::Error::new(io::ErrorKind::InvalidInput, "write larger than 4 GiB"))?;
        let write = opcode::Write::new(fd, buf.as_ptr(), len)
            .offset(offset)
            .build()
            .flags(squeue::Flags::IO_LINK)
            .user_data(WRITE);
        let sync = opcode::Fsync::new(fd)
            .flags(types::FsyncFlags::DATASYNC)
            .build()
            .user_data(SYNC);
        {
            let mut sq = self.ring.submission();
            // SAFETY: `buf` and `file` outlive the operation: we wait below
            // for both completions before returning, so the kernel never
            // touches `buf` after this function ends.
            unsafe {
                sq.push(&write)
                    .map_err(|_| io::Error::other("io_uring queue full"))?;
                sq.push(&sync)
                    .map_err(|_| io::Error::other("io_uring queue full"))?;
            }
        }
        let mut written: Option<io::Result<usize>> = None;
        let mut synced: Option<Option<io::Result<()>>> = None;
        while written.is_none() || synced.is_none() {
            // Wait for every outstanding completion in one kernel entry.
            let outstanding = usize::from(written.is_none()) + usize::from(synced.is_none());
            match self.ring.submit_and_wait(outstanding) {
                Ok(_) => {}
                Err(e) if e.raw_os_error() == Some(libc::EINTR) => continue,
                Err(e) => return Err(e),
            }
            for cqe in self.ring.completion() {
                let res = cqe.result();
                match cqe.user_data() {
                    WRITE => {
                        written = Some(if res < 0 {
                            Err(io::Error::from_raw_os_error(-res))
                        } else {
                            Ok(res as usize)
                        })
                    }
                    SYNC => {
                        synced = Some(if res == -libc::ECANCELED {
                            None
                        } else if res < 0 {
                            Some(Err(io::Error::from_raw_os_error(-res)))
                        } else {
                            Some(Ok(()))
                        })
                    }
                    other => {
                        return Err(io::Error::other(format!(
                            "io_uring completion with unknown tag {other}"
                        )))
                    }
                }
            }
        }
        let written = written.expect("loop ends with the write completed")?;
        Ok((written, synced.expect("loop ends with the sync completed")))
    }
}

/// Puts the calling thread in the `SCHED_IDLE` scheduling class: it runs
/// only when no normal thread of the machine wants the CPU, and a normal
/// thread that wakes up takes the CPU from it at once (background work such
/// as online compaction, so that commits never wait behind it).
pub(crate) fn make_thread_idle_priority() -> io::Result<()> {
    let param = libc::sched_param { sched_priority: 0 };
    // SAFETY: pid 0 names the calling thread; `param` is a valid
    // sched_param that outlives the call, which only reads it.
    let rc = unsafe { libc::sched_setscheduler(0, libc::SCHED_IDLE, &param) };
    if rc == 0 {
        Ok(())
    } else {
        Err(io::Error::last_os_error())
    }
}

/// Starts writeback of `file`'s dirty pages in `offset..offset + len`
/// without waiting for it and without a device cache flush
/// (`sync_file_range(SYNC_FILE_RANGE_WRITE)`): it keeps a file being
/// written from piling up dirty pages for one large flush at its `fsync`,
/// which would compete with the log writer's. Not a durability barrier.
pub(crate) fn start_writeback(file: &File, offset: u64, len: u64) -> io::Result<()> {
    let (Ok(offset), Ok(len)) = (
        libc::off64_t::try_from(offset),
        libc::off64_t::try_from(len),
    ) else {
        return Err(io::Error::new(
            io::ErrorKind::InvalidInput,
            "range beyond the file offset type",
        ));
    };
    // SAFETY: sync_file_range only reads its integer arguments and the
    // descriptor, which `file` keeps open for the call.
    let rc = unsafe {
        libc::sync_file_range(file.as_raw_fd(), offset, len, libc::SYNC_FILE_RANGE_WRITE)
    };
    if rc == 0 {
        Ok(())
    } else {
        Err(io::Error::last_os_error())
    }
}
