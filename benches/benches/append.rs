//! The log's append path: the durable cost of one single-writer commit on
//! the real disk (a temporary directory under the current directory, never
//! /tmp, which may be a tmpfs), and the in-memory cost of preparing a frame
//! (zstd when worth it, CRC32) for a 200-byte and a 64 KiB body.

use std::hint::black_box;
use std::time::Duration;

use benches::{random_document_id, sample_document, sample_text};
use criterion::{criterion_group, criterion_main, BatchSize, BenchmarkId, Criterion, Throughput};
use engine::dir::DataDir;
use engine::log::{DocumentWrite, FrameKind, Log, LogOptions, PreparedFrame};
use rand::RngCore;

fn durable_commit(c: &mut Criterion) {
    let tmp = tempfile::Builder::new()
        .prefix("append-bench-")
        .tempdir_in(".")
        .expect("making a temporary directory under the current directory");
    let data = DataDir::open(tmp.path()).expect("opening the data directory");
    let log = Log::open(&data, LogOptions::default()).expect("opening the log");
    let mut rng = rand::thread_rng();
    let mut writes = vec![DocumentWrite {
        id: random_document_id(&mut rng),
        document: Some(sample_document(200)),
    }];
    let mut g = c.benchmark_group("log_commit");
    g.sample_size(20);
    g.bench_function(
        BenchmarkId::new("durable_1_writer_200B", log.io_backend()),
        |b| {
            b.iter(|| {
                writes[0].id = random_document_id(&mut rng);
                log.commit(&writes).expect("commit")
            })
        },
    );
    g.finish();
    log.close().expect("closing the log");
}

fn prepare_frame(c: &mut Criterion) {
    let mut random = vec![0u8; 64 * 1024];
    rand::thread_rng().fill_bytes(&mut random);
    let bodies = [
        ("200B", sample_text(200, 1).into_bytes()),
        ("64KiB_text", sample_text(64 * 1024, 2).into_bytes()),
        ("64KiB_random", random),
    ];
    let mut g = c.benchmark_group("prepared_frame");
    for (name, body) in &bodies {
        g.throughput(Throughput::Bytes(body.len() as u64));
        g.bench_function(*name, |b| {
            b.iter_batched(
                || body.clone(),
                |raw| black_box(PreparedFrame::new(FrameKind::Commit, raw)),
                BatchSize::SmallInput,
            )
        });
    }
    g.finish();
}

criterion_group! {
    name = append;
    config = Criterion::default()
        .warm_up_time(Duration::from_millis(500))
        .measurement_time(Duration::from_secs(3));
    targets = durable_commit, prepare_frame
}
criterion_main!(append);
