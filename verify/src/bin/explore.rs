//! `explore`: breadth-first exploration of every reachable state of a tiny
//! model configuration. The last line of its output is always
//! `states: N, transitions: M, violations: V`.

// The product runs on itself.
#[global_allocator]
static GLOBAL: hakmem::Hakmem = hakmem::Hakmem;

use std::process::ExitCode;

use clap::Parser;
use model::{ClassSpec, Config, Mutant};
use verify::explore::{explore, Options};

/// The default depth bound without a mutant: every state reachable in at
/// most this many steps (1.5 M states of the tiny configuration).
const DEFAULT_DEPTH: usize = 6;

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
    /// Blocks per page in slot 0 (it loses the header); default capacity - 1, at least 1.
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
    /// Stop after this many states.
    #[arg(long, default_value_t = Options::default().max_states)]
    max_states: usize,
    /// Do not expand states deeper than this many steps (default: 6 for
    /// the specification, unbounded with a mutant, which stops at its
    /// first violation).
    #[arg(long)]
    max_depth: Option<usize>,
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
    let slot0 = args
        .capacity_slot0
        .unwrap_or(args.capacity.saturating_sub(1).max(1));
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
        mutant,
    };
    if let Err(e) = cfg.validate() {
        eprintln!("bad configuration: {e}");
        return ExitCode::from(2);
    }
    println!(
        "exploring: {} threads, {} classes, {} slots, capacity {} (slot 0: {slot0}), {} SuperSlabs, node pool {}, threshold {}, arena {}, scan limit {}, max live {}, mutant {}",
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
        mutant.name()
    );
    let opts = Options {
        max_states: args.max_states,
        stop_at_first: !args.all_violations,
        max_depth: args.max_depth.unwrap_or(if mutant == Mutant::None {
            DEFAULT_DEPTH
        } else {
            usize::MAX
        }),
    };
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
    println!(
        "states: {}, transitions: {}, violations: {}",
        out.states, out.transitions, out.violations
    );
    if out.violations > 0 {
        ExitCode::FAILURE
    } else {
        ExitCode::SUCCESS
    }
}
