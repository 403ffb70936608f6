//! Invalid frees abort with one line on stderr naming the function, the
//! pointer and the problem. Each scenario runs in a child process (this test
//! binary re-executed for one test, with the scenario in an environment
//! variable); the parent checks that the child died of SIGABRT and what it
//! wrote.

mod common;

use std::alloc::{alloc, dealloc, Layout};
use std::io::Write;
use std::os::unix::process::ExitStatusExt;

#[global_allocator]
static GLOBAL: hakmem::Hakmem = hakmem::Hakmem;

/// Child side: prints the pointer it is about to misuse, then misuses it.
fn announce(p: *const u8) {
    println!("BAD {p:p}");
    std::io::stdout().flush().unwrap();
}

fn block(size: usize, align: usize) -> (*mut u8, Layout) {
    let layout = Layout::from_size_align(size, align).unwrap();
    // SAFETY: non-zero size.
    let p = unsafe { alloc(layout) };
    assert!(!p.is_null());
    (p, layout)
}

/// Runs the scenario `name` in a child and checks its death: SIGABRT, and
/// exactly one `hakmem:` line on stderr naming the function (`free` or
/// `dealloc`), the pointer the child announced, and one of `problems`.
fn expect_abort(name: &str, problems: &[&str]) {
    let out = common::run_child(name, name, &[]);
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(
        out.status.signal(),
        Some(libc::SIGABRT),
        "{name}: child status {}; stderr:\n{stderr}",
        out.status
    );
    let ptr = stdout
        .split_whitespace()
        .skip_while(|w| *w != "BAD")
        .nth(1)
        .unwrap_or_else(|| panic!("{name}: no pointer announced: {stdout}"));
    let lines: Vec<&str> = stderr
        .lines()
        .filter(|l| l.starts_with("hakmem:"))
        .collect();
    assert_eq!(
        lines.len(),
        1,
        "{name}: expected one hakmem line:\n{stderr}"
    );
    let line = lines[0];
    eprintln!("{name}: {line}");
    // The core names its entry points `free`, `realloc`...; `dealloc` is
    // accepted too (the `GlobalAlloc` name).
    assert!(
        line.contains(" free(): ") || line.contains(" dealloc(): "),
        "{name}: function not named: {line}"
    );
    assert!(
        line.contains(ptr),
        "{name}: pointer {ptr} not named: {line}"
    );
    assert!(
        problems.iter().any(|p| line.contains(p)),
        "{name}: expected one of {problems:?}: {line}"
    );
}

/// Dispatches the child side: `true` if this process is the child (which
/// never returns from a scenario).
fn child(name: &str, f: impl FnOnce()) -> bool {
    if common::scenario().as_deref() == Some(name) {
        f();
        // Reaching this means the allocator accepted the bad free.
        println!("SURVIVED");
        std::process::exit(3);
    }
    false
}

#[test]
fn stack_pointer_small_layout() {
    if child("stack_pointer_small_layout", || {
        let local = [0u64; 8];
        let p = local.as_ptr() as *mut u8;
        announce(p);
        // SAFETY: deliberately invalid: the allocator must catch it.
        unsafe { dealloc(p, Layout::from_size_align(64, 8).unwrap()) };
    }) {
        return;
    }
    expect_abort(
        "stack_pointer_small_layout",
        &["not allocated by hakmem", "invalid"],
    );
}

#[test]
fn stack_pointer_large_layout() {
    if child("stack_pointer_large_layout", || {
        let local = [0u64; 8];
        let p = local.as_ptr() as *mut u8;
        announce(p);
        // SAFETY: deliberately invalid: the allocator must catch it.
        unsafe { dealloc(p, Layout::from_size_align(1 << 20, 8).unwrap()) };
    }) {
        return;
    }
    expect_abort(
        "stack_pointer_large_layout",
        &["not allocated by hakmem", "not the start of a hakmem block"],
    );
}

#[test]
fn interior_pointer_of_a_large_block() {
    if child("interior_pointer_of_a_large_block", || {
        let (p, layout) = block(256 << 10, 8);
        // SAFETY: inside the block.
        let q = unsafe { p.add(64) };
        announce(q);
        // SAFETY: deliberately invalid: the allocator must catch it.
        unsafe { dealloc(q, layout) };
    }) {
        return;
    }
    expect_abort(
        "interior_pointer_of_a_large_block",
        &["not the start of a hakmem block"],
    );
}

#[test]
fn page_aligned_interior_pointer_of_a_large_block() {
    if child("page_aligned_interior_pointer_of_a_large_block", || {
        let (p, layout) = block(256 << 10, 4096);
        // SAFETY: inside the block, on a page boundary.
        let q = unsafe { p.add(8192) };
        announce(q);
        // SAFETY: deliberately invalid: the allocator must catch it.
        unsafe { dealloc(q, layout) };
    }) {
        return;
    }
    expect_abort(
        "page_aligned_interior_pointer_of_a_large_block",
        &["not the start of a hakmem block"],
    );
}

#[test]
fn interior_pointer_of_a_small_block_freed_by_another_thread() {
    const NAME: &str = "interior_pointer_of_a_small_block_freed_by_another_thread";
    if child(NAME, || {
        let (p, layout) = block(256, 16);
        // SAFETY: inside the block.
        let q = unsafe { p.add(16) } as usize;
        announce(q as *const u8);
        // A free by a thread that does not own the page is validated (the
        // owner's local fast path does not look at block boundaries).
        std::thread::spawn(move || {
            // SAFETY: deliberately invalid: the allocator must catch it.
            unsafe { dealloc(q as *mut u8, layout) };
        })
        .join()
        .unwrap();
    }) {
        return;
    }
    expect_abort(NAME, &["not the start of a"]);
}

#[test]
fn medium_block_freed_twice() {
    if child("medium_block_freed_twice", || {
        // Keep another medium block alive beside it, so that the chunk map
        // still counts a block there and the header check is reached.
        let (keep, _) = block(64 << 10, 8);
        let (p, layout) = block(64 << 10, 8);
        announce(p);
        // SAFETY: the first free is valid; the second deliberately not.
        unsafe {
            dealloc(p, layout);
            dealloc(p, layout);
        }
        let _ = keep;
    }) {
        return;
    }
    expect_abort(
        "medium_block_freed_twice",
        &["double free", "already freed"],
    );
}

#[test]
fn large_block_freed_twice_after_unmap() {
    if child("large_block_freed_twice_after_unmap", || {
        // Above the cache: the first free unmaps the block.
        let (p, layout) = block(8 << 20, 8);
        announce(p);
        // SAFETY: the first free is valid; the second deliberately not.
        unsafe {
            dealloc(p, layout);
            dealloc(p, layout);
        }
    }) {
        return;
    }
    // The chunk map may have no large block left in that chunk: then the
    // pointer cannot be told from a foreign one.
    expect_abort(
        "large_block_freed_twice_after_unmap",
        &["already freed", "not allocated by hakmem"],
    );
}

#[test]
fn small_block_freed_twice() {
    if child("small_block_freed_twice", || {
        // A fresh thread and a class nothing else uses: the block is alone on
        // its page, so the second free finds the page with no block in use.
        std::thread::spawn(|| {
            let (p, layout) = block(5000, 8);
            announce(p);
            // SAFETY: the first free is valid; the second deliberately not.
            unsafe {
                dealloc(p, layout);
                dealloc(p, layout);
            }
        })
        .join()
        .unwrap();
    }) {
        return;
    }
    expect_abort("small_block_freed_twice", &["double free"]);
}
