//! A peer's binding store: one cell per variable, a trail to undo tentative bindings, and the
//! unifier. Variables of a clause instance are a contiguous frame of cells.

use std::collections::HashMap;
use std::sync::Arc;

use super::program::Tpl;
use crate::value::{Compound, Cons, Value, VarId};

#[derive(Clone, Copy, Debug)]
pub(crate) struct Mark {
    cells: usize,
    trail: usize,
}

#[derive(Debug, Default)]
pub(crate) struct Store {
    pub(crate) cells: Vec<Option<Value>>,
    trail: Vec<VarId>,
    /// The unifier's work list, kept between calls (empty outside [`Store::unify`]).
    pairs: Vec<(Value, Value)>,
}

impl Store {
    pub(crate) fn clear(&mut self) {
        self.cells.clear();
        self.trail.clear();
    }

    pub(crate) fn alloc(&mut self, n: u32) -> u32 {
        let base = u32::try_from(self.cells.len()).unwrap_or(u32::MAX);
        self.cells.resize(self.cells.len() + n as usize, None);
        base
    }

    pub(crate) fn mark(&self) -> Mark {
        Mark {
            cells: self.cells.len(),
            trail: self.trail.len(),
        }
    }

    pub(crate) fn undo(&mut self, m: Mark) {
        for &v in &self.trail[m.trail..] {
            if let Some(c) = self.cells.get_mut(v as usize) {
                *c = None;
            }
        }
        self.trail.truncate(m.trail);
        self.cells.truncate(m.cells);
    }

    /// Forgets the trail: bindings made so far are final.
    pub(crate) fn commit(&mut self) {
        self.trail.clear();
    }

    pub(crate) fn deref<'a>(&'a self, mut v: &'a Value) -> &'a Value {
        while let Value::Var(id) = v {
            match self.cells.get(*id as usize) {
                Some(Some(next)) => v = next,
                _ => break,
            }
        }
        v
    }

    fn bind(&mut self, id: VarId, v: Value) {
        if let Some(c) = self.cells.get_mut(id as usize) {
            *c = Some(v);
            self.trail.push(id);
        }
    }

    /// Does `id` occur in `v` (with bindings applied)?
    fn occurs(&self, id: VarId, v: &Value) -> bool {
        let mut stack = vec![v];
        while let Some(v) = stack.pop() {
            match self.deref(v) {
                Value::Var(x) if *x == id => return true,
                Value::Compound(c) => stack.extend(c.args.iter()),
                Value::Cons(c) => {
                    stack.push(&c.head);
                    stack.push(&c.tail);
                }
                _ => {}
            }
        }
        false
    }

    /// Unifies `a` and `b` (with occurs check); on failure some bindings may remain: undo to a mark.
    pub(crate) fn unify(&mut self, a: &Value, b: &Value) -> bool {
        let mut stack = std::mem::take(&mut self.pairs);
        let ok = self.unify_with(a, b, &mut stack);
        stack.clear();
        self.pairs = stack;
        ok
    }

    fn unify_with(&mut self, a: &Value, b: &Value, stack: &mut Vec<(Value, Value)>) -> bool {
        let (mut a, mut b) = (self.deref(a).clone(), self.deref(b).clone());
        loop {
            match (&a, &b) {
                (Value::Var(x), Value::Var(y)) if x == y => {}
                (Value::Var(x), other) | (other, Value::Var(x)) => {
                    let x = *x;
                    if !matches!(other, Value::Var(_))
                        && !other.is_ground()
                        && self.occurs(x, other)
                    {
                        return false;
                    }
                    let other = other.clone();
                    self.bind(x, other);
                }
                (Value::Compound(x), Value::Compound(y)) => {
                    if !Arc::ptr_eq(x, y) {
                        if x.name != y.name || x.args.len() != y.args.len() {
                            return false;
                        }
                        stack.extend(x.args.iter().cloned().zip(y.args.iter().cloned()));
                    }
                }
                (Value::Cons(x), Value::Cons(y)) => {
                    if !Arc::ptr_eq(x, y) {
                        stack.push((x.tail.clone(), y.tail.clone()));
                        stack.push((x.head.clone(), y.head.clone()));
                    }
                }
                (Value::Atom(x), Value::Atom(y)) | (Value::Str(x), Value::Str(y)) => {
                    if !(Arc::ptr_eq(x, y) || x == y) {
                        return false;
                    }
                }
                (Value::Int(x), Value::Int(y)) => {
                    if x != y {
                        return false;
                    }
                }
                (Value::Float(x), Value::Float(y)) => {
                    if x != y {
                        return false;
                    }
                }
                (Value::Nil, Value::Nil) => {}
                _ => return false,
            }
            match stack.pop() {
                Some((x, y)) => {
                    a = self.deref(&x).clone();
                    b = self.deref(&y).clone();
                }
                None => return true,
            }
        }
    }

    /// `v` with every bound variable replaced by its value; unbound ones stay `Var`. A value with
    /// no bound variable in it is returned as it is (shared, not copied).
    pub(crate) fn resolve(&self, v: &Value) -> Value {
        let v = self.deref(v);
        if self.has_bound(v) {
            self.rebuild(v)
        } else {
            v.clone()
        }
    }

    /// Does `v` contain a variable bound in this store?
    fn has_bound(&self, v: &Value) -> bool {
        let mut v = v;
        loop {
            match v {
                Value::Var(id) => return matches!(self.cells.get(*id as usize), Some(Some(_))),
                Value::Compound(c) => {
                    let Some((last, init)) = c.args.split_last() else {
                        return false;
                    };
                    if init.iter().any(|a| self.has_bound(a)) {
                        return true;
                    }
                    v = last;
                }
                Value::Cons(c) => {
                    if self.has_bound(&c.head) {
                        return true;
                    }
                    v = &c.tail;
                }
                _ => return false,
            }
        }
    }

    /// [`Store::resolve`] of a dereferenced value that has bound variables in it.
    fn rebuild(&self, v: &Value) -> Value {
        match v {
            Value::Compound(c) => Value::Compound(Arc::new(Compound {
                name: Arc::clone(&c.name),
                args: c.args.iter().map(|a| self.resolve(a)).collect(),
            })),
            Value::Cons(_) => {
                let mut items = Vec::new();
                let mut cur = v;
                while let Value::Cons(c) = cur {
                    items.push(self.resolve(&c.head));
                    cur = self.deref(&c.tail);
                }
                let tail = self.resolve(cur);
                Value::list_with_tail(items, tail)
            }
            other => other.clone(),
        }
    }

    /// `resolve(inst(tpl, base))` without the intermediate copy.
    pub(crate) fn inst_resolved(&self, tpl: &Tpl, base: u32) -> Value {
        if tpl.ground {
            return tpl.v.clone();
        }
        self.shift_resolve(&tpl.v, base)
    }

    fn shift_resolve(&self, v: &Value, base: u32) -> Value {
        match v {
            Value::Var(s) => self.resolve(&Value::Var(base + s)),
            Value::Compound(c) => Value::Compound(Arc::new(Compound {
                name: Arc::clone(&c.name),
                args: c.args.iter().map(|a| self.shift_resolve(a, base)).collect(),
            })),
            Value::Cons(c) => Value::Cons(Arc::new(Cons {
                head: self.shift_resolve(&c.head, base),
                tail: self.shift_resolve(&c.tail, base),
            })),
            other => other.clone(),
        }
    }

    /// The template's value in the frame at `base`.
    pub(crate) fn inst(tpl: &Tpl, base: u32) -> Value {
        if tpl.ground {
            return tpl.v.clone();
        }
        shift(&tpl.v, base)
    }

    /// Moves a value from elsewhere into this store: every variable becomes a fresh cell
    /// (consistently within one call to `import`, through `map`).
    pub(crate) fn import(&mut self, v: &Value, map: &mut HashMap<VarId, VarId>) -> Value {
        if v.is_ground() {
            return v.clone();
        }
        v.map_vars(&mut |id| {
            let next = u32::try_from(self.cells.len()).unwrap_or(u32::MAX);
            let nid = *map.entry(id).or_insert(next);
            if nid == next {
                self.cells.push(None);
            }
            Value::Var(nid)
        })
    }

    /// A value from this peer's knowledge: variables of ours stay, unknown numbers become fresh.
    pub(crate) fn sanitize(&mut self, v: Value) -> Value {
        if v.is_ground() {
            return v;
        }
        let len = self.cells.len();
        let mut map = HashMap::new();
        v.map_vars(&mut |id| {
            if (id as usize) < len {
                return Value::Var(id);
            }
            let next = u32::try_from(self.cells.len()).unwrap_or(u32::MAX);
            let nid = *map.entry(id).or_insert(next);
            if nid == next {
                self.cells.push(None);
            }
            Value::Var(nid)
        })
    }
}

fn shift(v: &Value, base: u32) -> Value {
    match v {
        Value::Var(s) => Value::Var(base + s),
        Value::Compound(c) => Value::Compound(Arc::new(Compound {
            name: Arc::clone(&c.name),
            args: c.args.iter().map(|a| shift(a, base)).collect(),
        })),
        Value::Cons(c) => Value::Cons(Arc::new(Cons {
            head: shift(&c.head, base),
            tail: shift(&c.tail, base),
        })),
        other => other.clone(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn unify_binds_and_undo_restores() {
        let mut s = Store::default();
        let base = s.alloc(2);
        let m = s.mark();
        let a = Value::compound("f", vec![Value::Var(base), Value::Int(2)]);
        let b = Value::compound("f", vec![Value::Int(1), Value::Var(base + 1)]);
        assert!(s.unify(&a, &b));
        assert_eq!(
            s.resolve(&a),
            Value::compound("f", vec![Value::Int(1), Value::Int(2)])
        );
        s.undo(m);
        assert_eq!(s.resolve(&a), a);
    }

    #[test]
    fn occurs_check_rejects_cycles() {
        let mut s = Store::default();
        let x = s.alloc(1);
        assert!(!s.unify(&Value::Var(x), &Value::compound("f", vec![Value::Var(x)])));
    }

    #[test]
    fn lists_unify_head_and_tail() {
        let mut s = Store::default();
        let b = s.alloc(2);
        let l = Value::list(vec![1.into(), 2.into(), 3.into()]);
        let pat = Value::list_with_tail(vec![Value::Var(b)], Value::Var(b + 1));
        assert!(s.unify(&pat, &l));
        assert_eq!(s.resolve(&Value::Var(b)), Value::Int(1));
        assert_eq!(
            s.resolve(&Value::Var(b + 1)),
            Value::list(vec![2.into(), 3.into()])
        );
    }
}
