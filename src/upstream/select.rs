//! Which instance a request tries, and which next after a connect failure:
//! only available endpoints (healthy, not ejected), each at most once, by
//! random choice or by power-of-two-choices on requests in flight.

use std::sync::Arc;

use rand::Rng;

use super::endpoint::{Endpoint, Target};
use crate::config::deployment::SelectionSpec;

/// `upstream.selection`.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum Strategy {
    /// Uniformly among available endpoints.
    Random,
    /// Two random available endpoints, the one with fewer requests in flight
    /// wins: steers traffic away from slow instances (the default; see README).
    #[default]
    P2c,
}

impl From<SelectionSpec> for Strategy {
    fn from(spec: SelectionSpec) -> Self {
        match spec {
            SelectionSpec::Random => Self::Random,
            SelectionSpec::P2c => Self::P2c,
        }
    }
}

impl Strategy {
    pub fn name(self) -> &'static str {
        match self {
            Self::Random => "random",
            Self::P2c => "p2c",
        }
    }
}

/// Retries consider at most this many endpoints of one deployment.
const MAX_TRACKED: usize = 128;

/// One request's view of the endpoints and what it already tried.
#[derive(Debug)]
pub struct Picker {
    endpoints: Arc<Vec<Arc<Endpoint>>>,
    tried: u128,
}

impl Picker {
    pub fn new(endpoints: Arc<Vec<Arc<Endpoint>>>) -> Self {
        Self { endpoints, tried: 0 }
    }

    /// Whether any endpoint exists at all (before health).
    pub fn is_empty(&self) -> bool {
        self.endpoints.is_empty()
    }

    /// The next endpoint to try, or `None` when no untried one is available.
    /// `network_only` skips the in-process echo (a retry needs a socket).
    /// An endpoint on trial after an ejection is taken only by the one
    /// request that wins its trial slot ([`Endpoint::admit`]).
    pub fn pick(&mut self, strategy: Strategy, network_only: bool) -> Option<Arc<Endpoint>> {
        loop {
            let index = self.choose(strategy, network_only)?;
            self.tried |= 1 << index;
            let endpoint = &self.endpoints[index];
            if endpoint.admit() {
                return Some(endpoint.clone());
            }
        }
    }

    fn choose(&self, strategy: Strategy, network_only: bool) -> Option<usize> {
        let candidates: u128 = self
            .endpoints
            .iter()
            .take(MAX_TRACKED)
            .enumerate()
            .filter(|(i, e)| {
                self.tried & (1 << i) == 0 && e.is_available() && !(network_only && e.target == Target::Echo)
            })
            .fold(0u128, |set, (i, _)| set | (1 << i));
        let count = candidates.count_ones() as usize;
        if count == 0 {
            return None;
        }
        let mut rng = rand::thread_rng();
        let nth = |n: usize| nth_set_bit(candidates, n);
        Some(match strategy {
            Strategy::Random => nth(rng.gen_range(0..count)),
            Strategy::P2c if count == 1 => nth(0),
            Strategy::P2c => {
                let a = rng.gen_range(0..count);
                let b = (a + rng.gen_range(1..count)) % count;
                let (a, b) = (nth(a), nth(b));
                if self.endpoints[b].in_flight() < self.endpoints[a].in_flight() {
                    b
                } else {
                    a
                }
            }
        })
    }

    /// Whether a connect failure can move on to another endpoint.
    pub fn has_untried(&self) -> bool {
        self.endpoints
            .iter()
            .take(MAX_TRACKED)
            .enumerate()
            .any(|(i, e)| self.tried & (1 << i) == 0 && e.is_available() && e.target != Target::Echo)
    }
}

/// Index of the `n`-th set bit (0-based).
fn nth_set_bit(mut bits: u128, n: usize) -> usize {
    for _ in 0..n {
        bits &= bits - 1;
    }
    bits.trailing_zeros() as usize
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::net::SocketAddr;

    fn endpoints(n: u16) -> Arc<Vec<Arc<Endpoint>>> {
        Arc::new(
            (1..=n)
                .map(|p| Arc::new(Endpoint::new(Target::Network(SocketAddr::from(([127, 0, 0, 1], p))))))
                .collect(),
        )
    }

    #[test]
    fn each_endpoint_once() {
        for strategy in [Strategy::Random, Strategy::P2c] {
            let list = endpoints(5);
            let mut picker = Picker::new(list.clone());
            let mut seen = Vec::new();
            while let Some(e) = picker.pick(strategy, true) {
                seen.push(e.target);
            }
            seen.sort_by_key(|t| t.to_string());
            assert_eq!(seen.len(), 5);
            seen.dedup();
            assert_eq!(seen.len(), 5);
            assert!(!picker.has_untried());
        }
    }

    #[test]
    fn unhealthy_endpoints_are_skipped() {
        let list = endpoints(3);
        list[0].set_healthy(false);
        list[2].set_healthy(false);
        let mut picker = Picker::new(list.clone());
        assert_eq!(
            picker.pick(Strategy::Random, true).map(|e| e.target),
            Some(list[1].target)
        );
        assert!(picker.pick(Strategy::Random, true).is_none());
    }

    #[test]
    fn p2c_prefers_fewer_in_flight() {
        let list = endpoints(2);
        let _busy: Vec<_> = (0..10).map(|_| list[0].begin_request()).collect();
        for _ in 0..50 {
            let mut picker = Picker::new(list.clone());
            assert_eq!(picker.pick(Strategy::P2c, true).map(|e| e.target), Some(list[1].target));
        }
    }

    #[test]
    fn bits() {
        assert_eq!(nth_set_bit(0b10110, 0), 1);
        assert_eq!(nth_set_bit(0b10110, 1), 2);
        assert_eq!(nth_set_bit(0b10110, 2), 4);
    }
}
