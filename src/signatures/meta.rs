//! Meta rules: expressions over other rules' hit counts, parsed from rule files and evaluated
//! on each message with the names resolved to rule ids.

use super::rules::{Expr, Op};

/// Deepest nesting of parentheses and unary operators in a meta expression; the parser
/// recurses per level.
const MAX_META_DEPTH: usize = 64;

/// Most tokens in one meta expression. An expression is a tree that evaluation walks
/// recursively, and a chain of N terms is N deep: 30,000 terms overflowed the stack. The
/// longest metas SpamAssassin ships have a few dozen terms.
const MAX_META_TOKENS: usize = 2000;

pub fn parse_meta(s: &str) -> Result<Expr, String> {
    let tokens = tokenize(s)?;
    if tokens.len() > MAX_META_TOKENS {
        return Err(format!(
            "meta expression of {} tokens; at most {MAX_META_TOKENS}",
            tokens.len()
        ));
    }
    let mut p = MetaParser {
        t: &tokens,
        i: 0,
        depth: 0,
    };
    let e = p.or()?;
    if p.i != tokens.len() {
        return Err(format!("unexpected {:?} in meta expression", tokens[p.i]));
    }
    Ok(e)
}

#[derive(Debug, Clone, PartialEq)]
enum Tok {
    Num(f64),
    Name(String),
    Op(&'static str),
    Open,
    Close,
}

fn tokenize(s: &str) -> Result<Vec<Tok>, String> {
    let b = s.as_bytes();
    let mut out = Vec::new();
    let mut i = 0;
    while i < b.len() {
        let c = b[i];
        if c.is_ascii_whitespace() {
            i += 1;
        } else if c.is_ascii_digit() || (c == b'.' && b.get(i + 1).is_some_and(u8::is_ascii_digit))
        {
            let start = i;
            while i < b.len() && (b[i].is_ascii_digit() || b[i] == b'.') {
                i += 1;
            }
            out.push(Tok::Num(
                s[start..i]
                    .parse()
                    .map_err(|_| format!("bad number {:?}", &s[start..i]))?,
            ));
        } else if c.is_ascii_alphabetic() || c == b'_' {
            let start = i;
            while i < b.len() && (b[i].is_ascii_alphanumeric() || b[i] == b'_') {
                i += 1;
            }
            out.push(Tok::Name(s[start..i].to_string()));
        } else if c == b'(' {
            out.push(Tok::Open);
            i += 1;
        } else if c == b')' {
            out.push(Tok::Close);
            i += 1;
        } else {
            let two = s.get(i..i + 2).unwrap_or("");
            let op = ["&&", "||", "==", "!=", "<=", ">="]
                .into_iter()
                .find(|o| *o == two);
            if let Some(op) = op {
                out.push(Tok::Op(op));
                i += 2;
            } else {
                let one = match c {
                    b'!' => "!",
                    b'<' => "<",
                    b'>' => ">",
                    b'+' => "+",
                    b'-' => "-",
                    b'*' => "*",
                    b'/' => "/",
                    _ => {
                        return Err(format!(
                            "unexpected character {:?} in meta expression",
                            c as char
                        ));
                    }
                };
                out.push(Tok::Op(one));
                i += 1;
            }
        }
    }
    if out.is_empty() {
        return Err("empty meta expression".into());
    }
    Ok(out)
}

struct MetaParser<'a> {
    t: &'a [Tok],
    i: usize,
    depth: usize,
}

impl MetaParser<'_> {
    fn peek_op(&self) -> Option<&'static str> {
        match self.t.get(self.i) {
            Some(Tok::Op(o)) => Some(o),
            _ => None,
        }
    }

    fn binary(
        &mut self,
        ops: &[(&str, Op)],
        next: fn(&mut Self) -> Result<Expr, String>,
    ) -> Result<Expr, String> {
        let mut left = next(self)?;
        while let Some(op) = self
            .peek_op()
            .and_then(|o| ops.iter().find(|(s, _)| *s == o))
        {
            self.i += 1;
            let right = next(self)?;
            left = Expr::Bin(Box::new(left), op.1, Box::new(right));
        }
        Ok(left)
    }

    fn or(&mut self) -> Result<Expr, String> {
        self.binary(&[("||", Op::Or)], Self::and)
    }

    fn and(&mut self) -> Result<Expr, String> {
        self.binary(&[("&&", Op::And)], Self::cmp)
    }

    fn cmp(&mut self) -> Result<Expr, String> {
        self.binary(
            &[
                ("==", Op::Eq),
                ("!=", Op::Ne),
                ("<", Op::Lt),
                ("<=", Op::Le),
                (">", Op::Gt),
                (">=", Op::Ge),
            ],
            Self::sum,
        )
    }

    fn sum(&mut self) -> Result<Expr, String> {
        self.binary(&[("+", Op::Add), ("-", Op::Sub)], Self::product)
    }

    fn product(&mut self) -> Result<Expr, String> {
        self.binary(&[("*", Op::Mul), ("/", Op::Div)], Self::unary)
    }

    fn unary(&mut self) -> Result<Expr, String> {
        let op = match self.peek_op() {
            Some(op @ ("!" | "-")) => op,
            _ => return self.primary(),
        };
        self.i += 1;
        self.depth += 1;
        if self.depth > MAX_META_DEPTH {
            return Err(format!(
                "meta expression nested deeper than {MAX_META_DEPTH}"
            ));
        }
        let inner = Box::new(self.unary()?);
        self.depth -= 1;
        Ok(if op == "!" {
            Expr::Not(inner)
        } else {
            Expr::Neg(inner)
        })
    }

    fn primary(&mut self) -> Result<Expr, String> {
        let tok = self.t.get(self.i).cloned();
        self.i += 1;
        match tok {
            Some(Tok::Num(n)) => Ok(Expr::Num(n)),
            Some(Tok::Name(n)) => Ok(Expr::Rule(n)),
            Some(Tok::Open) => {
                self.depth += 1;
                if self.depth > MAX_META_DEPTH {
                    return Err(format!(
                        "meta expression nested deeper than {MAX_META_DEPTH}"
                    ));
                }
                let e = self.or()?;
                self.depth -= 1;
                match self.t.get(self.i) {
                    Some(Tok::Close) => {
                        self.i += 1;
                        Ok(e)
                    }
                    _ => Err("missing ) in meta expression".into()),
                }
            }
            Some(other) => Err(format!("unexpected {other:?} in meta expression")),
            None => Err("meta expression ends early".into()),
        }
    }
}

/// Rule names an expression refers to.
pub fn referenced(e: &Expr, out: &mut Vec<String>) {
    match e {
        Expr::Num(_) => {}
        Expr::Rule(n) => out.push(n.clone()),
        Expr::Not(x) | Expr::Neg(x) => referenced(x, out),
        Expr::Bin(a, _, b) => {
            referenced(a, out);
            referenced(b, out);
        }
    }
}

/// A meta rule's expression with rule ids in place of names.
pub(crate) enum Compute {
    Num(f64),
    Rule(usize),
    Not(Box<Compute>),
    Neg(Box<Compute>),
    Bin(Box<Compute>, Op, Box<Compute>),
}

pub(crate) fn eval(e: &Compute, counts: &[u32]) -> f64 {
    let b = |x: bool| if x { 1.0 } else { 0.0 };
    match e {
        Compute::Num(n) => *n,
        Compute::Rule(i) => counts[*i] as f64,
        Compute::Not(x) => b(eval(x, counts) == 0.0),
        Compute::Neg(x) => -eval(x, counts),
        Compute::Bin(l, op, r) => {
            let a = eval(l, counts);
            // Short-circuit like Perl, so a meta stays cheap.
            match op {
                Op::And if a == 0.0 => return 0.0,
                Op::Or if a != 0.0 => return 1.0,
                _ => {}
            }
            let c = eval(r, counts);
            match op {
                Op::Or | Op::And => b(c != 0.0),
                Op::Eq => b(a == c),
                Op::Ne => b(a != c),
                Op::Lt => b(a < c),
                Op::Le => b(a <= c),
                Op::Gt => b(a > c),
                Op::Ge => b(a >= c),
                Op::Add => a + c,
                Op::Sub => a - c,
                Op::Mul => a * c,
                Op::Div if c == 0.0 => 0.0,
                Op::Div => a / c,
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn meta_precedence() {
        let e = parse_meta("A || B && !C + 2 > 1").unwrap();
        // || binds loosest, then &&, then comparison, then +.
        match e {
            Expr::Bin(_, Op::Or, right) => match *right {
                Expr::Bin(_, Op::And, cmp) => assert!(matches!(*cmp, Expr::Bin(_, Op::Gt, _))),
                other => panic!("{other:?}"),
            },
            other => panic!("{other:?}"),
        }
        assert!(parse_meta(&"(".repeat(100)).is_err());
        // Deep unary chains and long term chains are refused, not parsed into a tree that
        // evaluation would recurse through.
        assert!(parse_meta(&format!("{}A", "-".repeat(50_000))).is_err());
        assert!(parse_meta(&format!("{}A", "!".repeat(60))).is_ok());
        let long = vec!["__A"; 30_000].join(" + ");
        assert!(parse_meta(&long).unwrap_err().contains("at most 2000"));
        assert!(parse_meta(&vec!["__A"; 900].join(" + ")).is_ok());
        assert!(parse_meta("A &&").is_err());
        assert!(parse_meta("A $ B").is_err());
    }
}
