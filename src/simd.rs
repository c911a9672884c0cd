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
