//! Real programs under `LD_PRELOAD=libhakmem.so`: each runs twice, on glibc
//! and on hakmem, and must exit 0 both times with identical stdout.
//!
//! A program that is not installed makes its test fail with the command to
//! install it, unless `HAKMEM_SKIP_MISSING=1`, which turns that into a
//! printed skip (`.ci/run` installs them all, so CI never skips).

// The product runs on itself.
#[global_allocator]
static GLOBAL: hakmem::Hakmem = hakmem::Hakmem;

mod common;

use common::{have, run, scratch};
use std::path::Path;
use std::process::Command;

/// Skips (printing why) or fails when `prog` is missing; true if present.
fn require(prog: &str, package: &str) -> bool {
    if have(prog) {
        return true;
    }
    let msg = format!("{prog} not found (apt-get install -y {package})");
    if std::env::var_os("HAKMEM_SKIP_MISSING").is_some() {
        eprintln!("SKIPPED: {msg}");
        return false;
    }
    panic!("{msg}; set HAKMEM_SKIP_MISSING=1 to skip");
}

/// Runs `make()` on glibc and on hakmem; both exit 0 with the same stdout,
/// which must be non-empty. Returns hakmem's stdout.
fn same(what: &str, make: impl Fn() -> Command) -> String {
    let g = run(make(), false);
    // Proof that the program really ran on hakmem: HAKMEM_STATS=1 prints
    // statistics at exit (unless the program closes stderr first, as
    // coreutils and xz do: shell scripts print `PROOF` instead).
    let mut hc = make();
    hc.env("HAKMEM_STATS", "1");
    let h = run(hc, true);
    let show = |o: &std::process::Output| {
        format!(
            "{:?}\nstdout (tail): {}\nstderr: {}",
            o.status,
            tail(&o.stdout),
            String::from_utf8_lossy(&o.stderr)
        )
    };
    assert!(g.status.success(), "{what} on glibc: {}", show(&g));
    assert!(h.status.success(), "{what} on hakmem: {}", show(&h));
    assert!(!g.stdout.is_empty(), "{what}: no output");
    assert!(
        String::from_utf8_lossy(&h.stderr).contains("superslabs mapped")
            || String::from_utf8_lossy(&h.stderr).contains("hakmem-preloaded"),
        "{what}: no hakmem statistics on stderr: not preloaded? {}",
        show(&h)
    );
    assert!(
        g.stdout == h.stdout,
        "{what}: outputs differ\nglibc: {}\nhakmem: {}",
        tail(&g.stdout),
        tail(&h.stdout)
    );
    String::from_utf8_lossy(&h.stdout).into_owned()
}

/// Prefix of shell scripts: tells on stderr whether the shell runs with
/// libhakmem.so mapped.
const PROOF: &str = "grep -q libhakmem /proc/$$/maps && echo hakmem-preloaded >&2; ";

fn tail(b: &[u8]) -> String {
    let s = String::from_utf8_lossy(b);
    let rev: Vec<char> = s.chars().rev().take(600).collect();
    rev.into_iter().rev().collect()
}

const PY_STDLIB: &str = r#"
import json, re, collections, random, hashlib, textwrap, heapq, itertools
rng = random.Random(42)
words = ["".join(rng.choice("abcdefghij") for _ in range(rng.randint(1, 12))) for _ in range(40000)]
counts = collections.Counter(words)
doc = {"top": counts.most_common(20), "n": len(words),
       "groups": {k: sorted(v)[:5] for k, v in itertools.groupby(sorted(words), key=len)}}
text = json.dumps(doc, sort_keys=True)
back = json.loads(text)
assert back["n"] == 40000
pat = re.compile(r"(a+)(b|c)([d-j]*)")
hits = [m.group(0) for w in words for m in [pat.search(w)] if m]
d = collections.defaultdict(list)
for i, w in enumerate(words):
    d[w[:2]].append(i)
big = sorted(words, key=lambda w: (len(w), w[::-1]))
h = hashlib.sha256("".join(big).encode()).hexdigest()
print(len(text), len(hits), len(d), h)
print(heapq.nlargest(5, (len(v) for v in d.values())))
print(textwrap.shorten(" ".join(big[-50:]), 200))
s = ""
for i in range(20000):
    s += str(i)
print(len(s), sum(map(len, [bytearray(i % 5000) for i in range(3000)])))
"#;

const PY_THREADS: &str = r#"
import concurrent.futures, hashlib, json
def work(i):
    data = [{"k": j, "v": str(j) * (j % 50)} for j in range(i * 37 % 3000)]
    return hashlib.md5(json.dumps(data).encode()).hexdigest()
with concurrent.futures.ThreadPoolExecutor(max_workers=4) as ex:
    out = list(ex.map(work, range(400)))
print(len(out), hashlib.sha1("".join(out).encode()).hexdigest())
"#;

#[test]
fn python3_stdlib() {
    if !require("python3", "python3") {
        return;
    }
    same("python3 stdlib workload", || {
        let mut c = Command::new("python3");
        c.args(["-c", PY_STDLIB]);
        c
    });
}

#[test]
fn python3_thread_pool() {
    if !require("python3", "python3") {
        return;
    }
    same("python3 ThreadPoolExecutor", || {
        let mut c = Command::new("python3");
        c.args(["-c", PY_THREADS]);
        c
    });
}

#[test]
fn sqlite3_inserts_and_query() {
    if !require("sqlite3", "sqlite3") {
        return;
    }
    let dir = scratch("sqlite3");
    let mut sql =
        String::from("CREATE TABLE t(id INTEGER PRIMARY KEY, name TEXT, v REAL);\nBEGIN;\n");
    for i in 0..5000 {
        sql += &format!(
            "INSERT INTO t(name, v) VALUES ('name{}', {});\n",
            i * 7919 % 5000,
            (i as f64) * 0.5
        );
    }
    sql += "COMMIT;\nCREATE INDEX ti ON t(name);\n";
    sql += "SELECT count(*), sum(v), min(name), max(name) FROM t;\n";
    sql += "SELECT name, v FROM t WHERE name LIKE 'name12%' ORDER BY v DESC LIMIT 5;\n";
    sql += "SELECT substr(name, 1, 5) AS p, count(*) FROM t GROUP BY p ORDER BY p;\n";
    let script = dir.join("script.sql");
    std::fs::write(&script, sql).unwrap();
    same("sqlite3", || {
        let db = dir.join("db.sqlite");
        let _ = std::fs::remove_file(&db);
        let mut c = Command::new("sh");
        c.arg("-c").arg(format!(
            "sqlite3 '{}' < '{}'",
            db.display(),
            script.display()
        ));
        c
    });
}

#[test]
fn git_init_add_commit_log() {
    if !require("git", "git") {
        return;
    }
    let dir = scratch("git");
    same("git", || {
        let repo = dir.join("repo");
        let _ = std::fs::remove_dir_all(&repo);
        std::fs::create_dir_all(&repo).unwrap();
        for i in 0..200 {
            std::fs::write(
                repo.join(format!("f{i}.txt")),
                format!("file {i}\n").repeat(i + 1),
            )
            .unwrap();
        }
        let mut c = Command::new("sh");
        c.current_dir(&repo)
            .env("GIT_AUTHOR_NAME", "A U Thor")
            .env("GIT_AUTHOR_EMAIL", "a@example.com")
            .env("GIT_COMMITTER_NAME", "C O Mitter")
            .env("GIT_COMMITTER_EMAIL", "c@example.com")
            .env("GIT_AUTHOR_DATE", "2020-01-01T00:00:00Z")
            .env("GIT_COMMITTER_DATE", "2020-01-01T00:00:00Z")
            .env("GIT_CONFIG_NOSYSTEM", "1")
            .env("HOME", &dir)
            .arg("-c")
            .arg(
                "set -e; git init -q -b main .; git add .; git commit -q -m first; \
                 for i in 1 2 3; do echo change $i >> f1.txt; git commit -q -am \"change $i\"; done; \
                 git log --stat --format='%H %an %s'; git gc -q; git count-objects -v | grep -v size",
            );
        c
    });
}

#[test]
fn c_compiler_compiles_a_file() {
    if !require("cc", "gcc") {
        return;
    }
    let dir = scratch("cc");
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/c/api.c");
    let out = same("cc", || {
        let exe = dir.join("api_built");
        let _ = std::fs::remove_file(&exe);
        let mut c = Command::new("sh");
        c.arg("-c").arg(format!(
            "cc -O2 -pthread -Wall -Wno-alloc-size-larger-than -Wno-use-after-free -fno-builtin \
             -c -o '{o}' '{s}' && cc -O2 -S -o - '{s}' -Wno-alloc-size-larger-than \
             -Wno-use-after-free -fno-builtin | grep -c . && sha256sum < '{o}' | cut -c1-16",
            o = exe.display(),
            s = src.display()
        ));
        c
    });
    assert!(out.lines().count() == 2, "{out}");
}

#[test]
fn perl_script() {
    if !require("perl", "perl") {
        return;
    }
    same("perl", || {
        let mut c = Command::new("perl");
        c.arg("-e").arg(
            r#"my %h; my @a;
               for my $i (1..200000) { $h{"k".($i*7 % 50000)} .= chr(65 + $i % 26); push @a, $i*$i % 1000; }
               my @s = sort { $a <=> $b } @a; my $t = join(",", map { length($h{$_}) } sort keys %h);
               (my $u = $t) =~ s/(\d+)/<$1>/g;
               print scalar(keys %h), " ", $s[1000], " ", length($u), " ", substr($u, 0, 40), "\n";"#,
        );
        c
    });
}

#[test]
fn xz_two_threads() {
    if !require("xz", "xz-utils") {
        return;
    }
    let dir = scratch("xz");
    let input = dir.join("input");
    let mut data = Vec::with_capacity(6 << 20);
    let mut x: u64 = 1;
    while data.len() < 6 << 20 {
        x = x
            .wrapping_mul(6364136223846793005)
            .wrapping_add(1442695040888963407);
        let w = format!("line {} {:x}\n", x >> 50, x >> 40);
        data.extend_from_slice(w.as_bytes());
    }
    std::fs::write(&input, &data).unwrap();
    same("xz -T2", || {
        let mut c = Command::new("sh");
        c.arg("-c").arg(
            PROOF.to_owned()
                + &format!(
                    "xz -T2 --block-size=1MiB -6 -c '{i}' | xz -T2 -d -c | sha256sum; \
             xz -T2 --block-size=1MiB -6 -c '{i}' | sha256sum",
                    i = input.display()
                ),
        );
        c
    });
}

#[test]
fn sort_parallel() {
    if !require("sort", "coreutils") {
        return;
    }
    let dir = scratch("sort");
    let input = dir.join("input");
    let mut s = String::new();
    let mut x: u64 = 7;
    for _ in 0..300_000 {
        x = x
            .wrapping_mul(6364136223846793005)
            .wrapping_add(1442695040888963407);
        s += &format!("{:016x} {}\n", x, x >> 60);
    }
    std::fs::write(&input, s).unwrap();
    same("sort --parallel=2", || {
        let mut c = Command::new("sh");
        c.env("LC_ALL", "C").arg("-c").arg(PROOF.to_owned() + &format!(
            "sort --parallel=2 -S 8M '{i}' | sha256sum; sort --parallel=2 -k2,2n -k1,1r '{i}' | head -3",
            i = input.display()
        ));
        c
    });
}
