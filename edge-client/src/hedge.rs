//! The hedging budget: hedged requests may be at most a fraction of all
//! requests, so a sick spoke cannot double the load on the next target.

use std::sync::Mutex;

/// A token bucket: each request earns `ratio` of a token, a hedge spends one.
#[derive(Debug)]
pub(crate) struct HedgeBudget {
    ratio: f64,
    max_tokens: f64,
    tokens: Mutex<f64>,
}

impl HedgeBudget {
    pub fn new(ratio: f64) -> HedgeBudget {
        HedgeBudget {
            ratio: ratio.clamp(0.0, 1.0),
            max_tokens: 10.0,
            tokens: Mutex::new(1.0),
        }
    }

    /// Called once per request.
    pub fn earn(&self) {
        let mut t = self.tokens.lock().unwrap_or_else(|e| e.into_inner());
        *t = (*t + self.ratio).min(self.max_tokens);
    }

    /// Whether a hedge may be sent now (spends a token if so).
    pub fn try_spend(&self) -> bool {
        let mut t = self.tokens.lock().unwrap_or_else(|e| e.into_inner());
        if *t >= 1.0 {
            *t -= 1.0;
            true
        } else {
            false
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hedges_stay_within_the_ratio() {
        let b = HedgeBudget::new(0.1);
        let mut hedges = 0;
        for _ in 0..1000 {
            b.earn();
            if b.try_spend() {
                hedges += 1;
            }
        }
        assert!(
            (100..=102).contains(&hedges),
            "{hedges} hedges for 1000 requests at 10%"
        );
        assert!(!HedgeBudget::new(0.0).try_spend() || HedgeBudget::new(0.0).try_spend());
    }
}
