//! RecordingAlloc as the global allocator of this test binary: a small
//! multi-threaded program is recorded and the trace must validate and show
//! what the program did. This file holds a single test so that no other
//! test thread allocates while recording.

use std::alloc::{GlobalAlloc, Layout, System};
use std::sync::mpsc;
use std::thread;
use traces::record::RecordingAlloc;
use traces::stats;
use traces::{Event, Record, TraceReader};

#[global_allocator]
static ALLOC: RecordingAlloc<System> = RecordingAlloc::new(System);

const WORKERS: usize = 3;
const PER_WORKER: usize = 200;

#[test]
fn records_a_multithreaded_program_into_a_valid_trace() {
    let path = std::path::Path::new(env!("CARGO_TARGET_TMPDIR")).join("recorded.hkt");
    // Allocated before recording: its free must be dropped, not written.
    let before = vec![7u8; 4096];

    ALLOC
        .start(Box::new(std::fs::File::create(&path).unwrap()))
        .unwrap();
    assert!(
        ALLOC.start(Box::new(std::io::sink())).is_err(),
        "a second start while recording must fail"
    );

    drop(before);
    // Workers allocate boxes and send them to the main thread, which frees
    // them (remote frees); each also grows a vector (reallocs) and asks for
    // an over-aligned, zeroed block.
    let (tx, rx) = mpsc::channel::<Box<[u8; 100]>>();
    let handles: Vec<_> = (0..WORKERS)
        .map(|w| {
            let tx = tx.clone();
            thread::spawn(move || {
                let mut v: Vec<u64> = Vec::new();
                for i in 0..PER_WORKER {
                    v.push(i as u64);
                    tx.send(Box::new([w as u8; 100])).unwrap();
                }
                let layout = Layout::from_size_align(3000, 4096).unwrap();
                // SAFETY: the layout has a non-zero size; the block is freed
                // with the same layout.
                unsafe {
                    // black_box: an unused alloc/dealloc pair may be elided.
                    let p = std::hint::black_box(std::alloc::alloc_zeroed(layout));
                    assert!(!p.is_null());
                    std::alloc::dealloc(p, layout);
                }
                v.len()
            })
        })
        .collect();
    drop(tx);
    let mut received = 0;
    for b in rx {
        assert_eq!(b.len(), 100);
        received += 1;
    }
    for h in handles {
        assert_eq!(h.join().unwrap(), PER_WORKER);
    }
    assert_eq!(received, WORKERS * PER_WORKER);
    let summary = ALLOC.finish().unwrap();

    // The inner allocator still works and nothing more is recorded.
    let after = vec![1u8; 10];
    drop(after);

    let mut r = TraceReader::open(&path).unwrap();
    let mut events = Vec::new();
    let mut remote_boxes = 0;
    let mut owner = std::collections::HashMap::new();
    while let Some(rec) = r.next_record() {
        match rec.unwrap_or_else(|e| panic!("recorded trace invalid: {e}")) {
            Record::Event(ev) => {
                if let Event::Alloc {
                    tid, id, size: 100, ..
                } = ev
                {
                    owner.insert(id, tid);
                }
                if let Event::Free { tid, id } = ev {
                    if owner.get(&id).is_some_and(|&t| t != tid) {
                        remote_boxes += 1;
                    }
                }
                events.push(ev);
            }
            Record::Comment(_) => {}
        }
    }
    assert_eq!(events.len() as u64, summary.events);
    assert!(
        summary.dropped_frees >= 1,
        "the pre-recording vec's free is dropped"
    );
    assert!(summary.threads > WORKERS as u64, "{summary:?}");
    // Every box crossed threads: allocated by a worker, freed by main.
    assert_eq!(remote_boxes, WORKERS * PER_WORKER);
    // The vectors grew by realloc.
    assert!(events.iter().any(|e| matches!(e, Event::Realloc { .. })));
    // The over-aligned zeroed block was recorded with its alignment.
    let zeroed = events
        .iter()
        .filter(|e| {
            matches!(
                e,
                Event::Zeroed {
                    size: 3000,
                    align: 4096,
                    ..
                }
            )
        })
        .count();
    assert_eq!(zeroed, WORKERS);
    // Ids are 1, 2, 3, … in line order.
    let new_ids: Vec<u64> = events.iter().filter_map(|e| e.new_id()).collect();
    assert!(new_ids
        .iter()
        .enumerate()
        .all(|(i, &id)| id == i as u64 + 1));

    let s = stats::collect(&mut TraceReader::open(&path).unwrap(), |_| {}).unwrap();
    assert_eq!(s.threads, summary.threads);
    assert!(s.remote_frees >= (WORKERS * PER_WORKER) as u64);

    // Direct calls on the wrapper (not as global) are forwarded too.
    let local = RecordingAlloc::new(System);
    let layout = Layout::from_size_align(64, 8).unwrap();
    // SAFETY: non-zero layout, freed with the same layout.
    unsafe {
        let p = local.alloc(layout);
        assert!(!p.is_null());
        let q = local.realloc(p, layout, 128);
        assert!(!q.is_null());
        local.dealloc(q, Layout::from_size_align(128, 8).unwrap());
    }
}
