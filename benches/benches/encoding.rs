//! Encoding costs of the value model: the log's binary form (encode and
//! decode) of a ~200-byte and a ~10 KiB document, the same documents as
//! Convex JSON (to text and back), and index keys of a few typical tuples.

use std::hint::black_box;
use std::time::Duration;

use benches::{encoded_len, sample_document};
use criterion::{criterion_group, criterion_main, BenchmarkId, Criterion, Throughput};
use engine::value::{binary, json, key, Value};

fn documents() -> [(&'static str, Value); 2] {
    [
        ("200B", Value::Object(sample_document(200))),
        ("10KiB", Value::Object(sample_document(10 * 1024))),
    ]
}

fn binary_form(c: &mut Criterion) {
    let mut g = c.benchmark_group("binary");
    for (name, doc) in documents() {
        let Value::Object(obj) = &doc else {
            unreachable!("sample documents are objects")
        };
        let len = encoded_len(obj);
        g.throughput(Throughput::Bytes(len as u64));
        let mut out = Vec::with_capacity(len);
        g.bench_function(BenchmarkId::new("encode", name), |b| {
            b.iter(|| {
                out.clear();
                binary::encode_object(black_box(obj), &mut out);
                out.len()
            })
        });
        let bytes = out.clone();
        assert_eq!(&binary::decode_object(&bytes).expect("round trip"), obj);
        g.bench_function(BenchmarkId::new("decode", name), |b| {
            b.iter(|| binary::decode_object(black_box(&bytes)).expect("valid encoding"))
        });
    }
    g.finish();
}

fn json_form(c: &mut Criterion) {
    let mut g = c.benchmark_group("json");
    for (name, doc) in documents() {
        let text = json::to_json(&doc).to_string();
        g.throughput(Throughput::Bytes(text.len() as u64));
        g.bench_function(BenchmarkId::new("encode", name), |b| {
            b.iter(|| json::to_json(black_box(&doc)).to_string())
        });
        assert_eq!(json::from_json_str(&text).expect("round trip"), doc);
        g.bench_function(BenchmarkId::new("decode", name), |b| {
            b.iter(|| json::from_json_str(black_box(&text)).expect("valid json"))
        });
    }
    g.finish();
}

fn index_keys(c: &mut Criterion) {
    let mut g = c.benchmark_group("index_key");
    let name = Value::String("user_4711".into());
    let time = Value::Float64(1.7e12);
    let count = Value::Int64(-42);
    let done = Value::Boolean(true);
    let bytes = Value::Bytes(vec![7; 16]);
    let tuples: [(&str, Vec<Option<&Value>>); 4] = [
        ("float", vec![Some(&time)]),
        ("string_float", vec![Some(&name), Some(&time)]),
        ("int_bool_missing", vec![Some(&count), Some(&done), None]),
        ("bytes_string", vec![Some(&bytes), Some(&name)]),
    ];
    let mut out = Vec::with_capacity(64);
    for (label, tuple) in &tuples {
        g.bench_function(*label, |b| {
            b.iter(|| {
                out.clear();
                key::encode_index_key(black_box(tuple), &mut out);
                out.len()
            })
        });
    }
    g.finish();
}

criterion_group! {
    name = encoding;
    config = Criterion::default()
        .warm_up_time(Duration::from_millis(500))
        .measurement_time(Duration::from_secs(2));
    targets = binary_form, json_form, index_keys
}
criterion_main!(encoding);
