//! Entropy and varentropy of a categorical distribution, in nats.
//!
//! H(p) = -Σ p log p and V(p) = Σ p (log p)^2 - H(p)^2 (the variance of the
//! surprisal -log p(X) under X ~ p). Terms with p = 0 contribute 0.

/// `(H(p), V(p))` of a (not necessarily normalised) non-negative vector,
/// normalised first. Two-pass for accuracy: V is computed around H.
pub fn entropy_varentropy(p: &[f64]) -> (f64, f64) {
    let total: f64 = p.iter().sum();
    if !(total > 0.0) {
        return (0.0, 0.0);
    }
    let mut h = 0.0;
    for &pi in p {
        if pi > 0.0 {
            let q = pi / total;
            h -= q * q.ln();
        }
    }
    let mut v = 0.0;
    for &pi in p {
        if pi > 0.0 {
            let q = pi / total;
            let d = -q.ln() - h;
            v += q * d * d;
        }
    }
    (h.max(0.0), v.max(0.0))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn uniform_and_point_mass() {
        let (h, v) = entropy_varentropy(&[0.25; 4]);
        assert!((h - 4f64.ln()).abs() < 1e-15);
        assert!(v.abs() < 1e-15);
        assert_eq!(entropy_varentropy(&[0.0, 1.0, 0.0]), (0.0, 0.0));
    }

    #[test]
    fn bernoulli_closed_form() {
        let p = 0.3f64;
        let (h, v) = entropy_varentropy(&[p, 1.0 - p]);
        let want_h = -(p * p.ln() + (1.0 - p) * (1.0 - p).ln());
        let want_v = p * (1.0 - p) * ((p / (1.0 - p)).ln()).powi(2);
        assert!((h - want_h).abs() < 1e-14);
        assert!((v - want_v).abs() < 1e-14);
    }
}
