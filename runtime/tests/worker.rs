//! Runs the fixture app (`tests/fixtures/app/convex`, bundled by the
//! repository's esbuild as the `convex` CLI bundles it) in real Deno
//! workers.

mod worker_support;

use runtime::UdfType;
use serde_json::json;
use worker_support::*;

#[test]
fn smoke() {
    let rt = shared_runtime();
    let modules = fixture_modules();
    let store = Store::default();
    let mut h = TestHandler::new(&rt, &modules, &store);
    let out = run(
        &rt,
        &mut h,
        "messages:hello",
        UdfType::Query,
        json!({"name": "x"}),
    );
    println!("{out:?}");
    let a = rt.analyze(&modules);
    println!("{a:#?}");
}
