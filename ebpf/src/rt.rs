//! What both XDP objects (`main.rs`, the product; `bench.rs`, the rig's) need: bounds-checked
//! frame access, the one's-complement fold, the panic handler and the license section.

use aya_ebpf::programs::XdpContext;

/// Pointer to a `T` at `off`, or None if that runs past `data_end`.
///
/// At least two bytes must fit: for a one-byte check LLVM turns `p + 1 > end` into
/// `p >= end`, after which the verifier grants no readable range to a pointer with a variable
/// offset. Every byte these programs read is followed by more of its header.
#[inline(always)]
pub fn ptr_at<T>(ctx: &XdpContext, off: usize) -> Option<*mut T> {
    let start = ctx.data();
    let end = ctx.data_end();
    let need = if core::mem::size_of::<T>() < 2 {
        2
    } else {
        core::mem::size_of::<T>()
    };
    if start + off + need > end {
        return None;
    }
    Some((start + off) as *mut T)
}

/// One's-complement sum of 16-bit words, folded.
#[inline(always)]
pub fn fold(mut s: u32) -> u16 {
    s = (s & 0xffff) + (s >> 16);
    s = (s & 0xffff) + (s >> 16);
    s as u16
}

#[cfg(not(test))]
#[panic_handler]
fn panic(_info: &core::panic::PanicInfo) -> ! {
    loop {}
}

#[unsafe(link_section = "license")]
#[unsafe(no_mangle)]
static LICENSE: [u8; 4] = *b"GPL\0";
