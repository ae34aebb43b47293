//! A route's weighted backends: each request picks one with probability
//! weight / sum, skipping the ones that cannot serve while another can.
//! Picking allocates nothing.

/// The backends of one route with their weights (at least one above 0,
/// unless the route has none: a redirect).
#[derive(Debug, Clone)]
pub struct Backends<T> {
    items: Box<[(T, u32)]>,
}

impl<T> Backends<T> {
    pub fn new(items: Vec<(T, u32)>) -> Self {
        Self { items: items.into() }
    }

    /// One backend that takes every request.
    pub fn single(target: T) -> Self {
        Self::new(vec![(target, 1)])
    }

    /// No backend: the route answers itself (a redirect).
    pub fn none() -> Self {
        Self::new(Vec::new())
    }

    /// The first backend with a weight: what the route is listed under.
    pub fn primary(&self) -> Option<&T> {
        self.items
            .iter()
            .find(|(_, weight)| *weight > 0)
            .map(|(target, _)| target)
    }

    pub fn iter(&self) -> impl Iterator<Item = (&T, u32)> {
        self.items.iter().map(|(target, weight)| (target, *weight))
    }

    /// The backend for a request. `roll` is a uniformly random number;
    /// `serves` says whether a backend can take the request now. When none
    /// can, the primary is returned (it answers why).
    pub fn pick(&self, roll: u64, serves: impl Fn(&T) -> bool) -> Option<&T> {
        if let [(only, _)] = &*self.items {
            return Some(only);
        }
        let live = || {
            self.items
                .iter()
                .filter(|(target, weight)| *weight > 0 && serves(target))
        };
        let total: u64 = live().map(|(_, weight)| u64::from(*weight)).sum();
        if total == 0 {
            return self.primary();
        }
        let mut point = roll % total;
        for (target, weight) in live() {
            let weight = u64::from(*weight);
            if point < weight {
                return Some(target);
            }
            point -= weight;
        }
        self.primary()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn weights_split_the_rolls() {
        let backends = Backends::new(vec![("a", 90), ("b", 10), ("never", 0)]);
        let mut counts = std::collections::HashMap::new();
        for roll in 0..1000 {
            *counts.entry(*backends.pick(roll, |_| true).unwrap()).or_insert(0) += 1;
        }
        assert_eq!(counts.get("a"), Some(&900));
        assert_eq!(counts.get("b"), Some(&100));
        assert_eq!(counts.get("never"), None);
    }

    #[test]
    fn a_backend_that_cannot_serve_is_skipped() {
        let backends = Backends::new(vec![("a", 90), ("b", 10)]);
        assert!((0..100).all(|roll| backends.pick(roll, |t| *t != "a") == Some(&"b")));
        assert_eq!(
            backends.pick(5, |_| false),
            Some(&"a"),
            "none serves: the primary answers"
        );
        assert_eq!(Backends::<&str>::none().pick(0, |_| true), None);
        assert_eq!(Backends::single("x").pick(7, |_| false), Some(&"x"));
    }
}
