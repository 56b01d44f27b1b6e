//! The executor's own modules, run inside the walk of [`super::Execution`]: iterators (sized
//! against the bytes budget before any bundle is built), array and text aggregators (their
//! open accumulations metered, their groups flushed when every bundle above them is done),
//! variables, increments, sleeps and the webhook reply. The walk itself — cycles, the work
//! stack, routes, error handling — stays in `executor.rs`.
//!
//! Invariants: an aggregate or iterator that would exceed the budget is refused before it is
//! built; a variable has a non-empty name; a `gateway:WebhookRespond` reply is checked whole
//! before the caller is told it.

use super::*;

impl Execution<'_> {
    fn variables(&mut self, scope: VariableScope) -> &mut Map<String, Value> {
        match scope {
            VariableScope::Roundtrip => &mut self.cycle_vars,
            VariableScope::Execution => &mut self.execution_vars,
        }
    }

    /// The executor's own modules. `Ok(None)` passes the bundle on unchanged.
    pub(super) fn builtin(
        &mut self,
        ix: Ix,
        ancestry: &Ancestry,
    ) -> Result<Option<Vec<Value>>, ModuleError> {
        let scenario = self.scenario;
        let node = &scenario.nodes[ix];
        let mapper = match &node.kind {
            NodeKind::SetVariables {
                single: Some(_), ..
            } => Value::Null,
            _ => self.mapper(ix, ancestry)?,
        };
        if !self.log_input(ix, || Cow::Borrowed(&mapper)) {
            // Interrupted: nothing runs after this.
            return Ok(Some(Vec::new()));
        }
        Ok(Some(match &node.kind {
            NodeKind::Iterator => {
                let array = match mapper {
                    Value::Object(mut fields) => fields.remove("array"),
                    _ => None,
                };
                let items = match array {
                    Some(Value::Array(items)) => items,
                    None | Some(Value::Null) => Vec::new(),
                    Some(other) => vec![other],
                };
                // Every bundle an iterator makes is held at once (they wait on the work
                // stack): measured before any is built, as that is where a big array would
                // take an execution's memory.
                let room = self.budget.bundle_bytes().saturating_sub(self.meter.held());
                let wrapper = iterator_wrapper_bytes();
                let mut projected = 0u64;
                for item in &items {
                    projected += estimated_size(item) as u64 + BUNDLE_OVERHEAD;
                    projected += if item.is_object() {
                        wrapper.counters
                    } else {
                        wrapper.object
                    };
                    if projected > room {
                        let spent = self.meter.held() + projected;
                        self.interrupt(ix, Exceeded::BundleBytes, spent);
                        return Ok(Some(Vec::new()));
                    }
                }
                let total = items.len();
                items
                    .into_iter()
                    .enumerate()
                    .map(|(i, item)| {
                        let mut bundle = match item {
                            Value::Object(map) => map,
                            other => Map::from_iter([("value".to_string(), other)]),
                        };
                        bundle.insert("__IMTINDEX__".into(), json!(i + 1));
                        bundle.insert("__IMTLENGTH__".into(), json!(total));
                        Value::Object(bundle)
                    })
                    .collect()
            }
            NodeKind::Repeater => {
                let number = |key: &str, default: f64| match mapper.get(key) {
                    None | Some(Value::Null) => Ok(default),
                    Some(v) => to_number(v).ok_or_else(|| {
                        ModuleError::data(format!("mapper.{key}: expected a number, got {v}"))
                    }),
                };
                let (start, repeats, step) = (
                    number("start", 1.0)?,
                    number("repeats", 1.0)?,
                    number("step", 1.0)?,
                );
                if !(0.0..=10_000.0).contains(&repeats) || repeats.fract() != 0.0 {
                    return Err(ModuleError::data(format!(
                        "mapper.repeats: expected a whole number from 0 to 10000, got {repeats}"
                    )));
                }
                (0..repeats as u64)
                    .map(|k| json!({"i": crate::expr::value::number(start + k as f64 * step)}))
                    .collect()
            }
            NodeKind::SetVariables {
                scope,
                single: Some((name, value)),
                ..
            } => {
                let value = value.eval(&self.scope(ancestry)).map_err(|(path, e)| {
                    ModuleError::data(format!(
                        "mapper.value{}: {e}",
                        if path.is_empty() {
                            String::new()
                        } else {
                            format!(".{path}")
                        }
                    ))
                })?;
                // Its input as Make shows it: the variable's name, scope and value.
                let scope_name = match scope {
                    VariableScope::Roundtrip => "roundtrip",
                    VariableScope::Execution => "execution",
                };
                let input =
                    || Cow::Owned(json!({"name": name, "scope": scope_name, "value": value}));
                if !self.log_input(ix, input) {
                    return Ok(Some(Vec::new()));
                }
                let vars = self.variables(*scope);
                vars.insert(name.clone(), value.clone());
                vec![Value::Object(Map::from_iter([(name.clone(), value)]))]
            }
            NodeKind::SetVariables {
                scope,
                form,
                single: None,
            } => {
                let mut fields = into_object(mapper);
                let pairs: Vec<(String, Value)> = if *form == VariableForm::One {
                    let name = variable_name(fields.remove("name"), "mapper.name")?;
                    vec![(name, fields.remove("value").unwrap_or(Value::Null))]
                } else {
                    let list = match fields.remove("variables") {
                        Some(Value::Array(list)) => list,
                        _ => Vec::new(),
                    };
                    let mut pairs = Vec::with_capacity(list.len());
                    for (k, item) in list.into_iter().enumerate() {
                        let mut item = into_object(item);
                        let name = variable_name(
                            item.remove("name"),
                            &format!("mapper.variables[{k}].name"),
                        )?;
                        pairs.push((name, item.remove("value").unwrap_or(Value::Null)));
                    }
                    pairs
                };
                let vars = self.variables(*scope);
                let mut output = Map::new();
                for (name, value) in pairs {
                    output.insert(name.clone(), value.clone());
                    vars.insert(name, value);
                }
                vec![Value::Object(output)]
            }
            NodeKind::GetVariables { form } => {
                let mut fields = into_object(mapper);
                let names: Vec<String> = if *form == VariableForm::One {
                    vec![variable_name(fields.remove("name"), "mapper.name")?]
                } else {
                    let list = match fields.remove("variables") {
                        Some(Value::Array(list)) => list,
                        _ => Vec::new(),
                    };
                    list.into_iter()
                        .enumerate()
                        .map(|(k, v)| match v {
                            Value::Object(mut item) => variable_name(
                                item.remove("name"),
                                &format!("mapper.variables[{k}].name"),
                            ),
                            other => variable_name(Some(other), &format!("mapper.variables[{k}]")),
                        })
                        .collect::<Result<_, _>>()?
                };
                let mut output = Map::new();
                for name in names {
                    // A cycle variable shadows an execution variable of the same name.
                    let value = self
                        .cycle_vars
                        .get(&name)
                        .or_else(|| self.execution_vars.get(&name))
                        .cloned();
                    output.insert(name, value.unwrap_or(Value::Null));
                }
                vec![Value::Object(output)]
            }
            NodeKind::Increment { reset } => {
                let counter = match reset {
                    IncrementReset::Cycle => self.cycle_counters.entry(node.id).or_insert(0),
                    IncrementReset::Execution | IncrementReset::Never => {
                        self.counters.entry(node.id).or_insert(0)
                    }
                };
                *counter += 1;
                vec![json!({"i": *counter})]
            }
            NodeKind::WebhookRespond => {
                let response = webhook_response(&mapper)?;
                if self.response.is_some() {
                    return Err(ModuleError::runtime(
                        "this execution has already answered its webhook call",
                    ));
                }
                if let Some(respond) = &self.respond {
                    (respond.0)(&response);
                }
                self.response = Some(response);
                return Ok(None);
            }
            _ => return Ok(None),
        }))
    }

    pub(super) fn accumulate(&mut self, ix: Ix, agg: &Aggregator, ancestry: &Ancestry) {
        let scenario = self.scenario;
        let node = &scenario.nodes[ix];
        let item = match &node.mapper {
            None => ancestry
                .get(scenario.nodes[agg.feeder].id)
                .cloned()
                .unwrap_or(Value::Null),
            Some(_) => match self.mapper(ix, ancestry) {
                Ok(Value::Object(mut fields)) => match agg.kind {
                    AggregatorKind::Array => Value::Object(fields),
                    _ => fields.remove("value").unwrap_or(Value::Null),
                },
                Ok(other) => other,
                Err(e) => return self.fail(ix, ancestry, e),
            },
        };
        let key = match &agg.group_by {
            None => None,
            Some(t) => match t.eval(&self.scope(ancestry)) {
                Ok(v) => Some(to_text(&v)),
                Err(e) => {
                    return self.fail(
                        ix,
                        ancestry,
                        ModuleError::data(format!("mapper.groupBy: {e}")),
                    );
                }
            },
        };
        let Some(acc) = self.accumulations[ix].last_mut() else {
            let message = format!(
                "aggregator {} received a bundle that did not come from its source module",
                node.id
            );
            return self.fail(
                ix,
                ancestry,
                ModuleError::new(ErrorKind::InconsistencyError, message),
            );
        };
        let slot = match &key {
            None => {
                if acc.groups.is_empty() {
                    acc.groups.push((None, Vec::new()));
                }
                0
            }
            Some(k) => match acc.index.get(k) {
                Some(&i) => i,
                None => {
                    acc.groups.push((key.clone(), Vec::new()));
                    acc.index.insert(k.clone(), acc.groups.len() - 1);
                    acc.groups.len() - 1
                }
            },
        };
        let bytes = (estimated_size(&item) + key.as_ref().map_or(0, String::len)) as u64;
        acc.bytes += bytes;
        acc.groups[slot].1.push(item);
        self.hold(ix, bytes);
    }

    pub(super) fn flush(&mut self, ix: Ix, ancestry: Ancestry) {
        let scenario = self.scenario;
        let NodeKind::Aggregator(agg) = &scenario.nodes[ix].kind else {
            return;
        };
        let acc = self.accumulations[ix].pop().unwrap_or_default();
        // Its items move into the aggregate, counted again when it is emitted.
        self.meter.sub(acc.bytes);
        let mut groups = acc.groups;
        if groups.is_empty() {
            if agg.stop_if_empty {
                return;
            }
            if agg.group_by.is_none() {
                groups.push((None, Vec::new()));
            }
        }
        if !self.spend_operation(ix) {
            return;
        }
        self.stats(ix).runs += 1;
        let outputs = groups
            .into_iter()
            .map(|(key, items)| aggregate(&agg.kind, key, items))
            .collect::<Result<_, _>>();
        match outputs {
            Ok(outputs) => self.emit(ix, &ancestry, outputs),
            Err(e) => self.fail(ix, &ancestry, e),
        }
    }
}

/// What an iterator adds to an item to make its bundle (as `estimated_size` counts it).
struct IteratorWrapper {
    /// `__IMTINDEX__` and `__IMTLENGTH__`.
    counters: u64,
    /// The counters and the collection `{"value": item}` around an item that is not one.
    object: u64,
}

fn iterator_wrapper_bytes() -> IteratorWrapper {
    let counters = json!({"__IMTINDEX__": 1, "__IMTLENGTH__": 1});
    let object = json!({"value": null, "__IMTINDEX__": 1, "__IMTLENGTH__": 1});
    // Less the value each stands around: the item itself is measured on its own.
    let value = std::mem::size_of::<Value>();
    IteratorWrapper {
        counters: (estimated_size(&counters) - value) as u64,
        object: (estimated_size(&object) - value) as u64,
    }
}

/// A variable's name: non-empty text (other values are written as text).
fn variable_name(value: Option<Value>, path: &str) -> Result<String, ModuleError> {
    match value {
        Some(Value::String(s)) if !s.is_empty() => Ok(s),
        Some(other) if !other.is_null() && !matches!(&other, Value::String(_)) => {
            Ok(to_text(&other))
        }
        _ => Err(ModuleError::data(format!(
            "{path}: a variable needs a name"
        ))),
    }
}

/// One group's aggregate. A text aggregate over
/// [`MAX_VALUE_BYTES`](crate::expr::value::MAX_VALUE_BYTES) (a long separator between many
/// items) is refused before it is built.
fn aggregate(
    kind: &AggregatorKind,
    key: Option<String>,
    items: Vec<Value>,
) -> Result<Value, ModuleError> {
    let mut out = Map::new();
    if let Some(key) = key {
        out.insert("key".into(), Value::String(key));
    }
    match kind {
        AggregatorKind::Array => {
            let n = items.len();
            out.insert("array".into(), Value::Array(items));
            out.insert("__IMTAGGLENGTH__".into(), json!(n));
        }
        AggregatorKind::Text { separator } => {
            let len = items
                .iter()
                .map(text_len)
                .fold(0usize, usize::saturating_add)
                .saturating_add(
                    separator
                        .len()
                        .saturating_mul(items.len().saturating_sub(1)),
                );
            if len > MAX_VALUE_BYTES {
                return Err(ModuleError::data(format!(
                    "the text would take {len} bytes, more than one value may take ({MAX_VALUE_BYTES} bytes)"
                )));
            }
            let mut text = String::with_capacity(len);
            for (i, item) in items.iter().enumerate() {
                if i > 0 {
                    text.push_str(separator);
                }
                write_text(&mut text, item);
            }
            out.insert("text".into(), Value::String(text));
        }
        AggregatorKind::Numeric(function) => {
            let numbers: Vec<f64> = items.iter().filter_map(to_number).collect();
            let result = match function {
                NumericFunction::Count => Some(items.len() as f64),
                NumericFunction::Sum => Some(numbers.iter().sum()),
                NumericFunction::Avg if numbers.is_empty() => None,
                NumericFunction::Avg => Some(numbers.iter().sum::<f64>() / numbers.len() as f64),
                NumericFunction::Min => numbers.iter().copied().reduce(f64::min),
                NumericFunction::Max => numbers.iter().copied().reduce(f64::max),
            };
            out.insert(
                "result".into(),
                result
                    .map(crate::expr::value::number)
                    .unwrap_or(Value::Null),
            );
        }
    }
    Ok(Value::Object(out))
}

/// `gateway:WebhookRespond`'s mapper `{status, body, headers: [{key, value}]}` → a reply.
fn webhook_response(mapper: &Value) -> Result<WebhookResponse, ModuleError> {
    let status = match mapper.get("status") {
        None | Some(Value::Null) => 200,
        Some(v) => match to_number(v) {
            Some(n) if (100.0..=599.0).contains(&n) && n.fract() == 0.0 => n as u16,
            _ => {
                return Err(ModuleError::data(format!(
                    "mapper.status: expected an HTTP status from 100 to 599, got {v}"
                )));
            }
        },
    };
    let mut headers = Map::new();
    let list = mapper
        .get("headers")
        .and_then(Value::as_array)
        .map(Vec::as_slice)
        .unwrap_or_default();
    if list.len() > 16 {
        return Err(ModuleError::data(format!(
            "mapper.headers: at most 16 headers, got {}",
            list.len()
        )));
    }
    for (k, h) in list.iter().enumerate() {
        let key = h
            .get("key")
            .or_else(|| h.get("name"))
            .map(to_text)
            .unwrap_or_default();
        let value = h.get("value").map(to_text).unwrap_or_default();
        if key.is_empty() || key.len() > 256 || value.len() > 4096 {
            return Err(ModuleError::data(format!(
                "mapper.headers[{k}]: expected a key of 1–256 characters and a value of at most 4096"
            )));
        }
        headers.insert(key, Value::String(value));
    }
    Ok(WebhookResponse {
        status,
        headers,
        body: mapper
            .get("body")
            .cloned()
            .unwrap_or(Value::String(String::new())),
    })
}
