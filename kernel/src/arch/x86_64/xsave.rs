//! The XSAVE image of a signal frame: what `rt_sigreturn` needs to give a thread back every
//! FPU, SSE, AVX, AVX-512, PKRU and AMX register it had.
//!
//! `PTRACE_GETREGSET NT_X86_XSTATE` gives a thread's state in the standard (non-compacted)
//! XSAVE format, sized for every user feature the kernel enables (AMX's 8 KiB of tile data
//! included), with the enabled features (XCR0) in the software-reserved bytes. A signal frame
//! is sized for the thread instead: the kernel's `fpstate->user_size`, which leaves out the
//! "dynamic" features (AMX tile data) until the process was granted them
//! (`arch_prctl(ARCH_REQ_XCOMP_PERM)`) and the thread first used them. `rt_sigreturn` looks for
//! `FP_XSTATE_MAGIC2` right after that size (since Linux 6.16; before, after the frame's own
//! `xstate_size`, which must not exceed it) and restores only the legacy FXSAVE part when it
//! is not there: the AVX and AVX-512 upper halves, opmasks and tiles are then lost.
//!
//! Which of the two sizes a thread has cannot be read from outside when its tile data is in
//! its initial state, so the image serves both: it is as long as the larger and carries
//! `MAGIC2` after each. Every kernel then finds a `MAGIC2` where it looks, restores the
//! features the frame names, and puts the ones it does not name (tile data not in use) in
//! their initial state, which is the state they were in.

/// Offset of the software-reserved bytes in the legacy area (`fxregs_state.sw_reserved`).
const SW_RESERVED: usize = 464;
/// Length of the software-reserved bytes.
const SW_RESERVED_LEN: usize = 48;
/// Offset of the XSAVE header's `xfeatures` (XSTATE_BV): the features not in their initial
/// state.
const XSTATE_BV: usize = 512;
/// `FP_XSTATE_MAGIC1`: the software-reserved bytes describe an XSAVE image.
pub const MAGIC1: u32 = 0x4650_5853;
/// `FP_XSTATE_MAGIC2`: written right after the XSAVE image.
pub const MAGIC2: u32 = 0x4650_5845;
/// The legacy area and the XSAVE header: the smallest image (`sizeof(struct xregs_state)`).
pub const MIN_SIZE: usize = 512 + 64;
/// x87 and SSE state: in the legacy area, always restored from a frame.
const FP_SSE: u64 = 0b11;
/// Features whose state the kernel allocates per thread on first use, after the process asked
/// for them (Linux `XFEATURE_MASK_USER_DYNAMIC`): AMX tile data.
pub const DYNAMIC: u64 = 1 << 18;

/// Where each extended feature's state lies in the standard XSAVE format (CPUID leaf 0xD,
/// sub-leaf = feature number: size in EAX, offset in EBX). The offsets differ between CPUs
/// (AMD leaves no room for MPX, Intel does), so they are read from the CPU, as the kernel does.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct XsaveLayout {
    /// `(offset, size)` of features 2 to 63, by feature number; `(0, 0)` where the CPU has none.
    parts: [(u32, u32); 64],
}

impl XsaveLayout {
    /// This machine's layout, read once.
    pub fn host() -> &'static XsaveLayout {
        static HOST: std::sync::OnceLock<XsaveLayout> = std::sync::OnceLock::new();
        HOST.get_or_init(|| {
            let mut parts = [(0, 0); 64];
            // Sub-leaf 0 EAX:EDX: the user features the CPU supports.
            let supported = std::arch::x86_64::__cpuid_count(0xd, 0);
            let supported = u64::from(supported.eax) | u64::from(supported.edx) << 32;
            for (feature, part) in parts.iter_mut().enumerate().skip(2) {
                if supported & 1 << feature != 0 {
                    let leaf = std::arch::x86_64::__cpuid_count(0xd, feature as u32);
                    *part = (leaf.ebx, leaf.eax);
                }
            }
            XsaveLayout { parts }
        })
    }

    /// A layout from `(feature, offset, size)` rows.
    pub fn from_parts(rows: &[(u32, u32, u32)]) -> XsaveLayout {
        let mut parts = [(0, 0); 64];
        for &(feature, offset, size) in rows {
            parts[feature as usize] = (offset, size);
        }
        XsaveLayout { parts }
    }

    /// The size of a standard-format image holding `features`, as the kernel computes a
    /// thread's `user_size` (the end of the feature that ends last); `None` when one of them
    /// has no place in this layout.
    pub fn size(&self, features: u64) -> Option<usize> {
        let mut end = MIN_SIZE;
        for feature in 2..64 {
            if features & 1 << feature == 0 {
                continue;
            }
            let (offset, size) = self.parts[feature];
            if size == 0 {
                return None;
            }
            end = end.max(offset as usize + size as usize);
        }
        Some(end)
    }
}

/// The XSAVE image of a signal frame for a thread whose `NT_X86_XSTATE` is `xstate`, with its
/// software-reserved bytes and `MAGIC2` as [`rt_sigreturn` needs them](self); `None` when
/// `xstate` is not an image of this layout.
pub fn sigframe_image(xstate: &[u8], layout: &XsaveLayout) -> Option<Vec<u8>> {
    let u64_at = |o: usize| Some(u64::from_le_bytes(xstate.get(o..o + 8)?.try_into().ok()?));
    // What ptrace puts in the software-reserved bytes: the user features enabled (XCR0).
    let enabled = u64_at(SW_RESERVED)? | FP_SSE;
    let in_use = u64_at(XSTATE_BV)? & enabled;
    // A thread whose tile data is in use has it in its frames; otherwise the frame leaves it
    // out and `rt_sigreturn` initializes it.
    let features = enabled & !DYNAMIC | in_use & DYNAMIC;
    let size = layout.size(features)?;
    let largest = layout.size(enabled)?;
    let mut image = xstate.get(..largest)?.to_vec();
    image.extend_from_slice(&MAGIC2.to_le_bytes());
    let mut sw = [0u8; SW_RESERVED_LEN];
    sw[0..4].copy_from_slice(&MAGIC1.to_le_bytes());
    sw[4..8].copy_from_slice(&(image.len() as u32).to_le_bytes());
    sw[8..16].copy_from_slice(&features.to_le_bytes());
    sw[16..20].copy_from_slice(&(size as u32).to_le_bytes());
    image[SW_RESERVED..SW_RESERVED + SW_RESERVED_LEN].copy_from_slice(&sw);
    image[size..size + 4].copy_from_slice(&MAGIC2.to_le_bytes());
    // As the kernel's own frames: x87 and SSE always loaded from the frame (their bytes are
    // the initial values when ptrace reported them initial).
    let bv = (in_use | FP_SSE).to_le_bytes();
    image[XSTATE_BV..XSTATE_BV + 8].copy_from_slice(&bv);
    Some(image)
}

#[cfg(test)]
mod tests {
    use super::*;

    const X87: u64 = 1;
    const SSE: u64 = 1 << 1;
    const AVX: u64 = 1 << 2;
    const OPMASK: u64 = 1 << 5;
    const ZMM_HI256: u64 = 1 << 6;
    const HI16_ZMM: u64 = 1 << 7;
    const PKRU: u64 = 1 << 9;
    const TILECFG: u64 = 1 << 17;
    const TILEDATA: u64 = 1 << 18;

    /// CPUID leaf 0xD of an AVX2 CPU without AVX-512 (Intel client).
    fn avx2() -> (XsaveLayout, u64) {
        (XsaveLayout::from_parts(&[(2, 576, 256)]), X87 | SSE | AVX)
    }

    /// An AMD CPU with AVX-512 and no MPX room (this project's machines of that kind).
    fn avx512_amd() -> (XsaveLayout, u64) {
        let layout =
            XsaveLayout::from_parts(&[(2, 576, 256), (5, 832, 64), (6, 896, 512), (7, 1408, 1024)]);
        (layout, X87 | SSE | AVX | OPMASK | ZMM_HI256 | HI16_ZMM)
    }

    /// An Intel Xeon with AVX-512, PKU and AMX (Sapphire Rapids).
    fn amx() -> (XsaveLayout, u64) {
        let layout = XsaveLayout::from_parts(&[
            (2, 576, 256),
            (3, 960, 64),
            (4, 1024, 64),
            (5, 1088, 64),
            (6, 1152, 512),
            (7, 1664, 1024),
            (9, 2688, 8),
            (17, 2752, 64),
            (18, 2816, 8192),
        ]);
        let enabled = X87 | SSE | AVX | OPMASK | ZMM_HI256 | HI16_ZMM | PKRU | TILECFG | TILEDATA;
        (layout, enabled)
    }

    /// An image as ptrace gives it: `size` bytes of recognizable state, XCR0 in the software
    /// reserved bytes, `in_use` as XSTATE_BV, a zero header otherwise.
    fn ptrace_image(size: usize, enabled: u64, in_use: u64) -> Vec<u8> {
        let mut image: Vec<u8> = (0..size).map(|i| (i * 7 % 251) as u8 + 1).collect();
        image[SW_RESERVED..SW_RESERVED + SW_RESERVED_LEN].fill(0);
        image[SW_RESERVED..SW_RESERVED + 8].copy_from_slice(&enabled.to_le_bytes());
        image[XSTATE_BV..XSTATE_BV + 64].fill(0);
        image[XSTATE_BV..XSTATE_BV + 8].copy_from_slice(&in_use.to_le_bytes());
        image
    }

    fn u32_at(b: &[u8], o: usize) -> u32 {
        u32::from_le_bytes(b[o..o + 4].try_into().unwrap())
    }

    fn u64_at(b: &[u8], o: usize) -> u64 {
        u64::from_le_bytes(b[o..o + 8].try_into().unwrap())
    }

    /// A thread's FPU state as the kernel keeps it (`struct fpstate`).
    struct Thread {
        user_size: usize,
        user_xfeatures: u64,
    }

    /// Which features `rt_sigreturn` loads from `image` for `thread`, which it initializes,
    /// and whether it falls back to the legacy area only: the checks of
    /// `arch/x86/kernel/fpu/signal.c` (`check_xstate_in_sigframe`, `restore_fpregs_from_user`)
    /// before Linux 6.16 (`magic2_at_own_size`) and since.
    fn sigreturn(image: &[u8], thread: &Thread, magic2_at_own_size: bool) -> (u64, u64, bool) {
        let fx_only = (FP_SSE, thread.user_xfeatures & !FP_SSE, true);
        if u32_at(image, SW_RESERVED) != MAGIC1 {
            return fx_only;
        }
        let xstate_size = u32_at(image, SW_RESERVED + 16) as usize;
        let extended_size = u32_at(image, SW_RESERVED + 4) as usize;
        let magic2_at = if magic2_at_own_size {
            if xstate_size < MIN_SIZE
                || xstate_size > thread.user_size
                || xstate_size > extended_size
            {
                return fx_only;
            }
            xstate_size
        } else {
            thread.user_size
        };
        if u32_at(image, magic2_at) != MAGIC2 {
            return fx_only;
        }
        let xrestore = u64_at(image, SW_RESERVED + 8) & thread.user_xfeatures;
        // XRSTOR reads what is in XSTATE_BV and in the mask; the rest of the mask is
        // initialized, as is every feature of the thread the mask leaves out.
        let loaded = xrestore & u64_at(image, XSTATE_BV);
        (loaded, thread.user_xfeatures & !loaded, false)
    }

    /// For every kernel: the frame is taken whole, every feature in use is loaded from it,
    /// and no byte it loads lies past the image.
    fn restores_everything(layout: &XsaveLayout, xstate: &[u8], thread: &Thread, in_use: u64) {
        let image = sigframe_image(xstate, layout).unwrap();
        for magic2_at_own_size in [true, false] {
            let (loaded, initialized, fx_only) = sigreturn(&image, thread, magic2_at_own_size);
            assert!(
                !fx_only,
                "fell back to the legacy area (old kernel: {magic2_at_own_size})"
            );
            assert_eq!(loaded & in_use, in_use, "features in use loaded");
            assert_eq!(loaded & initialized, 0);
            assert!(
                layout.size(loaded).unwrap() <= image.len() - 4,
                "loaded within the image"
            );
            // An XRSTOR whose mask holds a feature the thread lacks would fault (XFD).
            assert_eq!(u64_at(&image, SW_RESERVED + 8) & !thread.user_xfeatures, 0);
        }
        // The state itself is the thread's, byte for byte, up to the size it restores.
        let features = u64_at(&image, SW_RESERVED + 8);
        let size = layout.size(features).unwrap();
        assert_eq!(image[..SW_RESERVED], xstate[..SW_RESERVED]);
        assert_eq!(image[XSTATE_BV + 8..size], xstate[XSTATE_BV + 8..size]);
    }

    #[test]
    fn avx2_cpu() {
        let (layout, enabled) = avx2();
        let xstate = ptrace_image(832, enabled, X87 | SSE | AVX);
        let image = sigframe_image(&xstate, &layout).unwrap();
        assert_eq!(image.len(), 836);
        assert_eq!(u32_at(&image, SW_RESERVED), MAGIC1);
        assert_eq!(u32_at(&image, SW_RESERVED + 4), 836, "extended_size");
        assert_eq!(u64_at(&image, SW_RESERVED + 8), enabled, "xfeatures");
        assert_eq!(u32_at(&image, SW_RESERVED + 16), 832, "xstate_size");
        assert_eq!(u32_at(&image, 832), MAGIC2);
        let thread = Thread {
            user_size: 832,
            user_xfeatures: enabled,
        };
        restores_everything(&layout, &xstate, &thread, X87 | SSE | AVX);
        // AVX in its initial state: x87 and SSE still loaded from the frame.
        let xstate = ptrace_image(832, enabled, 0);
        let image = sigframe_image(&xstate, &layout).unwrap();
        assert_eq!(u64_at(&image, XSTATE_BV), X87 | SSE);
        restores_everything(&layout, &xstate, &thread, 0);
    }

    #[test]
    fn avx512_cpu() {
        let (layout, enabled) = avx512_amd();
        assert_eq!(layout.size(enabled), Some(2432));
        let in_use = enabled;
        let xstate = ptrace_image(2432, enabled, in_use);
        let image = sigframe_image(&xstate, &layout).unwrap();
        assert_eq!(image.len(), 2436);
        assert_eq!(u32_at(&image, SW_RESERVED + 16), 2432);
        let thread = Thread {
            user_size: 2432,
            user_xfeatures: enabled,
        };
        restores_everything(&layout, &xstate, &thread, in_use);
        let in_use = X87 | SSE | AVX;
        restores_everything(
            &layout,
            &ptrace_image(2432, enabled, in_use),
            &thread,
            in_use,
        );
    }

    /// The failure of issue 20: the whole ptrace image (11 KiB with tile data) declared in a
    /// frame for a thread whose signal frames are 2.8 KiB.
    #[test]
    fn amx_cpu_process_without_permission() {
        let (layout, enabled) = amx();
        assert_eq!(layout.size(enabled), Some(11008));
        let in_use = X87 | SSE | AVX | OPMASK | ZMM_HI256 | HI16_ZMM | PKRU;
        let xstate = ptrace_image(11008, enabled, in_use);
        let thread = Thread {
            user_size: 2816,
            user_xfeatures: enabled & !TILEDATA,
        };
        let image = sigframe_image(&xstate, &layout).unwrap();
        assert_eq!(
            u32_at(&image, SW_RESERVED + 16),
            2816,
            "xstate_size: the thread's"
        );
        assert_eq!(u64_at(&image, SW_RESERVED + 8), enabled & !TILEDATA);
        assert_eq!(u32_at(&image, 2816), MAGIC2);
        assert_eq!(u32_at(&image, 11008), MAGIC2);
        assert_eq!(image.len(), 11012);
        restores_everything(&layout, &xstate, &thread, in_use);
        // What the frame held before: the ptrace image as it is, declared whole.
        let mut whole = xstate.clone();
        whole[SW_RESERVED..SW_RESERVED + 4].copy_from_slice(&MAGIC1.to_le_bytes());
        whole[SW_RESERVED + 4..SW_RESERVED + 8].copy_from_slice(&11012u32.to_le_bytes());
        whole[SW_RESERVED + 16..SW_RESERVED + 20].copy_from_slice(&11008u32.to_le_bytes());
        whole.extend_from_slice(&MAGIC2.to_le_bytes());
        for old_kernel in [true, false] {
            assert!(sigreturn(&whole, &thread, old_kernel).2, "legacy area only");
        }
    }

    #[test]
    fn amx_cpu_thread_holding_tiles() {
        let (layout, enabled) = amx();
        let in_use = enabled;
        let xstate = ptrace_image(11008, enabled, in_use);
        let thread = Thread {
            user_size: 11008,
            user_xfeatures: enabled,
        };
        let image = sigframe_image(&xstate, &layout).unwrap();
        assert_eq!(u32_at(&image, SW_RESERVED + 16), 11008);
        assert_eq!(u64_at(&image, SW_RESERVED + 8), enabled);
        assert_ne!(u32_at(&image, 2816), MAGIC2, "tile data intact");
        assert_eq!(image[2816..11008], xstate[2816..11008]);
        restores_everything(&layout, &xstate, &thread, in_use);
    }

    /// Permission granted, tiles used once and released (or configured later): the thread's
    /// frames are 11 KiB, its tile data initial, which ptrace cannot tell apart from a thread
    /// that never used them.
    #[test]
    fn amx_cpu_thread_with_permission_and_initial_tiles() {
        let (layout, enabled) = amx();
        let in_use = X87 | SSE | AVX | PKRU;
        let xstate = ptrace_image(11008, enabled, in_use);
        for thread in [
            Thread {
                user_size: 11008,
                user_xfeatures: enabled,
            },
            Thread {
                user_size: 2816,
                user_xfeatures: enabled & !TILEDATA,
            },
        ] {
            restores_everything(&layout, &xstate, &thread, in_use);
        }
    }

    #[test]
    fn images_that_are_not_of_this_layout() {
        let (layout, enabled) = amx();
        assert!(sigframe_image(&[0u8; 500], &layout).is_none());
        // Shorter than the features it names.
        assert!(sigframe_image(&ptrace_image(2816, enabled, 0), &layout).is_none());
        // A feature the layout has no place for.
        let (avx2, _) = avx2();
        assert!(sigframe_image(&ptrace_image(11008, enabled, 0), &avx2).is_none());
        assert_eq!(layout.size(0), Some(MIN_SIZE));
    }

    /// The layout read from this CPU sizes an image of every feature it supports as the CPU
    /// itself does (CPUID 0xD.0 ECX).
    #[test]
    fn host_layout_sizes_the_supported_features() {
        let leaf = std::arch::x86_64::__cpuid_count(0xd, 0);
        let supported = u64::from(leaf.eax) | u64::from(leaf.edx) << 32;
        let size = XsaveLayout::host().size(supported);
        assert_eq!(size, Some((leaf.ecx as usize).max(MIN_SIZE)));
    }
}
