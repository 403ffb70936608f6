//! The statistics of the report: median, min–max, and ratios between
//! columns. Nothing here measures; it only summarises what was measured.

/// Median, minimum and maximum of a non-empty sample.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Summary {
    /// The middle value (the mean of the two middle values for an even count).
    pub median: f64,
    /// The smallest value.
    pub min: f64,
    /// The largest value.
    pub max: f64,
    /// How many values.
    pub n: usize,
}

impl Summary {
    /// Summarises `values`; `None` when empty or when a value is not finite.
    pub fn of(values: &[f64]) -> Option<Self> {
        if values.is_empty() || values.iter().any(|v| !v.is_finite()) {
            return None;
        }
        let mut v = values.to_vec();
        v.sort_by(f64::total_cmp);
        let n = v.len();
        let median = if n % 2 == 1 {
            v[n / 2]
        } else {
            (v[n / 2 - 1] + v[n / 2]) / 2.0
        };
        Some(Self {
            median,
            min: v[0],
            max: v[n - 1],
            n,
        })
    }
}

/// `x / reference`, or `None` if the reference is not positive.
pub fn ratio(x: f64, reference: f64) -> Option<f64> {
    (reference > 0.0 && x.is_finite()).then(|| x / reference)
}

/// The largest of `values` (the best peer's throughput), ignoring `None`s.
pub fn best(values: impl IntoIterator<Item = Option<f64>>) -> Option<f64> {
    values.into_iter().flatten().reduce(f64::max)
}

/// The smallest of `values` (the leanest peer's RSS), ignoring `None`s.
pub fn leanest(values: impl IntoIterator<Item = Option<f64>>) -> Option<f64> {
    values.into_iter().flatten().reduce(f64::min)
}

/// Nanoseconds per operation for `ops` operations taking `secs` seconds.
pub fn ns_per_op(secs: f64, ops: u64) -> f64 {
    secs * 1e9 / ops as f64
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn median_of_odd_count_is_the_middle_value() {
        let s = Summary::of(&[5.0, 1.0, 3.0, 9.0, 2.0]).unwrap();
        assert_eq!(s.median, 3.0);
        assert_eq!((s.min, s.max, s.n), (1.0, 9.0, 5));
    }

    #[test]
    fn median_of_even_count_is_the_mean_of_the_middle_pair() {
        let s = Summary::of(&[4.0, 1.0, 3.0, 10.0]).unwrap();
        assert_eq!(s.median, 3.5);
        assert_eq!((s.min, s.max), (1.0, 10.0));
    }

    #[test]
    fn single_value_is_its_own_summary() {
        let s = Summary::of(&[7.5]).unwrap();
        assert_eq!((s.median, s.min, s.max, s.n), (7.5, 7.5, 7.5, 1));
    }

    #[test]
    fn empty_or_non_finite_sample_has_no_summary() {
        assert_eq!(Summary::of(&[]), None);
        assert_eq!(Summary::of(&[1.0, f64::NAN]), None);
        assert_eq!(Summary::of(&[f64::INFINITY]), None);
    }

    #[test]
    fn ratio_divides_and_refuses_a_non_positive_reference() {
        assert_eq!(ratio(3.0, 2.0), Some(1.5));
        assert_eq!(ratio(3.0, 0.0), None);
        assert_eq!(ratio(3.0, -1.0), None);
    }

    #[test]
    fn best_and_leanest_skip_missing_values() {
        let v = [Some(2.0), None, Some(5.0), Some(1.0)];
        assert_eq!(best(v), Some(5.0));
        assert_eq!(leanest(v), Some(1.0));
        assert_eq!(best([None, None]), None);
    }

    #[test]
    fn ns_per_op_converts_seconds() {
        assert_eq!(ns_per_op(1.0, 1_000_000_000), 1.0);
        assert_eq!(ns_per_op(0.5, 100_000_000), 5.0);
    }
}
