//! `logtool compact`, `history` and `export` as an operator runs them: the
//! real binary over a data directory written through the database, most of
//! whose versions are superseded. A dry run changes nothing; a compaction
//! keeps every document's latest state (the export before and after is the
//! same) and shrinks the directory, then `verify` is clean and `history`
//! shows what is left; bad input and a busy directory are refused with
//! messages that say what was wrong.

mod common;

use std::path::Path;
use std::process::Output;

use common::{json_lines, logtool, text};
use engine::db::{Database, DbOptions};
use engine::dir::DataDir;
use engine::id::DocumentId;
use engine::log::LogOptions;
use engine::value::{Object, Value};

/// 60 messages, each replaced 9 times (so 90% of the versions are
/// superseded), 6 of them deleted half way; small segments so most are
/// sealed.
fn write(data: &Path) -> Vec<DocumentId> {
    let dir = DataDir::open(data).unwrap();
    let db = Database::open(
        &dir,
        DbOptions {
            log: LogOptions {
                segment_bytes: 16 << 10,
                ..LogOptions::default()
            },
            checkpoint_every_bytes: None,
            ..DbOptions::default()
        },
    )
    .unwrap();
    let doc = |i: usize, v: usize| {
        Object::from([
            ("n".to_string(), Value::Float64(i as f64)),
            ("v".to_string(), Value::Float64(v as f64)),
            (
                "body".to_string(),
                Value::String(format!("{i}-{v}-").repeat(150)),
            ),
        ])
    };
    let mut tx = db.begin();
    let ids: Vec<DocumentId> = (0..60)
        .map(|i| tx.insert("messages", doc(i, 0)).unwrap())
        .collect();
    db.commit(tx).unwrap();
    for v in 1..10 {
        for (i, id) in ids.iter().enumerate() {
            if i % 10 == 0 && v > 5 {
                continue; // deleted
            }
            let mut tx = db.begin();
            tx.replace(*id, doc(i, v)).unwrap();
            db.commit(tx).unwrap();
        }
        if v == 5 {
            let mut tx = db.begin();
            for id in ids.iter().step_by(10) {
                tx.delete(*id).unwrap();
            }
            db.commit(tx).unwrap();
            // As a running server would have one.
            db.checkpoint().unwrap();
        }
    }
    ids
}

#[test]
fn compact_dry_run_then_compact_keeps_the_documents_and_frees_space() {
    let tmp = tempfile::tempdir().unwrap();
    let ids = write(tmp.path());
    let export = |args: &[&str]| {
        let mut a = vec!["export", "--table", "messages"];
        a.extend_from_slice(args);
        let o = logtool(tmp.path(), &a);
        assert_eq!(o.status.code(), Some(0), "{}", text(&o));
        json_lines(&o)
    };
    let docs_before = export(&[]);
    assert_eq!(docs_before.len(), 54);
    assert_eq!(docs_before[0]["v"], 9.0);
    let stats = |o: &Output| -> serde_json::Value { serde_json::from_slice(&o.stdout).unwrap() };
    let stats_before = stats(&logtool(tmp.path(), &["stats", "--json"]));

    let o = logtool(tmp.path(), &["compact", "--dry-run", "--keep-history", "0"]);
    assert_eq!(o.status.code(), Some(0), "{}", text(&o));
    let t = text(&o);
    eprintln!("{t}");
    assert!(
        t.contains("would be rewritten") || t.contains("would") && t.contains("dry run"),
        "{t}"
    );
    assert_eq!(
        stats(&logtool(tmp.path(), &["stats", "--json"])),
        stats_before,
        "a dry run changed the log"
    );

    let o = logtool(tmp.path(), &["compact", "--keep-history", "0", "--json"]);
    assert_eq!(o.status.code(), Some(0), "{}", text(&o));
    let r: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    let log = &r["log"];
    assert!(
        log["writes_after"].as_u64().unwrap() * 5 < log["writes_before"].as_u64().unwrap(),
        "{r}"
    );
    let (before, after) = (
        r["space_before"]["total_bytes"].as_u64().unwrap(),
        r["space_after"]["total_bytes"].as_u64().unwrap(),
    );
    let log_freed =
        log["file_bytes_before"].as_u64().unwrap() - log["file_bytes_after"].as_u64().unwrap();
    assert!(
        after < before && (before - after) as f64 >= 0.9 * log_freed as f64,
        "{r}"
    );
    assert!(r["checkpoint"]["ts"].as_u64().is_some(), "{r}");

    // The same documents, byte for byte in their JSON form.
    assert_eq!(export(&[]), docs_before);
    let o = logtool(tmp.path(), &["verify"]);
    assert_eq!(o.status.code(), Some(0), "{}", text(&o));
    assert!(
        text(&o).contains("compacted segment(s) from compaction 1"),
        "{}",
        text(&o)
    );

    // A message's history: only its last version before the horizon is left.
    let o = logtool(tmp.path(), &["history", "--id", &ids[1].encode()]);
    assert_eq!(o.status.code(), Some(0), "{}", text(&o));
    let t = text(&o);
    assert_eq!(t.matches("\"v\":").count(), 1, "{t}");
    assert!(
        t.contains("\"v\":9") && t.contains("keeps history from ts"),
        "{t}"
    );
    let o = logtool(tmp.path(), &["history", "--json", "--id", &ids[0].encode()]);
    assert_eq!(o.status.code(), Some(0), "{}", text(&o));
    assert!(json_lines(&o).is_empty(), "a deleted message left versions");

    // Exports before the history start are refused, saying where it starts.
    let o = logtool(tmp.path(), &["export", "--table", "messages", "--ts", "1"]);
    assert_eq!(o.status.code(), Some(2));
    assert!(
        text(&o).contains("before the log's history"),
        "{}",
        text(&o)
    );
    let o = logtool(tmp.path(), &["export", "--table", "nope"]);
    assert_eq!(o.status.code(), Some(2));
    assert!(
        text(&o).contains("no table \"nope\"") && text(&o).contains("messages"),
        "{}",
        text(&o)
    );
}

#[test]
fn compact_refuses_a_busy_directory_and_a_bad_duration() {
    let tmp = tempfile::tempdir().unwrap();
    write(tmp.path());
    let o = logtool(tmp.path(), &["compact", "--keep-history", "7x"]);
    assert_eq!(o.status.code(), Some(2));
    assert!(text(&o).contains("unknown unit 'x'"), "{}", text(&o));

    let held = DataDir::open(tmp.path()).unwrap();
    let o = logtool(tmp.path(), &["compact"]);
    assert_eq!(o.status.code(), Some(2));
    assert!(
        text(&o).contains("in use by another process"),
        "{}",
        text(&o)
    );
    drop(held);

    // Leftovers of a compaction that never committed are removed first.
    std::fs::write(
        tmp.path()
            .join("log")
            .join("00000000000000000001.seg.compact"),
        b"half written",
    )
    .unwrap();
    let o = logtool(tmp.path(), &["stats"]);
    assert_eq!(o.status.code(), Some(0), "{}", text(&o));
    assert!(
        text(&o).contains("removed 1 file(s) of a compaction interrupted"),
        "{}",
        text(&o)
    );
    assert!(!tmp
        .path()
        .join("log")
        .join("00000000000000000001.seg.compact")
        .exists());
}
