//! Measurements of the worker round trip (ignored by default; run with
//! `cargo test -p runtime --release --test worker_bench -- --ignored --nocapture`).
//! Prints the first call's time (worker start and import), an analysis,
//! and the median over many calls of: a trivial query through
//! `Runtime::run`, and one syscall's round trip (from the difference
//! between a query making 1,000 `1.0/get` calls and one making none).

mod worker_support;

use std::time::{Duration, Instant};

use runtime::UdfType;
use serde_json::json;
use worker_support::*;

fn median(mut samples: Vec<Duration>) -> Duration {
    samples.sort();
    samples[samples.len() / 2]
}

#[test]
#[ignore = "measurement; run explicitly"]
fn round_trips() {
    let (rt, _dir) = new_runtime(1);
    let modules = fixture_modules();
    let store = Store::default();
    let mut h = TestHandler::new(&rt, &modules, &store);
    let started = Instant::now();
    ok(&run(
        &rt,
        &mut h,
        "messages:hello",
        UdfType::Query,
        json!({"name": "cold"}),
    ));
    println!(
        "first call (start a worker, import the module): {:?}",
        started.elapsed()
    );
    let started = Instant::now();
    rt.analyze(&modules).unwrap();
    println!(
        "analyze the fixture ({} modules): {:?}",
        modules.len(),
        started.elapsed()
    );
    // Warm up: start the worker, import the modules, let V8 optimize.
    for _ in 0..300 {
        ok(&run(
            &rt,
            &mut h,
            "messages:hello",
            UdfType::Query,
            json!({"name": "w"}),
        ));
    }
    let calls = 1000;
    let mut samples = Vec::with_capacity(calls);
    for i in 0..calls {
        let started = Instant::now();
        let out = run(
            &rt,
            &mut h,
            "messages:hello",
            UdfType::Query,
            json!({"name": i}),
        );
        samples.push(started.elapsed());
        ok(&out);
    }
    println!(
        "trivial query via Runtime::run: median {:?} over {calls} calls",
        median(samples)
    );

    let rounds = 30;
    let n = 1000;
    let mut per_syscall = Vec::with_capacity(rounds);
    for _ in 0..rounds {
        let started = Instant::now();
        ok(&run(
            &rt,
            &mut h,
            "messages:manyGets",
            UdfType::Query,
            json!({"id": "x", "n": 0}),
        ));
        let zero = started.elapsed();
        let started = Instant::now();
        ok(&run(
            &rt,
            &mut h,
            "messages:manyGets",
            UdfType::Query,
            json!({"id": "x", "n": n}),
        ));
        let many = started.elapsed();
        per_syscall.push(many.saturating_sub(zero) / n);
    }
    println!(
        "one async syscall (1.0/get) round trip: median {:?} over {rounds} rounds of {n}",
        median(per_syscall)
    );
}
