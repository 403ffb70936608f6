// Shared body of the `mixed_*` examples (included, not a module): the
// random_mixed loop of issue 7 (xorshift32, WS slots, sizes 16..1040).
use std::hint::black_box;
use std::mem::MaybeUninit;

type Block = Box<[MaybeUninit<u8>]>;

fn run() {
    let mut args = std::env::args().skip(1);
    let cycles: usize = args.next().and_then(|a| a.parse().ok()).unwrap_or(10_000_000);
    let ws: usize = args.next().and_then(|a| a.parse().ok()).unwrap_or(256);
    let mut slots: Vec<Option<Block>> = (0..ws).map(|_| None).collect();
    let mut seed = 0x1234_5678u32;
    let mut step = |slots: &mut Vec<Option<Block>>| {
        seed ^= seed << 13;
        seed ^= seed >> 17;
        seed ^= seed << 5;
        let i = seed as usize % ws;
        if slots[i].is_some() {
            slots[i] = None;
        } else {
            let size = 16 + (seed & 0x3FF) as usize;
            let mut b: Block = Box::new_uninit_slice(size);
            b[0].write(1);
            slots[i] = Some(black_box(b));
        }
    };
    for _ in 0..cycles / 10 {
        step(&mut slots);
    }
    let t = std::time::Instant::now();
    for _ in 0..cycles {
        step(&mut slots);
    }
    let el = t.elapsed();
    println!("{:.2} ns/op ({} ops, WS {ws})", el.as_nanos() as f64 / cycles as f64, cycles);
}
