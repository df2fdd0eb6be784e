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
    pairs: Vec<(Value, u32, Value, u32)>,
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

    /// `v` (whose variables are numbered from `base`) with bindings followed: the value and the
    /// base its variables are numbered from (0 once a binding was followed: the store's values
    /// number their variables absolutely).
    fn deref_at<'a>(&'a self, mut v: &'a Value, mut base: u32) -> (&'a Value, u32) {
        while let Value::Var(s) = v {
            match self.cells.get((base + s) as usize) {
                Some(Some(next)) => {
                    v = next;
                    base = 0;
                }
                _ => break,
            }
        }
        (v, base)
    }

    /// Does `id` occur in `v` (variables numbered from `base`, bindings applied)?
    fn occurs(&self, id: VarId, v: &Value, base: u32) -> bool {
        let mut stack = vec![(v, base)];
        while let Some((v, base)) = stack.pop() {
            let (v, base) = self.deref_at(v, base);
            if v.is_ground() {
                continue;
            }
            match v {
                Value::Var(x) if base + *x == id => return true,
                Value::Compound(c) => stack.extend(c.args.iter().map(|a| (a, base))),
                Value::Cons(c) => {
                    stack.push((&c.head, base));
                    stack.push((&c.tail, base));
                }
                _ => {}
            }
        }
        false
    }

    /// Unifies `a` and `b` (with occurs check); on failure some bindings may remain: undo to a mark.
    pub(crate) fn unify(&mut self, a: &Value, b: &Value) -> bool {
        self.unify_at(a, 0, b, 0)
    }

    /// [`Store::unify`] of `inst(tpl, base)` and `v`, without making the instance.
    pub(crate) fn unify_tpl(&mut self, tpl: &Tpl, base: u32, v: &Value) -> bool {
        if let Value::Var(slot) = tpl.v {
            if v.is_ground() && self.bind_unbound(base + slot, v) {
                return true;
            }
        }
        if tpl.vars {
            if let Some(ok) = self.bind_vars(tpl, base, v) {
                return ok;
            }
        }
        self.unify_at(&tpl.v, base, v, 0)
    }

    /// Binds variable `x` to the ground value `v` if `x` is unbound, as the unifier does for that
    /// pair (a ground value has no variable to check or to renumber); `false` (nothing done)
    /// otherwise.
    fn bind_unbound(&mut self, x: VarId, v: &Value) -> bool {
        if matches!(self.cells.get(x as usize), Some(None)) {
            self.bind(x, v.clone());
            return true;
        }
        false
    }

    /// [`Store::unify_tpl`] of a template `name(V1, ..., Vn)` of distinct variables, all of them
    /// unbound, with a compound: each variable is bound to its argument (dereferenced), from the
    /// last to the first, with the unifier's checks; the same cells and trail as the unifier's.
    /// `None` (nothing done) when `v` is not a compound or a variable is bound already.
    fn bind_vars(&mut self, tpl: &Tpl, base: u32, v: &Value) -> Option<bool> {
        let (Value::Compound(h), Value::Compound(c)) = (&tpl.v, v) else {
            return None;
        };
        if Arc::ptr_eq(h, c) && base == 0 {
            return Some(true);
        }
        if h.name != c.name || h.args.len() != c.args.len() {
            return Some(false);
        }
        let unbound = |a: &Value| match a {
            Value::Var(s) => matches!(self.cells.get((base + s) as usize), Some(None)),
            _ => false,
        };
        if !h.args.iter().all(unbound) {
            return None;
        }
        for (slot, a) in h.args.iter().zip(c.args.iter()).rev() {
            let Value::Var(s) = slot else {
                return None;
            };
            let x = base + s;
            let a = self.deref(a);
            if matches!(a, Value::Var(y) if *y == x) {
                continue;
            }
            let a = a.clone();
            if !matches!(a, Value::Var(_)) && !a.is_ground() && self.occurs(x, &a, 0) {
                return Some(false);
            }
            self.bind(x, a);
        }
        Some(true)
    }

    /// Whether `inst(tpl, base)` and `v` have different principal functors (both atoms or
    /// compounds, with different names or arities): then [`Store::unify`] of them fails at its
    /// first step, before it binds anything. `v` is not dereferenced (it may come from another
    /// store, e.g. a message before [`Store::import`]).
    pub(crate) fn functors_differ(&self, tpl: &Tpl, base: u32, v: &Value) -> bool {
        fn functor(x: &Value) -> Option<(&str, usize)> {
            match x {
                Value::Atom(a) => Some((a, 0)),
                Value::Compound(c) => Some((&c.name, c.args.len())),
                _ => None,
            }
        }
        let (p, _) = self.deref_at(&tpl.v, base);
        match (functor(p), functor(v)) {
            (Some(a), Some(b)) => a != b,
            _ => false,
        }
    }

    /// [`Store::unify`] of `inst(a, abase)` and `inst(b, bbase)`, without making the instances.
    pub(crate) fn unify_tpls(&mut self, a: &Tpl, abase: u32, b: &Tpl, bbase: u32) -> bool {
        if let Value::Var(slot) = a.v {
            let (o, _) = self.deref_at(&b.v, bbase);
            if o.is_ground() {
                let o = o.clone();
                if self.bind_unbound(abase + slot, &o) {
                    return true;
                }
            }
            if self.bind_cons(abase + slot, b, bbase) {
                return true;
            }
        }
        self.unify_at(&a.v, abase, &b.v, bbase)
    }

    /// [`Store::unify_tpls`] of variable `x`, bound to a ground list cell, with a template
    /// `[H | T]` of two distinct variables, both unbound (`Cs = [C | Rest]`): `H` is bound to
    /// the cell's head, then `T` to its tail, as the unifier does (a ground value has no
    /// variable to check or to renumber); the same cells and trail. `false` (nothing done) in
    /// any other case.
    fn bind_cons(&mut self, x: VarId, tpl: &Tpl, base: u32) -> bool {
        let Value::Cons(c) = &tpl.v else {
            return false;
        };
        let (Value::Var(h), Value::Var(t)) = (&c.head, &c.tail) else {
            return false;
        };
        let (h, t) = (base + h, base + t);
        let unbound = |s: &Self, y: VarId| matches!(s.cells.get(y as usize), Some(None));
        if h == t || !unbound(self, h) || !unbound(self, t) {
            return false;
        }
        let x = Value::Var(x);
        let (head, tail) = match self.deref(&x) {
            l @ Value::Cons(cell) if l.is_ground() => (cell.head.clone(), cell.tail.clone()),
            _ => return false,
        };
        self.bind(h, head);
        self.bind(t, tail);
        true
    }

    /// Unifies `a` (its variables numbered from `abase`) with `b` (from `bbase`): the same
    /// bindings, made in the same order, as unifying `shift(a, abase)` with `shift(b, bbase)`.
    /// Only a part of a template that gets bound to a variable is copied (shifted).
    fn unify_at(&mut self, a: &Value, abase: u32, b: &Value, bbase: u32) -> bool {
        if let Some(ok) = self.unify_ground(a, abase, b, bbase) {
            return ok;
        }
        self.unify_general(a, abase, b, bbase)
    }

    /// [`Store::unify_at`] where, bindings followed, one side is ground and the other is ground
    /// too (a bound variable checked against a value: equality, nothing to bind) or an unbound
    /// variable (bound to the ground side). The unifier gives the same: a ground value has no
    /// variable to check or to renumber, and `==` on ground values is its structural walk
    /// (floats by `==`, so `0.0` meets `-0.0`). `None` (nothing done) otherwise.
    fn unify_ground(&mut self, a: &Value, abase: u32, b: &Value, bbase: u32) -> Option<bool> {
        let (x, xb) = self.deref_at(a, abase);
        let (y, yb) = self.deref_at(b, bbase);
        let (var, v) = match (x.is_ground(), y.is_ground()) {
            (true, true) => return Some(x == y),
            (false, true) => match x {
                Value::Var(s) => (xb + s, y),
                _ => return None,
            },
            (true, false) => match y {
                Value::Var(s) => (yb + s, x),
                _ => return None,
            },
            (false, false) => return None,
        };
        let v = v.clone();
        self.bind(var, v);
        Some(true)
    }

    /// The unifier itself (see [`Store::unify_at`]).
    fn unify_general(&mut self, a: &Value, abase: u32, b: &Value, bbase: u32) -> bool {
        let mut stack = std::mem::take(&mut self.pairs);
        let ok = self.unify_with(a, abase, b, bbase, &mut stack);
        stack.clear();
        self.pairs = stack;
        ok
    }

    fn unify_with(
        &mut self,
        a: &Value,
        abase: u32,
        b: &Value,
        bbase: u32,
        stack: &mut Vec<(Value, u32, Value, u32)>,
    ) -> bool {
        if !self.unify_pair(a, abase, b, bbase, stack) {
            return false;
        }
        while let Some((x, xb, y, yb)) = stack.pop() {
            if !self.unify_pair(&x, xb, &y, yb, stack) {
                return false;
            }
        }
        true
    }

    /// One step of [`Store::unify_with`]: binds a variable, pushes the pairs of arguments to
    /// unify next (the last pushed is unified first), or fails. The pair is read in place.
    fn unify_pair(
        &mut self,
        a: &Value,
        abase: u32,
        b: &Value,
        bbase: u32,
        stack: &mut Vec<(Value, u32, Value, u32)>,
    ) -> bool {
        let (a, abase) = self.deref_at(a, abase);
        let (b, bbase) = self.deref_at(b, bbase);
        let (x, other) = match (a, b) {
            (Value::Var(x), Value::Var(y)) if abase + x == bbase + y => return true,
            (Value::Var(x), other) | (other, Value::Var(x)) => {
                // The variable and the other side's base.
                let (x, obase) = if matches!(a, Value::Var(_)) {
                    (abase + x, bbase)
                } else {
                    (bbase + x, abase)
                };
                if !matches!(other, Value::Var(_))
                    && !other.is_ground()
                    && self.occurs(x, other, obase)
                {
                    return false;
                }
                let other = if obase == 0 {
                    other.clone()
                } else {
                    shift(other, obase)
                };
                (x, other)
            }
            (Value::Compound(x), Value::Compound(y)) => {
                if !(Arc::ptr_eq(x, y) && (abase == bbase || a.is_ground())) {
                    if x.name != y.name || x.args.len() != y.args.len() {
                        return false;
                    }
                    stack.extend(
                        x.args
                            .iter()
                            .zip(y.args.iter())
                            .map(|(p, q)| (p.clone(), abase, q.clone(), bbase)),
                    );
                }
                return true;
            }
            (Value::Cons(x), Value::Cons(y)) => {
                if !(Arc::ptr_eq(x, y) && (abase == bbase || a.is_ground())) {
                    stack.push((x.tail.clone(), abase, y.tail.clone(), bbase));
                    stack.push((x.head.clone(), abase, y.head.clone(), bbase));
                }
                return true;
            }
            (Value::Atom(x), Value::Atom(y)) | (Value::Str(x), Value::Str(y)) => {
                return Arc::ptr_eq(x, y) || x == y;
            }
            (Value::Int(x), Value::Int(y)) => return x == y,
            (Value::Float(x), Value::Float(y)) => return x == y,
            (Value::Nil, Value::Nil) => return true,
            _ => return false,
        };
        self.bind(x, other);
        true
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
            if v.is_ground() {
                return false;
            }
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
            Value::Compound(c) => Value::Compound(Arc::new(Compound::new(
                Arc::clone(&c.name),
                c.args.iter().map(|a| self.resolve(a)).collect(),
            ))),
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

    /// Ground subterms of the template are shared, not copied.
    fn shift_resolve(&self, v: &Value, base: u32) -> Value {
        match v {
            Value::Var(s) => match self.cells.get((base + s) as usize) {
                // Bound to a ground value (the common case): that value, as `resolve` gives.
                Some(Some(x)) if x.is_ground() => x.clone(),
                Some(Some(_)) => self.resolve(&Value::Var(base + s)),
                // Unbound: the variable itself.
                _ => Value::Var(base + s),
            },
            Value::Compound(c) if !v.is_ground() => Value::Compound(Arc::new(Compound::new(
                Arc::clone(&c.name),
                c.args.iter().map(|a| self.shift_resolve(a, base)).collect(),
            ))),
            Value::Cons(c) if !v.is_ground() => Value::Cons(Arc::new(Cons::new(
                self.shift_resolve(&c.head, base),
                self.shift_resolve(&c.tail, base),
            ))),
            other => other.clone(),
        }
    }

    /// The template's value in the frame at `base` (what the in-place functions are checked
    /// against).
    #[cfg(test)]
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

/// `v` with its variables moved to the frame at `base`; ground subterms are shared.
fn shift(v: &Value, base: u32) -> Value {
    match v {
        Value::Var(s) => Value::Var(base + s),
        Value::Compound(c) if !v.is_ground() => Value::Compound(Arc::new(Compound::new(
            Arc::clone(&c.name),
            c.args.iter().map(|a| shift(a, base)).collect(),
        ))),
        Value::Cons(c) if !v.is_ground() => Value::Cons(Arc::new(Cons::new(
            shift(&c.head, base),
            shift(&c.tail, base),
        ))),
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

    /// Compounds `f(..)`, `g(..)` and lists of `leaf`s, up to three levels deep.
    fn nested(
        leaf: impl proptest::strategy::Strategy<Value = Value> + 'static,
    ) -> impl proptest::strategy::Strategy<Value = Value> {
        use proptest::prelude::*;
        leaf.prop_recursive(3, 16, 3, |inner| {
            prop_oneof![
                (
                    prop_oneof![Just("f"), Just("g")],
                    prop::collection::vec(inner.clone(), 1..3)
                )
                    .prop_map(|(n, args)| Value::compound(n, args)),
                (prop::collection::vec(inner.clone(), 1..3), inner)
                    .prop_map(|(items, tail)| Value::list_with_tail(items, tail)),
            ]
        })
    }

    fn term() -> impl proptest::strategy::Strategy<Value = Value> {
        use proptest::prelude::*;
        let leaf = prop_oneof![
            (0u32..4).prop_map(Value::Var),
            (0i64..3).prop_map(Value::Int),
            prop_oneof![Just("a"), Just("b")].prop_map(Value::atom),
            Just(Value::Nil),
        ];
        nested(leaf)
    }

    fn tpl(v: &Value) -> Tpl {
        Tpl::new(v.clone())
    }

    proptest::proptest! {
        /// Unifying templates in place binds exactly what unifying their instances binds, in
        /// the same order, from a store where some variables are bound already.
        #[test]
        fn unify_in_place_is_unify_of_instances(
            pre in (term(), term()),
            a in term(),
            b in term(),
        ) {
            let run = |in_place: bool| {
                let mut s = Store::default();
                s.alloc(10);
                // Frames at 2 and 6; some of their variables bound by a first unification.
                let m = s.mark();
                if !s.unify(&shift(&pre.0, 2), &shift(&pre.1, 6)) {
                    s.undo(m);
                }
                let ok = if in_place {
                    s.unify_tpls(&tpl(&a), 2, &tpl(&b), 6)
                } else {
                    s.unify(&Store::inst(&tpl(&a), 2), &Store::inst(&tpl(&b), 6))
                };
                (ok, s.cells.clone(), s.trail.clone())
            };
            proptest::prop_assert_eq!(run(true), run(false));
        }
    }

    /// Terms over variables 0..8.
    fn term8() -> impl proptest::strategy::Strategy<Value = Value> {
        use proptest::prelude::*;
        (term(), 0u32..5).prop_map(|(t, k)| shift(&t, k))
    }

    fn vars_case() -> impl proptest::strategy::Strategy<Value = (Vec<u32>, Value)> {
        use proptest::prelude::*;
        (
            proptest::sample::subsequence(vec![0u32, 1, 2, 3], 1..4).prop_shuffle(),
            prop_oneof![Just("f"), Just("g")],
            // Often the frame's own variables: bound, unbound, or the very variable they meet.
            prop::collection::vec(prop_oneof![term8(), (4u32..8).prop_map(Value::Var)], 1..4),
        )
            .prop_map(|(slots, name, args)| (slots, Value::compound(name, args)))
    }

    /// Unifies template `head` (the frame at 4 of 8 cells, after `pre` was unified when it
    /// could be) with `v`: through [`Store::unify_tpl`] (`fast`) or by unifying the template's
    /// instance. Returns the result, the cells and the trail.
    fn tpl_unify(
        pre: &(Value, Value),
        head: &Tpl,
        v: &Value,
        fast: bool,
    ) -> (bool, Vec<Option<Value>>, Vec<VarId>) {
        let mut s = Store::default();
        s.alloc(8);
        let m = s.mark();
        if !s.unify(&pre.0, &pre.1) {
            s.undo(m);
        }
        let ok = if fast {
            s.unify_tpl(head, 4, v)
        } else {
            s.unify(&Store::inst(head, 4), v)
        };
        (ok, s.cells.clone(), s.trail.clone())
    }

    proptest::proptest! {
        /// A template of distinct variables (the frame at 4) unifies with a value as the
        /// unifier does (same result, cells and trail), whether its variables are bound already
        /// or not and whether the value holds them or not.
        #[test]
        fn vars_template_is_unify(pre in (term8(), term8()), case in vars_case()) {
            let (slots, v) = case;
            let head = Tpl::new(Value::compound("f", slots.iter().map(|&s| Value::Var(s)).collect()));
            proptest::prop_assert!(head.vars);
            proptest::prop_assert_eq!(tpl_unify(&pre, &head, &v, true), tpl_unify(&pre, &head, &v, false));
        }
    }

    proptest::proptest! {
        /// A variable template (the frame at 4) unifies with a value as the unifier does.
        #[test]
        fn var_template_is_unify(pre in (term8(), term8()), slot in 0u32..4, v in term8()) {
            let head = Tpl::new(Value::Var(slot));
            proptest::prop_assert_eq!(tpl_unify(&pre, &head, &v, true), tpl_unify(&pre, &head, &v, false));
        }
    }

    /// Terms over variables 0..8 with floats and strings (`0.0` and `-0.0` among them).
    fn gterm8() -> impl proptest::strategy::Strategy<Value = Value> {
        use proptest::prelude::*;
        let leaf = prop_oneof![
            (0u32..8).prop_map(Value::Var),
            (0i64..3).prop_map(Value::Int),
            prop_oneof![Just(0.0), Just(-0.0), Just(1.0)].prop_map(Value::Float),
            prop_oneof![Just("a"), Just("b")].prop_map(Value::atom),
            prop_oneof![Just("a"), Just("b")].prop_map(Value::str),
            Just(Value::Nil),
        ];
        nested(leaf)
    }

    /// A side of a unification: often ground, often a variable, else any term.
    fn side8() -> impl proptest::strategy::Strategy<Value = Value> {
        use proptest::prelude::*;
        prop_oneof![
            gterm8().prop_map(|t| t.map_vars(&mut |_| Value::Float(-0.0))),
            (0u32..8).prop_map(Value::Var),
            gterm8(),
        ]
    }

    proptest::proptest! {
        // The fast path's cases (two equal floats of either sign, ...) are a small part of
        // what the strategies give.
        #![proptest_config(proptest::prelude::ProptestConfig::with_cases(2048))]

        /// Unifying through the ground fast path gives what the unifier alone gives (result,
        /// cells and trail), from a store where some variables are bound already (often to
        /// ground values, so that both sides are often ground or an unbound variable).
        #[test]
        fn ground_unify_is_unify(
            pre in proptest::collection::vec((side8(), side8()), 0..4),
            a in side8(),
            b in side8(),
        ) {
            let run = |fast: bool| {
                let mut s = Store::default();
                s.alloc(8);
                for (p, q) in &pre {
                    let m = s.mark();
                    if !s.unify_general(p, 0, q, 0) {
                        s.undo(m);
                    }
                }
                let ok = if fast {
                    s.unify(&a, &b)
                } else {
                    s.unify_general(&a, 0, &b, 0)
                };
                (ok, s.cells.clone(), s.trail.clone())
            };
            proptest::prop_assert_eq!(run(true), run(false));
        }
    }

    /// A ground list, or (rarely) a term with variables, over variables 0..8.
    fn list8() -> impl proptest::strategy::Strategy<Value = Value> {
        use proptest::prelude::*;
        prop_oneof![
            4 => (prop::collection::vec(term(), 1..4), prop_oneof![Just(Value::Nil), term()])
                .prop_filter("ground", |(items, tail)| {
                    items.iter().all(Value::is_ground) && tail.is_ground()
                })
                .prop_map(|(items, tail)| Value::list_with_tail(items, tail)),
            1 => term8(),
        ]
    }

    proptest::proptest! {
        /// `X = [H | T]` (the frame at 4: `X` is slot `x`, the template's variables are slots
        /// `h` and `t`) unifies as the unifier does (same result, cells and trail), whether `X`
        /// is bound to a ground list or to anything else, and whether `H` and `T` are bound
        /// already or not.
        #[test]
        fn cons_template_is_unify(
            pre in (term8(), term8()),
            list in list8(),
            x in 0u32..4,
            h in 0u32..4,
            t in 0u32..4,
        ) {
            let run = |fast: bool| {
                let mut s = Store::default();
                s.alloc(8);
                let m = s.mark();
                // X bound to the list (when it can be), then some more bindings.
                if !s.unify(&Value::Var(4 + x), &list) {
                    s.undo(m);
                }
                let m = s.mark();
                if !s.unify(&pre.0, &pre.1) {
                    s.undo(m);
                }
                let a = Tpl::new(Value::Var(x));
                let b = Tpl::new(Value::list_with_tail(vec![Value::Var(h)], Value::Var(t)));
                let ok = if fast {
                    s.unify_tpls(&a, 4, &b, 4)
                } else {
                    s.unify(&Store::inst(&a, 4), &Store::inst(&b, 4))
                };
                (ok, s.cells.clone(), s.trail.clone())
            };
            proptest::prop_assert_eq!(run(true), run(false));
        }
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
