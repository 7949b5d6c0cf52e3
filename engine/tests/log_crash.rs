//! Crash test of the transaction log with real `kill -9`: a child process
//! (this test binary, re-run in child mode) appends from several threads
//! and prints each record as soon as its append is acknowledged; the parent
//! SIGKILLs it at a random moment, reopens the log, and checks that every
//! acknowledged record is present and byte-identical, that nothing partial
//! is visible, and that the log verifies clean. 20 cycles by default;
//! `LOG_CRASH_CYCLES=N` for more.

mod common;

use std::collections::HashSet;
use std::io::{BufRead, BufReader, Write};
use std::path::Path;
use std::process::{Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use common::{identify, record_writes};
use engine::dir::DataDir;
use engine::log::{report, scan_log, Check, IoChoice, Log, LogOptions};
use rand::Rng;

const CHILD_ENV: &str = "LOG_CRASH_CHILD_DIR";
const CYCLE_ENV: &str = "LOG_CRASH_CHILD_CYCLE";
const WRITERS: u32 = 8;
/// The child stops by itself after this long, should the parent not kill it.
const CHILD_LIFETIME: Duration = Duration::from_secs(20);
/// Records per writer at most, so the child is bounded in count too.
const CHILD_RECORDS_MAX: u64 = 200_000;

fn child_options(cycle: u32) -> LogOptions {
    LogOptions {
        // Small segments, so kills also land around segment rolls.
        segment_bytes: 256 << 10,
        io: if cycle.is_multiple_of(2) {
            IoChoice::IoUring
        } else {
            IoChoice::Pwrite
        },
        ..LogOptions::default()
    }
}

/// The child: append until killed, print `ack cycle writer seq` per
/// acknowledged record.
#[test]
#[ignore = "runs only as the crash test's child process"]
fn crash_child() {
    let Ok(dir) = std::env::var(CHILD_ENV) else {
        return;
    };
    let cycle: u32 = std::env::var(CYCLE_ENV).unwrap().parse().unwrap();
    let data = DataDir::open(&dir).unwrap();
    let log = Arc::new(Log::open(&data, child_options(cycle)).unwrap());
    let out = Arc::new(Mutex::new(std::io::stdout()));
    println!("crash-child-ready");
    let deadline = Instant::now() + CHILD_LIFETIME;
    let handles: Vec<_> = (0..WRITERS)
        .map(|w| {
            let log = log.clone();
            let out = out.clone();
            std::thread::spawn(move || {
                for seq in 0..CHILD_RECORDS_MAX {
                    if Instant::now() > deadline {
                        break;
                    }
                    log.commit(&record_writes(cycle, w, seq)).unwrap();
                    let mut o = out.lock().unwrap();
                    writeln!(o, "ack {cycle} {w} {seq}").unwrap();
                    o.flush().unwrap();
                }
            })
        })
        .collect();
    for h in handles {
        h.join().unwrap();
    }
}

fn run_cycle(dir: &Path, cycle: u32, kill_after: Duration, acked: &mut HashSet<(u32, u32, u64)>) {
    let exe = std::env::current_exe().unwrap();
    let mut child = Command::new(exe)
        .args([
            "--exact",
            "crash_child",
            "--ignored",
            "--nocapture",
            "--test-threads=1",
        ])
        .env(CHILD_ENV, dir)
        .env(CYCLE_ENV, cycle.to_string())
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let stdout = child.stdout.take().unwrap();
    let lines = Arc::new(Mutex::new(Vec::<String>::new()));
    let reader = {
        let lines = lines.clone();
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines() {
                let Ok(line) = line else { break };
                lines.lock().unwrap().push(line);
            }
        })
    };
    // Wait for the child to be ready (bounded), then let it run a while.
    let started = Instant::now();
    // libtest prints "test crash_child ... " without a newline first, so
    // markers are searched for, not matched whole.
    while !lines
        .lock()
        .unwrap()
        .iter()
        .any(|l| l.ends_with("crash-child-ready"))
    {
        assert!(
            started.elapsed() < Duration::from_secs(30),
            "crash child never became ready"
        );
        if let Some(status) = child.try_wait().unwrap() {
            panic!("crash child exited early with {status}");
        }
        std::thread::sleep(Duration::from_millis(2));
    }
    std::thread::sleep(kill_after);
    child.kill().unwrap(); // SIGKILL
    child.wait().unwrap();
    reader.join().unwrap();
    for line in lines.lock().unwrap().iter() {
        // Only whole lines count as acknowledged: `lines()` drops a final
        // line cut short by the kill only if it lacks its newline, so also
        // insist on exactly three numbers.
        let mut parts = line.split(' ');
        if parts.next() != Some("ack") {
            continue;
        }
        let nums: Vec<u64> = parts.filter_map(|p| p.parse().ok()).collect();
        if let [c, w, s] = nums[..] {
            acked.insert((c as u32, w as u32, s));
        }
    }
}

#[test]
fn acknowledged_records_survive_sigkill() {
    let cycles: u32 = std::env::var("LOG_CRASH_CYCLES")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(20);
    let tmp = tempfile::tempdir().unwrap();
    let mut rng = rand::thread_rng();
    let mut acked = HashSet::new();
    let mut total_present = 0usize;
    for cycle in 0..cycles {
        let kill_after = Duration::from_millis(rng.gen_range(20..300));
        run_cycle(tmp.path(), cycle, kill_after, &mut acked);

        let data = DataDir::open(tmp.path()).unwrap();
        // What a reader sees before repair: intact frames only.
        let v = report::verify(&data).unwrap_or_else(|e| panic!("cycle {cycle}: {e}"));
        // Reopen repairs (cuts any torn tail) and must then be clean.
        let log =
            Log::open(&data, child_options(cycle)).unwrap_or_else(|e| panic!("cycle {cycle}: {e}"));
        assert_eq!(log.recovery().records, v.records, "cycle {cycle}");
        log.close().unwrap();
        let after = report::verify(&data).unwrap();
        assert!(
            after.torn_tail.is_none(),
            "cycle {cycle}: torn tail left after reopen"
        );

        let scanned = scan_log(&data.log_dir(), Check::DecodeBodies).unwrap();
        let mut present = HashSet::new();
        let mut last_ts = None;
        for r in scanned.records() {
            assert!(
                last_ts < Some(r.ts()),
                "cycle {cycle}: timestamps not increasing"
            );
            last_ts = Some(r.ts());
            let id = identify(&r.decode().unwrap());
            assert!(
                present.insert(id),
                "cycle {cycle}: record {id:?} appears twice"
            );
        }
        let missing: Vec<_> = acked.difference(&present).take(5).collect();
        assert!(
            missing.is_empty(),
            "cycle {cycle}: acknowledged records lost: {missing:?}"
        );
        assert!(
            present.len() >= total_present,
            "cycle {cycle}: records disappeared"
        );
        total_present = present.len();
    }
    assert!(
        acked.len() > cycles as usize,
        "the children acknowledged too little to prove anything"
    );
    eprintln!(
        "{cycles} kill cycles, {} acknowledged records, {total_present} present",
        acked.len()
    );
}
