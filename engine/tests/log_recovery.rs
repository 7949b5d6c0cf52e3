//! Recovery of the transaction log from damaged files: a torn tail at every
//! byte offset of the last record reopens cleanly without it, a flipped bit
//! in an earlier record is corruption (named by segment and offset) both for
//! `Log::open` and for `report::verify`, a failed fsync poisons the writer,
//! and segments roll and reopen intact.

mod common;

use std::fs;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;

use common::{identify, record_writes};
use engine::dir::DataDir;
use engine::log::report;
use engine::log::{
    scan_log, segment_path, Check, IoChoice, Log, LogError, LogOptions, SyncWriter,
    FRAME_HEADER_LEN,
};
use engine::ts::Ts;

fn options(segment_bytes: u64, io: IoChoice) -> LogOptions {
    LogOptions {
        segment_bytes,
        io,
        ..LogOptions::default()
    }
}

/// Writes `n` records one at a time (each its own group commit).
fn write_records(path: &Path, n: u64, opts: LogOptions) -> Vec<Ts> {
    let dir = DataDir::open(path).unwrap();
    let log = Log::open(&dir, opts).unwrap();
    let tss = (0..n)
        .map(|seq| log.commit(&record_writes(0, 0, seq)).unwrap())
        .collect();
    log.close().unwrap();
    tss
}

/// Every record of the log, identified and checked.
fn read_all(path: &Path) -> Vec<(u32, u32, u64)> {
    let dir = DataDir::open(path).unwrap();
    let log = scan_log(&dir.log_dir(), Check::DecodeBodies).unwrap();
    log.records()
        .map(|r| identify(&r.decode().unwrap()))
        .collect()
}

/// (segment path, offset, length) of every frame.
fn frames(path: &Path) -> Vec<(PathBuf, u64, u64)> {
    let dir = DataDir::open(path).unwrap();
    let log = scan_log(&dir.log_dir(), Check::Checksums).unwrap();
    log.segments
        .iter()
        .flat_map(|s| {
            s.frames
                .iter()
                .map(|f| (s.path.clone(), f.offset, f.end() - f.offset))
        })
        .collect()
}

#[test]
fn records_survive_reopen_and_timestamps_keep_increasing() {
    for io in [IoChoice::IoUring, IoChoice::Pwrite] {
        let tmp = tempfile::tempdir().unwrap();
        let first = write_records(tmp.path(), 50, options(1 << 20, io.clone()));
        assert!(first.windows(2).all(|w| w[0] < w[1]));
        let dir = DataDir::open(tmp.path()).unwrap();
        let log = Log::open(&dir, options(1 << 20, io.clone())).unwrap();
        assert_eq!(log.recovery().records, 50);
        assert_eq!(log.recovery().last_ts, first.last().copied());
        assert!(log.recovery().cut_tail.is_none());
        let next = log.commit(&record_writes(0, 0, 50)).unwrap();
        assert!(
            next > *first.last().unwrap(),
            "timestamp went backwards across a restart"
        );
        log.close().unwrap();
        drop(dir);
        let all = read_all(tmp.path());
        assert_eq!(all, (0..=50).map(|s| (0, 0, s)).collect::<Vec<_>>());
    }
}

#[test]
fn torn_tail_at_every_byte_of_the_last_record_reopens_without_it() {
    let tmp = tempfile::tempdir().unwrap();
    write_records(tmp.path(), 6, options(1 << 20, IoChoice::Pwrite));
    let all_frames = frames(tmp.path());
    let (seg, off, len) = all_frames.last().unwrap().clone();
    let pristine = fs::read(&seg).unwrap();
    let work = tempfile::tempdir().unwrap();
    // Two kinds of tear: the rest of the record never reached the disk
    // (zeros, as the segment was zero-filled), or it holds garbage.
    for garbage in [false, true] {
        for cut in 0..len {
            let _ = fs::remove_dir_all(work.path().join("d"));
            let d = work.path().join("d");
            fs::create_dir_all(d.join("log")).unwrap();
            let mut bytes = pristine.clone();
            for (i, b) in bytes[(off + cut) as usize..(off + len) as usize]
                .iter_mut()
                .enumerate()
            {
                *b = if garbage {
                    (i as u8).wrapping_mul(151).wrapping_add(7) | 1
                } else {
                    0
                };
            }
            let seg_copy = d.join("log").join(seg.file_name().unwrap());
            fs::write(&seg_copy, &bytes).unwrap();

            let dir = DataDir::open(&d).unwrap();
            let v = report::verify(&dir).unwrap();
            if cut == 0 && !garbage {
                assert!(v.torn_tail.is_none(), "a missing record is a clean end");
            } else {
                let t = v
                    .torn_tail
                    .as_ref()
                    .unwrap_or_else(|| panic!("cut {cut}: no torn tail reported"));
                assert_eq!(t.offset, off, "cut {cut}");
            }
            let log = Log::open(&dir, options(1 << 20, IoChoice::Pwrite))
                .unwrap_or_else(|e| panic!("cut {cut} garbage {garbage}: {e}"));
            assert_eq!(log.recovery().records, 5, "cut {cut}");
            // The log goes on after the cut point, and reads back cleanly.
            log.commit(&record_writes(0, 0, 100)).unwrap();
            log.close().unwrap();
            drop(dir);
            let all = read_all(&d);
            assert_eq!(
                all,
                vec![
                    (0, 0, 0),
                    (0, 0, 1),
                    (0, 0, 2),
                    (0, 0, 3),
                    (0, 0, 4),
                    (0, 0, 100)
                ]
            );
        }
    }
}

#[test]
fn flipped_bit_in_an_earlier_record_is_corruption_for_open_and_verify() {
    let tmp = tempfile::tempdir().unwrap();
    write_records(tmp.path(), 8, options(1 << 20, IoChoice::Pwrite));
    let all_frames = frames(tmp.path());
    let pristine = fs::read(&all_frames[0].0).unwrap();
    // Every record but the last, in the header and in the body.
    for (i, (seg, off, len)) in all_frames.iter().take(7).enumerate() {
        for pos in [
            *off + 5,
            *off + FRAME_HEADER_LEN as u64 + 3,
            *off + *len - 1,
        ] {
            let mut bytes = pristine.clone();
            bytes[pos as usize] ^= 0x10;
            fs::write(seg, &bytes).unwrap();
            let dir = DataDir::open(tmp.path()).unwrap();
            let err = report::verify(&dir).unwrap_err();
            assert!(
                matches!(&err, LogError::Corruption { segment, offset, .. } if segment == seg && *offset == *off),
                "record {i} byte {pos}: {err}"
            );
            let msg = err.to_string();
            assert!(
                msg.contains(&seg.display().to_string()) && msg.contains(&format!("offset {off}")),
                "{msg}"
            );
            let err = Log::open(&dir, options(1 << 20, IoChoice::Pwrite)).unwrap_err();
            assert!(
                matches!(err, LogError::Corruption { offset, .. } if offset == *off),
                "{err}"
            );
        }
    }
    fs::write(&all_frames[0].0, &pristine).unwrap();
    assert_eq!(read_all(tmp.path()).len(), 8);
}

#[test]
fn damage_in_a_sealed_segment_is_corruption_even_at_its_end() {
    let tmp = tempfile::tempdir().unwrap();
    write_records(tmp.path(), 200, options(4 << 10, IoChoice::IoUring));
    let all_frames = frames(tmp.path());
    let segments: Vec<_> = {
        let mut s: Vec<_> = all_frames.iter().map(|f| f.0.clone()).collect();
        s.dedup();
        s
    };
    assert!(
        segments.len() > 3,
        "expected several segments, got {}",
        segments.len()
    );
    // The last record of the first (sealed) segment.
    let (seg, off, len) = all_frames
        .iter()
        .rfind(|f| f.0 == segments[0])
        .unwrap()
        .clone();
    let mut bytes = fs::read(&seg).unwrap();
    bytes[(off + len - 1) as usize] ^= 1;
    fs::write(&seg, &bytes).unwrap();
    let dir = DataDir::open(tmp.path()).unwrap();
    let err = Log::open(&dir, options(4 << 10, IoChoice::IoUring)).unwrap_err();
    assert!(
        matches!(&err, LogError::Corruption { segment, offset, .. } if *segment == seg && *offset == off),
        "{err}"
    );
}

#[test]
fn segments_roll_and_a_record_larger_than_a_segment_gets_its_own() {
    let tmp = tempfile::tempdir().unwrap();
    let opts = options(2 << 10, IoChoice::IoUring);
    write_records(tmp.path(), 120, opts.clone());
    {
        let dir = DataDir::open(tmp.path()).unwrap();
        let log = Log::open(&dir, opts.clone()).unwrap();
        // Incompressible, and far larger than a segment.
        let mut big = engine::value::Object::new();
        let mut x = 0x9E37_79B9_7F4A_7C15u64;
        let noise: Vec<u8> = (0..50_000)
            .map(|_| {
                x ^= x << 13;
                x ^= x >> 7;
                x ^= x << 17;
                (x >> 24) as u8
            })
            .collect();
        big.insert("blob".into(), engine::value::Value::Bytes(noise));
        let w = vec![engine::log::DocumentWrite {
            id: common::record_id(9, 9, 9),
            document: Some(big.clone()),
        }];
        log.commit(&w).unwrap();
        log.commit(&record_writes(0, 0, 120)).unwrap();
        log.close().unwrap();
        let scanned = scan_log(&dir.log_dir(), Check::DecodeBodies).unwrap();
        let recs: Vec<_> = scanned.records().map(|r| r.decode().unwrap()).collect();
        assert_eq!(recs.len(), 122);
        assert_eq!(recs[120].writes, w);
        assert!(scanned.segments.len() > 5);
        let sizes: Vec<u64> = scanned.segments.iter().map(|s| s.file_len).collect();
        assert!(
            sizes.iter().any(|&l| l > 50_000),
            "no segment grew for the large record: {sizes:?}"
        );
        assert!(scanned.leftovers.len() <= 1);
        assert!(fs::metadata(segment_path(&dir.log_dir(), 1)).is_ok());
    }
}

#[derive(Debug)]
struct FailingSync {
    calls: Arc<AtomicUsize>,
    fail_at: usize,
}

impl SyncWriter for FailingSync {
    fn write_and_sync(&mut self, file: &fs::File, buf: &[u8], offset: u64) -> std::io::Result<()> {
        use std::os::unix::fs::FileExt;
        let n = self.calls.fetch_add(1, Ordering::SeqCst);
        file.write_all_at(buf, offset)?;
        if n >= self.fail_at {
            return Err(std::io::Error::from_raw_os_error(libc_eio()));
        }
        file.sync_data()
    }

    fn name(&self) -> &'static str {
        "failing"
    }
}

fn libc_eio() -> i32 {
    5
}

#[test]
fn a_failed_fsync_poisons_the_writer_for_good() {
    let tmp = tempfile::tempdir().unwrap();
    let calls = Arc::new(AtomicUsize::new(0));
    let c = calls.clone();
    let io = IoChoice::Custom(Arc::new(move || {
        Box::new(FailingSync {
            calls: c.clone(),
            fail_at: 3,
        }) as Box<dyn SyncWriter>
    }));
    let dir = DataDir::open(tmp.path()).unwrap();
    let log = Log::open(&dir, options(1 << 20, io)).unwrap();
    for seq in 0..3 {
        log.commit(&record_writes(0, 0, seq)).unwrap();
    }
    let err = log.commit(&record_writes(0, 0, 3)).unwrap_err();
    assert!(matches!(err, LogError::Poisoned(_)), "{err}");
    assert!(err.to_string().contains("poisoned"), "{err}");
    let calls_at_failure = calls.load(Ordering::SeqCst);
    for seq in 4..10 {
        let err = log.commit(&record_writes(0, 0, seq)).unwrap_err();
        assert!(matches!(err, LogError::Poisoned(_)), "{err}");
    }
    assert_eq!(
        calls.load(Ordering::SeqCst),
        calls_at_failure,
        "the writer retried after a failed fsync"
    );
    assert!(matches!(log.close(), Err(LogError::Poisoned(_))));
    drop(dir);
    // The acknowledged records are intact after a restart. The failed one
    // may or may not be there (its bytes were written, the sync failed).
    let all = read_all(tmp.path());
    assert!(all.len() == 3 || all.len() == 4, "{all:?}");
    assert_eq!(&all[..3], &[(0, 0, 0), (0, 0, 1), (0, 0, 2)]);
}

#[test]
fn concurrent_appenders_are_batched_and_all_durable() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = DataDir::open(tmp.path()).unwrap();
    let log = Arc::new(Log::open(&dir, options(64 << 10, IoChoice::IoUring)).unwrap());
    let handles: Vec<_> = (0..16u32)
        .map(|w| {
            let log = log.clone();
            std::thread::spawn(move || {
                (0..100u64)
                    .map(|s| log.commit(&record_writes(1, w, s)).unwrap())
                    .collect::<Vec<_>>()
            })
        })
        .collect();
    let mut tss: Vec<Ts> = handles
        .into_iter()
        .flat_map(|h| h.join().unwrap())
        .collect();
    let counts = log.counts();
    assert_eq!(counts.records, 1600);
    assert!(counts.batches < 1600, "no batching happened: {counts:?}");
    Arc::into_inner(log).unwrap().close().unwrap();
    drop(dir);
    tss.sort();
    tss.dedup();
    assert_eq!(tss.len(), 1600);
    let mut all = read_all(tmp.path());
    all.sort();
    let mut expected: Vec<_> = (0..16u32)
        .flat_map(|w| (0..100u64).map(move |s| (1, w, s)))
        .collect();
    expected.sort();
    assert_eq!(all, expected);
}

#[test]
fn a_second_process_cannot_open_the_directory() {
    let tmp = tempfile::tempdir().unwrap();
    let _dir = DataDir::open(tmp.path()).unwrap();
    let err = DataDir::open(tmp.path()).unwrap_err();
    assert!(err.to_string().contains("in use"), "{err}");
}

#[test]
fn caller_chosen_timestamps_must_increase() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = DataDir::open(tmp.path()).unwrap();
    let log = Log::open(&dir, options(1 << 20, IoChoice::Auto)).unwrap();
    let a = log.commit(&record_writes(0, 0, 0)).unwrap();
    let err = log.append_at(a, &record_writes(0, 0, 1)).unwrap_err();
    assert!(matches!(err, LogError::StaleTimestamp { .. }), "{err}");
    let chosen = Ts(a.0 + 1_000_000_000);
    let t = log.append_at(chosen, &record_writes(0, 0, 1)).unwrap();
    assert_eq!(t.ts(), chosen);
    assert_eq!(t.wait().unwrap(), chosen);
    // Timestamps handed out later stay above the chosen one.
    assert!(log.next_ts() > chosen);
    let c = log.commit(&record_writes(0, 0, 2)).unwrap();
    assert!(c > chosen);
    log.close().unwrap();
    drop(dir);
    assert_eq!(read_all(tmp.path()), vec![(0, 0, 0), (0, 0, 1), (0, 0, 2)]);
}
