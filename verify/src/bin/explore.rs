//! `explore`: breadth-first exploration of every reachable state of a tiny
//! model configuration, up to symmetry (`--no-symmetry` turns the reduction
//! off). The line before the last reports which step kinds were taken (the
//! default run fails if one never was); the last line is always
//! `states: N, transitions: M, violations: V`.

// The product runs on itself.
#[global_allocator]
static GLOBAL: hakmem::Hakmem = hakmem::Hakmem;

use std::process::ExitCode;

use clap::Parser;
use model::{ClassSpec, Config, Mutant};
use verify::explore::{expected_kinds, explore, Options};

/// Explore the hakmem model exhaustively.
#[derive(Parser, Debug)]
#[command(version, about)]
struct Args {
    /// Logical threads (heaps).
    #[arg(long, default_value_t = Config::tiny().threads)]
    threads: u8,
    /// Size classes.
    #[arg(long, default_value_t = Config::tiny().classes.len() as u8)]
    classes: u8,
    /// Slots per SuperSlab.
    #[arg(long, default_value_t = Config::tiny().slots)]
    slots: u8,
    /// Blocks per page (slots 1..).
    #[arg(long, default_value_t = Config::tiny().classes[0].capacity)]
    capacity: u32,
    /// Blocks per page in slot 0 (which loses the header in production);
    /// default: the default configuration's when --capacity is not given,
    /// otherwise the same as --capacity.
    #[arg(long)]
    capacity_slot0: Option<u32>,
    /// SuperSlabs that may ever be mapped.
    #[arg(long, default_value_t = Config::tiny().max_superslabs)]
    superslabs: u16,
    /// Stage-1 node pool size.
    #[arg(long, default_value_t = Config::tiny().node_pool)]
    node_pool: u16,
    /// Flush threshold.
    #[arg(long, default_value_t = Config::tiny().flush_threshold)]
    threshold: u32,
    /// SuperSlabs the arena caches.
    #[arg(long, default_value_t = Config::tiny().arena_cache)]
    arena: usize,
    /// Stage-0.5 scan limit.
    #[arg(long, default_value_t = Config::tiny().scan_limit)]
    scan_limit: usize,
    /// Bound on blocks live at once.
    #[arg(long, default_value_t = Config::tiny().max_live)]
    max_live: usize,
    /// Bound on slots `Active` at once (pages).
    #[arg(long, default_value_t = Config::tiny().max_pages)]
    max_pages: usize,
    /// Bound on SuperSlabs `Live` at once.
    #[arg(long, default_value_t = Config::tiny().max_live_superslabs)]
    max_live_superslabs: usize,
    /// Stop after this many states.
    #[arg(long, default_value_t = Options::default().max_states)]
    max_states: usize,
    /// Do not expand states deeper than this many steps (default: no
    /// bound, every reachable state).
    #[arg(long)]
    max_depth: Option<usize>,
    /// Explore every state, not one per orbit of the id renamings.
    #[arg(long)]
    no_symmetry: bool,
    /// Print a line per BFS level (states, queue, time) to stderr.
    #[arg(long)]
    progress: bool,
    /// Keep exploring after the first violation (count them all).
    #[arg(long)]
    all_violations: bool,
    /// Print the mutant names, one per line, and exit.
    #[arg(long)]
    list_mutants: bool,
    /// Explore with this mutant injected.
    #[arg(long, default_value = "none")]
    mutant: String,
}

fn main() -> ExitCode {
    let args = Args::parse();
    if args.list_mutants {
        for m in Mutant::wrong() {
            println!("{}", m.name());
        }
        return ExitCode::SUCCESS;
    }
    let Some(mutant) = Mutant::from_name(&args.mutant) else {
        eprintln!("unknown mutant {:?}; see --list-mutants", args.mutant);
        return ExitCode::from(2);
    };
    let slot0 = args.capacity_slot0.unwrap_or(args.capacity);
    let cfg = Config {
        slots: args.slots,
        classes: (0..args.classes)
            .map(|_| ClassSpec::with_capacity(args.capacity, slot0))
            .collect(),
        threads: args.threads,
        max_superslabs: args.superslabs,
        scan_limit: args.scan_limit,
        node_pool: args.node_pool,
        arena_cache: args.arena,
        flush_threshold: args.threshold,
        max_live: args.max_live,
        max_pages: args.max_pages,
        max_live_superslabs: args.max_live_superslabs,
        mutant,
    };
    if let Err(e) = cfg.validate() {
        eprintln!("bad configuration: {e}");
        return ExitCode::from(2);
    }
    println!(
        "exploring: {} threads, {} classes, {} slots, capacity {} (slot 0: {slot0}), {} SuperSlabs, node pool {}, threshold {}, arena {}, scan limit {}, max live {}, max pages {}, max live SuperSlabs {}, mutant {}",
        cfg.threads,
        cfg.classes.len(),
        cfg.slots,
        args.capacity,
        cfg.max_superslabs,
        cfg.node_pool,
        cfg.flush_threshold,
        cfg.arena_cache,
        cfg.scan_limit,
        cfg.max_live,
        cfg.max_pages,
        cfg.max_live_superslabs,
        mutant.name()
    );
    let opts = Options {
        max_states: args.max_states,
        stop_at_first: !args.all_violations,
        max_depth: args.max_depth.unwrap_or(usize::MAX),
        symmetry: !args.no_symmetry,
        progress: args.progress,
    };
    let is_default = cfg == Config::tiny();
    let out = explore(cfg, &opts);
    if let Some(found) = &out.first {
        println!("violation after {} steps:", found.trace.len());
        for v in &found.violations {
            println!("  {v}");
        }
        println!("shortest trace:");
        for (i, s) in found.trace.iter().enumerate() {
            println!("  {:>3}. {s}", i + 1);
        }
    }
    println!(
        "depth {}, {}, {:.2?}",
        out.depth,
        if out.complete {
            "complete"
        } else if out.violations == 0 && out.depth >= opts.max_depth && out.states < opts.max_states
        {
            "exhaustive up to the depth bound"
        } else {
            "stopped early"
        },
        out.elapsed
    );
    let missing = out.missing_kinds(mutant);
    let expected = expected_kinds(mutant).len();
    let kinds: Vec<String> = out
        .coverage
        .iter()
        .map(|(k, n)| format!("{k} {n}"))
        .collect();
    println!("transitions by kind: {}", kinds.join(", "));
    // The default run must show every kind: a reduction or a bound that
    // hid a behaviour would show here.
    let coverage_fails = is_default && mutant == Mutant::None && !missing.is_empty();
    println!(
        "coverage: {} of {expected} step kinds taken{}{}",
        expected - missing.len(),
        if missing.is_empty() {
            String::new()
        } else {
            format!("; never taken: {}", missing.join(", "))
        },
        if coverage_fails {
            " (FAILED: the default run must take every kind)"
        } else {
            ""
        }
    );
    println!(
        "states: {}, transitions: {}, violations: {}",
        out.states, out.transitions, out.violations
    );
    if out.violations > 0 || coverage_fails {
        ExitCode::FAILURE
    } else {
        ExitCode::SUCCESS
    }
}
