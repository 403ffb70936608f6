//! The rows of the preload suite: which program, with which arguments,
//! at full and at quick size. The C and C++ sources are in `bench/preload/`
//! (their opening comments say what each measures and what `ops` counts).

/// How a row's program comes to be.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Source {
    /// `bench/preload/<file>`, compiled by the driver (C with `cc`, C++
    /// with `c++`, by the extension).
    Built(&'static str),
    /// Debian's `sqlite3` on `:memory:`, reading the script of
    /// [`sqlite_script`] on stdin; `ops` is the table's rows and the time is
    /// the process's wall time.
    Sqlite,
    /// Debian's `redis-server` (package redis-server) under the column's
    /// preload, driven by `redis-benchmark` (redis-tools) with the row's
    /// arguments (`preload::server`); `ops` is the client's requests.
    Redis,
}

/// One row of the preload table.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Program {
    /// Row name (also what `--programs` selects, by prefix).
    pub name: &'static str,
    /// The program.
    pub source: Source,
    /// Its arguments at full size.
    pub full: &'static [&'static str],
    /// Its arguments with `--quick` (about a tenth of the work).
    pub quick: &'static [&'static str],
}

impl Program {
    /// The arguments for this run.
    pub fn args(&self, quick: bool) -> &'static [&'static str] {
        if quick {
            self.quick
        } else {
            self.full
        }
    }

    /// The executable's file name in the build directory (`sqlite3` and
    /// `redis-server` for the Debian programs, found on `PATH`).
    pub fn binary(&self) -> &'static str {
        match self.source {
            Source::Built(file) => file.split('.').next().unwrap_or(file),
            Source::Sqlite => "sqlite3",
            Source::Redis => "redis-server",
        }
    }
}

/// Rows of the sqlite script at full size and quick.
pub const SQLITE_ROWS: (u64, u64) = (200_000, 20_000);

/// Every row, in report order: the shapes of issue 23, then C++, then real
/// programs.
pub fn all() -> Vec<Program> {
    use Source::*;
    let p = |name, source, full, quick| Program {
        name,
        source,
        full,
        quick,
    };
    vec![
        p(
            "random_t1",
            Built("random_ws.c"),
            &["threads=1", "iters=10000000"],
            &["threads=1", "iters=1000000"],
        ),
        p(
            "random_t2",
            Built("random_ws.c"),
            &["threads=2", "iters=10000000"],
            &["threads=2", "iters=1000000"],
        ),
        p(
            "random_t4",
            Built("random_ws.c"),
            &["threads=4", "iters=5000000"],
            &["threads=4", "iters=500000"],
        ),
        // 0.3–1 s a run: at a tenth of that (40 ms) the two-pair row's
        // times were bimodal with the scheduler (4 threads yielding on 2
        // cores), 0.04 or 0.10 s for the same allocator.
        p(
            "prodcons_p1",
            Built("prodcons.c"),
            &["pairs=1", "blocks=20000000"],
            &["pairs=1", "blocks=2000000"],
        ),
        p(
            "prodcons_p2",
            Built("prodcons.c"),
            &["pairs=2", "blocks=10000000"],
            &["pairs=2", "blocks=1000000"],
        ),
        p(
            "mix_t2",
            Built("mix.c"),
            &["threads=2", "steps=5000000", "remote=10"],
            &["threads=2", "steps=500000", "remote=10"],
        ),
        p(
            "mix_t4",
            Built("mix.c"),
            &["threads=4", "steps=2500000", "remote=10"],
            &["threads=4", "steps=250000", "remote=10"],
        ),
        p(
            "larson_t1",
            Built("larson.c"),
            &["threads=1", "iters=100000", "generations=50"],
            &["threads=1", "iters=10000", "generations=20"],
        ),
        p(
            "larson_t2",
            Built("larson.c"),
            &["threads=2", "iters=100000", "generations=50"],
            &["threads=2", "iters=10000", "generations=20"],
        ),
        p(
            "larson_t4",
            Built("larson.c"),
            &["threads=4", "iters=50000", "generations=50"],
            &["threads=4", "iters=5000", "generations=20"],
        ),
        p(
            "thread_burst",
            Built("thread_burst.c"),
            &["bursts=5000", "alive=4", "allocs=200"],
            &["bursts=500", "alive=4", "allocs=200"],
        ),
        p(
            "large_1_32mib",
            Built("large.c"),
            &["iters=400", "live=4", "min=1", "max=32"],
            &["iters=40", "live=4", "min=1", "max=32"],
        ),
        p(
            "leak",
            Built("leak.c"),
            &["iters=10000000", "leak_every=100"],
            &["iters=1000000", "leak_every=100"],
        ),
        p(
            "false_sharing",
            Built("false_sharing.c"),
            &["threads=2", "iters=1000000", "size=8", "writes=100"],
            &["threads=2", "iters=100000", "size=8", "writes=100"],
        ),
        p(
            "false_sharing_scratch",
            Built("false_sharing.c"),
            &[
                "threads=2",
                "iters=1000000",
                "size=8",
                "writes=100",
                "scratch=1",
            ],
            &[
                "threads=2",
                "iters=100000",
                "size=8",
                "writes=100",
                "scratch=1",
            ],
        ),
        p(
            "cpp_map_string",
            Built("map_string.cc"),
            &["rounds=4", "keys=50000"],
            &["rounds=1", "keys=10000"],
        ),
        p(
            "cpp_shared_ptr",
            Built("shared_ptr.cc"),
            &["threads=2", "iters=4000000"],
            &["threads=2", "iters=400000"],
        ),
        p("sqlite3", Sqlite, &[], &[]),
        p(
            "redis",
            Redis,
            &["-n", "200000", "-P", "16", "-t", "set,get,lpush,lrange_100"],
            &["-n", "20000", "-P", "16", "-t", "set,get,lpush,lrange_100"],
        ),
    ]
}

/// The rows picked by `--programs` (comma-separated names or prefixes;
/// empty = all), in report order.
pub fn select(all: &[Program], names: &[String]) -> Result<Vec<Program>, String> {
    if names.is_empty() {
        return Ok(all.to_vec());
    }
    let mut picked: Vec<Program> = Vec::new();
    for n in names {
        let hits: Vec<&Program> = all
            .iter()
            .filter(|p| p.name.starts_with(n.as_str()))
            .collect();
        if hits.is_empty() {
            let known: Vec<&str> = all.iter().map(|p| p.name).collect();
            return Err(format!(
                "unknown program {n:?}; known: {}",
                known.join(", ")
            ));
        }
        for h in hits {
            if !picked.contains(h) {
                picked.push(h.clone());
            }
        }
    }
    picked.sort_by_key(|p| all.iter().position(|q| q.name == p.name));
    Ok(picked)
}

/// The SQL that the `sqlite3` row runs on `:memory:` with `rows` rows:
/// bulk insert, two index builds, an update of a third, queries, a delete of
/// a quarter, VACUUM. Deterministic (no random functions).
pub fn sqlite_script(rows: u64) -> String {
    format!(
        "PRAGMA cache_size = -65536;
CREATE TABLE t(id INTEGER PRIMARY KEY, name TEXT, val REAL, payload TEXT);
WITH RECURSIVE c(x) AS (SELECT 1 UNION ALL SELECT x + 1 FROM c WHERE x < {rows})
INSERT INTO t SELECT x, printf('name-%d-%d', (x * 7919) % {rows}, x), ((x * 31) % 1000) / 7.0,
  printf('%.*c', 16 + (x * 13) % 200, 'p') FROM c;
CREATE INDEX t_name ON t(name);
CREATE INDEX t_val ON t(val);
UPDATE t SET val = val * 2, name = name || '-updated' WHERE id % 3 = 0;
SELECT count(*), sum(length(payload)) FROM t WHERE name LIKE 'name-1%';
SELECT val, count(*) FROM t GROUP BY val ORDER BY 2 DESC LIMIT 5;
SELECT group_concat(name, ',') FROM (SELECT name FROM t ORDER BY val DESC LIMIT 1000);
DELETE FROM t WHERE id % 4 = 0;
VACUUM;
SELECT count(*) FROM t;
"
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_built_program_has_its_source() {
        let dir = crate::runner::workspace_root().join("bench/preload");
        for p in all() {
            if let Source::Built(f) = p.source {
                assert!(dir.join(f).is_file(), "{f} missing for {}", p.name);
            }
        }
    }

    #[test]
    fn names_are_unique_and_select_by_prefix() {
        let a = all();
        let mut names: Vec<&str> = a.iter().map(|p| p.name).collect();
        names.sort_unstable();
        names.dedup();
        assert_eq!(names.len(), a.len());
        let larson = select(&a, &["larson".into()]).unwrap();
        assert_eq!(larson.len(), 3);
        let two = select(&a, &["leak".into(), "random_t1".into()]).unwrap();
        assert_eq!(
            two.iter().map(|p| p.name).collect::<Vec<_>>(),
            ["random_t1", "leak"]
        );
        let e = select(&a, &["nope".into()]).unwrap_err();
        assert!(e.contains("nope") && e.contains("random_t1"), "{e}");
    }

    #[test]
    fn the_sqlite_script_has_the_row_count() {
        let s = sqlite_script(1234);
        assert!(s.contains("x < 1234") && s.contains("VACUUM"));
    }
}
