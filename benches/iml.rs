//! IML evaluation benchmarks: a simple path, a function call, and a text template with three
//! references, each evaluated over a small bundle. Targets: simple path ≤ 100 ns,
//! three-reference template ≤ 1 µs. Run with `cargo bench --bench iml`.

use std::hint::black_box;

use criterion::{Criterion, criterion_group, criterion_main};
use serde_json::{Value, json};
use switchyard::expr::{Dialect, Scope, Template};

/// One module's output, as the executor would hold it for the current bundle.
struct BenchScope {
    outputs: Vec<(u32, Value)>,
}

impl Scope for BenchScope {
    fn module_output(&self, id: u32) -> Option<&Value> {
        self.outputs.iter().find(|(i, _)| *i == id).map(|(_, v)| v)
    }
}

fn scope() -> BenchScope {
    BenchScope {
        outputs: vec![(
            1,
            json!({
                "id": 1042,
                "user": {"name": "Ada Lovelace", "id": 7, "roles": ["admin", "dev"]},
                "first": "Ada",
                "last": "Lovelace",
                "email": "Ada.Lovelace@Example.com",
                "created": "2016-12-08T15:55:57.536Z",
                "items": [{"sku": "A-1", "qty": 2}, {"sku": "B-2", "qty": 1}]
            }),
        )],
    }
}

fn bench(c: &mut Criterion) {
    let scope = scope();
    let cases = [
        ("simple path", "{{1.user.name}}"),
        ("function call", "{{lower(1.email)}}"),
        (
            "template with 3 references",
            "Hello {{1.first}} {{1.last}} <{{1.email}}>",
        ),
    ];
    for (name, src) in cases {
        let template = match Template::parse(src, Dialect::Scenario) {
            Ok(t) => t,
            Err(e) => panic!("{src}: {e}"),
        };
        c.bench_function(name, |b| {
            b.iter(|| black_box(&template).eval(black_box(&scope)))
        });
    }
    c.bench_function("parse template with 3 references", |b| {
        b.iter(|| {
            Template::parse(
                black_box("Hello {{1.first}} {{1.last}} <{{1.email}}>"),
                Dialect::Scenario,
            )
        })
    });
}

criterion_group!(benches, bench);
criterion_main!(benches);
