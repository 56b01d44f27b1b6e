//! A compiled scenario drawn as an inline SVG, laid out on the server the way Make draws a
//! flow: left to right, one column per step from the trigger, a router's routes fanning out
//! downwards in route order (the fallback marked), an if-else's branches meeting again at
//! their merge, error-handler routes as red dashed links to their modules and directives.
//! A filter is drawn on the link it guards.
//!
//! Invariants: every module of the scenario is one `<g class="node" data-module="ID">` and
//! every link one `<g class="link" data-from="ID" data-to="ID">`; the walk uses explicit
//! stacks (a flow's length never grows the thread's stack); text is escaped by `maud`.

use std::collections::HashMap;

use maud::{Markup, html};
use serde_json::Value;

use crate::scenario::Scenario;
use crate::scenario::compiled::{Directive, Ix, Next, NodeKind};

/// Distance between two columns and two rows, and the nodes' radius, in SVG units.
const COLUMN: f64 = 210.0;
const ROW: f64 = 140.0;
const RADIUS: f64 = 30.0;
const MARGIN_X: f64 = 110.0;
const MARGIN_Y: f64 = 70.0;

/// What a link is, for its look and its label.
#[derive(Debug, Clone, PartialEq)]
pub enum LinkKind {
    Next,
    /// The `n`-th route of a router (0-based), and whether it is the fallback.
    Route {
        index: usize,
        fallback: bool,
    },
    /// The `n`-th branch of an if-else, `else` when it has no condition.
    Branch {
        index: usize,
        otherwise: bool,
    },
    /// An if-else branch's end into its merge.
    Merge,
    /// Into a module's error-handler route.
    OnError,
}

/// One link of the drawing, between module indices.
#[derive(Debug, Clone)]
pub struct Link {
    pub from: Ix,
    pub to: Ix,
    pub kind: LinkKind,
}

/// A laid out scenario: each module's column and row, and the links.
#[derive(Debug, Clone)]
pub struct Layout {
    pub position: Vec<Option<(usize, usize)>>,
    pub links: Vec<Link>,
    pub columns: usize,
    pub rows: usize,
}

/// The links leaving module `ix`, in the order they are drawn (top to bottom).
fn links_from(scenario: &Scenario, ix: Ix) -> Vec<Link> {
    let node = scenario.node(ix);
    let mut out = Vec::new();
    let mut push = |to: Ix, kind: LinkKind| out.push(Link { from: ix, to, kind });
    match &node.kind {
        NodeKind::Router { routes } => {
            for (index, route) in routes.iter().enumerate() {
                if let Some(first) = route.first {
                    let fallback = route.fallback;
                    push(first, LinkKind::Route { index, fallback });
                }
            }
        }
        NodeKind::IfElse { branches } => {
            for (index, branch) in branches.iter().enumerate() {
                let otherwise = branch.condition.is_none();
                let target = match (branch.first, branch.end) {
                    (Some(first), _) => Some((first, LinkKind::Branch { index, otherwise })),
                    (None, Next::Merge { node, .. }) => {
                        Some((node, LinkKind::Branch { index, otherwise }))
                    }
                    (None, Next::Node(node)) => Some((node, LinkKind::Branch { index, otherwise })),
                    (None, Next::End) => None,
                };
                if let Some((to, kind)) = target {
                    push(to, kind);
                }
            }
        }
        _ => {}
    }
    match node.next {
        Next::Node(to) => push(to, LinkKind::Next),
        Next::Merge { node, .. } => push(node, LinkKind::Merge),
        Next::End => {}
    }
    if let Some(handler) = node.on_error {
        push(handler, LinkKind::OnError);
    }
    out
}

/// Lays `scenario` out: columns by the longest path from the trigger (so a merge sits right of
/// every branch that meets in it), rows by a depth-first walk in which a module's first link
/// keeps its row and every further one opens a new row below everything drawn so far.
pub fn layout(scenario: &Scenario) -> Layout {
    let count = scenario.nodes.len();
    let outgoing: Vec<Vec<Link>> = (0..count).map(|ix| links_from(scenario, ix)).collect();
    let links: Vec<Link> = outgoing.iter().flatten().cloned().collect();

    // Columns: longest path, in topological order (Kahn); the flow is acyclic.
    let mut indegree = vec![0usize; count];
    for link in &links {
        indegree[link.to] += 1;
    }
    let mut column = vec![0usize; count];
    let mut ready: Vec<Ix> = (0..count).filter(|&ix| indegree[ix] == 0).collect();
    while let Some(ix) = ready.pop() {
        for link in &outgoing[ix] {
            column[link.to] = column[link.to].max(column[ix] + 1);
            indegree[link.to] -= 1;
            if indegree[link.to] == 0 {
                ready.push(link.to);
            }
        }
    }

    // Rows: depth first from each root (the trigger first), first link on the same row.
    enum Row {
        Same(usize),
        Below,
    }
    let mut position: Vec<Option<(usize, usize)>> = vec![None; count];
    let mut next_row = 0usize;
    let mut roots: Vec<Ix> = scenario.entry.into_iter().collect();
    roots.extend((0..count).filter(|&ix| Some(ix) != scenario.entry));
    for root in roots {
        if position[root].is_some() {
            continue;
        }
        let mut stack = vec![(root, Row::Below)];
        while let Some((ix, row)) = stack.pop() {
            if position[ix].is_some() {
                continue;
            }
            let row = match row {
                Row::Same(r) => r,
                Row::Below => next_row,
            };
            next_row = next_row.max(row + 1);
            position[ix] = Some((column[ix], row));
            for (k, link) in outgoing[ix].iter().enumerate().rev() {
                let spec = if k == 0 { Row::Same(row) } else { Row::Below };
                stack.push((link.to, spec));
            }
        }
    }
    let columns = column.iter().copied().max().map_or(0, |c| c + 1);
    Layout {
        position,
        links,
        columns,
        rows: next_row,
    }
}

/// The app part of a module type (`http` of `http:ActionSendData`).
pub fn app_of(module: &str) -> &str {
    module.split_once(':').map_or(module, |(app, _)| app)
}

/// A stable hue for an app, so one app has one colour everywhere.
fn hue(app: &str) -> u32 {
    app.bytes()
        .fold(7u32, |h, b| h.wrapping_mul(31).wrapping_add(b as u32))
        % 360
}

/// The text drawn inside a node: a directive's name, else the app's initials.
fn badge(scenario: &Scenario, ix: Ix) -> String {
    let node = scenario.node(ix);
    if let NodeKind::Directive(d) = &node.kind {
        return directive_name(*d).to_string();
    }
    let app = app_of(&node.module);
    app.chars().take(2).collect::<String>().to_uppercase()
}

pub fn directive_name(d: Directive) -> &'static str {
    match d {
        Directive::Ignore => "Ignore",
        Directive::Resume => "Resume",
        Directive::Commit => "Commit",
        Directive::Rollback => "Rollback",
        Directive::Break => "Break",
    }
}

/// Per-module facts of one execution, drawn on its nodes.
#[derive(Debug, Clone, Default)]
pub struct NodeRun {
    pub operations: u64,
    pub errors: u64,
}

/// What the drawing adds for an execution: each module's run (absent: it did not run).
pub type Runs = HashMap<u32, NodeRun>;

/// The blueprint's module objects by id, for filters (names, conditions) drawn on links.
pub type Raw<'a> = HashMap<u32, &'a Value>;

/// The SVG of `scenario`; with `runs`, each node carries `data-operations` and errored
/// modules are marked (red ring and the word "error").
pub fn svg(scenario: &Scenario, raw: &Raw<'_>, runs: Option<&Runs>) -> Markup {
    let layout = layout(scenario);
    let center = |ix: Ix| {
        let (c, r) = layout.position[ix].unwrap_or((0, 0));
        (MARGIN_X + c as f64 * COLUMN, MARGIN_Y + r as f64 * ROW)
    };
    let width = MARGIN_X * 2.0 + layout.columns.saturating_sub(1) as f64 * COLUMN;
    let height = MARGIN_Y * 2.0 + layout.rows.saturating_sub(1) as f64 * ROW + 20.0;
    html! {
        svg.flow xmlns="http://www.w3.org/2000/svg" width=(width) height=(height)
            viewBox=(format!("0 0 {width} {height}")) role="img"
            aria-label=(format!("{}: {} modules", scenario.name, scenario.nodes.len())) {
            defs {
                marker #arrow viewBox="0 0 10 10" refX="9" refY="5" markerWidth="7" markerHeight="7" orient="auto-start-reverse" {
                    path d="M 0 0 L 10 5 L 0 10 z" fill="#9aa5b1" {}
                }
                marker #arrow-error viewBox="0 0 10 10" refX="9" refY="5" markerWidth="7" markerHeight="7" orient="auto-start-reverse" {
                    path d="M 0 0 L 10 5 L 0 10 z" fill="#d64545" {}
                }
            }
            @for link in &layout.links {
                (draw_link(scenario, raw, link, center(link.from), center(link.to)))
            }
            @for ix in 0..scenario.nodes.len() {
                (draw_node(scenario, ix, center(ix), runs))
            }
        }
    }
}

fn draw_link(
    scenario: &Scenario,
    raw: &Raw<'_>,
    link: &Link,
    (x1, y1): (f64, f64),
    (x2, y2): (f64, f64),
) -> Markup {
    let from = scenario.node(link.from).id;
    let to = scenario.node(link.to).id;
    let (sx, ex) = (x1 + RADIUS, x2 - RADIUS - 4.0);
    let d = if (y1 - y2).abs() < 0.5 {
        format!("M {sx} {y1} L {ex} {y2}")
    } else {
        let mid = (sx + ex) / 2.0;
        format!("M {sx} {y1} C {mid} {y1}, {mid} {y2}, {ex} {y2}")
    };
    let error = link.kind == LinkKind::OnError;
    let class = match &link.kind {
        LinkKind::OnError => "link error-route",
        LinkKind::Route { fallback: true, .. } => "link route fallback",
        LinkKind::Route { .. } => "link route",
        LinkKind::Branch { .. } => "link branch",
        LinkKind::Merge => "link merge",
        LinkKind::Next => "link",
    };
    let label = match &link.kind {
        LinkKind::Route {
            index,
            fallback: true,
        } => Some(format!("{} · fallback", index + 1)),
        LinkKind::Route { index, .. } => Some(format!("route {}", index + 1)),
        LinkKind::Branch {
            otherwise: true, ..
        } => Some("else".to_string()),
        LinkKind::Branch { index, .. } => Some(format!("if #{}", index + 1)),
        LinkKind::OnError => Some("on error".to_string()),
        _ => None,
    };
    // A filter guards the link into its module (not an error route's first module's).
    let filter = (!error)
        .then(|| raw.get(&to).and_then(|m| m.get("filter")))
        .flatten()
        .filter(|f| !f.is_null());
    let filter_name = filter.map(|f| {
        f.get("name")
            .and_then(Value::as_str)
            .filter(|n| !n.is_empty())
            .unwrap_or("filter")
            .to_string()
    });
    let filter_json = filter.map(|f| {
        serde_json::to_string_pretty(f.get("conditions").unwrap_or(f)).unwrap_or_default()
    });
    // Route and branch labels sit just before the target, where links no longer overlap.
    let (lx, ly) = (ex - 8.0, y2 - 9.0);
    // The filter sits at the link's middle (the curve's point at t = ½), named to its right.
    let (fx, fy) = ((sx + ex) / 2.0, (y1 + y2) / 2.0);
    html! {
        g class=(class) data-from=(from) data-to=(to) data-filter=[filter_json.as_deref()] {
            path d=(d) fill="none" marker-end=(if error { "url(#arrow-error)" } else { "url(#arrow)" }) {}
            @if let Some(label) = &label {
                text.link-label x=(lx) y=(ly) text-anchor="end" { (label) }
            }
            @if let Some(name) = &filter_name {
                g.filter tabindex="0" {
                    title { "Filter: " (name) }
                    rect x=(fx - 9.0) y=(fy - 9.0) width="18" height="18" rx="4" {}
                    path d=(format!("M {} {} L {} {} L {} {} L {} {} L {} {} Z", fx - 5.0, fy - 4.0, fx + 5.0, fy - 4.0, fx + 1.0, fy + 1.0, fx + 1.0, fy + 5.0, fx - 1.0, fy + 1.0)) {}
                    text.filter-label x=(fx + 14.0) y=(fy + 4.0) { (name) }
                }
            }
        }
    }
}

fn draw_node(scenario: &Scenario, ix: Ix, (x, y): (f64, f64), runs: Option<&Runs>) -> Markup {
    let node = scenario.node(ix);
    let directive = matches!(node.kind, NodeKind::Directive(_));
    let in_error_route = node.handles.is_some() || directive;
    let app = app_of(&node.module);
    // Without a designer's label, the module's name without its app (the sublabel has both).
    let title = node.label.clone().unwrap_or_else(|| {
        node.module
            .split_once(':')
            .map_or(node.module.clone(), |(_, name)| name.to_string())
    });
    let run = runs.map(|r| r.get(&node.id).cloned().unwrap_or_default());
    let errored = run.as_ref().is_some_and(|r| r.errors > 0);
    let mut class = String::from("node");
    if directive {
        class.push_str(" directive");
    }
    if in_error_route {
        class.push_str(" in-error-route");
    }
    if errored {
        class.push_str(" errored");
    }
    // Flow control and directives cost no operations: only a module that costs them looks
    // idle when it did not run.
    let free = matches!(
        node.kind,
        NodeKind::Router { .. }
            | NodeKind::IfElse { .. }
            | NodeKind::Merge { .. }
            | NodeKind::Directive(_)
    );
    if !free
        && run
            .as_ref()
            .is_some_and(|r| r.operations == 0 && r.errors == 0)
    {
        class.push_str(" idle");
    }
    let fill = if directive {
        "#fbe9e7".to_string()
    } else {
        format!("hsl({}, 62%, 46%)", hue(app))
    };
    html! {
        g class=(class) data-module=(node.id) data-operations=[run.as_ref().map(|r| r.operations)]
            data-errors=[run.as_ref().map(|r| r.errors)] tabindex="0" role="button"
            aria-label=(format!("module {} {}", node.id, title)) {
            title { (title) " (" (node.module) ")" }
            @if directive {
                rect x=(x - RADIUS) y=(y - RADIUS * 0.7) width=(RADIUS * 2.0) height=(RADIUS * 1.4) rx="10" fill=(fill) {}
            } @else {
                circle cx=(x) cy=(y) r=(RADIUS) fill=(fill) {}
            }
            text.badge x=(x) y=(y + 5.0) text-anchor="middle" { (badge(scenario, ix)) }
            text.label x=(x) y=(y + RADIUS + 18.0) text-anchor="middle" { (truncate(&title, 24)) }
            text.sublabel x=(x) y=(y + RADIUS + 33.0) text-anchor="middle" { (truncate(&node.module, 28)) " · #" (node.id) }
            @if let Some(run) = &run {
                g.ops {
                    circle cx=(x + RADIUS * 0.8) cy=(y - RADIUS * 0.8) r="11" {}
                    text x=(x + RADIUS * 0.8) y=(y - RADIUS * 0.8 + 4.0) text-anchor="middle" { (run.operations) }
                }
                @if errored {
                    text.error-mark x=(x) y=(y - RADIUS - 10.0) text-anchor="middle" { "⚠ error" }
                }
            }
        }
    }
}

fn truncate(text: &str, max: usize) -> String {
    if text.chars().count() <= max {
        return text.to_string();
    }
    let mut out: String = text.chars().take(max - 1).collect();
    out.push('…');
    out
}

/// The module objects of a blueprint (anything with a numeric `id` and a text `module`),
/// found with an explicit stack.
pub fn raw_modules(blueprint: &Value) -> Raw<'_> {
    let mut out = HashMap::new();
    let mut stack = vec![blueprint];
    while let Some(value) = stack.pop() {
        match value {
            Value::Object(map) => {
                if let (Some(id), Some(Value::String(_))) =
                    (map.get("id").and_then(Value::as_u64), map.get("module"))
                    && let Ok(id) = u32::try_from(id)
                {
                    out.entry(id).or_insert(value);
                }
                // The designer's metadata holds no modules.
                stack.extend(
                    map.iter()
                        .filter(|(k, _)| k.as_str() != "metadata")
                        .map(|(_, v)| v),
                );
            }
            Value::Array(items) => stack.extend(items.iter()),
            _ => {}
        }
    }
    out
}
