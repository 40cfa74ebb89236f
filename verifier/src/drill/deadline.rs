//! A drill's budget: its timeout and a cancel flag (set by a signal handler),
//! checked between units of work (entries, chunks).

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use crate::units::humanize;

#[derive(Debug, Clone)]
pub struct Deadline {
    at: Option<Instant>,
    budget: Option<Duration>,
    cancel: Option<Arc<AtomicBool>>,
}

/// Why work stopped early.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum Stop {
    /// The job's `timeout` ran out.
    #[error("timed out after {}", humanize(*.0))]
    TimedOut(Duration),
    /// The process was asked to stop (SIGINT, SIGTERM).
    #[error("was interrupted before it finished")]
    Cancelled,
}

impl Deadline {
    pub fn none() -> Deadline {
        Deadline {
            at: None,
            budget: None,
            cancel: None,
        }
    }

    pub fn after(budget: Duration) -> Deadline {
        Deadline {
            at: Instant::now().checked_add(budget),
            budget: Some(budget),
            cancel: None,
        }
    }

    /// Also stop as soon as `flag` is set.
    pub fn with_cancel(mut self, flag: Option<Arc<AtomicBool>>) -> Deadline {
        self.cancel = flag;
        self
    }

    /// Whichever of the two runs out first (its budget is the one reported),
    /// stopping also on either's cancel flag.
    pub fn sooner(self, other: &Deadline) -> Deadline {
        let mine_first = match (self.at, other.at) {
            (Some(a), Some(b)) => a <= b,
            (Some(_), None) => true,
            (None, _) => false,
        };
        let cancel = self.cancel.clone().or_else(|| other.cancel.clone());
        let mut d = if mine_first { self } else { other.clone() };
        d.cancel = cancel;
        d
    }

    /// Also stop when `other`'s cancel flag is set.
    pub fn with_cancel_of(self, other: &Deadline) -> Deadline {
        self.with_cancel(other.cancel.clone())
    }

    pub fn check(&self) -> Result<(), Stop> {
        if self
            .cancel
            .as_ref()
            .is_some_and(|c| c.load(Ordering::Relaxed))
        {
            return Err(Stop::Cancelled);
        }
        match (self.at, self.budget) {
            (Some(at), Some(b)) if Instant::now() >= at => Err(Stop::TimedOut(b)),
            _ => Ok(()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sooner_takes_the_earlier_limit_and_either_cancel() {
        let flag = Arc::new(AtomicBool::new(false));
        let job = Deadline::after(Duration::ZERO).with_cancel(Some(flag.clone()));
        let check = Deadline::after(Duration::from_secs(3600));
        assert_eq!(
            check.clone().sooner(&job).check(),
            Err(Stop::TimedOut(Duration::ZERO))
        );
        let later_job = Deadline::after(Duration::from_secs(7200)).with_cancel(Some(flag.clone()));
        let d = check.sooner(&later_job);
        assert!(d.check().is_ok());
        flag.store(true, Ordering::Relaxed);
        assert_eq!(d.check(), Err(Stop::Cancelled));
    }

    #[test]
    fn zero_budget_times_out_and_cancel_stops() {
        let d = Deadline::after(Duration::ZERO);
        assert_eq!(d.check(), Err(Stop::TimedOut(Duration::ZERO)));
        assert!(Deadline::none().check().is_ok());
        let flag = Arc::new(AtomicBool::new(false));
        let d = Deadline::none().with_cancel(Some(flag.clone()));
        assert!(d.check().is_ok());
        flag.store(true, Ordering::Relaxed);
        assert_eq!(d.check(), Err(Stop::Cancelled));
    }
}
