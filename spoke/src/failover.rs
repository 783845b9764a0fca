//! Which hub a spoke replicates with: its preferred hub while that answers, the next
//! reachable one in its order while it does not, and the preferred one again once it
//! has answered steadily. Pure: the spoke probes every hub each [`PROBE_INTERVAL`] and
//! feeds the answers in; the decision is testable without a clock or a network.

use std::time::Duration;

/// How often the spoke asks each of its hubs whether it answers.
pub const PROBE_INTERVAL: Duration = Duration::from_secs(1);

/// Consecutive unanswered probes after which the spoke leaves its current hub (about
/// 3 s): long enough that one lost probe or a hub's brief GC pause does not move every
/// spoke, short enough that a dead hub delays cross-datacentre delivery by seconds.
pub const LEAVE_AFTER_MISSES: u32 = 3;

/// Consecutive answered probes after which the spoke returns to a hub it prefers to
/// its current one (about 5 s): a flapping hub does not pull spokes back and forth.
pub const RETURN_AFTER_ANSWERS: u32 = 5;

/// The spoke's hubs in its order, which one it is on, and each one's recent answers.
#[derive(Debug, Clone)]
pub struct HubChoice {
    current: usize,
    misses: Vec<u32>,
    answers: Vec<u32>,
}

impl HubChoice {
    /// A choice among `hubs` hubs (at least one), starting on the preferred (index 0).
    pub fn new(hubs: usize) -> HubChoice {
        let n = hubs.max(1);
        HubChoice {
            current: 0,
            misses: vec![0; n],
            answers: vec![0; n],
        }
    }

    /// The index of the hub the spoke replicates with now.
    pub fn current(&self) -> usize {
        self.current
    }

    /// Records one round of probes (`answered[i]`: hub `i` answered) and returns the
    /// hub to move to, if the spoke should move.
    ///
    /// ```
    /// # use spoke::failover::HubChoice;
    /// let mut c = HubChoice::new(2);
    /// assert_eq!(c.observe(&[false, true]), None); // one miss is not an outage
    /// assert_eq!(c.observe(&[false, true]), None);
    /// assert_eq!(c.observe(&[false, true]), Some(1));
    /// ```
    pub fn observe(&mut self, answered: &[bool]) -> Option<usize> {
        for (i, ok) in answered.iter().enumerate().take(self.misses.len()) {
            if *ok {
                self.misses[i] = 0;
                self.answers[i] = self.answers[i].saturating_add(1);
            } else {
                self.misses[i] = self.misses[i].saturating_add(1);
                self.answers[i] = 0;
            }
        }
        let up = |i: usize| self.misses[i] == 0 && self.answers[i] > 0;
        let next = if self.misses[self.current] >= LEAVE_AFTER_MISSES {
            // The most preferred hub that answers now; staying is better than moving to
            // one that does not answer either.
            (0..self.misses.len()).find(|&i| i != self.current && up(i))
        } else {
            (0..self.current).find(|&i| self.answers[i] >= RETURN_AFTER_ANSWERS)
        };
        if let Some(i) = next {
            self.current = i;
        }
        next
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_single_hub_never_moves() {
        let mut c = HubChoice::new(1);
        for _ in 0..10 {
            assert_eq!(c.observe(&[false]), None);
        }
        assert_eq!(c.current(), 0);
    }

    #[test]
    fn it_leaves_after_the_misses_and_only_for_a_hub_that_answers() {
        let mut c = HubChoice::new(3);
        for _ in 0..LEAVE_AFTER_MISSES + 2 {
            assert_eq!(c.observe(&[false, false, false]), None, "nothing answers: stay");
        }
        assert_eq!(c.observe(&[false, false, true]), Some(2));
        assert_eq!(c.current(), 2);
    }

    #[test]
    fn it_returns_to_the_preferred_hub_once_it_answers_steadily() {
        let mut c = HubChoice::new(2);
        for _ in 0..LEAVE_AFTER_MISSES - 1 {
            assert_eq!(c.observe(&[false, true]), None);
        }
        assert_eq!(c.observe(&[false, true]), Some(1));
        // A flapping preferred hub does not pull the spoke back.
        for _ in 0..3 {
            for _ in 0..RETURN_AFTER_ANSWERS - 1 {
                assert_eq!(c.observe(&[true, true]), None);
            }
            assert_eq!(c.observe(&[false, true]), None);
        }
        for _ in 0..RETURN_AFTER_ANSWERS - 1 {
            assert_eq!(c.observe(&[true, true]), None);
        }
        assert_eq!(c.observe(&[true, true]), Some(0));
        assert_eq!(c.current(), 0);
    }

    #[test]
    fn misses_broken_by_an_answer_do_not_add_up() {
        let mut c = HubChoice::new(2);
        for _ in 0..10 {
            for _ in 0..LEAVE_AFTER_MISSES - 1 {
                assert_eq!(c.observe(&[false, true]), None);
            }
            assert_eq!(c.observe(&[true, true]), None);
        }
        assert_eq!(c.current(), 0);
    }
}
