//! The console's graph layout on compiled scenarios: columns by the longest path, routes
//! fanning out below one another in route order, if-else branches meeting at their merge,
//! error routes as links of their own, and one SVG element per module and per link.

use switchyard::console::{LinkKind, graph_layout};
use switchyard::scenario::{self, CompileOptions, Scenario};

fn compile(blueprint: serde_json::Value) -> Scenario {
    let registry = switchyard::apps::AppRegistry::build(Default::default()).expect("registry");
    let parsed = scenario::parse(&blueprint.to_string()).expect("parse");
    scenario::compile_with(&parsed, &registry, &CompileOptions { min_interval: 1 })
        .expect("compile")
}

fn position(s: &Scenario, layout: &switchyard::console::Layout, id: u32) -> (usize, usize) {
    layout.position[s.by_id[&id]].expect("placed")
}

#[test]
fn routes_fan_out_in_order_and_error_routes_are_links() {
    let s = compile(serde_json::json!({
        "name": "fan",
        "flow": [
            {"id": 1, "module": "gateway:CustomWebHook", "parameters": {"hook": "h"}},
            {"id": 2, "module": "builtin:BasicRouter", "routes": [
                {"flow": [{"id": 3, "module": "util:ComposeTransformer", "mapper": {"value": "a"}},
                          {"id": 4, "module": "util:ComposeTransformer", "mapper": {"value": "b"}}]},
                {"flow": [{"id": 5, "module": "json:ParseJSON", "mapper": {"json": "{{1.x}}"},
                           "onerror": [{"id": 6, "module": "builtin:Ignore"}]}]},
                {"fallback": true, "flow": [{"id": 7, "module": "util:ComposeTransformer", "mapper": {"value": "c"}}]}
            ]}
        ]
    }));
    let layout = graph_layout(&s);
    assert_eq!(position(&s, &layout, 1), (0, 0));
    assert_eq!(position(&s, &layout, 2), (1, 0));
    assert_eq!(position(&s, &layout, 3), (2, 0));
    assert_eq!(position(&s, &layout, 4), (3, 0));
    assert_eq!(position(&s, &layout, 5), (2, 1));
    // With nothing after the failing module, its error route goes on along its row.
    assert_eq!(position(&s, &layout, 6), (3, 1));
    assert_eq!(position(&s, &layout, 7), (2, 2), "the fallback comes last");
    let kinds: Vec<(u32, u32, LinkKind)> = layout
        .links
        .iter()
        .map(|l| (s.nodes[l.from].id, s.nodes[l.to].id, l.kind.clone()))
        .collect();
    assert_eq!(kinds.len(), 6);
    assert!(kinds.contains(&(
        2,
        7,
        LinkKind::Route {
            index: 2,
            fallback: true
        }
    )));
    assert!(kinds.contains(&(5, 6, LinkKind::OnError)));
}

#[test]
fn if_else_branches_merge() {
    let s = compile(serde_json::json!({
        "name": "branches",
        "flow": [
            {"id": 1, "module": "gateway:CustomWebHook", "parameters": {"hook": "h"}},
            {"id": 2, "module": "builtin:BasicIfElse", "mapper": null, "branches": [
                {"type": "condition", "label": "big", "merge": true,
                 "conditions": [[{"a": "{{1.n}}", "o": "number:greater", "b": 1}]],
                 "flow": [{"id": 3, "module": "util:ComposeTransformer", "mapper": {"value": "big"}},
                          {"id": 4, "module": "util:ComposeTransformer", "mapper": {"value": "very"}}]},
                {"type": "else", "label": "small", "merge": true,
                 "flow": [{"id": 5, "module": "util:ComposeTransformer", "mapper": {"value": "small"}}]}
            ]},
            {"id": 6, "module": "builtin:BasicMerge", "outputs": [
                {"name": "v", "mappings": ["{{4.value}}", "{{5.value}}"]}]},
            {"id": 7, "module": "util:ComposeTransformer", "mapper": {"value": "after"}}
        ]
    }));
    let layout = graph_layout(&s);
    assert_eq!(position(&s, &layout, 3), (2, 0));
    assert_eq!(position(&s, &layout, 5), (2, 1));
    // The merge sits right of the longer branch, on the first branch's row.
    assert_eq!(position(&s, &layout, 6), (4, 0));
    assert_eq!(position(&s, &layout, 7), (5, 0));
    let into_merge: Vec<u32> = layout
        .links
        .iter()
        .filter(|l| s.nodes[l.to].id == 6)
        .map(|l| s.nodes[l.from].id)
        .collect();
    assert_eq!(into_merge.len(), 2, "{into_merge:?}");
    assert!(into_merge.contains(&4) && into_merge.contains(&5));
}
