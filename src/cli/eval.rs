//! `switchyard eval 'EXPR' [--bundle JSON]`: evaluates one IML expression and prints its value
//! as JSON. `{{…}}` may be omitted; `--bundle` maps module ids to outputs (`{"1": {…}}`).

use std::collections::HashMap;
use std::process::ExitCode;

use clap::Args;
use serde_json::Value;

use crate::expr::{Dialect, Scope, Template};

#[derive(Args)]
pub struct EvalArgs {
    /// The expression, e.g. `lower("Hello")` or `Hi {{1.name}}`.
    expression: String,
    /// Module outputs the expression may read: JSON, @file or - for standard input.
    #[arg(long)]
    bundle: Option<String>,
}

struct Outputs(HashMap<u32, Value>);

impl Scope for Outputs {
    fn module_output(&self, id: u32) -> Option<&Value> {
        self.0.get(&id)
    }
}

pub fn eval(args: EvalArgs) -> anyhow::Result<ExitCode> {
    let mut outputs = HashMap::new();
    if let Some(arg) = &args.bundle {
        let Value::Object(map) = super::read_json_arg(arg, "--bundle")? else {
            anyhow::bail!(
                "--bundle must be an object mapping module ids to outputs, e.g. {{\"1\": {{\"name\": \"Ann\"}}}}"
            );
        };
        for (key, value) in map {
            let id: u32 = key.parse().map_err(|_| {
                anyhow::anyhow!("--bundle: \"{key}\" is not a module id (a whole number)")
            })?;
            outputs.insert(id, value);
        }
    }
    let parsed = if args.expression.contains("{{") {
        Template::parse(&args.expression, Dialect::Scenario)
    } else {
        Template::parse_expression(&args.expression, Dialect::Scenario)
    };
    let template = match parsed {
        Ok(t) => t,
        Err(e) => {
            eprintln!("error: {e}");
            return Ok(ExitCode::FAILURE);
        }
    };
    match template.eval(&Outputs(outputs)) {
        Ok(value) => {
            println!("{}", serde_json::to_string(&value)?);
            Ok(ExitCode::SUCCESS)
        }
        Err(e) => {
            eprintln!("error: {e}");
            Ok(ExitCode::FAILURE)
        }
    }
}
