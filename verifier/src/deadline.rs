//! A drill's time budget, checked between units of work (entries, chunks).

use std::time::{Duration, Instant};

#[derive(Debug, Clone, Copy)]
pub struct Deadline {
    at: Option<Instant>,
    budget: Option<Duration>,
}

/// The drill ran out of its `timeout`.
#[derive(Debug, Clone, Copy, thiserror::Error)]
#[error("timed out after {}", humanize(*.0))]
pub struct TimedOut(pub Duration);

impl Deadline {
    pub fn none() -> Deadline {
        Deadline {
            at: None,
            budget: None,
        }
    }

    pub fn after(budget: Duration) -> Deadline {
        Deadline {
            at: Instant::now().checked_add(budget),
            budget: Some(budget),
        }
    }

    pub fn check(&self) -> Result<(), TimedOut> {
        match (self.at, self.budget) {
            (Some(at), Some(b)) if Instant::now() >= at => Err(TimedOut(b)),
            _ => Ok(()),
        }
    }
}

/// "2h", "90s", "1d 2h" — compact and readable, for reasons and summaries.
pub fn humanize(d: Duration) -> String {
    let s = d.as_secs();
    if s == 0 {
        let ms = d.as_millis();
        return if ms == 0 {
            "0s".into()
        } else {
            format!("{ms}ms")
        };
    }
    let (days, h, m, sec) = (s / 86400, s / 3600 % 24, s / 60 % 60, s % 60);
    let mut parts = Vec::new();
    if days > 0 {
        parts.push(format!("{days}d"));
    }
    if h > 0 {
        parts.push(format!("{h}h"));
    }
    if m > 0 {
        parts.push(format!("{m}m"));
    }
    if sec > 0 && days == 0 {
        parts.push(format!("{sec}s"));
    }
    parts.join(" ")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn humanize_is_compact() {
        assert_eq!(humanize(Duration::from_secs(26 * 3600)), "1d 2h");
        assert_eq!(humanize(Duration::from_secs(90)), "1m 30s");
        assert_eq!(humanize(Duration::from_millis(250)), "250ms");
    }

    #[test]
    fn zero_budget_times_out() {
        let d = Deadline::after(Duration::ZERO);
        assert!(d.check().is_err());
        assert!(Deadline::none().check().is_ok());
    }
}
