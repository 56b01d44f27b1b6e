//! TEMPORARY stand-in for the IML parser while it is being written (replaced at merge).
use super::{Dialect, Scope};
use serde_json::Value;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ModuleRef {
    pub id: u32,
    pub column: usize,
}
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
#[error("column {column}: {message}")]
pub struct ParseError {
    pub column: usize,
    pub message: String,
}
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
#[error("column {column}: {message}")]
pub struct EvalError {
    pub column: usize,
    pub message: String,
}

#[derive(Debug, Clone)]
pub struct Template {
    src: String,
    path: Option<(u32, Vec<String>)>,
}
impl Template {
    pub fn parse(src: &str, _d: Dialect) -> Result<Template, ParseError> {
        let path = src
            .strip_prefix("{{")
            .and_then(|s| s.strip_suffix("}}"))
            .and_then(|inner| {
                let mut parts = inner.split('.');
                let id = parts.next()?.parse().ok()?;
                Some((id, parts.map(str::to_string).collect()))
            });
        Ok(Template {
            src: src.to_string(),
            path,
        })
    }
    pub fn parse_expression(src: &str, d: Dialect) -> Result<Template, ParseError> {
        Self::parse(&format!("{{{{{src}}}}}"), d)
    }
    pub fn eval(&self, scope: &dyn Scope) -> Result<Value, EvalError> {
        match &self.path {
            None => Ok(Value::String(self.src.clone())),
            Some((id, keys)) => {
                let mut v = scope.module_output(*id).cloned().unwrap_or(Value::Null);
                for k in keys {
                    v = v.get(k).cloned().unwrap_or(Value::Null);
                }
                Ok(v)
            }
        }
    }
    pub fn source(&self) -> &str {
        &self.src
    }
    pub fn is_static(&self) -> bool {
        self.path.is_none()
    }
    pub fn module_refs(&self) -> Vec<ModuleRef> {
        self.path
            .iter()
            .map(|p| ModuleRef { id: p.0, column: 3 })
            .collect()
    }
}

#[derive(Debug, Clone)]
pub enum Mapping {
    Static(Value),
    Str(Template),
    Arr(Vec<Mapping>),
    Obj(Vec<(String, Mapping)>),
}
impl Mapping {
    pub fn compile(value: &Value, d: Dialect) -> Result<Mapping, Vec<(String, ParseError)>> {
        Ok(match value {
            Value::String(s) if s.contains("{{") => Mapping::Str(Template::parse(s, d).unwrap()),
            Value::Array(a) => {
                Mapping::Arr(a.iter().map(|v| Mapping::compile(v, d).unwrap()).collect())
            }
            Value::Object(o) => Mapping::Obj(
                o.iter()
                    .map(|(k, v)| (k.clone(), Mapping::compile(v, d).unwrap()))
                    .collect(),
            ),
            v => Mapping::Static(v.clone()),
        })
    }
    pub fn eval(&self, scope: &dyn Scope) -> Result<Value, (String, EvalError)> {
        Ok(match self {
            Mapping::Static(v) => v.clone(),
            Mapping::Str(t) => t.eval(scope).map_err(|e| (String::new(), e))?,
            Mapping::Arr(a) => {
                Value::Array(a.iter().map(|m| m.eval(scope)).collect::<Result<_, _>>()?)
            }
            Mapping::Obj(o) => Value::Object(
                o.iter()
                    .map(|(k, m)| Ok((k.clone(), m.eval(scope)?)))
                    .collect::<Result<_, _>>()?,
            ),
        })
    }
    pub fn module_refs(&self) -> Vec<(String, ModuleRef)> {
        match self {
            Mapping::Static(_) => vec![],
            Mapping::Str(t) => t
                .module_refs()
                .into_iter()
                .map(|r| (String::new(), r))
                .collect(),
            Mapping::Arr(a) => a
                .iter()
                .enumerate()
                .flat_map(|(i, m)| {
                    m.module_refs().into_iter().map(move |(p, r)| {
                        (
                            if p.is_empty() {
                                format!("[{i}]")
                            } else {
                                format!("[{i}].{p}")
                            },
                            r,
                        )
                    })
                })
                .collect(),
            Mapping::Obj(o) => o
                .iter()
                .flat_map(|(k, m)| {
                    m.module_refs().into_iter().map(move |(p, r)| {
                        (
                            if p.is_empty() {
                                k.clone()
                            } else if p.starts_with('[') {
                                format!("{k}{p}")
                            } else {
                                format!("{k}.{p}")
                            },
                            r,
                        )
                    })
                })
                .collect(),
        }
    }
    pub fn is_static(&self) -> bool {
        matches!(self, Mapping::Static(_))
    }
}
