//! The residency diagnostic (`Instance::residency`) and what it shows about
//! the layout: the stage-1 node pool is written only as nodes are first
//! used, and an instance's block pages are counted by class.
//!
//! Each test builds its own instance, whose mappings no other test touches,
//! so `mincore` over them is exact without a child process.

use hakmem::size_class::{class_for, CLASS_SIZES};
use hakmem::{Instance, InstanceConfig, StdBackend};

const PAGE: usize = 4096;

#[test]
fn node_pool_pages_are_touched_only_when_nodes_are_used() {
    let inst = Instance::<StdBackend>::new(InstanceConfig::DEFAULT).unwrap();
    let r = inst.residency();
    assert_eq!(r.node_pool_mapped, 4096 * 16, "16-byte nodes, 4096 of them");
    assert_eq!(r.node_pool, 0, "no node written before the first entry");

    // One empty page in each of 8 classes: 8 stage-1 entries.
    let h = inst.new_heap().unwrap();
    let blocks: Vec<*mut u8> = (0..8)
        .map(|c| h.alloc(CLASS_SIZES[c] as usize, 16))
        .collect();
    for &p in &blocks {
        // SAFETY: handed out above, freed once.
        unsafe { h.free(p) };
    }
    h.exit();
    let s = inst.snapshot();
    s.check().unwrap();
    let entries: usize = s.stage1.iter().map(Vec::len).sum();
    assert_eq!(entries, 8);
    assert_eq!(s.free_nodes, 4096 - 8, "never-used nodes count as free");
    let r = inst.residency();
    assert_eq!(r.node_pool, PAGE, "8 nodes fit the first page");
}

#[test]
fn residency_counts_block_pages_by_class() {
    let inst = Instance::<StdBackend>::new(InstanceConfig::DEFAULT).unwrap();
    let h = inst.new_heap().unwrap();
    let size = 256;
    let c = class_for(size, 16).unwrap();
    // 40 KiB of 256-byte blocks, each written.
    let blocks: Vec<*mut u8> = (0..160)
        .map(|i| {
            let p = h.alloc(size, 16);
            // SAFETY: `size` bytes at `p`.
            unsafe { p.write_bytes(i as u8, size) };
            p
        })
        .collect();
    let r = inst.residency();
    assert_eq!(r.superslabs, 1);
    assert_eq!(r.classes[c].slots, 1);
    assert!(
        (40 << 10..=48 << 10).contains(&r.classes[c].resident),
        "40 KiB written, carved by ~4 KiB batches: {r}"
    );
    assert_eq!(r.active(), r.classes[c].resident, "no other class: {r}");
    assert!(r.headers >= PAGE && r.headers <= 8 << 10, "{r}");
    for &p in &blocks {
        // SAFETY: handed out above, freed once.
        unsafe { h.free(p) };
    }
    h.exit();
}
