//! LCC messages on the wire: a serde form of [`Envelope`] (terms as a small tagged tree).

use keel_lcc::{Envelope, PeerRef, Value};
use serde::{Deserialize, Serialize};

/// Deepest term accepted from the wire (deeper ones are refused, not recursed into).
pub const MAX_DEPTH: usize = 64;
/// Most list items or arguments accepted in one term node.
pub const MAX_WIDTH: usize = 4096;

/// A term.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Term {
    /// An atom.
    A(String),
    /// An integer.
    I(i64),
    /// A float.
    F(f64),
    /// A string.
    S(String),
    /// `name(args...)`.
    C(String, Vec<Self>),
    /// A list: items, then the tail (`None` for `[]`).
    L(Vec<Self>, Option<Box<Self>>),
    /// An unbound variable.
    V(u32),
}

/// A message between agents' interaction models.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct WireEnvelope {
    /// Sender's role.
    pub from_role: Term,
    /// Sender's id.
    pub from_id: Term,
    /// Recipient's role, as the sender named it.
    pub to_role: Term,
    /// Recipient's id.
    pub to_id: Term,
    /// The message.
    pub body: Term,
}

/// Why a wire term was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum WireError {
    /// Nested deeper than [`MAX_DEPTH`].
    #[error("term nested deeper than {MAX_DEPTH}")]
    TooDeep,
    /// A node wider than [`MAX_WIDTH`].
    #[error("term with more than {MAX_WIDTH} items")]
    TooWide,
}

impl Term {
    /// The wire form of `v`.
    pub fn from_value(v: &Value) -> Self {
        match v {
            Value::Atom(a) => Self::A(a.to_string()),
            Value::Int(i) => Self::I(*i),
            Value::Float(f) => Self::F(*f),
            Value::Str(s) => Self::S(s.to_string()),
            Value::Compound(c) => Self::C(
                c.name.to_string(),
                c.args.iter().map(Self::from_value).collect(),
            ),
            Value::Nil => Self::L(Vec::new(), None),
            Value::Cons(_) => {
                let mut items = Vec::new();
                let mut cur = v.clone();
                loop {
                    match cur {
                        Value::Cons(c) => {
                            items.push(Self::from_value(&c.head));
                            cur = c.tail.clone();
                        }
                        Value::Nil => return Self::L(items, None),
                        other => return Self::L(items, Some(Box::new(Self::from_value(&other)))),
                    }
                }
            }
            Value::Var(n) => Self::V(*n),
        }
    }

    /// The term as a value.
    ///
    /// # Errors
    /// Terms deeper than [`MAX_DEPTH`] or wider than [`MAX_WIDTH`].
    pub fn to_value(&self) -> Result<Value, WireError> {
        self.to_value_at(0)
    }

    fn to_value_at(&self, depth: usize) -> Result<Value, WireError> {
        if depth > MAX_DEPTH {
            return Err(WireError::TooDeep);
        }
        Ok(match self {
            Self::A(a) => Value::atom(a),
            Self::I(i) => Value::Int(*i),
            Self::F(f) => Value::Float(*f),
            Self::S(s) => Value::str(s),
            Self::V(n) => Value::Var(*n),
            Self::C(name, args) => {
                if args.len() > MAX_WIDTH {
                    return Err(WireError::TooWide);
                }
                let args = args
                    .iter()
                    .map(|a| a.to_value_at(depth + 1))
                    .collect::<Result<Vec<_>, _>>()?;
                Value::compound(name, args)
            }
            Self::L(items, tail) => {
                if items.len() > MAX_WIDTH {
                    return Err(WireError::TooWide);
                }
                let items = items
                    .iter()
                    .map(|a| a.to_value_at(depth + 1))
                    .collect::<Result<Vec<_>, _>>()?;
                match tail {
                    None => Value::list(items),
                    Some(t) => Value::list_with_tail(items, t.to_value_at(depth + 1)?),
                }
            }
        })
    }
}

impl WireEnvelope {
    /// The wire form of `env`.
    pub fn from_envelope(env: &Envelope) -> Self {
        Self {
            from_role: Term::from_value(&env.from.role),
            from_id: Term::from_value(&env.from.id),
            to_role: Term::from_value(&env.to.role),
            to_id: Term::from_value(&env.to.id),
            body: Term::from_value(&env.body),
        }
    }

    /// The envelope.
    ///
    /// # Errors
    /// See [`Term::to_value`].
    pub fn to_envelope(&self) -> Result<Envelope, WireError> {
        Ok(Envelope {
            from: PeerRef {
                role: self.from_role.to_value()?,
                id: self.from_id.to_value()?,
            },
            to: PeerRef {
                role: self.to_role.to_value()?,
                id: self.to_id.to_value()?,
            },
            body: self.body.to_value()?,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn envelopes_round_trip() {
        let body = Value::compound(
            "request",
            vec![
                Value::atom("vm-1"),
                Value::list_with_tail(vec![Value::Int(1), Value::Float(2.5)], Value::Var(3)),
                Value::str("a b"),
                Value::list(vec![]),
            ],
        );
        let env = Envelope {
            from: PeerRef {
                role: Value::compound("requester", vec![Value::atom("v"), Value::Int(2)]),
                id: Value::atom("a1"),
            },
            to: PeerRef {
                role: Value::atom("member"),
                id: Value::atom("a2"),
            },
            body,
        };
        let w = WireEnvelope::from_envelope(&env);
        let json = serde_json::to_string(&w).unwrap();
        let back: WireEnvelope = serde_json::from_str(&json).unwrap();
        assert_eq!(back.to_envelope().unwrap(), env);
    }

    #[test]
    fn deep_terms_are_refused() {
        let mut t = Term::I(1);
        for _ in 0..(MAX_DEPTH + 2) {
            t = Term::C("f".into(), vec![t]);
        }
        assert_eq!(t.to_value(), Err(WireError::TooDeep));
    }
}
