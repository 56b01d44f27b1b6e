//! Lexer and recursive-descent parser: template text with `{{…}}` parts, or one bare
//! expression, into [`ast`](super::ast) nodes. Owns IML's syntax (operators and their
//! precedence, references, literals, keywords, the two dialects' separators) and the
//! nesting limit that keeps parsing and evaluation off the edge of the stack.
//!
//! Precedence, loosest first: `|`/`or`, `&`/`and`, comparisons (`= == != < > <= >=`),
//! `+ -`, `* / %`, unary `-`; all binary operators are left-associative.
//!
//! In the scenario dialect a quote inside double-quoted text is written twice (`""""` is one
//! `"`), and a reference may start with a system root ([`super::SYSTEM_ROOTS`]: `var.…`)
//! instead of a module id (`docs/iml.md`).
//!
//! # Unquoted text in scenario arguments
//!
//! Make writes literal text unquoted in function arguments: `formatDate(now; YYYY-MM-DD)`,
//! `if(1.status = active; Yes; No)`, `replace(1.text; /\s+/g; -)`. In the scenario dialect an
//! argument is the source between `(` or `;` and the next `;` or `)` outside double quotes,
//! backticks and nested parentheses, and it reads as follows:
//!
//! 1. Only blanks (or nothing): the empty text `""`.
//! 2. Otherwise it is parsed as one expression in which a *bare word* (a name that is no
//!    keyword, variable, word operator or call: `active`, `Yes`, `desc`) is its own text.
//!    That expression stands when it spans the whole argument and each bare word in it is
//!    either the whole argument or an operand of a comparison (`= != < > <= >=`) whose
//!    other operand is not a constant, i.e. is a reference, variable, call or compound
//!    expression (`1.status = active`, `lower(1.s) != done`).
//! 3. Otherwise the argument is text: its source as written, leading and trailing blanks
//!    (Unicode whitespace) trimmed, inner ones kept. Outer blanks are taken as layout (our
//!    decision; Make has the `space` keyword for a blank that matters), so `join(x; , )`
//!    joins with `,`: quote `", "` to keep them. So these are text:
//!    `YYYY-MM-DD HH:mm:ss`, `MM/DD/YYYY`, `Europe/Prague`, `Tom & Jerry` (a bare word under
//!    arithmetic, `&`, `|` or unary minus: never meant), `a=b`, `page=2` (a bare word
//!    compared with a constant), `(optional)` (a bare word in parentheses or brackets),
//!    `DD.MM.YYYY`, `/\s+/g`, `,`, `Unknown user`, `raw_name.sub` (not an expression at all),
//!    `"Mr" Smith` (quotes kept), `Hello 1.name` (references count only as whole
//!    expressions). A calendar date `2016-12-08` is text too, not two subtractions.
//!
//! Text does not excuse these, which stay parse errors with their column: an unknown
//! function where an operand can stand (`foo(1.x)`, `Item(s)`: a name directly followed by
//! `(`; with a space, `Note (see below)` is a call only if the function exists), a special
//! form's arity, nesting beyond [`MAX_DEPTH`] (even a run of 129 `-`), a `{{` inside an
//! argument (make.md shows no nested `{{…}}`), an argument with no clean end (an unclosed
//! quote, backtick or parenthesis: parsed strictly so the error names what is missing), and
//! an expression that reads data followed by `,` (`if(1.a = 1, "x", "y")`: the app
//! separator by mistake). Text holding `;`, an unbalanced parenthesis, `{{` or an unpaired
//! `"` or `` ` `` must be quoted. Outside call arguments (`{{active}}` is an error) and in
//! the app dialect (where a bare name is a named root) nothing changes.

use serde_json::Value;

use super::Dialect;
use super::ast::{BinOp, Call, Expr, Lazy, Node, Reference, Root, Segment, Var};
use super::error::ParseError;
use super::functions;
use super::value;

/// Deepest nesting accepted: parentheses, calls, brackets, unary minus and operator chains
/// all count. Deeper input is a [`ParseError`], never a stack overflow.
pub(crate) const MAX_DEPTH: u32 = 128;

/// One piece of a template.
#[derive(Debug, Clone)]
pub(crate) enum Part {
    Text(String),
    Expr(Node),
}

#[derive(Debug, Clone, PartialEq)]
enum Tok {
    Number(f64),
    /// Digits directly followed by a `.` that starts no fraction: the root of `1.name`.
    ModuleId(u32),
    Ident(String),
    Backtick(String),
    Str(String),
    LParen,
    RParen,
    LBracket,
    RBracket,
    Dot,
    Semicolon,
    Comma,
    Op(BinOp),
    CloseBraces,
    Eof,
}

#[derive(Debug, Clone)]
struct Token {
    tok: Tok,
    col: usize,
}

fn describe(tok: &Tok) -> String {
    match tok {
        Tok::Number(n) => format!("number {}", value::to_text(&value::number(*n))),
        Tok::ModuleId(id) => format!("\"{id}.\""),
        Tok::Ident(name) => format!("\"{name}\""),
        Tok::Backtick(name) => format!("`{name}`"),
        Tok::Str(s) => format!("text {}", functions::short(&Value::from(s.as_str()))),
        Tok::LParen => "\"(\"".into(),
        Tok::RParen => "\")\"".into(),
        Tok::LBracket => "\"[\"".into(),
        Tok::RBracket => "\"]\"".into(),
        Tok::Dot => "\".\"".into(),
        Tok::Semicolon => "\";\"".into(),
        Tok::Comma => "\",\"".into(),
        Tok::Op(op) => format!("\"{}\"", op.symbol()),
        Tok::CloseBraces => "\"}}\"".into(),
        Tok::Eof => "the end of the expression".into(),
    }
}

fn is_ident_start(c: char) -> bool {
    c.is_alphabetic() || c == '_' || c == '$'
}

fn is_ident_char(c: char) -> bool {
    c.is_alphanumeric() || c == '_' || c == '$'
}

fn keyword(name: &str) -> Option<Value> {
    Some(match name {
        "null" | "ignore" => Value::Null,
        "true" => Value::Bool(true),
        "false" => Value::Bool(false),
        "emptystring" => Value::from(""),
        "emptyarray" => Value::Array(Vec::new()),
        "space" => Value::from(" "),
        "tab" => Value::from("\t"),
        "newline" => Value::from("\n"),
        "nbsp" => Value::from("\u{a0}"),
        "carriagereturn" => Value::from("\r"),
        "erase" => value::erase(),
        "pi" => value::number(std::f64::consts::PI),
        _ => return None,
    })
}

fn variable(name: &str) -> Option<Var> {
    Some(match name {
        "now" => Var::Now,
        "timestamp" => Var::Timestamp,
        "random" => Var::Random,
        "uuid" => Var::Uuid,
        "executionId" => Var::ExecutionId,
        _ => return None,
    })
}

fn word_operator(name: &str) -> Option<BinOp> {
    match name {
        "and" | "AND" => Some(BinOp::And),
        "or" | "OR" => Some(BinOp::Or),
        _ => None,
    }
}

/// Parses template text: literal text with `{{…}}` expressions.
pub(crate) fn parse_template(src: &str, dialect: Dialect) -> Result<Vec<Part>, ParseError> {
    let mut p = Parser::new(src, dialect, true);
    let last_close = p.last_close_braces();
    let mut parts = Vec::new();
    let mut text = String::new();
    while let Some(&c) = p.chars.get(p.pos) {
        if c == '{' && p.chars.get(p.pos + 1) == Some(&'{') {
            let open = p.pos + 1;
            if last_close.is_none_or(|close| close < p.pos + 2) {
                return Err(ParseError::new(
                    open,
                    "\"{{\" has no closing \"}}\"".to_string(),
                ));
            }
            if !text.is_empty() {
                parts.push(Part::Text(std::mem::take(&mut text)));
            }
            p.pos += 2;
            parts.push(Part::Expr(p.braced(open)?));
        } else {
            text.push(c);
            p.pos += 1;
        }
    }
    if !text.is_empty() {
        parts.push(Part::Text(text));
    }
    Ok(parts)
}

/// Parses one bare expression (no braces) that must span the whole source.
pub(crate) fn parse_expression(src: &str, dialect: Dialect) -> Result<Node, ParseError> {
    let mut p = Parser::new(src, dialect, false);
    let node = p.expr()?;
    let t = p.next()?;
    if t.tok != Tok::Eof {
        return Err(ParseError::new(
            t.col,
            format!(
                "expected an operator or the end of the expression, found {}",
                describe(&t.tok)
            ),
        ));
    }
    Ok(node)
}

struct Parser {
    chars: Vec<char>,
    /// Index (0-based, in characters) of the next character to lex; its column is `pos + 1`.
    pos: usize,
    dialect: Dialect,
    /// Inside `{{…}}`: `}}` ends the expression.
    braces: bool,
    peeked: Option<Token>,
    /// Current nesting of parentheses, calls, brackets and unary minus.
    nesting: u32,
    /// The lexer sees nothing at or after this index: the end of the argument being tried.
    limit: usize,
    /// Inside a scenario-dialect call argument: a bare word that names nothing is text.
    lenient: bool,
    /// The argument being tried used a bare word where it may not stand (see the module
    /// docs), so the whole argument is read as text.
    misused: bool,
    /// The error being returned must not be turned into text by a lenient argument.
    hard: bool,
}

impl Parser {
    fn new(src: &str, dialect: Dialect, braces: bool) -> Parser {
        let chars: Vec<char> = src.chars().collect();
        Parser {
            limit: chars.len(),
            chars,
            pos: 0,
            dialect,
            braces,
            peeked: None,
            nesting: 0,
            lenient: false,
            misused: false,
            hard: false,
        }
    }

    /// Index of the last `}}` in the source, if any.
    fn last_close_braces(&self) -> Option<usize> {
        self.chars.windows(2).rposition(|w| w == ['}', '}'])
    }

    /// The expression of one `{{…}}` part; `open` is the column of the `{{`.
    fn braced(&mut self, open: usize) -> Result<Node, ParseError> {
        if self.peek()?.tok == Tok::CloseBraces {
            let col = self.peek()?.col;
            return Err(ParseError::new(
                col,
                format!("expected an expression inside \"{{{{\" opened at column {open}"),
            ));
        }
        let node = self.expr()?;
        let t = self.next()?;
        match t.tok {
            Tok::CloseBraces => Ok(node),
            Tok::Eof => Err(ParseError::new(
                t.col,
                format!("expected \"}}}}\" to close \"{{{{\" opened at column {open}"),
            )),
            other => Err(ParseError::new(
                t.col,
                format!(
                    "expected an operator or \"}}}}\" to close \"{{{{\" opened at column {open}, found {}",
                    describe(&other)
                ),
            )),
        }
    }

    // ---- lexer -------------------------------------------------------------------------

    fn peek(&mut self) -> Result<&Token, ParseError> {
        if self.peeked.is_none() {
            let t = self.lex()?;
            self.peeked = Some(t);
        }
        match &self.peeked {
            Some(t) => Ok(t),
            None => Err(ParseError::new(self.pos + 1, "internal lexer error")),
        }
    }

    fn next(&mut self) -> Result<Token, ParseError> {
        match self.peeked.take() {
            Some(t) => Ok(t),
            None => self.lex(),
        }
    }

    fn char_at(&self, i: usize) -> Option<char> {
        if i < self.limit {
            self.chars.get(i).copied()
        } else {
            None
        }
    }

    fn lex(&mut self) -> Result<Token, ParseError> {
        while self.char_at(self.pos).is_some_and(char::is_whitespace) {
            self.pos += 1;
        }
        let col = self.pos + 1;
        let Some(c) = self.char_at(self.pos) else {
            return Ok(Token { tok: Tok::Eof, col });
        };
        let next = self.char_at(self.pos + 1);
        let (tok, len) = match c {
            '0'..='9' => return self.lex_number(),
            '"' => return self.lex_string('"'),
            '\'' if self.dialect == Dialect::App => return self.lex_string('\''),
            '`' => {
                let name = self.lex_backtick()?;
                return Ok(Token {
                    tok: Tok::Backtick(name),
                    col,
                });
            }
            c if is_ident_start(c) => {
                let start = self.pos;
                while self.char_at(self.pos).is_some_and(is_ident_char) {
                    self.pos += 1;
                }
                let name: String = self.chars[start..self.pos].iter().collect();
                return Ok(Token {
                    tok: Tok::Ident(name),
                    col,
                });
            }
            '(' => (Tok::LParen, 1),
            ')' => (Tok::RParen, 1),
            '[' => (Tok::LBracket, 1),
            ']' => (Tok::RBracket, 1),
            '.' => (Tok::Dot, 1),
            ';' => (Tok::Semicolon, 1),
            ',' => (Tok::Comma, 1),
            '=' if next == Some('=') && self.char_at(self.pos + 2) == Some('=') => {
                (Tok::Op(BinOp::Eq), 3)
            }
            '=' if next == Some('=') => (Tok::Op(BinOp::Eq), 2),
            '=' => (Tok::Op(BinOp::Eq), 1),
            '!' if next == Some('=') && self.char_at(self.pos + 2) == Some('=') => {
                (Tok::Op(BinOp::Ne), 3)
            }
            '!' if next == Some('=') => (Tok::Op(BinOp::Ne), 2),
            '<' if next == Some('=') => (Tok::Op(BinOp::Le), 2),
            '<' => (Tok::Op(BinOp::Lt), 1),
            '>' if next == Some('=') => (Tok::Op(BinOp::Ge), 2),
            '>' => (Tok::Op(BinOp::Gt), 1),
            '&' if next == Some('&') => (Tok::Op(BinOp::And), 2),
            '&' => (Tok::Op(BinOp::And), 1),
            '|' if next == Some('|') => (Tok::Op(BinOp::Or), 2),
            '|' => (Tok::Op(BinOp::Or), 1),
            '+' => (Tok::Op(BinOp::Add), 1),
            '-' => (Tok::Op(BinOp::Sub), 1),
            '*' => (Tok::Op(BinOp::Mul), 1),
            '/' => (Tok::Op(BinOp::Div), 1),
            '%' => (Tok::Op(BinOp::Rem), 1),
            '}' if self.braces && next == Some('}') => (Tok::CloseBraces, 2),
            other => {
                return Err(ParseError::new(
                    col,
                    format!("unexpected character {:?}", other.to_string()),
                ));
            }
        };
        self.pos += len;
        Ok(Token { tok, col })
    }

    fn lex_number(&mut self) -> Result<Token, ParseError> {
        let col = self.pos + 1;
        let start = self.pos;
        while self.char_at(self.pos).is_some_and(|c| c.is_ascii_digit()) {
            self.pos += 1;
        }
        let int_end = self.pos;
        if self.char_at(self.pos) == Some('.') {
            match self.char_at(self.pos + 1) {
                Some(d) if d.is_ascii_digit() => {
                    self.pos += 1;
                    while self.char_at(self.pos).is_some_and(|c| c.is_ascii_digit()) {
                        self.pos += 1;
                    }
                }
                // `1.` not followed by a digit starts a reference (a missing key is
                // reported after the dot).
                _ => {
                    let digits: String = self.chars[start..int_end].iter().collect();
                    return match digits.parse::<u32>() {
                        Ok(id) => Ok(Token {
                            tok: Tok::ModuleId(id),
                            col,
                        }),
                        Err(_) => Err(ParseError::new(
                            col,
                            format!("module id {digits} is too large"),
                        )),
                    };
                }
            }
        }
        let text: String = self.chars[start..self.pos].iter().collect();
        match text.parse::<f64>() {
            Ok(n) if n.is_finite() => Ok(Token {
                tok: Tok::Number(n),
                col,
            }),
            _ => Err(ParseError::new(col, format!("number {text} is too large"))),
        }
    }

    fn lex_backtick(&mut self) -> Result<String, ParseError> {
        let open = self.pos + 1;
        self.pos += 1;
        let start = self.pos;
        while let Some(c) = self.char_at(self.pos) {
            if c == '`' {
                let name = self.chars[start..self.pos].iter().collect();
                self.pos += 1;
                return Ok(name);
            }
            self.pos += 1;
        }
        Err(ParseError::new(
            open,
            "expected \"`\" to close the name opened here",
        ))
    }

    fn lex_string(&mut self, quote: char) -> Result<Token, ParseError> {
        let col = self.pos + 1;
        self.pos += 1;
        let mut out = String::new();
        loop {
            let Some(c) = self.char_at(self.pos) else {
                return Err(ParseError::new(
                    col,
                    format!("expected {quote} to close the text opened here"),
                ));
            };
            self.pos += 1;
            // Make's rule for a quote inside scenario text: write it twice (`""""` is one
            // `"`, `" ""MMMM"""` is ` "MMMM"`), as in spreadsheet formulas.
            if c == quote
                && self.dialect == Dialect::Scenario
                && self.char_at(self.pos) == Some(quote)
            {
                out.push(quote);
                self.pos += 1;
                continue;
            }
            if c == quote {
                return Ok(Token {
                    tok: Tok::Str(out),
                    col,
                });
            }
            if c != '\\' {
                out.push(c);
                continue;
            }
            let Some(e) = self.char_at(self.pos) else {
                continue;
            };
            self.pos += 1;
            match e {
                'n' => out.push('\n'),
                't' => out.push('\t'),
                'r' => out.push('\r'),
                'b' => out.push('\u{8}'),
                'f' => out.push('\u{c}'),
                '"' | '\'' | '\\' | '/' | '`' => out.push(e),
                'u' => out.push(self.lex_unicode_escape()),
                // Unknown escapes stay as written, so regular expressions such as
                // "/\d+/g" keep their backslashes.
                other => {
                    out.push('\\');
                    out.push(other);
                }
            }
        }
    }

    /// After `\u`: four hex digits (a surrogate pair joins); malformed input gives U+FFFD.
    fn lex_unicode_escape(&mut self) -> char {
        let hi = match self.hex4() {
            Some(v) => v,
            None => return char::REPLACEMENT_CHARACTER,
        };
        if (0xD800..0xDC00).contains(&hi)
            && self.char_at(self.pos) == Some('\\')
            && self.char_at(self.pos + 1) == Some('u')
        {
            let save = self.pos;
            self.pos += 2;
            if let Some(lo) = self.hex4().filter(|lo| (0xDC00..0xE000).contains(lo)) {
                let code = 0x10000 + ((hi - 0xD800) << 10) + (lo - 0xDC00);
                return char::from_u32(code).unwrap_or(char::REPLACEMENT_CHARACTER);
            }
            self.pos = save;
        }
        char::from_u32(hi).unwrap_or(char::REPLACEMENT_CHARACTER)
    }

    fn hex4(&mut self) -> Option<u32> {
        if self.pos + 4 > self.limit {
            return None;
        }
        let digits = self.chars.get(self.pos..self.pos + 4)?;
        let mut v = 0u32;
        for d in digits {
            v = v * 16 + d.to_digit(16)?;
        }
        self.pos += 4;
        Some(v)
    }

    /// The key after a `.` in a path: a name (may start with a digit) or a backticked name.
    fn key(&mut self) -> Result<String, ParseError> {
        let col = self.pos + 1;
        match self.char_at(self.pos) {
            Some('`') => self.lex_backtick(),
            Some(c) if is_ident_char(c) => {
                let start = self.pos;
                while self.char_at(self.pos).is_some_and(is_ident_char) {
                    self.pos += 1;
                }
                Ok(self.chars[start..self.pos].iter().collect())
            }
            _ => Err(ParseError::new(
                col,
                "expected a key after \".\" (write names with spaces or symbols in backticks: `My name`)",
            )),
        }
    }

    // ---- parser ------------------------------------------------------------------------

    fn enter(&mut self, col: usize) -> Result<(), ParseError> {
        self.nesting += 1;
        if self.nesting > MAX_DEPTH {
            return Err(self.too_deep(col));
        }
        Ok(())
    }

    /// Too deep is never text: the cap bounds the parser and evaluator, lenient or not.
    fn too_deep(&mut self, col: usize) -> ParseError {
        self.hard = true;
        ParseError::new(
            col,
            format!("expression nests too deeply (more than {MAX_DEPTH} levels)"),
        )
    }

    fn leave(&mut self) {
        self.nesting = self.nesting.saturating_sub(1);
    }

    fn node(&mut self, expr: Expr, column: usize, height: u32) -> Result<Node, ParseError> {
        if height > MAX_DEPTH {
            return Err(self.too_deep(column));
        }
        Ok(Node {
            expr,
            column,
            height,
        })
    }

    /// An expression in a position where a bare word may not stand on its own (inside
    /// parentheses or brackets, or outside any call argument).
    fn expr(&mut self) -> Result<Node, ParseError> {
        let (node, bare) = self.binary(1)?;
        if bare {
            self.misused = true;
        }
        Ok(node)
    }

    fn peek_operator(&mut self) -> Result<Option<BinOp>, ParseError> {
        Ok(match &self.peek()?.tok {
            Tok::Op(op) => Some(*op),
            Tok::Ident(name) => word_operator(name),
            _ => None,
        })
    }

    // The functions from here to `call` recurse into each other, so they keep their frames
    // small: rare branches and error messages live in helpers off the recursive path.

    /// Returns the node and whether it is a bare word read as text.
    fn binary(&mut self, min_precedence: u8) -> Result<(Node, bool), ParseError> {
        let (mut lhs, mut lhs_bare) = self.unary()?;
        while let Some(op) = self.peek_operator()? {
            if op.precedence() < min_precedence {
                break;
            }
            let col = self.next()?.col;
            let (rhs, rhs_bare) = self.binary(op.precedence() + 1)?;
            if lhs_bare || rhs_bare {
                self.check_bare_operands(op, &lhs, &rhs, lhs_bare);
            }
            lhs = self.binary_node(op, lhs, rhs, col)?;
            lhs_bare = false;
        }
        Ok((lhs, lhs_bare))
    }

    /// A bare word is text only as a comparison operand against something that is not a
    /// constant (`1.status = active`); anywhere else (`YYYY-MM-DD`, `Europe/Prague`,
    /// `Tom & Jerry`, `a=b`) the argument it stands in is text.
    fn check_bare_operands(&mut self, op: BinOp, lhs: &Node, rhs: &Node, lhs_bare: bool) {
        let other = if lhs_bare { rhs } else { lhs };
        if !op.is_comparison() || matches!(other.expr, Expr::Literal(_)) {
            self.misused = true;
        }
    }

    fn binary_node(
        &mut self,
        op: BinOp,
        lhs: Node,
        rhs: Node,
        col: usize,
    ) -> Result<Node, ParseError> {
        let height = 1 + lhs.height.max(rhs.height);
        self.node(Expr::Binary(op, Box::new(lhs), Box::new(rhs)), col, height)
    }

    fn unary(&mut self) -> Result<(Node, bool), ParseError> {
        if self.peek()?.tok != Tok::Op(BinOp::Sub) {
            return self.primary();
        }
        Ok((self.negation()?, false))
    }

    /// `-operand`; a bare word under it makes its argument text.
    fn negation(&mut self) -> Result<Node, ParseError> {
        let col = self.next()?.col;
        self.enter(col)?;
        let (operand, bare) = self.unary()?;
        self.leave();
        if bare {
            self.misused = true;
        }
        if let Expr::Literal(Value::Number(n)) = &operand.expr
            && let Some(f) = n.as_f64()
        {
            return self.node(Expr::Literal(value::number(-f)), col, 1);
        }
        let height = operand.height + 1;
        self.node(Expr::Neg(Box::new(operand)), col, height)
    }

    fn primary(&mut self) -> Result<(Node, bool), ParseError> {
        let t = self.next()?;
        match t.tok {
            Tok::Ident(name) => self.identifier(name, t.col),
            Tok::LParen => Ok((self.parenthesized(t.col)?, false)),
            other => Ok((self.atom(other, t.col)?, false)),
        }
    }

    /// After `(` at `col`: the expression and its `)`.
    fn parenthesized(&mut self, col: usize) -> Result<Node, ParseError> {
        self.enter(col)?;
        let inner = self.expr()?;
        let close = self.next()?;
        if close.tok != Tok::RParen {
            return Err(ParseError::new(
                close.col,
                format!(
                    "expected \")\" to close \"(\" opened at column {col}, found {}",
                    describe(&close.tok)
                ),
            ));
        }
        self.leave();
        Ok(inner)
    }

    /// A literal or a reference (anything but a name or `(`).
    fn atom(&mut self, tok: Tok, col: usize) -> Result<Node, ParseError> {
        match tok {
            Tok::Number(n) => self.node(Expr::Literal(value::number(n)), col, 1),
            Tok::Str(s) => self.node(Expr::Literal(Value::String(s)), col, 1),
            Tok::ModuleId(id) => {
                if self.dialect == Dialect::App {
                    return Err(ParseError::new(
                        col,
                        format!(
                            "module references such as \"{id}.name\" are not available in app definitions"
                        ),
                    ));
                }
                self.reference(Root::Module(id), col)
            }
            Tok::Backtick(name) => {
                let root = match self.dialect {
                    _ if !name.is_empty() && name.chars().all(|c| c.is_ascii_digit()) => {
                        match name.parse::<u32>() {
                            Ok(id) if self.dialect == Dialect::Scenario => Root::Module(id),
                            Ok(_) => {
                                return Err(ParseError::new(
                                    col,
                                    format!(
                                        "module references such as `{name}` are not available in app definitions"
                                    ),
                                ));
                            }
                            Err(_) => {
                                return Err(ParseError::new(
                                    col,
                                    format!("module id {name} is too large"),
                                ));
                            }
                        }
                    }
                    Dialect::App => Root::Named(name),
                    Dialect::Scenario => {
                        return Err(ParseError::new(
                            col,
                            format!(
                                "expected a module id in backticks (`1`), found `{name}`; a key needs its module: 1.`{name}`"
                            ),
                        ));
                    }
                };
                self.reference(root, col)
            }
            other => Err(ParseError::new(
                col,
                format!("expected an expression, found {}", describe(&other)),
            )),
        }
    }

    /// A name: a call, or (see [`Parser::word`]) a keyword, variable, named root or text.
    fn identifier(&mut self, name: String, col: usize) -> Result<(Node, bool), ParseError> {
        let lenient = self.lenient;
        let t = self.peek()?;
        // `name(` is always a call (an unknown name is an error); in an argument,
        // `Note (see below)` with a space is a call only when the function exists.
        if t.tok == Tok::LParen
            && (!lenient || t.col == col + name.chars().count() || is_callable(&name, self.dialect))
        {
            return Ok((self.call(name, col)?, false));
        }
        self.word(name, col)
    }

    /// A name that is not a call: keyword, variable, named root (app dialect) or, inside a
    /// scenario call argument, a bare word read as text (the `bool` is then true).
    fn word(&mut self, name: String, col: usize) -> Result<(Node, bool), ParseError> {
        if let Some(v) = keyword(&name) {
            return Ok((self.node(Expr::Literal(v), col, 1)?, false));
        }
        if let Some(v) = variable(&name) {
            return Ok((self.node(Expr::Var(v), col, 1)?, false));
        }
        if word_operator(&name).is_some() {
            return Err(ParseError::new(
                col,
                format!("expected an expression, found the operator \"{name}\""),
            ));
        }
        match self.dialect {
            Dialect::App => Ok((self.reference(Root::Named(name), col)?, false)),
            Dialect::Scenario if super::SYSTEM_ROOTS.contains(&name.as_str()) => {
                Ok((self.reference(Root::Named(name), col)?, false))
            }
            Dialect::Scenario if self.lenient => {
                Ok((self.node(Expr::Literal(Value::String(name)), col, 1)?, true))
            }
            Dialect::Scenario => Err(ParseError::new(
                col,
                format!(
                    "unknown name \"{name}\": expected a module reference (1.{name}), a keyword, or text in double quotes (\"{name}\")"
                ),
            )),
        }
    }

    /// The path after a reference's root: `.key`, ``.`key` ``, `[n]`, `[expr]`, `[]`.
    fn reference(&mut self, root: Root, col: usize) -> Result<Node, ParseError> {
        let mut path = Vec::new();
        let mut each = 0u32;
        let mut computed = 0u32;
        loop {
            match self.peek()?.tok {
                Tok::Dot => {
                    self.next()?;
                    path.push(Segment::Key(self.key()?));
                }
                Tok::LBracket => {
                    let open = self.next()?.col;
                    if self.peek()?.tok == Tok::RBracket {
                        self.next()?;
                        each += 1;
                        path.push(Segment::Each);
                        continue;
                    }
                    self.enter(open)?;
                    let index = self.expr()?;
                    let close = self.next()?;
                    if close.tok != Tok::RBracket {
                        return Err(ParseError::new(
                            close.col,
                            format!(
                                "expected \"]\" to close \"[\" opened at column {open}, found {}",
                                describe(&close.tok)
                            ),
                        ));
                    }
                    self.leave();
                    match &index.expr {
                        Expr::Literal(Value::Number(n))
                            if n.as_i64().is_some() || n.as_u64().is_some() =>
                        {
                            let i = n.as_i64().unwrap_or(i64::MAX);
                            path.push(Segment::Index(i));
                        }
                        _ => {
                            computed = computed.max(index.height);
                            path.push(Segment::Computed(index));
                        }
                    }
                }
                _ => break,
            }
        }
        let height = 1 + each + computed;
        self.node(Expr::Ref(Box::new(Reference { root, path })), col, height)
    }

    fn call(&mut self, name: String, col: usize) -> Result<Node, ParseError> {
        let Some(target) = Target::resolve(&name, self.dialect) else {
            return Err(self.unknown_function(&name, col));
        };
        self.next()?; // "("
        self.enter(col)?;
        let (args, comma_text) = self.arguments(&name, col)?;
        self.leave();
        self.finish_call(target, name, col, args, comma_text)
    }

    /// Always an error, even inside an argument that could otherwise be text.
    fn unknown_function(&mut self, name: &str, col: usize) -> ParseError {
        self.hard = true;
        ParseError::new(col, format!("unknown function \"{name}\""))
    }

    /// The arguments after `name(` up to its `)`, and whether one was read as text holding
    /// a "," (an arity error then hints at the separator).
    fn arguments(&mut self, name: &str, col: usize) -> Result<(Vec<Node>, bool), ParseError> {
        let sep = match self.dialect {
            Dialect::Scenario => Tok::Semicolon,
            Dialect::App => Tok::Comma,
        };
        let mut args = Vec::new();
        let mut comma_text = false;
        loop {
            // Here nothing is peeked: `self.pos` is just after the "(" or separator.
            let end = match self.dialect {
                Dialect::Scenario => self.argument_end()?,
                Dialect::App => ArgEnd::Strict,
            };
            if let ArgEnd::Unclosed(at) = end {
                self.pos = at;
                let t = self.next()?;
                return Err(self.separator_error(&t, name, col));
            }
            if let ArgEnd::At(end) = end {
                if args.is_empty() && self.is_empty_call(end) {
                    self.pos = end;
                    self.next()?;
                    break;
                }
                let arg = self.lenient_argument(end, name, col, &mut comma_text)?;
                args.push(arg);
            } else {
                if args.is_empty() && self.peek()?.tok == Tok::RParen {
                    self.next()?;
                    break;
                }
                let arg = self.strict_argument(&sep)?;
                args.push(arg);
            }
            let t = self.next()?;
            if t.tok == Tok::RParen {
                break;
            }
            if t.tok != sep {
                return Err(self.separator_error(&t, name, col));
            }
        }
        Ok((args, comma_text))
    }

    /// `name( )`: only blanks up to the `)` at `end`.
    fn is_empty_call(&self, end: usize) -> bool {
        self.chars.get(end) == Some(&')')
            && self.chars[self.pos..end].iter().all(|c| c.is_whitespace())
    }

    /// An app-dialect argument, or a scenario argument with something left open inside
    /// (parsed as before so the error names it; bare words stay text meanwhile).
    fn strict_argument(&mut self, sep: &Tok) -> Result<Node, ParseError> {
        let t = self.peek()?;
        // An empty argument (`replace(x; " ";)`) is empty text, as in Make.
        if t.tok == *sep || t.tok == Tok::RParen {
            let c = t.col;
            return self.node(Expr::Literal(Value::from("")), c, 1);
        }
        let saved = (self.lenient, self.misused);
        self.lenient = self.dialect == Dialect::Scenario;
        let arg = self.binary(1);
        (self.lenient, self.misused) = saved;
        Ok(arg?.0)
    }

    fn separator_error(&self, t: &Token, name: &str, col: usize) -> ParseError {
        let (sep, other_sep, hint) = match self.dialect {
            Dialect::Scenario => (Tok::Semicolon, Tok::Comma, SCENARIO_SEPARATOR_HINT),
            Dialect::App => (
                Tok::Comma,
                Tok::Semicolon,
                " (app definitions separate arguments with \",\")",
            ),
        };
        let hint = if t.tok == other_sep { hint } else { "" };
        ParseError::new(
            t.col,
            format!(
                "expected {} or \")\" to close \"{name}(\" opened at column {col}, found {}{hint}",
                describe(&sep),
                describe(&t.tok)
            ),
        )
    }

    /// Checks the special forms' arity and builds the call node.
    fn finish_call(
        &mut self,
        target: Target,
        name: String,
        col: usize,
        args: Vec<Node>,
        comma_text: bool,
    ) -> Result<Node, ParseError> {
        let height = 1 + args.iter().map(|a| a.height).max().unwrap_or(0);
        let expr = match target {
            Target::Lazy(kind) => {
                let (min, max) = match kind {
                    Lazy::If => (2, 3),
                    Lazy::IfEmpty => (2, 2),
                    Lazy::Switch => (3, usize::MAX),
                };
                if args.len() < min || args.len() > max {
                    let expected = match kind {
                        Lazy::If => "2 or 3 arguments (condition; then; else)",
                        Lazy::IfEmpty => "2 arguments (value; fallback)",
                        Lazy::Switch => "at least 3 arguments (value; case; result; …; else)",
                    };
                    let hint = if comma_text {
                        SCENARIO_SEPARATOR_HINT
                    } else {
                        ""
                    };
                    self.hard = true;
                    return Err(ParseError::new(
                        col,
                        format!("{name}() takes {expected}, got {}{hint}", args.len()),
                    ));
                }
                Expr::Lazy(kind, args)
            }
            Target::Func(func) => Expr::Call(Box::new(Call {
                name: name.into_boxed_str(),
                func,
                args,
            })),
        };
        self.node(expr, col, height)
    }

    // ---- lenient scenario arguments ------------------------------------------------------

    /// Where the scenario argument starting at `self.pos` ends (see [`ArgEnd`]), looking
    /// past double quotes, backticks and nested parentheses. A nested `{{` is an error
    /// (make.md documents no `{{…}}` inside an expression).
    fn argument_end(&mut self) -> Result<ArgEnd, ParseError> {
        let mut depth = 0usize;
        let mut i = self.pos;
        while let Some(c) = self.char_at(i) {
            match c {
                '"' | '`' => {
                    i += 1;
                    loop {
                        match self.char_at(i) {
                            None => return Ok(ArgEnd::Strict),
                            Some('\\') if c == '"' => i += 2,
                            Some(q) if q == c => break,
                            Some(_) => i += 1,
                        }
                    }
                }
                '(' => depth += 1,
                ')' if depth == 0 => return Ok(ArgEnd::At(i)),
                ')' => depth -= 1,
                ';' if depth == 0 => return Ok(ArgEnd::At(i)),
                '{' if self.char_at(i + 1) == Some('{') => {
                    self.hard = true;
                    return Err(ParseError::new(
                        i + 1,
                        "\"{{\" cannot be nested inside an expression; refer to values without braces (1.name)",
                    ));
                }
                '}' if self.braces && self.char_at(i + 1) == Some('}') => break,
                _ => {}
            }
            i += 1;
        }
        Ok(if depth == 0 {
            ArgEnd::Unclosed(i)
        } else {
            ArgEnd::Strict
        })
    }

    /// The scenario argument from `self.pos` to `end` (its `;` or `)`): the expression it
    /// holds, or its trimmed text (see the module docs for the rule). Leaves `self.pos` at
    /// `end` with nothing peeked.
    fn lenient_argument(
        &mut self,
        end: usize,
        name: &str,
        col: usize,
        comma_text: &mut bool,
    ) -> Result<Node, ParseError> {
        let start = self.pos;
        let raw = &self.chars[start..end];
        let lead = raw.iter().take_while(|c| c.is_whitespace()).count();
        let trail = raw[lead..]
            .iter()
            .rev()
            .take_while(|c| c.is_whitespace())
            .count();
        let body = &raw[lead..raw.len() - trail];
        if body.is_empty() {
            // An empty argument (`replace(x; " ";)`) is empty text, as in Make.
            self.pos = end;
            return self.node(Expr::Literal(Value::from("")), end + 1, 1);
        }
        if !is_calendar_date(body) {
            let saved = (self.limit, self.nesting, self.lenient, self.misused);
            self.limit = end;
            self.lenient = true;
            self.misused = false;
            let outcome = self.try_argument(name, col);
            let misused = self.misused;
            (self.limit, self.nesting, self.lenient, self.misused) = saved;
            self.pos = end;
            self.peeked = None;
            match outcome {
                Ok(Some(node)) if !misused => return Ok(node),
                Err(e) if self.hard => return Err(e),
                _ => {}
            }
        }
        let text: String = self.chars[start + lead..end - trail].iter().collect();
        self.pos = end;
        self.peeked = None;
        if text.contains(',') {
            *comma_text = true;
        }
        self.node(Expr::Literal(Value::String(text)), start + lead + 1, 1)
    }

    /// Parses the argument up to `self.limit` as one expression: `Ok(None)` when it is not
    /// one (the caller reads it as text); `Err` only for errors that text cannot excuse.
    fn try_argument(&mut self, name: &str, col: usize) -> Result<Option<Node>, ParseError> {
        let (node, _) = self.binary(1)?;
        let t = self.next()?;
        match t.tok {
            Tok::Eof => Ok(Some(node)),
            // `if(1.a = 1, "x", "y")`: an expression that reads data, then a comma, is the
            // app dialect's separator by mistake rather than text.
            Tok::Comma if !self.misused && reads_data(&node) => {
                self.hard = true;
                Err(self.separator_error(&t, name, col))
            }
            _ => Ok(None),
        }
    }
}

/// How a scenario argument ends.
enum ArgEnd {
    /// At this index: its `;` or `)`.
    At(usize),
    /// The call is left open: the `}}` or the end of the source is at this index.
    Unclosed(usize),
    /// A quote, backtick or parenthesis inside is left open: the argument is parsed
    /// strictly so the error says which.
    Strict,
}

/// What a call calls: a special form (only the chosen branch is evaluated) or a function.
enum Target {
    Lazy(Lazy),
    Func(functions::Function),
}

impl Target {
    /// The function `name` calls; app definitions may also call the app family
    /// (`functions::app`).
    fn resolve(name: &str, dialect: Dialect) -> Option<Target> {
        Some(match name {
            "if" => Target::Lazy(Lazy::If),
            "ifempty" => Target::Lazy(Lazy::IfEmpty),
            "switch" => Target::Lazy(Lazy::Switch),
            _ => Target::Func(functions::lookup(name).or_else(|| match dialect {
                Dialect::App => functions::app::lookup(name),
                Dialect::Scenario => None,
            })?),
        })
    }
}

const SCENARIO_SEPARATOR_HINT: &str = " (scenario mappings separate arguments with \";\")";

/// `if`, `ifempty`, `switch` or a catalogue function.
fn is_callable(name: &str, dialect: Dialect) -> bool {
    Target::resolve(name, dialect).is_some()
}

/// True when evaluating the node reads something: a reference, variable or call.
fn reads_data(node: &Node) -> bool {
    match &node.expr {
        Expr::Literal(_) => false,
        Expr::Ref(_) | Expr::Var(_) | Expr::Call(_) | Expr::Lazy(..) => true,
        Expr::Neg(n) => reads_data(n),
        Expr::Binary(_, l, r) => reads_data(l) || reads_data(r),
    }
}

/// `2016-12-08`: a calendar date written unquoted is text, not two subtractions.
fn is_calendar_date(text: &[char]) -> bool {
    text.len() == 10
        && text.iter().enumerate().all(|(i, c)| match i {
            4 | 7 => *c == '-',
            _ => c.is_ascii_digit(),
        })
}

#[cfg(test)]
mod tests {
    use crate::expr::{Dialect, ParseError, Template};

    fn err(src: &str) -> ParseError {
        match Template::parse(src, Dialect::Scenario) {
            Ok(t) => panic!("{src:?} parsed: {t:?}"),
            Err(e) => e,
        }
    }

    fn err_expr(src: &str, dialect: Dialect) -> ParseError {
        match Template::parse_expression(src, dialect) {
            Ok(t) => panic!("{src:?} parsed: {t:?}"),
            Err(e) => e,
        }
    }

    #[test]
    fn unclosed_call_names_its_opening() {
        let e = err("{{lower(1.email}}");
        assert_eq!(e.column, 16);
        assert_eq!(
            e.message,
            "expected \";\" or \")\" to close \"lower(\" opened at column 3, found \"}}\""
        );
        assert_eq!(
            e.to_string(),
            "column 16: expected \";\" or \")\" to close \"lower(\" opened at column 3, found \"}}\""
        );
    }

    #[test]
    fn columns_count_characters_across_parts() {
        let e = err("Hi {{1.a}} and {{bar}}");
        assert_eq!(e.column, 18);
        assert!(e.message.contains("unknown name \"bar\""), "{}", e.message);
        // Multi-byte characters before the error count once each.
        let e = err("ěščř {{foo}}");
        assert_eq!(e.column, 8);
    }

    #[test]
    fn unknown_function_is_a_parse_error() {
        let e = err("{{lowr(1.a)}}");
        assert_eq!(
            (e.column, e.message.as_str()),
            (3, "unknown function \"lowr\"")
        );
        let e = err("{{Lower(1.a)}}");
        assert_eq!(e.message, "unknown function \"Lower\"");
    }

    #[test]
    fn braces_must_close() {
        let e = err("Hello {{ 1.a");
        assert_eq!(e.column, 7);
        assert!(e.message.contains("no closing \"}}\""), "{}", e.message);
        let e = err("{{1.a}} {{");
        assert_eq!(e.column, 9);
        let e = err("{{}}");
        assert_eq!(e.column, 3);
        assert!(
            e.message.starts_with("expected an expression"),
            "{}",
            e.message
        );
        let e = err("{{1.a 2}}");
        assert_eq!(e.column, 7);
        assert!(
            e.message.starts_with("expected an operator or \"}}\""),
            "{}",
            e.message
        );
        // A "}}" inside a string does not close the expression.
        let e = err("{{\"}}\"");
        assert_eq!(e.column, 7);
        assert_eq!(
            e.message,
            "expected \"}}\" to close \"{{\" opened at column 1"
        );
    }

    #[test]
    fn literals_errors() {
        let e = err("{{lower(\"abc)}}");
        assert_eq!(e.column, 9);
        assert!(e.message.contains("to close the text"), "{}", e.message);
        let e = err("{{1.`abc}}");
        assert_eq!(e.column, 5);
        let e = err("{{1.a # 2}}");
        assert_eq!(
            (e.column, e.message.as_str()),
            (7, "unexpected character \"#\"")
        );
        let e = err("{{1. a}}");
        assert_eq!(e.column, 5);
        assert!(
            e.message.starts_with("expected a key after \".\""),
            "{}",
            e.message
        );
        let e = err("{{99999999999.a}}");
        assert!(e.message.contains("too large"), "{}", e.message);
        let e = err("{{1.a[1}}");
        assert_eq!(e.column, 8);
        assert!(
            e.message.contains("to close \"[\" opened at column 6"),
            "{}",
            e.message
        );
        let e = err("{{(1 + 2}}");
        assert!(
            e.message.contains("to close \"(\" opened at column 3"),
            "{}",
            e.message
        );
    }

    #[test]
    fn scenario_identifiers_and_separators() {
        let e = err("{{if(1.a = 1, \"x\", \"y\")}}");
        assert_eq!(e.column, 13);
        assert!(
            e.message.contains("separate arguments with \";\""),
            "{}",
            e.message
        );
        let e = err("{{body.id}}");
        assert_eq!(e.column, 3);
        assert!(e.message.contains("unknown name \"body\""), "{}", e.message);
        let e = err("{{`name`}}");
        assert!(
            e.message.contains("module id in backticks"),
            "{}",
            e.message
        );
        let e = err("{{1 and}}");
        assert_eq!(e.column, 8);
        let e = err("{{and}}");
        assert!(e.message.contains("operator \"and\""), "{}", e.message);
    }

    #[test]
    fn app_dialect() {
        assert!(Template::parse("{{if(body.id > 100, body.user, false)}}", Dialect::App).is_ok());
        let e = Template::parse("{{noSuchFn(now, body.expires_in)}}", Dialect::App).unwrap_err();
        assert_eq!(e.message, "unknown function \"noSuchFn\"");
        let e = err_expr("1.a", Dialect::App);
        assert!(
            e.message.contains("not available in app definitions"),
            "{}",
            e.message
        );
        let e = err_expr("lower(body.a; 2)", Dialect::App);
        assert!(
            e.message.contains("separate arguments with \",\""),
            "{}",
            e.message
        );
    }

    #[test]
    fn special_forms_check_their_arity() {
        let e = err("{{if(1.a)}}");
        assert_eq!(e.column, 3);
        assert_eq!(
            e.message,
            "if() takes 2 or 3 arguments (condition; then; else), got 1"
        );
        assert!(
            err("{{ifempty(1.a; 2; 3)}}")
                .message
                .starts_with("ifempty() takes 2")
        );
        assert!(
            err("{{switch(1.a; 2)}}")
                .message
                .starts_with("switch() takes at least 3")
        );
    }

    #[test]
    fn bare_expression_must_end() {
        let e = err_expr("1.a )", Dialect::Scenario);
        assert_eq!(e.column, 5);
        assert!(e.message.contains("end of the expression"), "{}", e.message);
        assert!(
            err_expr("", Dialect::Scenario)
                .message
                .starts_with("expected an expression")
        );
        assert!(
            err_expr("{{1.a}}", Dialect::Scenario)
                .message
                .contains("unexpected character")
        );
    }

    #[test]
    fn nesting_is_capped_not_overflowed() {
        let deep = |open: &str, close: &str, n: usize| {
            format!("{{{{{}1{}}}}}", open.repeat(n), close.repeat(n))
        };
        for src in [
            deep("(", ")", 10_000),
            deep("lower(", ")", 10_000),
            deep("-", "", 10_000),
            format!("{{{{1.a{}}}}}", "[1.a".repeat(10_000) + &"]".repeat(10_000)),
            format!("{{{{1.a{}}}}}", "[]".repeat(10_000)),
            format!("{{{{1{}}}}}", " + 1".repeat(10_000)),
            format!("{{{{1{}}}}}", " & 1".repeat(10_000)),
        ] {
            let e = err(&src);
            assert!(e.message.contains("nests too deeply"), "{}", e.message);
            assert!(e.column > 2, "{e}");
        }
        assert!(
            err_expr(&"(".repeat(10_000), Dialect::Scenario)
                .message
                .contains("nests too deeply")
        );
        // Reasonable nesting is fine.
        assert!(Template::parse(&deep("(", ")", 100), Dialect::Scenario).is_ok());
        assert!(
            Template::parse(
                &format!("{{{{1{}}}}}", " + 1".repeat(100)),
                Dialect::Scenario
            )
            .is_ok()
        );
    }

    #[test]
    fn lenient_argument_errors() {
        // A name directly followed by "(" where an operand can stand is a call.
        let e = err("{{ifempty(1.x; Item(s))}}");
        assert_eq!(
            (e.column, e.message.as_str()),
            (16, "unknown function \"Item\"")
        );
        let e = err("{{lower(lower(1.x; if(1.a)))}}");
        assert_eq!(e.column, 20);
        assert!(e.message.starts_with("if() takes"), "{}", e.message);
        let e = err("x {{formatDate({{1.date}}; DD.MM.YYYY)}}");
        assert_eq!(e.column, 16);
        assert!(e.message.contains("cannot be nested"), "{}", e.message);
        // No clean end: the strict parse names what is missing.
        let e = err("{{ifempty(1.x; Unknown user}}");
        assert_eq!(e.column, 28);
        assert_eq!(
            e.message,
            "expected \";\" or \")\" to close \"ifempty(\" opened at column 3, found \"}}\""
        );
        let e = err_expr("ifempty(1.x; (a b)", Dialect::Scenario);
        assert_eq!(e.column, 19);
        assert!(e.message.contains("found the end"), "{}", e.message);
        let e = err_expr("ifempty(1.x; lower(a b", Dialect::Scenario);
        assert_eq!(e.column, 23);
        assert!(e.message.contains("to close \"lower(\""), "{}", e.message);
        let e = err("{{ifempty(1.x; (a b}}");
        assert_eq!(e.column, 19);
        assert!(e.message.contains("to close \"(\""), "{}", e.message);
        // The app dialect keeps reporting a stray word.
        let e = err_expr("ifempty(body.x, Unknown user)", Dialect::App);
        assert_eq!(e.column, 25);
    }

    #[test]
    fn text_arguments_hide_their_references() {
        let t = Template::parse(
            "{{ifempty(1.x; Hello 2.name)}} {{if(3.s = active; 4.a; No)}}",
            Dialect::Scenario,
        )
        .unwrap();
        let refs: Vec<u32> = t.module_refs().iter().map(|r| r.id).collect();
        assert_eq!(refs, [1, 3, 4]);
    }

    #[test]
    fn lenient_arguments_stay_capped() {
        let n = 2_000;
        for src in [
            format!("{{{{{}a b{}}}}}", "lower(".repeat(n), ")".repeat(n)),
            format!("{{{{{}a b}}}}", "lower(".repeat(n)),
            format!("{{{{lower({}x{})}}}}", "(".repeat(n), ")".repeat(n)),
            format!("{{{{lower({}x)}}}}", "(".repeat(n)),
            format!("{{{{lower({})}}}}", "-".repeat(n)),
            format!("{{{{lower(1.a{})}}}}", " = a".repeat(n)),
        ] {
            let e = err(&src);
            assert!(e.column > 2, "{e}");
        }
        for src in [
            format!("{{{{{}a b{}}}}}", "lower(".repeat(n), ")".repeat(n)),
            format!("{{{{lower({}x{})}}}}", "(".repeat(n), ")".repeat(n)),
        ] {
            assert!(err(&src).message.contains("nests too deeply"));
        }
        // Text as deep as the cap allows is fine.
        let src = format!("{{{{{}a b{}}}}}", "lower(".repeat(100), ")".repeat(100));
        assert!(Template::parse(&src, Dialect::Scenario).is_ok());
        let src = format!("{{{{lower({})}}}}", "-".repeat(100));
        assert!(Template::parse(&src, Dialect::Scenario).is_ok());
    }

    /// Random argument text never panics, and what parses evaluates.
    #[test]
    fn random_arguments_never_panic() {
        use rand::{Rng, SeedableRng};
        let alphabet = [
            "a",
            "Yes",
            "1.a",
            "2.b",
            "now",
            "null",
            "true",
            "and",
            " ",
            "  ",
            ";",
            ",",
            "(",
            ")",
            "\"",
            "\"x\"",
            "`",
            "-",
            "+",
            "/",
            "*",
            "%",
            "=",
            "!=",
            "<",
            "&",
            "|",
            ".",
            ":",
            "@",
            "[",
            "]",
            "{",
            "}",
            "{{",
            "}}",
            "\\s",
            "lower(",
            "foo(",
            "if(",
            "switch(",
            "2016-12-08",
            "1",
            "é",
            "\n",
        ];
        let mut rng = rand::rngs::StdRng::seed_from_u64(11);
        let scope = crate::expr::test_support::TestScope::new(serde_json::json!({
            "1": {"a": "x"}, "2": {"b": 2}
        }));
        for _ in 0..10_000 {
            let n = rng.random_range(0..16);
            let body: String = (0..n)
                .map(|_| alphabet[rng.random_range(0..alphabet.len())])
                .collect();
            let src = format!("{{{{ifempty(1.x; {body})}}}}");
            if let Ok(t) = Template::parse(&src, Dialect::Scenario) {
                let _ = t.eval(&scope);
            }
            if let Ok(t) = Template::parse_expression(&src[2..src.len() - 2], Dialect::Scenario) {
                let _ = t.eval(&scope);
            }
        }
    }

    /// Random input built from IML's own characters never panics the parser or evaluator.
    #[test]
    fn random_input_never_panics() {
        use rand::{Rng, SeedableRng};
        let alphabet: Vec<&str> = vec![
            "{{",
            "}}",
            "(",
            ")",
            "[",
            "]",
            "[]",
            ".",
            ";",
            ",",
            "\"",
            "`",
            "\\",
            "1",
            "-1",
            "0",
            "1.a",
            "a",
            " ",
            "=",
            "!=",
            "<",
            ">=",
            "&",
            "|",
            "+",
            "-",
            "*",
            "/",
            "%",
            "and",
            "or",
            "lower(",
            "if(",
            "switch(",
            "ifempty(",
            "get(",
            "replace(",
            "\"/a/g\"",
            "$1",
            "1.5",
            "é",
            "\u{1F600}",
            "now",
            "null",
            "substring(",
            "indexOf(",
            "formatNumber(",
            "round(",
            "[-1]",
            "`1`",
            "\"x\"",
        ];
        let mut rng = rand::rngs::StdRng::seed_from_u64(7);
        let scope = crate::expr::test_support::TestScope::new(serde_json::json!({
            "1": {"a": [1, "x", {"a": 2}], "i": 2}
        }));
        for _ in 0..20_000 {
            let n = rng.random_range(1..24);
            let src: String = (0..n)
                .map(|_| alphabet[rng.random_range(0..alphabet.len())])
                .collect();
            for dialect in [Dialect::Scenario, Dialect::App] {
                if let Ok(t) = Template::parse(&src, dialect) {
                    let _ = t.eval(&scope);
                }
                if let Ok(t) = Template::parse_expression(&src, dialect) {
                    let _ = t.eval(&scope);
                }
            }
        }
    }
}
