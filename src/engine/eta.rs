//! The server's estimate of the time a call has left, from the fractions it reports.
//!
//! Method (the contract's `Progress.eta_seconds`): the rate of progress (fraction per second) is
//! an exponentially weighted average of the rate between successive updates, each weighted by the
//! time it spans, with a time constant of [`TIME_CONSTANT`] seconds: recent progress counts most.
//! The average is corrected for its start (as if it had always run at the rate seen so far), so
//! early on it is the mean rate since the first report. The estimate is `(1 − fraction) / rate`.
//! The rate is updated at most every [`MIN_SPAN`]: a report closer than that to the last update
//! only reads it (a tool reporting a million times a second costs a comparison and a
//! multiplication per report), and its progress counts in the next update.
//!
//! It is absent at a call's first fraction and until the first update after it (no rate yet), for
//! a report without a fraction (indeterminate), while no progress was made (a zero rate), and at a
//! report whose fraction is below the previous one, which starts the estimate over. It is 0 at
//! 1.0. It is computed as each report enters the run's log, with no allocation.

use std::time::{Duration, SystemTime};

/// Seconds of history that weigh most in the rate.
pub(crate) const TIME_CONSTANT: f64 = 10.0;

/// The least time between two updates of the rate.
pub(crate) const MIN_SPAN: Duration = Duration::from_millis(10);

/// A call's rate of progress so far.
#[derive(Debug, Clone)]
pub(crate) struct Eta {
    /// The fraction and time of the last update of the rate; `None` before the first report.
    last: Option<(SystemTime, f64)>,
    /// Reports before this time only read the rate.
    next_update: SystemTime,
    /// The fraction last reported.
    reported: f64,
    /// The weighted average of the rate, before its correction for the start.
    rate: f64,
    /// The weight the average still gives its starting value (0): 1 at the first report, then
    /// decaying with the time that passes.
    start_weight: f64,
    /// Seconds per unit of fraction (1 / the corrected rate), once there is a rate above 0.
    seconds_per_unit: Option<f64>,
}

impl Default for Eta {
    fn default() -> Self {
        Eta {
            last: None,
            next_update: SystemTime::UNIX_EPOCH,
            reported: 0.0,
            rate: 0.0,
            start_weight: 1.0,
            seconds_per_unit: None,
        }
    }
}

impl Eta {
    /// Takes a report made at `at`, and returns the seconds left it implies, if known.
    pub(crate) fn observe(&mut self, at: SystemTime, fraction: Option<f64>) -> Option<f64> {
        let fraction = fraction.filter(|f| !f.is_nan())?.clamp(0.0, 1.0);
        let last = self.last.filter(|_| fraction >= self.reported);
        self.reported = fraction;
        let Some((then, before)) = last else {
            // The first fraction, or progress that went back: start over.
            *self = Eta {
                last: Some((at, fraction)),
                next_update: at + MIN_SPAN,
                reported: fraction,
                ..Eta::default()
            };
            // No rate yet, but a finished node has nothing left, whenever it finishes (a folded
            // sub-task that reports its end again is a new node to the log).
            return (fraction >= 1.0).then_some(0.0);
        };
        if at >= self.next_update {
            // A clock that went back counts as no time passing.
            let elapsed = at.duration_since(then).map_or(0.0, |d| d.as_secs_f64());
            let per = 1.0 / (TIME_CONSTANT + elapsed);
            let keep = TIME_CONSTANT * per;
            self.rate = self.rate * keep + (fraction - before) * per;
            self.start_weight *= keep;
            self.last = Some((at, fraction));
            self.next_update = at + MIN_SPAN;
            let seen = 1.0 - self.start_weight;
            self.seconds_per_unit = (seen > 0.0 && self.rate > 0.0)
                .then(|| seen / self.rate)
                .filter(|s| s.is_finite());
        }
        if fraction >= 1.0 {
            return Some(0.0);
        }
        self.seconds_per_unit.map(|s| (1.0 - fraction) * s)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    fn at(seconds: f64) -> SystemTime {
        SystemTime::UNIX_EPOCH + Duration::from_secs_f64(1_000.0 + seconds)
    }

    #[test]
    fn a_steady_rate_gives_the_time_left() {
        let mut eta = Eta::default();
        assert_eq!(eta.observe(at(0.0), Some(0.0)), None, "no rate at first");
        for i in 1..100 {
            let left = eta
                .observe(at(i as f64 * 0.5), Some(i as f64 / 100.0))
                .unwrap();
            let expected = (100 - i) as f64 * 0.5;
            assert!((left - expected).abs() < 1e-6, "{i}: {left} vs {expected}");
        }
        assert_eq!(eta.observe(at(50.0), Some(1.0)), Some(0.0));
    }

    #[test]
    fn the_recent_rate_counts_most() {
        let mut eta = Eta::default();
        eta.observe(at(0.0), Some(0.0));
        // Slow for a minute, then ten times faster for a minute.
        let mut t = 0.0;
        let mut f = 0.0;
        for _ in 0..60 {
            t += 1.0;
            f += 0.001;
            eta.observe(at(t), Some(f));
        }
        let mut left = None;
        for _ in 0..60 {
            t += 1.0;
            f += 0.01;
            left = eta.observe(at(t), Some(f));
        }
        let fast = (1.0 - f) / 0.01;
        let left = left.unwrap();
        assert!(left < fast * 1.1, "{left} vs {fast}");
    }

    #[test]
    fn reports_closer_than_the_span_read_the_rate_and_count_in_the_next_update() {
        let mut eta = Eta::default();
        eta.observe(at(0.0), Some(0.0));
        assert_eq!(eta.observe(at(0.001), Some(0.01)), None, "no update yet");
        // 0.1 in a second: 9 s left.
        let left = eta.observe(at(1.0), Some(0.1)).unwrap();
        assert!((left - 9.0).abs() < 1e-9, "{left}");
        // A burst of reports within the span: the rate stands, the fraction moves.
        let left = eta.observe(at(1.001), Some(0.4)).unwrap();
        assert!((left - 6.0).abs() < 1e-9, "{left}");
        assert_eq!(eta.observe(at(1.002), Some(1.0)), Some(0.0));
    }

    #[test]
    fn reports_at_the_same_instant_still_count() {
        let mut eta = Eta::default();
        eta.observe(at(0.0), Some(0.0));
        assert_eq!(eta.observe(at(0.0), Some(0.1)), None, "no time passed yet");
        // 0.2 in one second in all.
        let left = eta.observe(at(1.0), Some(0.2)).unwrap();
        assert!((left - 4.0).abs() < 1e-9, "{left}");
    }

    #[test]
    fn no_estimate_without_a_fraction_or_without_progress_and_a_fresh_start_when_it_goes_back() {
        let mut eta = Eta::default();
        assert_eq!(eta.observe(at(0.0), None), None);
        eta.observe(at(0.0), Some(0.5));
        assert_eq!(
            eta.observe(at(1.0), Some(0.5)),
            None,
            "no progress, no rate"
        );
        assert_eq!(eta.observe(at(2.0), None), None, "indeterminate");
        assert!(eta.observe(at(3.0), Some(0.6)).is_some());
        assert_eq!(
            eta.observe(at(4.0), Some(0.1)),
            None,
            "went back: start over"
        );
        let left = eta.observe(at(5.0), Some(0.2)).unwrap();
        assert!((left - 8.0).abs() < 1e-9, "{left}");
    }
}
