//! The syntax tree a template parses into. Functions are resolved at parse time: a call
//! holds its function pointer, so evaluation never looks a name up. Every node knows its
//! 1-based source column (for errors) and its height (the parser caps it, which bounds the
//! evaluator's recursion).

use serde_json::Value;

use super::functions::Function;

/// One expression node.
#[derive(Debug, Clone)]
pub(crate) struct Node {
    pub expr: Expr,
    /// 1-based character column of the node's first (or operator) character in the source.
    pub column: usize,
    /// Height of the subtree (a leaf is 1); the parser rejects trees taller than its limit.
    pub height: u32,
}

#[derive(Debug, Clone)]
pub(crate) enum Expr {
    /// A literal or keyword (`"text"`, `12`, `true`, `emptyarray`, `erase` …).
    Literal(Value),
    /// A path into a module's output or a named root.
    Ref(Box<Reference>),
    /// A variable read at evaluation time (`now`, `uuid` …).
    Var(Var),
    /// `name(args…)` with its function resolved.
    Call(Box<Call>),
    /// `if`, `ifempty`, `switch`: only the chosen branch is evaluated.
    Lazy(Lazy, Vec<Node>),
    /// Unary minus.
    Neg(Box<Node>),
    Binary(BinOp, Box<Node>, Box<Node>),
}

#[derive(Debug, Clone)]
pub(crate) struct Reference {
    pub root: Root,
    pub path: Vec<Segment>,
}

#[derive(Debug, Clone, PartialEq)]
pub(crate) enum Root {
    /// `1.…` / `` `1` ``: a module's output bundle.
    Module(u32),
    /// `body.…`, `parameters.…` (app dialect).
    Named(String),
}

#[derive(Debug, Clone)]
pub(crate) enum Segment {
    /// `.name` or ``.`Some name` ``.
    Key(String),
    /// `[2]`, `[-1]`: a constant 1-based index; negative counts from the end.
    Index(i64),
    /// `[1.i]`: an index (or key) computed per evaluation.
    Computed(Node),
    /// `[]`: the rest of the path is applied to every element of the array.
    Each,
}

#[derive(Debug, Clone)]
pub(crate) struct Call {
    pub name: Box<str>,
    pub func: Function,
    pub args: Vec<Node>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Lazy {
    If,
    IfEmpty,
    Switch,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Var {
    Now,
    Timestamp,
    Random,
    Uuid,
    ExecutionId,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum BinOp {
    Or,
    And,
    Eq,
    Ne,
    Lt,
    Gt,
    Le,
    Ge,
    Add,
    Sub,
    Mul,
    Div,
    Rem,
}

impl BinOp {
    /// How the operator is written (for error messages).
    pub fn symbol(self) -> &'static str {
        match self {
            BinOp::Or => "|",
            BinOp::And => "&",
            BinOp::Eq => "=",
            BinOp::Ne => "!=",
            BinOp::Lt => "<",
            BinOp::Gt => ">",
            BinOp::Le => "<=",
            BinOp::Ge => ">=",
            BinOp::Add => "+",
            BinOp::Sub => "-",
            BinOp::Mul => "*",
            BinOp::Div => "/",
            BinOp::Rem => "%",
        }
    }

    /// `= != < > <= >=`.
    pub fn is_comparison(self) -> bool {
        matches!(
            self,
            BinOp::Eq | BinOp::Ne | BinOp::Lt | BinOp::Gt | BinOp::Le | BinOp::Ge
        )
    }

    /// Binding strength: higher binds tighter.
    pub fn precedence(self) -> u8 {
        match self {
            BinOp::Or => 1,
            BinOp::And => 2,
            BinOp::Eq | BinOp::Ne | BinOp::Lt | BinOp::Gt | BinOp::Le | BinOp::Ge => 3,
            BinOp::Add | BinOp::Sub => 4,
            BinOp::Mul | BinOp::Div | BinOp::Rem => 5,
        }
    }
}

impl Node {
    /// Calls `f` with every module root in the subtree, in source order.
    pub fn visit_module_refs(&self, f: &mut dyn FnMut(u32, usize)) {
        match &self.expr {
            Expr::Literal(_) | Expr::Var(_) => {}
            Expr::Ref(r) => {
                if let Root::Module(id) = r.root {
                    f(id, self.column);
                }
                for seg in &r.path {
                    if let Segment::Computed(n) = seg {
                        n.visit_module_refs(f);
                    }
                }
            }
            Expr::Call(c) => c.args.iter().for_each(|a| a.visit_module_refs(f)),
            Expr::Lazy(_, args) => args.iter().for_each(|a| a.visit_module_refs(f)),
            Expr::Neg(n) => n.visit_module_refs(f),
            Expr::Binary(_, l, r) => {
                l.visit_module_refs(f);
                r.visit_module_refs(f);
            }
        }
    }
}
