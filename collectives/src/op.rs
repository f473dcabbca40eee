//! Reduction operations: the built-in ones of MPI and user closures.
//!
//! An operation combines two values elementwise; `combine(a, b)` gets `a`
//! from lower ranks than `b`. Built-in operations are unit structs that
//! implement [`Op`] for the types they make sense on ([`Sum`] for every
//! number, [`BitAnd`] for integers, [`MinLoc`] for [`Loc`] pairs, ...). Any
//! closure `Fn(T, T) -> T` is an operation too, taken as non-commutative
//! (combined strictly in rank order); wrap it in [`commutative`] to allow
//! algorithms that reorder.
//!
//! ```
//! use mpr_collectives::op::{self, Op};
//! assert_eq!(op::Sum.combine(2, 3), 5);
//! assert_eq!(op::MaxLoc.combine(op::Loc::new(1.5, 0), op::Loc::new(2.5, 1)).index(), 1);
//! let concat = |a: u32, b: u32| a * 10 + b;
//! assert_eq!(concat.combine(1, 2), 12);
//! assert!(!concat.is_commutative() && op::commutative(|a: u8, b: u8| a | b).is_commutative());
//! ```

use std::fmt;

use bytemuck::{Pod, Zeroable};

/// An elementwise reduction operation on `T`.
pub trait Op<T: Copy> {
    /// `a ∘ b`, where `a` comes from lower ranks than `b`.
    fn combine(&self, a: T, b: T) -> T;

    /// Whether `a ∘ b == b ∘ a`, which lets algorithms combine out of rank
    /// order (built-in operations are; floating-point sums differ only by
    /// rounding, as in MPI).
    fn is_commutative(&self) -> bool {
        false
    }

    /// `into[i] = from[i] ∘ into[i]` if `from_first`, else
    /// `into[i] = into[i] ∘ from[i]`.
    fn reduce(&self, from: &[T], into: &mut [T], from_first: bool) {
        debug_assert_eq!(from.len(), into.len());
        if from_first {
            for (dst, &src) in into.iter_mut().zip(from) {
                *dst = self.combine(src, *dst);
            }
        } else {
            for (dst, &src) in into.iter_mut().zip(from) {
                *dst = self.combine(*dst, src);
            }
        }
    }
}

impl<T: Copy, F: Fn(T, T) -> T> Op<T> for F {
    fn combine(&self, a: T, b: T) -> T {
        self(a, b)
    }
}

/// A closure declared commutative (see [`commutative`]).
#[derive(Clone, Copy)]
pub struct Commutative<F>(pub F);

impl<F> fmt::Debug for Commutative<F> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Commutative(..)")
    }
}

/// Declares `f` commutative: algorithms may then combine in any order.
pub fn commutative<T: Copy, F: Fn(T, T) -> T>(f: F) -> Commutative<F> {
    Commutative(f)
}

impl<T: Copy, F: Fn(T, T) -> T> Op<T> for Commutative<F> {
    fn combine(&self, a: T, b: T) -> T {
        (self.0)(a, b)
    }

    fn is_commutative(&self) -> bool {
        true
    }
}

macro_rules! builtin {
    ($(#[$doc:meta])* $name:ident) => {
        $(#[$doc])*
        #[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
        pub struct $name;
    };
}

builtin!(
    /// Sum (`MPI_SUM`); wrapping for integers.
    Sum
);
builtin!(
    /// Product (`MPI_PROD`); wrapping for integers.
    Prod
);
builtin!(
    /// Minimum (`MPI_MIN`).
    Min
);
builtin!(
    /// Maximum (`MPI_MAX`).
    Max
);
builtin!(
    /// Logical and of integers taken as truth values; 1 or 0 (`MPI_LAND`).
    LogicalAnd
);
builtin!(
    /// Logical or; 1 or 0 (`MPI_LOR`).
    LogicalOr
);
builtin!(
    /// Logical exclusive or; 1 or 0 (`MPI_LXOR`).
    LogicalXor
);
builtin!(
    /// Bitwise and (`MPI_BAND`).
    BitAnd
);
builtin!(
    /// Bitwise or (`MPI_BOR`).
    BitOr
);
builtin!(
    /// Bitwise exclusive or (`MPI_BXOR`).
    BitXor
);
builtin!(
    /// Smallest value and the lowest index holding it, over [`Loc`] pairs
    /// (`MPI_MINLOC`).
    MinLoc
);
builtin!(
    /// Largest value and the lowest index holding it, over [`Loc`] pairs
    /// (`MPI_MAXLOC`).
    MaxLoc
);

macro_rules! commutative_op {
    ($op:ident, $t:ty, |$a:ident, $b:ident| $body:expr) => {
        impl Op<$t> for $op {
            #[inline]
            fn combine(&self, $a: $t, $b: $t) -> $t {
                $body
            }

            fn is_commutative(&self) -> bool {
                true
            }
        }
    };
}

macro_rules! integer_ops {
    ($($t:ty),*) => {$(
        commutative_op!(Sum, $t, |a, b| a.wrapping_add(b));
        commutative_op!(Prod, $t, |a, b| a.wrapping_mul(b));
        commutative_op!(Min, $t, |a, b| a.min(b));
        commutative_op!(Max, $t, |a, b| a.max(b));
        commutative_op!(LogicalAnd, $t, |a, b| <$t>::from(a != 0 && b != 0));
        commutative_op!(LogicalOr, $t, |a, b| <$t>::from(a != 0 || b != 0));
        commutative_op!(LogicalXor, $t, |a, b| <$t>::from((a != 0) != (b != 0)));
        commutative_op!(BitAnd, $t, |a, b| a & b);
        commutative_op!(BitOr, $t, |a, b| a | b);
        commutative_op!(BitXor, $t, |a, b| a ^ b);
        commutative_op!(MinLoc, Loc<$t>, |a, b| a.pick(b, |x, y| x < y));
        commutative_op!(MaxLoc, Loc<$t>, |a, b| a.pick(b, |x, y| x > y));
    )*};
}

integer_ops!(
    i8, i16, i32, i64, i128, isize, u8, u16, u32, u64, u128, usize
);

macro_rules! float_ops {
    ($($t:ty),*) => {$(
        commutative_op!(Sum, $t, |a, b| a + b);
        commutative_op!(Prod, $t, |a, b| a * b);
        commutative_op!(Min, $t, |a, b| if b < a { b } else { a });
        commutative_op!(Max, $t, |a, b| if b > a { b } else { a });
        commutative_op!(MinLoc, Loc<$t>, |a, b| a.pick(b, |x, y| x < y));
        commutative_op!(MaxLoc, Loc<$t>, |a, b| a.pick(b, |x, y| x > y));
    )*};
}

float_ops!(f32, f64);

/// A value and where it came from (a rank or an index), for [`MinLoc`] and
/// [`MaxLoc`] (`MPI_DOUBLE_INT` and friends). Packed, so that it is plain
/// old data for every `T` (no padding): read the fields by value
/// (`loc.value`), or with [`Loc::value`] / [`Loc::index`].
/// (bytemuck's derive checks that: it accepts a generic struct only when
/// packed.)
#[repr(C, packed)]
#[derive(Clone, Copy, Pod, Zeroable)]
pub struct Loc<T> {
    /// The value compared.
    pub value: T,
    /// Its location.
    pub index: i32,
}

impl<T: Copy> Loc<T> {
    /// A value at a location.
    pub fn new(value: T, index: i32) -> Loc<T> {
        Loc { value, index }
    }

    /// The value.
    pub fn value(&self) -> T {
        self.value
    }

    /// The location.
    pub fn index(&self) -> i32 {
        self.index
    }

    /// `self` if its value beats `other`'s, `other` if the reverse, and the
    /// lower index on a tie.
    fn pick(self, other: Loc<T>, beats: impl Fn(T, T) -> bool) -> Loc<T> {
        let (a, b) = (self.value, other.value);
        if beats(a, b) {
            self
        } else if beats(b, a) {
            other
        } else {
            Loc {
                value: a,
                index: self.index.min(other.index),
            }
        }
    }
}

impl<T: Copy + fmt::Debug> fmt::Debug for Loc<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let (value, index) = (self.value, self.index);
        f.debug_struct("Loc")
            .field("value", &value)
            .field("index", &index)
            .finish()
    }
}

impl<T: Copy + PartialEq> PartialEq for Loc<T> {
    fn eq(&self, other: &Loc<T>) -> bool {
        let (a, b) = (self.value, other.value);
        a == b && { self.index } == { other.index }
    }
}
