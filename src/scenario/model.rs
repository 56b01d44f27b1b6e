//! The blueprint format as written by users and exported by Make (`reference/make.md` §3):
//! plain serde types, no behaviour. Exporter-only keys (`metadata` on modules, `designer`,
//! `zone` …) are accepted and ignored. Unknown keys where Make defines the shape are ignored
//! by serde and reported as warnings by the reader (`scenario::shape`), which also reads each
//! module on its own so that one bad module does not hide the problems of the others.

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

/// A scenario: modules and how they link, its schedule and its settings.
#[derive(Debug, Clone, Serialize, Deserialize, JsonSchema)]
pub struct Blueprint {
    /// The scenario's name.
    #[serde(default)]
    pub name: String,
    /// The modules, in order; the first is the trigger (or runs once per execution).
    pub flow: Vec<Node>,
    /// When the scenario runs.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub scheduling: Option<Scheduling>,
    /// Settings (`metadata.scenario`) and exporter-only data.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub metadata: Option<BlueprintMetadata>,
    /// Make's scenario inputs/outputs interface (accepted, not used).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub interface: Option<Value>,
    /// Deprecated `io` block of older exports (accepted, not used).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub io: Option<Value>,
    /// A free-text description.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub description: Option<String>,
    /// What the reader found that does not stop the scenario from running (unknown keys,
    /// skipped placeholder modules); compile adds its own and hands them to the [`Scenario`](super::Scenario).
    #[serde(skip)]
    #[schemars(skip)]
    pub warnings: Vec<super::Problem>,
}

/// Top-level `metadata`: the settings block plus whatever the exporter wrote.
#[derive(Debug, Clone, Default, Serialize, Deserialize, JsonSchema)]
pub struct BlueprintMetadata {
    /// Scenario settings.
    #[serde(default)]
    pub scenario: Settings,
    /// Exporter-only keys (`instant`, `version`, `designer`, `zone`, `notes` …), ignored.
    #[serde(flatten)]
    pub exporter: Map<String, Value>,
}

/// `metadata.scenario`: how executions behave (`reference/make.md` §1.5).
#[derive(Debug, Clone, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct Settings {
    /// Maximum number of cycles per execution (0 is read as 1, as Make exports sometimes hold 0).
    #[serde(default = "one")]
    pub roundtrips: u32,
    /// Consecutive failed executions after which a scheduled scenario is deactivated.
    #[serde(default = "three")]
    pub max_errors: u32,
    /// Commit each module's work as soon as its cycle succeeds.
    #[serde(default = "yes")]
    pub auto_commit: bool,
    /// Commit the trigger after every other module.
    #[serde(default = "yes")]
    pub auto_commit_trigger_last: bool,
    /// Run one execution at a time, in arrival order.
    #[serde(default)]
    pub sequential: bool,
    /// Do not store what the modules processed.
    #[serde(default)]
    pub confidential: bool,
    /// Drop a bundle that cannot be stored as an incomplete execution instead of stopping.
    #[serde(default)]
    pub dataloss: bool,
    /// Store incomplete executions (Make calls them DLQ items) instead of rolling back.
    #[serde(default)]
    pub dlq: bool,
    /// Make's `slots` (meaning unpublished; accepted, not used).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub slots: Option<Value>,
    /// Make's `freshVariables` (meaning unpublished; accepted, not used).
    #[serde(default)]
    pub fresh_variables: bool,
    /// Keys Switchyard does not know; reported as warnings by `validate`.
    #[serde(flatten)]
    pub unknown: Map<String, Value>,
}

fn one() -> u32 {
    1
}
fn three() -> u32 {
    3
}
fn yes() -> bool {
    true
}

impl Default for Settings {
    fn default() -> Self {
        Settings {
            roundtrips: 1,
            max_errors: 3,
            auto_commit: true,
            auto_commit_trigger_last: true,
            sequential: false,
            confidential: false,
            dataloss: false,
            dlq: false,
            slots: None,
            fresh_variables: false,
            unknown: Map::new(),
        }
    }
}

/// One module in a flow.
#[derive(Debug, Clone, Serialize, Deserialize, JsonSchema)]
pub struct Node {
    /// Unique across the whole scenario, including nested routes; `{{id.…}}` reads its output.
    pub id: u32,
    /// `app:Name`, e.g. `http:MakeRequest`, `builtin:BasicRouter`.
    pub module: String,
    /// The module's version (accepted, not used).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub version: Option<u32>,
    /// Static settings (`__IMTCONN__`, `hook`, `feeder` …); no expressions.
    #[serde(default)]
    pub parameters: Map<String, Value>,
    /// Mapped fields; strings may hold `{{…}}` expressions.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub mapper: Option<Value>,
    /// Only bundles that pass it reach this module.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub filter: Option<Filter>,
    /// Router routes.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub routes: Option<Vec<Route>>,
    /// Error-handler route: runs when this module fails, ends in a directive.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub onerror: Option<Vec<Node>>,
    /// If-else branches (`builtin:BasicIfElse`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub branches: Option<Vec<Branch>>,
    /// Merge outputs (`builtin:BasicMerge`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub outputs: Option<Vec<MergeOutput>>,
    /// Merge filters (accepted, not used).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub filters: Option<Value>,
    /// Make's listener flag (accepted, not used).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub listener: Option<bool>,
    /// Position of the module in its flow in the blueprint as written (the reader drops
    /// placeholder modules, so it can differ from the position in `flow`); paths use it.
    #[serde(skip)]
    #[schemars(skip)]
    pub position: Option<usize>,
    /// Exporter-only data (designer position, `restore`, `expect`, `interface` …), ignored
    /// except `designer.name`, the module's label.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub metadata: Option<Value>,
}

/// One router route.
#[derive(Debug, Clone, Serialize, Deserialize, JsonSchema)]
pub struct Route {
    pub flow: Vec<Node>,
    /// A disabled route never runs.
    #[serde(default)]
    pub disabled: bool,
    /// The fallback route runs only when no other route's filter passed.
    #[serde(default)]
    pub fallback: bool,
    /// Placeholder modules the reader dropped from `flow` (a route that held only
    /// placeholders is an unfinished route in the designer, not an error).
    #[serde(skip)]
    #[schemars(skip)]
    pub placeholders: usize,
}

/// A filter: OR of AND-groups of conditions.
#[derive(Debug, Clone, Serialize, Deserialize, JsonSchema)]
pub struct Filter {
    #[serde(default)]
    pub name: String,
    /// No conditions (Make exports a labelled pass-through filter without the key): every
    /// bundle passes.
    #[serde(default)]
    pub conditions: Vec<Vec<Condition>>,
}

/// `{a, o, b}`: operand, operator (`text:equal:ci`, `number:greater`, `exist` …), operand.
#[derive(Debug, Clone, Serialize, Deserialize, JsonSchema)]
pub struct Condition {
    #[serde(default)]
    pub a: Value,
    pub o: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub b: Option<Value>,
}

/// One branch of `builtin:BasicIfElse`.
#[derive(Debug, Clone, Serialize, Deserialize, JsonSchema)]
pub struct Branch {
    #[serde(rename = "type")]
    pub kind: BranchKind,
    #[serde(default)]
    pub label: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub conditions: Option<Vec<Vec<Condition>>>,
    /// Whether this branch continues into the following `builtin:BasicMerge`.
    #[serde(default)]
    pub merge: bool,
    /// A disabled branch is never taken: its condition is not evaluated and the bundle is
    /// offered to the next branch, as a disabled router route is skipped.
    #[serde(default)]
    pub disabled: bool,
    #[serde(default)]
    pub flow: Vec<Node>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "lowercase")]
pub enum BranchKind {
    Condition,
    Else,
}

/// One output of `builtin:BasicMerge`: a name and one expression per merging branch.
#[derive(Debug, Clone, Serialize, Deserialize, JsonSchema)]
pub struct MergeOutput {
    pub name: String,
    pub mappings: Vec<Value>,
}

/// When a scenario runs (`reference/make.md` §1.6), plus a `cron` extension.
#[derive(Debug, Clone, Serialize, Deserialize, JsonSchema)]
pub struct Scheduling {
    #[serde(rename = "type")]
    pub kind: ScheduleKind,
    /// Seconds between runs, for `indefinitely`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub interval: Option<u64>,
    /// ISO 8601 date-time, for `once`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub date: Option<String>,
    /// Weekdays 0–6 (0 = Sunday) for `weekly`; days of month 1–31 for `monthly`/`yearly`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub days: Option<Vec<u32>>,
    /// Months 1–12, for `yearly`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub months: Option<Vec<u32>>,
    /// Time of day `HH:MM`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub time: Option<String>,
    /// `[start, end]` ISO dates outside which the schedule does not fire.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub between: Option<Vec<String>>,
    /// Windows the schedule is restricted to.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub restrict: Option<Vec<Restriction>>,
    /// A cron expression (5, 6 or 7 fields), for `type: "cron"`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cron: Option<String>,
    /// Time zone name for `time`, `cron` and calendar schedules (default UTC).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub timezone: Option<String>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "kebab-case")]
pub enum ScheduleKind {
    Immediately,
    Indefinitely,
    Once,
    Daily,
    Weekly,
    Monthly,
    Yearly,
    OnDemand,
    Cron,
}

/// A `restrict` window: days, months and a `[from, to]` time range.
#[derive(Debug, Clone, Serialize, Deserialize, JsonSchema)]
pub struct Restriction {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub days: Option<Vec<u32>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub months: Option<Vec<u32>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub time: Option<Vec<String>>,
}
