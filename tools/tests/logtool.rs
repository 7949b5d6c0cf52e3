//! `logtool` as an operator runs it: the real binary over a data directory
//! written through the engine. `verify` exits 0 on a clean log and 1 naming
//! the segment and offset of a flipped bit; `stats` and `inspect` report
//! what was written, in text and JSON; a missing directory and a directory
//! held by another process are refused with clear messages.

mod common;

use std::path::Path;

use common::{json_lines, logtool, text};
use engine::dir::DataDir;
use engine::id::{DocumentId, InternalId, TableNumber};
use engine::log::{scan_log, Check, DocumentWrite, Log, LogOptions};
use engine::ts::Ts;
use engine::value::{Object, Value};

fn write_log(data: &Path, n: u32) -> Vec<Ts> {
    let dir = DataDir::open(data).unwrap();
    let log = Log::open(&dir, LogOptions::default()).unwrap();
    let tss = (0..n)
        .map(|i| {
            let mut doc = Object::new();
            doc.insert("n".into(), Value::Float64(f64::from(i)));
            // Every third record large and repetitive: it gets compressed.
            let body = if i % 3 == 0 {
                "x".repeat(10_000)
            } else {
                format!("message {i}")
            };
            doc.insert("body".into(), Value::String(body));
            let mut internal = [0u8; 16];
            internal[0] = i as u8;
            let id = DocumentId {
                table: TableNumber::new(10001).unwrap(),
                internal: InternalId(internal),
            };
            let mut writes = vec![DocumentWrite {
                id,
                document: Some(doc),
            }];
            if i == 4 {
                writes.push(DocumentWrite { id, document: None });
            }
            log.commit(&writes).unwrap()
        })
        .collect();
    log.close().unwrap();
    tss
}

#[test]
fn verify_stats_and_inspect_on_a_clean_log() {
    let tmp = tempfile::tempdir().unwrap();
    let tss = write_log(tmp.path(), 10);

    let o = logtool(tmp.path(), &["verify"]);
    assert_eq!(o.status.code(), Some(0), "{}", text(&o));
    assert!(
        text(&o).contains("10 record(s), 11 write(s)"),
        "{}",
        text(&o)
    );

    let o = logtool(tmp.path(), &["stats", "--json"]);
    assert_eq!(o.status.code(), Some(0), "{}", text(&o));
    let s: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    assert_eq!(s["records"], 10);
    assert_eq!(s["writes"], 11);
    assert_eq!(s["segments"], 1);
    assert_eq!(s["compressed_records"], 4);
    assert!(s["compression_ratio"].as_f64().unwrap() > 2.0, "{s}");
    assert_eq!(s["first_ts"], tss[0].0);
    assert_eq!(s["last_ts"], tss[9].0);
    let o = logtool(tmp.path(), &["stats"]);
    assert!(text(&o).contains("time range"), "{}", text(&o));

    let o = logtool(
        tmp.path(),
        &[
            "inspect",
            "--json",
            "--ts",
            &tss[3].0.to_string(),
            "--limit",
            "2",
            "--documents",
        ],
    );
    assert_eq!(o.status.code(), Some(0), "{}", text(&o));
    let lines = json_lines(&o);
    assert_eq!(lines.len(), 2);
    assert_eq!(lines[0]["ts"], tss[3].0);
    assert_eq!(
        lines[0]["writes"][0]["document"]["body"],
        "x".repeat(10_000)
    );
    assert_eq!(lines[0]["compressed"], true);
    assert_eq!(lines[1]["writes"][0]["document"]["n"], 4.0);
    assert_eq!(lines[1]["writes"][1]["op"], "delete");
    assert_eq!(lines[1]["writes"][1]["table"], 10001);

    let o = logtool(tmp.path(), &["inspect", "--limit", "1"]);
    let t = text(&o);
    assert!(
        t.contains(&format!("ts {}", tss[0].0)) && t.contains("1 write(s)") && t.contains("put "),
        "{t}"
    );
}

#[test]
fn verify_names_segment_and_offset_of_a_flipped_bit() {
    let tmp = tempfile::tempdir().unwrap();
    write_log(tmp.path(), 6);
    let (seg, off) = {
        let dir = DataDir::open(tmp.path()).unwrap();
        let log = scan_log(&dir.log_dir(), Check::Checksums).unwrap();
        let s = &log.segments[0];
        (s.path.clone(), s.frames[2].offset)
    };
    let mut bytes = std::fs::read(&seg).unwrap();
    bytes[off as usize + 45] ^= 0x40;
    std::fs::write(&seg, &bytes).unwrap();
    let o = logtool(tmp.path(), &["verify"]);
    assert_eq!(o.status.code(), Some(1), "{}", text(&o));
    let t = text(&o);
    assert!(
        t.contains(&seg.display().to_string()) && t.contains(&format!("byte offset {off}")),
        "{t}"
    );
}

#[test]
fn refuses_a_missing_or_busy_directory() {
    let tmp = tempfile::tempdir().unwrap();
    let o = logtool(&tmp.path().join("nope"), &["verify"]);
    assert_eq!(o.status.code(), Some(2));
    assert!(text(&o).contains("no data directory at"), "{}", text(&o));
    assert!(
        !tmp.path().join("nope").exists(),
        "logtool created a directory"
    );

    let _held = DataDir::open(tmp.path()).unwrap();
    let o = logtool(tmp.path(), &["stats"]);
    assert_eq!(o.status.code(), Some(2));
    assert!(
        text(&o).contains("in use by another process"),
        "{}",
        text(&o)
    );
}

#[test]
fn inspect_shows_a_documents_history_and_the_tables() {
    use engine::db::{Database, DbOptions, FieldPath};
    let tmp = tempfile::tempdir().unwrap();
    let id = {
        let dir = DataDir::open(tmp.path()).unwrap();
        let db = Database::open(&dir, DbOptions::default()).unwrap();
        let mut tx = db.begin();
        tx.add_index(
            "messages",
            "by_channel",
            &[FieldPath::single("channel").unwrap()],
        )
        .unwrap();
        let mut doc = Object::new();
        doc.insert("channel".into(), Value::String("general".into()));
        let id = tx.insert("messages", doc).unwrap();
        db.commit(tx).unwrap();
        let mut tx = db.begin();
        let patch = std::collections::BTreeMap::from([(
            "channel".to_string(),
            Some(Value::String("random".into())),
        )]);
        tx.patch(id, patch).unwrap();
        db.commit(tx).unwrap();
        let mut tx = db.begin();
        tx.delete(id).unwrap();
        db.commit(tx).unwrap();
        id
    };
    let o = logtool(tmp.path(), &["inspect", "--id", &id.encode(), "--json"]);
    assert_eq!(o.status.code(), Some(0), "{}", text(&o));
    let versions = json_lines(&o);
    assert_eq!(versions.len(), 3);
    assert_eq!(versions[0]["document"]["channel"], "general");
    assert_eq!(versions[1]["document"]["channel"], "random");
    assert_eq!(versions[2]["document"], serde_json::Value::Null);
    assert_eq!(versions[0]["document"]["_id"], id.encode());

    let o = logtool(tmp.path(), &["inspect", "--tables"]);
    let t = text(&o);
    assert!(t.contains("messages (table 10001): 0 document(s)"), "{t}");
    assert!(
        t.contains("by_channel [channel, _creationTime, _id]"),
        "{t}"
    );

    let o = logtool(tmp.path(), &["inspect", "--id", "not-an-id"]);
    assert_eq!(o.status.code(), Some(2));
    assert!(text(&o).contains("--id"), "{}", text(&o));
}

/// A data directory written through the database: a table with a user
/// index (added after some documents, so backfilled), patches, a delete
/// and a checkpoint, then more commits after it.
fn write_database_with_checkpoint(data: &Path) {
    use engine::db::{Database, DbOptions, FieldPath};
    let dir = DataDir::open(data).unwrap();
    let options = DbOptions {
        checkpoint_every_bytes: None,
        ..DbOptions::default()
    };
    let db = Database::open(&dir, options).unwrap();
    let mut ids = Vec::new();
    for i in 0..30 {
        let mut tx = db.begin();
        let mut doc = Object::new();
        let channel = ["general", "random", "help"][i % 3];
        doc.insert("channel".into(), Value::String(channel.into()));
        doc.insert("n".into(), Value::Int64(i as i64));
        ids.push(tx.insert("messages", doc).unwrap());
        db.commit(tx).unwrap();
        if i == 10 {
            let mut tx = db.begin();
            tx.add_index(
                "messages",
                "by_channel",
                &[FieldPath::single("channel").unwrap()],
            )
            .unwrap();
            db.commit(tx).unwrap();
        }
    }
    db.wait_for_index("messages", "by_channel", std::time::Duration::from_secs(10))
        .unwrap();
    let mut tx = db.begin();
    let patch = std::collections::BTreeMap::from([(
        "channel".to_string(),
        Some(Value::String("random".into())),
    )]);
    tx.patch(ids[0], patch).unwrap();
    tx.delete(ids[1]).unwrap();
    db.commit(tx).unwrap();
    db.checkpoint().unwrap().expect("a checkpoint was written");
    let mut tx = db.begin();
    tx.delete(ids[2]).unwrap();
    db.commit(tx).unwrap();
}

fn read_manifest(data: &Path) -> engine::db::Manifest {
    let path = data
        .join(engine::db::CHECKPOINT_DIR)
        .join(engine::db::MANIFEST_FILE);
    serde_json::from_slice(&std::fs::read(path).unwrap()).unwrap()
}

#[test]
fn verify_checks_a_checkpoint_against_the_log() {
    let tmp = tempfile::tempdir().unwrap();
    write_database_with_checkpoint(tmp.path());
    let manifest = read_manifest(tmp.path());

    let o = logtool(tmp.path(), &["verify"]);
    assert_eq!(o.status.code(), Some(0), "{}", text(&o));
    let t = text(&o);
    assert!(
        t.contains(&format!("ok: checkpoint at ts {}", manifest.ts.0)) && t.contains("8 index(es)"),
        "{t}"
    );
    assert!(
        t.contains("messages (table 10001): 28 document(s), 29 at the checkpoint"),
        "{t}"
    );

    let o = logtool(tmp.path(), &["verify", "--json"]);
    assert_eq!(o.status.code(), Some(0), "{}", text(&o));
    let v: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    assert!(v["records"].as_u64().unwrap() >= 33, "{v}");
    let c = &v["checkpoint"];
    assert_eq!(c["checkpoint_ts"], manifest.ts.0);
    assert_eq!(c["indexes_checked"], 8);
    // messages: 29 documents in 3 indexes; _tables: 1 in 3; _index: 1 in 2.
    assert_eq!(c["entries_checked"], 29 * 3 + 3 + 2);
    assert_eq!(c["mismatch_count"], 0);
    let messages = c["tables"]
        .as_array()
        .unwrap()
        .iter()
        .find(|t| t["name"] == "messages")
        .unwrap();
    assert_eq!(messages["documents"], 28);
    assert_eq!(messages["documents_at_checkpoint"], 29);

    // A log without a checkpoint still verifies, saying so.
    let tmp = tempfile::tempdir().unwrap();
    write_log(tmp.path(), 3);
    let o = logtool(tmp.path(), &["verify"]);
    assert_eq!(o.status.code(), Some(0), "{}", text(&o));
    assert!(text(&o).contains("no checkpoint"), "{}", text(&o));
}

#[test]
fn verify_names_the_index_and_key_of_an_altered_checkpoint_entry() {
    use engine::checkpoint::btree::{BTree, BTreeWriter};
    let tmp = tempfile::tempdir().unwrap();
    write_database_with_checkpoint(tmp.path());
    let manifest = read_manifest(tmp.path());
    let ix = manifest
        .indexes
        .iter()
        .find(|i| i.name == "by_channel")
        .unwrap();
    let file = tmp
        .path()
        .join(engine::db::CHECKPOINT_DIR)
        .join(&manifest.dir)
        .join(&ix.file);
    let entries: Vec<(Vec<u8>, Vec<u8>)> = BTree::open(&file)
        .unwrap()
        .iter()
        .map(|r| r.map(|(k, v)| (k.to_vec(), v.into_owned())).unwrap())
        .collect();
    // Rewrite the file, structurally valid, with one document changed:
    // "help" becomes "hemp" in the first entry of channel help.
    let (at, pos) = entries
        .iter()
        .enumerate()
        .find_map(|(i, (_, v))| v.windows(4).position(|w| w == b"help").map(|p| (i, p)))
        .expect("channel help has entries");
    std::fs::remove_file(&file).unwrap();
    let mut w = BTreeWriter::create(&file).unwrap();
    for (i, (k, v)) in entries.iter().enumerate() {
        let mut v = v.clone();
        if i == at {
            v[pos + 2] = b'm';
        }
        w.add(k, &v).unwrap();
    }
    w.finish().unwrap();
    assert!(BTree::open(&file).unwrap().check_integrity().is_ok());

    let key_hex: String = entries[at].0.iter().map(|b| format!("{b:02x}")).collect();
    let o = logtool(tmp.path(), &["verify"]);
    assert_eq!(o.status.code(), Some(1), "{}", text(&o));
    let t = text(&o);
    assert!(
        t.contains(&format!("index messages.by_channel key {key_hex}"))
            && t.contains("hemp")
            && t.contains("CORRUPT"),
        "{t}"
    );

    let o = logtool(tmp.path(), &["verify", "--json"]);
    assert_eq!(o.status.code(), Some(1), "{}", text(&o));
    let v: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    let c = &v["checkpoint"];
    assert_eq!(c["mismatch_count"], 1);
    assert_eq!(c["mismatches"][0]["index"], "messages.by_channel");
    assert_eq!(c["mismatches"][0]["key"], key_hex.as_str());
}
