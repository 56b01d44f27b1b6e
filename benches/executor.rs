//! Executor throughput: one webhook bundle through an iterator over 10,000 items → set
//! variable → array aggregator, in-process. Throughput is reported in module operations
//! (Make's counting: trigger 1 + iterator 1 + 10,000 set-variable + aggregator 1).

use criterion::{BatchSize, Criterion, Throughput, criterion_group, criterion_main};
use serde_json::{Value, json};
use switchyard::engine::{self, RunInput, Status};
use switchyard::scenario;

// The same allocator as the `switchyard` binary.
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

const ITEMS: usize = 10_000;

fn scenario_text() -> String {
    json!({
        "name": "bench",
        "flow": [
            {"id": 1, "module": "gateway:CustomWebHook", "parameters": {"hook": "bench"}},
            {"id": 2, "module": "builtin:BasicFeeder", "mapper": {"array": "{{1.items}}"}},
            {"id": 3, "module": "util:SetVariable2", "mapper": {"name": "item", "scope": "roundtrip", "value": "{{2.id}}"}},
            {"id": 4, "module": "builtin:BasicAggregator", "parameters": {"feeder": 2}, "mapper": {"id": "{{3.item}}"}}
        ]
    })
    .to_string()
}

fn bench_executor(c: &mut Criterion) {
    let registry =
        switchyard::apps::AppRegistry::build(switchyard::apps::AppOptions::allowing_loopback())
            .expect("registry");
    let scenario = scenario::load(&scenario_text(), &registry).expect("bench scenario loads");
    let items: Vec<Value> = (0..ITEMS)
        .map(|i| json!({"id": i, "name": format!("item {i}")}))
        .collect();
    let bundle = json!({"items": items});
    let runtime = tokio::runtime::Builder::new_current_thread()
        .build()
        .unwrap();

    let check = runtime.block_on(engine::run(
        &scenario,
        RunInput {
            bundles: vec![bundle.clone()],
            ..RunInput::default()
        },
    ));
    assert_eq!(check.status, Status::Success);
    let operations = check.operations;
    assert_eq!(operations, ITEMS as u64 + 3);

    let mut group = c.benchmark_group("executor");
    group.throughput(Throughput::Elements(operations));
    group.sample_size(20);
    group.bench_function("webhook→iterator(10k)→set variable→aggregator", |b| {
        // The webhook payload arrives parsed; copying it is not the executor's work.
        b.iter_batched(
            || RunInput {
                bundles: vec![bundle.clone()],
                ..RunInput::default()
            },
            |input| runtime.block_on(engine::run(&scenario, input)),
            BatchSize::LargeInput,
        )
    });
    group.finish();
}

criterion_group!(benches, bench_executor);
criterion_main!(benches);
