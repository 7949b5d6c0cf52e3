//! Crash test of offline compaction with real `kill -9`: a child process
//! (this test binary, re-run in child mode) runs `compact_offline` on a
//! copy of a data directory whose log is mostly superseded versions; the
//! parent SIGKILLs it at a random moment of its run (the checkpoint, either
//! pass, the swap), reopens the directory and checks that it holds either
//! the old log or the compacted one, whole: exactly one of the two version
//! sets, byte for byte, with every document's latest state intact through
//! the reopened database, and the log, checkpoint and indexes verifying
//! against each other. The compacted version set comes from an
//! uninterrupted run on another copy. 20 cycles by default,
//! `COMPACT_CRASH_CYCLES=N` for more.

mod common;

use std::io::{BufRead, BufReader};
use std::path::Path;
use std::process::{Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use common::versions::{assert_same, latest, log_versions, Versions};
use engine::db::compact::{compact_offline, Horizon, OfflineOptions};
use engine::db::verify::verify_checkpoint;
use engine::db::{Database, DbOptions};
use engine::dir::DataDir;
use engine::id::DocumentId;
use engine::log::report;
use engine::log::LogOptions;
use engine::ts::Ts;
use engine::value::binary::encode_object;
use engine::value::{Object, Value};
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};

const CHILD_ENV: &str = "COMPACT_CRASH_CHILD_DIR";
const HORIZON_ENV: &str = "COMPACT_CRASH_CHILD_HORIZON";
const SEGMENT_BYTES: u64 = 32 << 10;
const DOCS: usize = 200;
const VERSIONS: i64 = 12;
/// How long the parent waits for a child to be ready.
const READY_TIMEOUT: Duration = Duration::from_secs(60);

fn options() -> DbOptions {
    DbOptions {
        log: LogOptions {
            segment_bytes: SEGMENT_BYTES,
            ..LogOptions::default()
        },
        retention: Duration::ZERO,
        checkpoint_every_bytes: None,
        maintenance_interval: Duration::from_secs(3600),
    }
}

fn compact_options(horizon: Ts) -> OfflineOptions {
    OfflineOptions {
        horizon: Horizon::At(horizon),
        dry_run: false,
        segment_bytes: SEGMENT_BYTES,
    }
}

/// The child: compact the directory it is given, saying when it starts
/// and ends.
#[test]
#[ignore = "runs only as the crash test's child process"]
fn compact_crash_child() {
    let Ok(dir) = std::env::var(CHILD_ENV) else {
        return;
    };
    let horizon = Ts(std::env::var(HORIZON_ENV).unwrap().parse().unwrap());
    let data = DataDir::open(&dir).unwrap();
    println!("compact-child-ready");
    compact_offline(&data, &compact_options(horizon), &mut |_| {}).unwrap();
    println!("compact-child-done");
}

/// A workload in which most versions are superseded: `DOCS` documents
/// with `VERSIONS` versions each, some deleted, a user index; the commit
/// timestamps, for horizons.
fn build(path: &Path) -> (Vec<DocumentId>, Vec<Ts>) {
    let dir = DataDir::open(path).unwrap();
    let db = Database::open(&dir, options()).unwrap();
    let mut rng = StdRng::seed_from_u64(7);
    let mut doc = |n: usize, v: i64| -> Object {
        let pad: String = (0..rng.gen_range(100..400))
            .map(|_| char::from(b'a' + rng.gen_range(0..26u8)))
            .collect();
        Object::from([
            ("n".to_string(), Value::Int64(n as i64)),
            ("v".to_string(), Value::Int64(v)),
            ("k".to_string(), Value::Int64((n as i64 + v) % 7)),
            ("pad".to_string(), Value::String(pad)),
        ])
    };
    let mut tx = db.begin();
    tx.add_index(
        "things",
        "by_k",
        &[engine::db::FieldPath::single("k").unwrap()],
    )
    .unwrap();
    db.commit(tx).unwrap();
    let mut ids = Vec::new();
    let mut tss = Vec::new();
    for chunk in (0..DOCS).collect::<Vec<_>>().chunks(20) {
        let mut tx = db.begin();
        for &n in chunk {
            ids.push(tx.insert("things", doc(n, 0)).unwrap());
        }
        tss.push(db.commit(tx).unwrap());
    }
    for v in 1..VERSIONS {
        for chunk in (0..DOCS).collect::<Vec<_>>().chunks(20) {
            let mut tx = db.begin();
            for &n in chunk {
                if n % 17 == 3 && v == VERSIONS / 2 {
                    tx.delete(ids[n]).unwrap();
                } else if !(n % 17 == 3 && v > VERSIONS / 2) {
                    tx.replace(ids[n], doc(n, v)).unwrap();
                }
            }
            tss.push(db.commit(tx).unwrap());
        }
        if v == VERSIONS - 3 {
            // An older checkpoint, so the compaction writes a new one first.
            db.checkpoint().unwrap();
        }
    }
    (ids, tss)
}

fn copy_tree(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).unwrap();
    for e in std::fs::read_dir(from).unwrap() {
        let e = e.unwrap();
        let name = e.file_name();
        if name == "LOCK" {
            continue;
        }
        if e.file_type().unwrap().is_dir() {
            copy_tree(&e.path(), &to.join(&name));
        } else {
            std::fs::copy(e.path(), to.join(&name)).unwrap();
        }
    }
}

/// Every user document through the database, by id, encoded.
fn read_db(path: &Path, ids: &[DocumentId]) -> std::collections::BTreeMap<DocumentId, Vec<u8>> {
    let dir = DataDir::open(path).unwrap();
    let db = Database::open(&dir, options()).unwrap();
    let mut out = std::collections::BTreeMap::new();
    let mut tx = db.begin();
    for id in ids {
        if let Some(d) = tx.get(*id).unwrap() {
            let mut b = Vec::new();
            encode_object(&d, &mut b);
            out.insert(*id, b);
        }
    }
    out
}

/// Runs the child on `dir` and kills it `kill_after` after it is ready;
/// returns whether it had finished by then.
fn run_child(dir: &Path, horizon: Ts, kill_after: Duration) -> bool {
    let exe = std::env::current_exe().unwrap();
    let mut child = Command::new(exe)
        .args([
            "--exact",
            "compact_crash_child",
            "--ignored",
            "--nocapture",
            "--test-threads=1",
        ])
        .env(CHILD_ENV, dir)
        .env(HORIZON_ENV, horizon.0.to_string())
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
    let has = |marker: &str| lines.lock().unwrap().iter().any(|l| l.ends_with(marker));
    let started = Instant::now();
    while !has("compact-child-ready") {
        assert!(
            started.elapsed() < READY_TIMEOUT,
            "the crash child never became ready"
        );
        if let Some(status) = child.try_wait().unwrap() {
            panic!("the crash child exited early with {status}");
        }
        std::thread::sleep(Duration::from_millis(1));
    }
    std::thread::sleep(kill_after);
    child.kill().unwrap(); // SIGKILL
    child.wait().unwrap();
    reader.join().unwrap();
    has("compact-child-done")
}

#[test]
fn a_sigkill_at_any_moment_of_a_compaction_leaves_the_old_or_the_new_log_whole() {
    let cycles: u32 = std::env::var("COMPACT_CRASH_CYCLES")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(20);
    let template = tempfile::tempdir().unwrap();
    let (ids, tss) = build(template.path());
    let old: Versions = log_versions(&DataDir::open(template.path()).unwrap());
    let want_latest = read_db(template.path(), &ids);
    assert_same(&want_latest, &latest(&old), "the database vs its log");
    let mut rng = rand::thread_rng();
    let (mut saw_old, mut saw_new, mut killed_early) = (0, 0, 0);
    for cycle in 0..cycles {
        // A horizon somewhere in the last third of the history.
        let horizon = tss[rng.gen_range(tss.len() * 2 / 3..tss.len() - 5)];
        // The compacted state, and how long a whole run takes.
        let reference = tempfile::tempdir().unwrap();
        copy_tree(template.path(), reference.path());
        let started = Instant::now();
        {
            let d = DataDir::open(reference.path()).unwrap();
            compact_offline(&d, &compact_options(horizon), &mut |_| {}).unwrap();
        }
        let whole = started.elapsed();
        let new: Versions = log_versions(&DataDir::open(reference.path()).unwrap());
        assert!(
            new.len() * 2 < old.len(),
            "cycle {cycle}: too little compacted: {} of {} versions left at horizon {horizon}",
            new.len(),
            old.len()
        );

        let work = tempfile::tempdir().unwrap();
        copy_tree(template.path(), work.path());
        // Anywhere from the start to a little past a whole run (the child
        // also pays for starting up).
        let kill_after = whole.mul_f64(rng.gen_range(0.0..1.3));
        if !run_child(work.path(), horizon, kill_after) {
            killed_early += 1;
        }

        // Reopening finishes or undoes the swap; then one of the two
        // states, whole.
        let latest_now = read_db(work.path(), &ids);
        assert_same(
            &latest_now,
            &want_latest,
            &format!("cycle {cycle}: latest states"),
        );
        let dir = DataDir::open(work.path()).unwrap();
        let now = log_versions(&dir);
        if now == old {
            saw_old += 1;
        } else {
            assert_same(&now, &new, &format!("cycle {cycle}: neither old nor new"));
            saw_new += 1;
        }
        let v = report::verify(&dir).unwrap_or_else(|e| panic!("cycle {cycle}: {e}"));
        assert!(
            v.torn_tail.is_none() && v.leftovers.is_empty(),
            "cycle {cycle}"
        );
        assert!(
            engine::log::compact::pending(&dir.log_dir())
                .unwrap()
                .is_empty(),
            "cycle {cycle}: compaction files left after reopening"
        );
        let c = verify_checkpoint(&dir).unwrap();
        assert!(c.is_clean(), "cycle {cycle}: {:?}", c.mismatches);
    }
    eprintln!(
        "{cycles} kill cycles: {saw_old} left the old log, {saw_new} the compacted one; \
         {killed_early} killed before finishing"
    );
    assert!(
        killed_early > 0,
        "no kill landed before the compaction finished"
    );
}
