//! A byte stream fed to the framer in chunks whose sizes come from the input itself: never
//! panics, never buffers more than its limit, and gives the same frames as one big push.
#![no_main]
use libfuzzer_sys::fuzz_target;
use sip_core::framer::{Frame, Framer};
use sip_core::Limits;

fn run(chunks: &[&[u8]], limits: Limits) -> (Vec<Frame>, bool) {
    let mut f = Framer::new(limits);
    let mut frames = Vec::new();
    for chunk in chunks {
        if f.push(chunk).is_err() {
            return (frames, true);
        }
        loop {
            match f.next_frame() {
                Ok(Some(fr)) => frames.push(fr),
                Ok(None) => break,
                Err(_) => return (frames, true),
            }
        }
        assert!(f.buffered() <= limits.max_message_size * 2);
    }
    (frames, false)
}

fuzz_target!(|data: &[u8]| {
    if data.is_empty() {
        return;
    }
    let limits = Limits {
        max_message_size: 4096,
        ..Limits::default()
    };
    let (sizes, stream) = data.split_at(1);
    let step = usize::from(sizes[0] % 31) + 1;
    let chunks: Vec<&[u8]> = stream.chunks(step).collect();
    let (a, a_err) = run(&chunks, limits);
    let (b, b_err) = run(&[stream], limits);
    if !a_err && !b_err {
        assert_eq!(a, b);
    }
});
