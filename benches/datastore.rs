//! Data store throughput on SQLite, in-process, through the `DataStores` service the
//! `datastore:*` modules call: `get` of existing keys, `add` (replace) of new keys, and a 50/50
//! mix, each with as many calls in flight as `serve` runs executions by default (128;
//! `DATASTORE_BENCH_IN_FLIGHT` to change it). Prints operations per second; the target
//! (issue 12) is at least 20,000 get/add operations per second.
//!
//! `cargo bench --bench datastore` (set `DATASTORE_BENCH_OPS` to change the operations per
//! phase, default 40,000). The database is a fresh data directory opened as `serve` opens it
//! (WAL, `synchronous = FULL`), and with `--sqlite-synchronous normal`'s setting for contrast.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Instant;

use futures::StreamExt;
use serde_json::{Map, Value, json};
use switchyard::module::DataStoresHandle;
use switchyard::module::datastore::{AddMode, DataStore, parse_fields};
use switchyard::store::{NewDataStore, SqliteSync, Store};

// The same allocator as the `switchyard` binary.
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

/// Calls in flight: `serve`'s default concurrency unless `DATASTORE_BENCH_IN_FLIGHT` says.
fn in_flight() -> usize {
    std::env::var("DATASTORE_BENCH_IN_FLIGHT")
        .ok()
        .and_then(|v| v.parse().ok())
        .filter(|n| *n > 0)
        .unwrap_or(switchyard::cli::DEFAULT_CONCURRENCY)
}

fn record(i: usize) -> Map<String, Value> {
    json!({"email": format!("user{i}@example.org"), "count": i, "seen": "2026-01-01T00:00:00Z"})
        .as_object()
        .unwrap()
        .clone()
}

/// Runs `ops` calls of `op` (given the call's number), [`in_flight`] at a time; ops/s.
async fn phase<F, Fut>(name: &str, ops: usize, op: F) -> f64
where
    F: Fn(usize) -> Fut,
    Fut: std::future::Future<Output = ()>,
{
    let started = Instant::now();
    futures::stream::iter(0..ops)
        .map(&op)
        .buffer_unordered(in_flight())
        .collect::<Vec<()>>()
        .await;
    let rate = ops as f64 / started.elapsed().as_secs_f64();
    println!(
        "datastore/{name:<28} {ops:>7} ops in {:>7.3} s  {rate:>10.0} ops/s",
        started.elapsed().as_secs_f64()
    );
    rate
}

async fn bench(sync: SqliteSync, label: &str, ops: usize) {
    let dir = tempfile::tempdir().expect("tempdir");
    let store = Store::open_sqlite_owned(dir.path(), sync)
        .await
        .expect("open sqlite");
    let info: DataStore = store
        .create_datastore(NewDataStore {
            name: "bench",
            id: None,
            fields: parse_fields("email:text,count:number,seen:date").unwrap(),
            max_size_bytes: 1 << 30,
        })
        .await
        .expect("create store");
    let stores: DataStoresHandle = store.datastores_handle();
    let (stores, info) = (&stores, &info);
    let next_key = Arc::new(AtomicUsize::new(0));

    let add = phase(&format!("add ({label})"), ops, |_| {
        let i = next_key.fetch_add(1, Ordering::Relaxed);
        async move {
            stores
                .add(info, Some(&format!("k{i}")), record(i), AddMode::Replace)
                .await
                .expect("add");
        }
    })
    .await;
    let written = next_key.load(Ordering::Relaxed);
    let get = phase(&format!("get ({label})"), ops, |n| async move {
        let key = format!("k{}", (n * 7919) % written);
        assert!(stores.get(info, &key).await.expect("get").is_some());
    })
    .await;
    let mixed = phase(&format!("get/add 50/50 ({label})"), ops, |n| {
        let i = next_key.fetch_add(1, Ordering::Relaxed);
        async move {
            if n % 2 == 0 {
                let key = format!("k{}", (n * 7919) % written);
                assert!(stores.get(info, &key).await.expect("get").is_some());
            } else {
                stores
                    .add(info, Some(&format!("k{i}")), record(i), AddMode::Replace)
                    .await
                    .expect("add");
            }
        }
    })
    .await;
    println!(
        "datastore/summary ({label}): add {add:.0}, get {get:.0}, mixed {mixed:.0} ops/s (target ≥ 20,000 get/add)"
    );
    store.close().await;
}

fn main() {
    // `cargo bench` passes `--bench`; a filter argument is not used.
    let ops: usize = std::env::var("DATASTORE_BENCH_OPS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(40_000);
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .unwrap();
    runtime.block_on(bench(SqliteSync::Full, "synchronous=FULL", ops));
    runtime.block_on(bench(SqliteSync::Normal, "synchronous=NORMAL", ops));
}
