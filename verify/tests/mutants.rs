//! Every injected bug is caught by its check with the expected reason
//! (runs the `mutants` binary, one child process per bug).

// The product runs on itself.
#[global_allocator]
static GLOBAL: hakmem::Hakmem = hakmem::Hakmem;

#[test]
fn every_injected_bug_is_caught() {
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_mutants"))
        .output()
        .expect("run mutants");
    let text = String::from_utf8_lossy(&out.stdout);
    println!("{text}");
    let last = text.lines().last().unwrap_or_default();
    let k = last
        .strip_prefix("caught ")
        .and_then(|r| r.split(" of ").next())
        .and_then(|k| k.parse::<usize>().ok())
        .expect("last line is `caught K of K`");
    assert!(k >= 14, "fewer than 14 injected bugs");
    assert_eq!(
        last,
        format!("caught {k} of {k}"),
        "a bug was missed:\n{text}"
    );
    assert!(out.status.success());
}
