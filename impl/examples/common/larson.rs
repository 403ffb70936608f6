// Shared body of the `larson_*` examples (included, not a module): T
// threads each replace random blocks (8..1000 B) of their own array; every
// round the arrays rotate between threads, so that most frees are remote.
use std::sync::{Arc, Barrier, Mutex};

/// One thread's array of blocks.
type Slots = Mutex<Vec<Option<Box<[u8]>>>>;

fn run() {
    let mut args = std::env::args().skip(1);
    let threads: usize = args.next().and_then(|a| a.parse().ok()).unwrap_or(2);
    let rounds: usize = args.next().and_then(|a| a.parse().ok()).unwrap_or(50);
    let per_round: usize = 100_000;
    let slots = 1000;
    let arrays: Arc<Vec<Slots>> = Arc::new(
        (0..threads)
            .map(|_| Mutex::new((0..slots).map(|_| None).collect()))
            .collect(),
    );
    let barrier = Arc::new(Barrier::new(threads));
    let t0 = std::time::Instant::now();
    let hs: Vec<_> = (0..threads)
        .map(|t| {
            let arrays = arrays.clone();
            let barrier = barrier.clone();
            std::thread::spawn(move || {
                let mut seed = 0x9E37_79B9u32 ^ (t as u32 * 7919);
                for r in 0..rounds {
                    let mut a = arrays[(t + r) % threads].lock().unwrap();
                    for _ in 0..per_round {
                        seed ^= seed << 13;
                        seed ^= seed >> 17;
                        seed ^= seed << 5;
                        let i = seed as usize % slots;
                        let size = 8 + (seed >> 8) as usize % 993;
                        a[i] = Some(vec![t as u8; size].into_boxed_slice());
                    }
                    drop(a);
                    barrier.wait();
                }
            })
        })
        .collect();
    for h in hs {
        h.join().unwrap();
    }
    let el = t0.elapsed();
    let ops = (threads * rounds * per_round) as f64;
    println!("T={threads}: {:.1} M replacements/s", ops / el.as_secs_f64() / 1e6);
}
