//! Wider vectors for selfsup's own CPU loops. The crate is built for baseline x86-64 (SSE2,
//! 4 lanes); [`avx2_when_available!`] compiles a function a second time for AVX2 (8 lanes)
//! and picks that copy at run time on CPUs that have it. The arithmetic is the same in both
//! copies (Rust never fuses a multiply and an add on its own, and reductions keep the order
//! the code writes), so results do not depend on the CPU.

/// Defines `fn NAME(ARGS) -> RET { BODY }` that runs BODY compiled with AVX2 enabled when the
/// CPU has it, and as written otherwise. BODY must be safe code; the function is inlined into
/// both copies, so helpers it calls should be `#[inline(always)]` to be widened too.
macro_rules! avx2_when_available {
    ($(#[$meta:meta])* $vis:vis fn $name:ident($($arg:ident : $ty:ty),* $(,)?) $(-> $ret:ty)? $body:block) => {
        $(#[$meta])*
        $vis fn $name($($arg: $ty),*) $(-> $ret)? {
            #[inline(always)]
            #[allow(clippy::too_many_arguments)]
            fn portable($($arg: $ty),*) $(-> $ret)? $body
            #[cfg(target_arch = "x86_64")]
            {
                #[target_feature(enable = "avx2")]
                #[allow(clippy::too_many_arguments)]
                unsafe fn avx2($($arg: $ty),*) $(-> $ret)? {
                    portable($($arg),*)
                }
                if std::arch::is_x86_feature_detected!("avx2") {
                    // SAFETY: the CPU supports AVX2 (checked just above).
                    return unsafe { avx2($($arg),*) };
                }
            }
            portable($($arg),*)
        }
    };
}

pub(crate) use avx2_when_available;

/// `e^x` for f32 in plain arithmetic (so that loops calling it vectorize): `x = k ln 2 + r`
/// with `|r| <= ln 2 / 2` (ln 2 split in two parts), `e^r` by its Taylor polynomial of degree
/// 7, times `2^k` built in the exponent bits. Relative error under 2e-7 against an f64 exp on
/// [-87, 88] (tested below); below -87 it returns 0, above 88 it saturates at e^88.
#[inline(always)]
pub(crate) fn exp_f32(x: f32) -> f32 {
    const LN2_HI: f32 = 0.693_145_75;
    const LN2_LO: f32 = 1.428_606_8e-6;
    let underflow = x < -87.0;
    let x = x.clamp(-87.0, 88.0);
    let k = (x * std::f32::consts::LOG2_E).round();
    let r = (x - k * LN2_HI) - k * LN2_LO;
    let mut p = 1.0 / 5040.0;
    p = p * r + 1.0 / 720.0;
    p = p * r + 1.0 / 120.0;
    p = p * r + 1.0 / 24.0;
    p = p * r + 1.0 / 6.0;
    p = p * r + 0.5;
    p = p * r + 1.0;
    p = p * r + 1.0;
    let two_k = f32::from_bits(((k as i32 + 127) as u32) << 23);
    if underflow { 0.0 } else { p * two_k }
}

/// `Σ a_i b_i` in eight independent lanes (so that it vectorizes), then the lanes in order.
#[inline(always)]
pub(crate) fn dot(a: &[f32], b: &[f32]) -> f32 {
    let mut acc = [0.0f32; 8];
    let (ca, cb) = (a.chunks_exact(8), b.chunks_exact(8));
    let tail: f32 = ca
        .remainder()
        .iter()
        .zip(cb.remainder())
        .map(|(x, y)| x * y)
        .sum();
    for (x, y) in ca.zip(cb) {
        for i in 0..8 {
            acc[i] += x[i] * y[i];
        }
    }
    acc.iter().sum::<f32>() + tail
}

/// `y += a x`.
#[inline(always)]
pub(crate) fn axpy(y: &mut [f32], a: f32, x: &[f32]) {
    for (y, &x) in y.iter_mut().zip(x) {
        *y += a * x;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn exp_matches_f64_within_2e_7_relative() {
        let mut worst = 0.0f64;
        for i in -8700..=8800 {
            let x = i as f32 / 100.0;
            let want = (x as f64).exp();
            worst = worst.max(((exp_f32(x) as f64) - want).abs() / want);
        }
        assert!(worst < 2e-7, "worst relative error {worst}");
        assert_eq!(exp_f32(-100.0), 0.0);
        assert_eq!(exp_f32(0.0), 1.0);
    }

    #[test]
    fn dot_and_axpy_by_hand() {
        let a: Vec<f32> = (1..=11).map(|v| v as f32).collect();
        // Σ i² for i = 1..11 = 11·12·23/6 = 506.
        assert_eq!(dot(&a, &a), 506.0);
        let mut y = vec![1.0f32; 11];
        axpy(&mut y, 2.0, &a);
        assert_eq!(y[10], 23.0);
    }
}
