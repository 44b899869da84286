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

/// Lower and upper bounds on a value; NaN in either end means nothing is known.
pub(crate) type Bounds = (f64, f64);

/// Whether every value within `x` is true (not zero), or every one false; None when they
/// differ or nothing is known.
pub(crate) fn truth(x: Bounds) -> Option<bool> {
    if x.0 == 0.0 && x.1 == 0.0 {
        Some(false)
    } else if x.0 > 0.0 || x.1 < 0.0 {
        Some(true)
    } else {
        None
    }
}

/// The bounds of a truth value: a point where it is known, 0 to 1 where not.
pub(crate) fn of_truth(t: Option<bool>) -> Bounds {
    match t {
        Some(true) => (1.0, 1.0),
        Some(false) => (0.0, 0.0),
        None => (0.0, 1.0),
    }
}

/// The smallest and largest of `v`, or NaN for both if any is NaN (`f64::min` would drop
/// it, and a NaN must leave the result unknown).
fn span<const N: usize>(v: [f64; N]) -> Bounds {
    if v.iter().any(|x| x.is_nan()) {
        return (f64::NAN, f64::NAN);
    }
    let lo = v.iter().copied().fold(f64::INFINITY, f64::min);
    let hi = v.iter().copied().fold(f64::NEG_INFINITY, f64::max);
    (lo, hi)
}

/// Bounds on what [`eval`] gives for `e` when each rule's count lies within `rules`' bounds
/// for it: a scan evaluates a meta before running the sub-rules that only it reads, and
/// runs those only where the bounds leave the meta's truth open. Sound, not tight: where
/// [`truth`] of the result is known, `eval` agrees whatever counts within the bounds the
/// rules have (the tests check it on random expressions), and rounding is monotone, so the
/// ends computed bound the value computed.
pub(crate) fn bounds(e: &Compute, rules: &impl Fn(usize) -> Bounds) -> Bounds {
    match e {
        Compute::Num(n) => (*n, *n),
        Compute::Rule(i) => rules(*i),
        Compute::Not(x) => of_truth(truth(bounds(x, rules)).map(|t| !t)),
        Compute::Neg(x) => {
            let (lo, hi) = bounds(x, rules);
            (-hi, -lo)
        }
        Compute::Bin(l, op, r) => {
            let a = bounds(l, rules);
            // As `eval` short-circuits: where the left side decides, the right is not read.
            match (op, truth(a)) {
                (Op::And, Some(false)) => return (0.0, 0.0),
                (Op::Or, Some(true)) => return (1.0, 1.0),
                _ => {}
            }
            let c = bounds(r, rules);
            let (ta, tc) = (truth(a), truth(c));
            match op {
                Op::And => of_truth(match (ta, tc) {
                    (_, Some(false)) => Some(false),
                    (Some(true), t) => t,
                    _ => None,
                }),
                Op::Or => of_truth(match (ta, tc) {
                    (_, Some(true)) => Some(true),
                    (Some(false), t) => t,
                    _ => None,
                }),
                Op::Eq | Op::Ne => {
                    let same = if a.0 == a.1 && c.0 == c.1 && a.0 == c.0 {
                        Some(true)
                    } else if a.1 < c.0 || c.1 < a.0 {
                        Some(false)
                    } else {
                        None
                    };
                    of_truth(if *op == Op::Eq {
                        same
                    } else {
                        same.map(|s| !s)
                    })
                }
                Op::Lt => of_truth(order(a.1 < c.0, a.0 >= c.1)),
                Op::Le => of_truth(order(a.1 <= c.0, a.0 > c.1)),
                Op::Gt => of_truth(order(a.0 > c.1, a.1 <= c.0)),
                Op::Ge => of_truth(order(a.0 >= c.1, a.1 < c.0)),
                // `eval` gives 0 for a zero divisor, whatever it divides.
                Op::Div if c.0 == 0.0 && c.1 == 0.0 => (0.0, 0.0),
                // An infinite (or unknown) operand may make NaN (inf - inf, 0 * inf,
                // inf / inf), which no range holds: `x <= inf` would be decided true where
                // `eval` gives NaN, and false. Arithmetic on finite ranges never makes NaN,
                // so every range with ends that are not NaN holds no NaN.
                _ if ![a.0, a.1, c.0, c.1].iter().all(|x| x.is_finite()) => (f64::NAN, f64::NAN),
                Op::Add => span([a.0 + c.0, a.1 + c.1]),
                Op::Sub => span([a.0 - c.1, a.1 - c.0]),
                Op::Mul => span([a.0 * c.0, a.0 * c.1, a.1 * c.0, a.1 * c.1]),
                // A divisor that may be zero leaves anything possible, but NaN.
                Op::Div if !(c.0 > 0.0 || c.1 < 0.0) => (f64::NEG_INFINITY, f64::INFINITY),
                Op::Div => span([a.0 / c.0, a.0 / c.1, a.1 / c.0, a.1 / c.1]),
            }
        }
    }
}

/// A comparison's truth from whether it holds for every pair of values, or for none.
fn order(always: bool, never: bool) -> Option<bool> {
    if always {
        Some(true)
    } else if never {
        Some(false)
    } else {
        None
    }
}

/// The rules an expression reads directly (not through other metas), each once.
pub(crate) fn rules_read(e: &Compute, out: &mut Vec<usize>) {
    match e {
        Compute::Num(_) => {}
        Compute::Rule(i) => {
            if !out.contains(i) {
                out.push(*i);
            }
        }
        Compute::Not(x) | Compute::Neg(x) => rules_read(x, out),
        Compute::Bin(a, _, b) => {
            rules_read(a, out);
            rules_read(b, out);
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

    /// A random expression over four rules: every operator, constants that make zero
    /// divisors and negative values.
    fn random_expr(next: &mut impl FnMut() -> u64, depth: u32) -> Compute {
        let leaf = depth == 0 || next().is_multiple_of(4);
        if leaf {
            return if next().is_multiple_of(3) {
                Compute::Num(
                    [0.0, 1.0, 2.0, -1.0, 0.5, 3.0, 1e308, f64::INFINITY][(next() % 8) as usize],
                )
            } else {
                Compute::Rule((next() % 4) as usize)
            };
        }
        let ops = [
            Op::Or,
            Op::And,
            Op::Eq,
            Op::Ne,
            Op::Lt,
            Op::Le,
            Op::Gt,
            Op::Ge,
            Op::Add,
            Op::Sub,
            Op::Mul,
            Op::Div,
        ];
        match next() % 8 {
            0 => Compute::Not(Box::new(random_expr(next, depth - 1))),
            1 => Compute::Neg(Box::new(random_expr(next, depth - 1))),
            _ => Compute::Bin(
                Box::new(random_expr(next, depth - 1)),
                ops[(next() % ops.len() as u64) as usize],
                Box::new(random_expr(next, depth - 1)),
            ),
        }
    }

    #[test]
    fn bounds_hold_whatever_the_counts_within_them() {
        let mut state = 0x9E37_79B9_7F4A_7C15u64;
        let mut next = move || {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            state
        };
        let (mut decided, mut open, mut unknown_points) = (0, 0, 0);
        for _ in 0..20_000 {
            let e = random_expr(&mut next, 5);
            // Each rule known (a point) or not yet run (0 to its most hits).
            let rules: Vec<Bounds> = (0..4)
                .map(|_| match next() % 3 {
                    0 => (0.0, [1.0, 3.0][(next() % 2) as usize]),
                    _ => {
                        let c = (next() % 3) as f64;
                        (c, c)
                    }
                })
                .collect();
            let b = bounds(&e, &|i| rules[i]);
            let t = truth(b);
            if t.is_some() {
                decided += 1;
            } else {
                open += 1;
            }
            for _ in 0..8 {
                let counts: Vec<u32> = rules
                    .iter()
                    .map(|&(lo, hi)| lo as u32 + (next() % (hi - lo + 1.0) as u64) as u32)
                    .collect();
                let v = eval(&e, &counts);
                if let Some(t) = t {
                    assert_eq!(v != 0.0, t, "{counts:?} in {rules:?}: {v} against {b:?}");
                }
                if !v.is_nan() && !b.0.is_nan() {
                    assert!(b.0 <= v && v <= b.1, "{counts:?}: {v} outside {b:?}");
                }
            }
            // Known counts everywhere: the bounds hold the value itself, and are unknown
            // only where an infinity took part.
            let points: Vec<u32> = rules.iter().map(|&(lo, _)| lo as u32).collect();
            let exact: Vec<Bounds> = points.iter().map(|&c| (c as f64, c as f64)).collect();
            let v = eval(&e, &points);
            let b = bounds(&e, &|i| exact[i]);
            if b.0.is_nan() {
                unknown_points += 1;
            } else {
                assert!(!v.is_nan(), "{points:?}: NaN within {b:?}");
                assert!(b.0 <= v && v <= b.1, "{points:?}: {v} outside {b:?}");
            }
        }
        // Both outcomes are common, so the assertions above are exercised.
        assert!(
            decided > 5_000 && open > 2_000,
            "{decided} decided, {open} open"
        );
        // Infinities come into some expressions, not most.
        assert!(
            unknown_points < 5_000,
            "{unknown_points} unknown at known counts"
        );
    }

    #[test]
    fn bounds_decide_a_meta_without_its_unknown_rule_where_they_can() {
        // CRYPTO_SEXTORTION's shape: A + B + (C || D) >= 2, with D not yet run.
        let e = parse_meta("A + B + (C || D) >= 2").unwrap();
        let ids = |n: &str| ["A", "B", "C", "D"].iter().position(|x| *x == n).unwrap();
        let c = resolve_for_test(&e, &ids);
        let unknown = (0.0, 1.0);
        assert_eq!(
            truth(bounds(&c, &|i| [
                (0.0, 0.0),
                (0.0, 0.0),
                (0.0, 0.0),
                unknown
            ][i])),
            Some(false)
        );
        assert_eq!(
            truth(bounds(&c, &|i| [
                (1.0, 1.0),
                (1.0, 1.0),
                (0.0, 0.0),
                unknown
            ][i])),
            Some(true)
        );
        assert_eq!(
            truth(bounds(&c, &|i| [
                (1.0, 1.0),
                (0.0, 0.0),
                (0.0, 0.0),
                unknown
            ][i])),
            None
        );
        assert_eq!(
            truth(bounds(&c, &|i| [
                (1.0, 1.0),
                (0.0, 0.0),
                (1.0, 1.0),
                unknown
            ][i])),
            Some(true)
        );
    }

    fn resolve_for_test(e: &Expr, ids: &impl Fn(&str) -> usize) -> Compute {
        let boxed = |x: &Expr| Box::new(resolve_for_test(x, ids));
        match e {
            Expr::Num(n) => Compute::Num(*n),
            Expr::Rule(name) => Compute::Rule(ids(name)),
            Expr::Not(x) => Compute::Not(boxed(x)),
            Expr::Neg(x) => Compute::Neg(boxed(x)),
            Expr::Bin(l, op, r) => Compute::Bin(boxed(l), *op, boxed(r)),
        }
    }
}
