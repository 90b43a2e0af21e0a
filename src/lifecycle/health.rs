//! Whether the app is healthy: each probe's results in a row against its
//! thresholds, and every probe must pass. Pure, like the rest of the
//! lifecycle: probe tasks only measure and report (`Input::Probe`).

/// A probe's consecutive-result thresholds.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Thresholds {
    /// Successes in a row before a failing probe passes.
    pub success: u32,
    /// Failures in a row before a passing probe fails.
    pub failure: u32,
}

/// One probe's standing. It starts failing, passes after `success`
/// successes in a row, and once passing fails after `failure` failures in
/// a row.
#[derive(Clone, Copy, Debug)]
pub(super) struct Probe {
    th: Thresholds,
    successes: u32,
    failures: u32,
    passing: bool,
}

impl Probe {
    pub fn new(th: Thresholds) -> Probe {
        Probe {
            th,
            successes: 0,
            failures: 0,
            passing: false,
        }
    }

    pub fn passing(&self) -> bool {
        self.passing
    }

    /// Failures in a row, 0 after a success.
    pub fn failures_in_row(&self) -> u32 {
        self.failures
    }

    /// Records a result; true when the probe changed between passing and
    /// failing.
    pub fn record(&mut self, ok: bool) -> bool {
        if ok {
            self.successes = self.successes.saturating_add(1);
            self.failures = 0;
            if !self.passing && self.successes >= self.th.success {
                self.passing = true;
                return true;
            }
        } else {
            self.failures = self.failures.saturating_add(1);
            self.successes = 0;
            if self.passing && self.failures >= self.th.failure {
                self.passing = false;
                return true;
            }
        }
        false
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn thresholds_count_consecutive_results() {
        let mut t = Probe::new(Thresholds {
            success: 2,
            failure: 3,
        });
        // (result, changed, passing after it)
        let seq = [
            (false, false, false),
            (true, false, false),
            (false, false, false),
            (true, false, false),
            (true, true, true),
            (false, false, true),
            (false, false, true),
            (true, false, true),
            (false, false, true),
            (false, false, true),
            (false, true, false),
            (true, false, false),
            (true, true, true),
        ];
        for (i, (ok, changed, passing)) in seq.into_iter().enumerate() {
            assert_eq!(t.record(ok), changed, "step {i}");
            assert_eq!(t.passing(), passing, "step {i}");
        }
        assert_eq!(t.failures_in_row(), 0);
    }
}
