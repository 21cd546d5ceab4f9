//! Median and worst of repeated samples.

use std::time::Duration;

/// Samples of one figure.
#[derive(Debug, Default, Clone)]
pub struct Samples(pub Vec<f64>);

impl Samples {
    pub fn push(&mut self, d: Duration) {
        self.0.push(d.as_secs_f64() * 1e6);
    }
    pub fn push_value(&mut self, v: f64) {
        self.0.push(v);
    }
    pub fn median(&self) -> f64 {
        let mut v = self.0.clone();
        if v.is_empty() {
            return f64::NAN;
        }
        v.sort_by(f64::total_cmp);
        let n = v.len();
        if n % 2 == 1 {
            v[n / 2]
        } else {
            (v[n / 2 - 1] + v[n / 2]) / 2.0
        }
    }
    pub fn worst(&self) -> f64 {
        self.0.iter().copied().fold(f64::NAN, f64::max)
    }
    pub fn json(&self) -> serde_json::Value {
        serde_json::json!({ "median": self.median(), "worst": self.worst(), "samples": self.0 })
    }
}

/// `median / worst` in microseconds, or milliseconds when large.
pub fn show(s: &Samples) -> String {
    if s.0.is_empty() {
        return "–".into();
    }
    format!("{} / {}", us(s.median()), us(s.worst()))
}

pub fn us(v: f64) -> String {
    if v >= 10_000.0 {
        format!("{:.1} ms", v / 1000.0)
    } else {
        format!("{v:.0} µs")
    }
}
