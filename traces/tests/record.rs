//! RecordingAlloc as the global allocator of this test binary: a small
//! multi-threaded program is recorded and the trace must validate and show
//! what the program did. This file holds a single test so that no other
//! test thread allocates while recording.

use hakmem::Hakmem;
use std::alloc::{GlobalAlloc, Layout};
use std::sync::mpsc;
use std::thread;
use traces::record::RecordingAlloc;
use traces::stats;
use traces::{Event, Record, TraceReader};

#[global_allocator]
// The recorder wraps hakmem: the product runs on itself here too.
static ALLOC: RecordingAlloc<Hakmem> = RecordingAlloc::new(Hakmem);

const WORKERS: usize = 3;

/// A sink whose buffer grows (allocates) inside the recorder's write path.
#[derive(Clone, Default)]
struct SharedBuf(std::sync::Arc<std::sync::Mutex<Vec<u8>>>);

impl std::io::Write for SharedBuf {
    fn write(&mut self, b: &[u8]) -> std::io::Result<usize> {
        self.0.lock().unwrap().extend_from_slice(b);
        Ok(b.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}
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

    // A second session into a sink that allocates as it writes (a growing
    // Vec): its allocations pass through the guard unrecorded, without
    // deadlock; threads and ids are numbered afresh.
    let buf = SharedBuf::default();
    ALLOC.start(Box::new(buf.clone())).unwrap();
    let worker = thread::spawn(|| {
        let v: Vec<String> = (0..2000).map(|i| i.to_string()).collect();
        v.len()
    });
    assert_eq!(worker.join().unwrap(), 2000);
    let s2 = ALLOC.finish().unwrap();
    let bytes = buf.0.lock().unwrap().clone();
    assert!(
        bytes.len() > traces::record::OUT_BUF,
        "the sink grew while recording"
    );
    let mut r = TraceReader::from_reader(std::io::Cursor::new(bytes), "session2").unwrap();
    let mut n = 0;
    let mut first_id = None;
    while let Some(rec) = r.next_record() {
        if let Record::Event(ev) = rec.unwrap_or_else(|e| panic!("{e}")) {
            first_id = first_id.or(ev.new_id());
            n += 1;
        }
    }
    assert_eq!(n, s2.events);
    assert_eq!(first_id, Some(1));
    assert!(s2.threads >= 2, "{s2:?}");

    // Direct calls on the wrapper (not as global) are forwarded too.
    let local = RecordingAlloc::new(Hakmem);
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
