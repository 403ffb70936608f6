#!/usr/bin/env bash
# Re-records the real-program traces of traces/corpus/ (docs/traces.md).
#
#   bash traces/corpus/record.sh            # from the workspace root
#
# Each workload runs once under `hktrace record` (LD_PRELOAD libhakmem.so,
# HAKMEM_TRACE=path); the trace of the process named in the manifest is kept,
# stored as zstd -19 text. Child processes write path.<pid> files, which are
# dropped here (each trace is one process). The inputs are generated
# deterministically, but a program's allocations depend on its version,
# environment and timing (threads), so a re-recording differs in detail:
# re-run `hktrace stats --json` and update manifest.json (the figures are
# printed at the end).
set -euo pipefail
root=$(cd "$(dirname "$0")/../.." && pwd)
corpus="$root/traces/corpus"
target="${CARGO_TARGET_DIR:-$root/target}"
cargo build --release -q -p hakmem-capi
cargo build --release -q -p traces --bin hktrace
hk="$target/release/hktrace"
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
# The real interpreter, not a pyenv/asdf shim script (a shim would record
# the shell first; exec keeps the pid so the file would still be python's).
py=$(python3 -c 'import sys; print(sys.executable)')

# record NAME CMD...: runs CMD in $work/run under record mode, keeps the root
# process's trace as $corpus/NAME.hkt.zst.
record() {
    local name=$1
    shift
    rm -f "$work"/trace.hkt*
    # A child's file may be invalid (a process that ends with _exit before
    # its first flush leaves an empty file: see the report of issue 6); the
    # root's trace must validate.
    (cd "$work/run" && "$hk" record -o "$work/trace.hkt" -- "$@" >/dev/null) ||
        echo "$name: hktrace record reported a problem (above); keeping the root trace if valid" >&2
    "$hk" validate "$work/trace.hkt" >/dev/null
    zstd -q -19 -f "$work/trace.hkt" -o "$corpus/$name.hkt.zst"
    echo "$name: $("$hk" stats --json "$corpus/$name.hkt.zst" | tr -d '\n ' | head -c 300)"
}

mkdir -p "$work/run"

# 1. python3, single thread: a stdlib workload (json, re, collections,
#    sorting, string formatting, decimal).
cat > "$work/run/py_single.py" <<'PY'
import collections, decimal, json, re
words = [("w%d" % (i * 7919 % 5003)) * (1 + i % 5) for i in range(100000)]
counts = collections.Counter(words)
doc = {"items": [{"id": i, "name": w, "tags": [w[:2], str(i % 17)]} for i, w in enumerate(words[:30000])]}
text = json.dumps(doc, sort_keys=True)
back = json.loads(text)
found = re.findall(r"w(\d+)", text)
dec = sum(decimal.Decimal(i) / 7 for i in range(20000))
print(len(counts), len(back["items"]), len(found), sorted(counts)[:3], str(dec)[:12])
PY
record python3_single "$py" py_single.py

# 2. python3 with a thread pool (4 workers).
cat > "$work/run/py_pool.py" <<'PY'
import concurrent.futures, hashlib, json
def work(i):
    data = [str(j) * (j % 30) for j in range(i * 13 % 700)]
    return len(json.dumps(data)) + len(hashlib.sha256("".join(data).encode()).hexdigest())
with concurrent.futures.ThreadPoolExecutor(max_workers=4) as ex:
    print(sum(ex.map(work, range(1500))))
PY
record python3_pool "$py" py_pool.py

# 3. A C compiler compiling a file: `cc -c` is a driver whose children
#    (cc1, as) write path.<pid> files, dropped here; the compiler proper is
#    recorded by running cc1 directly (`cc -print-prog-name=cc1`).
cat > "$work/run/prog.c" <<'C'
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
struct node { struct node *l, *r; int key; char name[24]; };
static struct node *insert(struct node *t, int key) {
    if (!t) { t = calloc(1, sizeof *t); t->key = key; snprintf(t->name, sizeof t->name, "k%d", key); return t; }
    if (key < t->key) t->l = insert(t->l, key); else t->r = insert(t->r, key);
    return t;
}
static int depth(const struct node *t) { int a, b; if (!t) return 0; a = depth(t->l); b = depth(t->r); return 1 + (a > b ? a : b); }
static void drop(struct node *t) { if (t) { drop(t->l); drop(t->r); free(t); } }
#define MANY(X) X(0) X(1) X(2) X(3) X(4) X(5) X(6) X(7) X(8) X(9)
#define FN(n) static int f##n(int x) { int s = 0; for (int i = 0; i < x; i++) s += (i * n) ^ (s >> 3); return s; }
MANY(FN)
int main(int argc, char **argv) {
    struct node *t = NULL;
    for (int i = 0; i < 1000; i++) t = insert(t, (i * 7919) % 1009);
    printf("%d %d %d\n", depth(t), f3(argc + 10), f7((int)strlen(argv[0])));
    drop(t);
    return 0;
}
C
cc1=$(cc -print-prog-name=cc1)
record cc_driver cc -O2 -c prog.c -o prog.o
record cc1 "$cc1" -quiet -imultiarch "$(cc -print-multiarch)" -O2 prog.c -o prog.s

# 4. git: init, add, commit, log (one trace per command; the files come from
#    this repository's docs so there is something to hash and diff).
rm -rf "$work/run/repo"
mkdir -p "$work/run/repo"
cp "$root"/docs/*.md "$work/run/repo/"
export GIT_AUTHOR_NAME=hk GIT_AUTHOR_EMAIL=hk@example.org GIT_COMMITTER_NAME=hk GIT_COMMITTER_EMAIL=hk@example.org
export GIT_AUTHOR_DATE='2026-01-01T00:00:00Z' GIT_COMMITTER_DATE='2026-01-01T00:00:00Z'
record git_init git -C repo init -q
record git_add git -C repo add .
record git_commit git -C repo -c commit.gpgsign=false commit -q -m corpus
record git_log git -C repo log --stat

# 5. sqlite3: 3000 inserts in a transaction, an index, a query.
{
    echo "CREATE TABLE t(a INTEGER, b TEXT);"
    echo "BEGIN;"
    for i in $(seq 0 2999); do
        printf "INSERT INTO t VALUES(%d, '%s');\n" "$i" "$(printf 'x%.0s' $(seq 0 $((i % 50))))"
    done
    echo "COMMIT;"
    echo "CREATE INDEX tb ON t(b);"
    echo "SELECT count(*), sum(length(b)), max(a) FROM t WHERE a % 3 = 0;"
} > "$work/run/s.sql"
rm -f "$work/run/db"
record sqlite3 sh -c 'exec sqlite3 db < s.sql'

# 6. xz -T2 on 4 MiB (blocks of 1 MiB so both threads work).
(cd "$work/run" && "$py" -c '
import random
r = random.Random(42)
words = ["alpha", "beta", "gamma", "delta", "hakmem", "slab", "page", "block"]
with open("xz.in", "w") as f:
    while f.tell() < 4 << 20:
        f.write(" ".join(r.choice(words) for _ in range(12)) + "\n")
')
record xz_t2 xz -T2 --block-size=1MiB -k -f -c xz.in
