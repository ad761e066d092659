//! hv's command line as clap reads it: the commands, their options, the help texts, and
//! the parsers that check an option's value before any command runs.

use std::path::PathBuf;

use clap::{Args, Parser, Subcommand};

use crate::devices::block::DiskConfig;
use crate::trace::TraceFormat;
use crate::vmm::config::{DEFAULT_MEM_MIB, DEFAULT_TRACE_MAX_EVENTS};

/// hv: a paravirtual hypervisor on KVM, built for teaching.
///
/// hv boots a small Rust guest kernel (pv-guest, built into hv) on KVM. The guest talks
/// to the hypervisor through hypercalls; hv can trace every exit and hypercall.
#[derive(Debug, Parser)]
#[command(name = "hv", version, about, long_about)]
pub struct Cli {
    /// What to do.
    #[command(subcommand)]
    pub command: Command,
}

/// hv's commands.
#[derive(Debug, Subcommand)]
pub enum Command {
    /// Boot the guest kernel and run it until it shuts down.
    ///
    /// The guest's console output goes to standard output; hv's own messages go to
    /// standard error. hv exits with the code the guest passes to its shutdown
    /// hypercall, with 101 if the guest crashed (panic, unhandled exception, triple
    /// fault), 124 if --timeout stopped it, and 1 if the VM could not be set up.
    #[command(after_help = GUEST_COMMANDS_HELP)]
    Run(RunArgs),

    /// Re-execute a run recorded with `hv run --record LOG`, feeding the guest the
    /// recorded inputs.
    ///
    /// The guest boots as it was recorded (kernel, arguments, RAM, memory mode, all from
    /// the log) and runs on KVM again; no device backend runs: at each doorbell write the
    /// bytes the device wrote then are written into guest memory, its trace lines and
    /// console text repeated, and its upcall raised at the same exit. Each exit is
    /// checked against the log; the first one that differs stops the replay with both
    /// sides ("recorded: … / replay: …") and exit code 1, as does a damaged, truncated or
    /// foreign log. A replay of a complete run writes the same --trace as the recorded
    /// run and ends with the same memory hash (printed as `hv: memory hash …`).
    #[command(after_help = REPLAY_HELP)]
    Replay(ReplayArgs),

    /// Measure the block device's ring: reads of 4 KiB and 64 KiB, with and without
    /// event-index suppression, next to the host reading the same file directly.
    ///
    /// Each configuration runs in a fresh VM. The report gives requests/s and MB/s in
    /// the guest, the host's MB/s for the same bytes measured in the same run, their
    /// ratio, and doorbells and upcalls per request.
    BlkBench(BlkBenchArgs),

    /// Measure what shadow paging and KVM's translation (ept) each cost: ring-3
    /// workloads in fresh VMs, with the host's limits measured in the same run.
    ///
    /// Each workload runs in a fresh VM per memory mode, and once more with zero
    /// operations so that boot and setup can be subtracted from the counters. The guest
    /// times each repetition with its TSC and checks its own result; hv verifies the
    /// checksum. The table gives time per operation (median and spread), VM exits per
    /// operation by reason, trapped page-table writes, mmu_update entries, shadow syncs,
    /// KVM translation flushes, CR3 loads and page faults per operation, the shadow/ept
    /// ratios, and the
    /// baselines: a bare KVM exit, the tlb-miss loop run natively, the host reading the
    /// disk image. The header names the host's memory virtualization; where it has no
    /// hardware EPT/NPT, it says that `ept` means KVM's own MMU there. hv exits with 0
    /// only if every workload was measured and verified in every mode asked for.
    #[command(after_help = BENCH_HELP)]
    Bench(BenchArgs),

    /// Talk to a running hv through its control socket (`hv run --control PATH`).
    ///
    /// Sends one command and prints the reply: for a person, or the raw JSON reply with
    /// --json. Exits with 0 if the command was done, and 1 with the error otherwise.
    #[command(after_help = crate::control::commands::help())]
    Ctl(CtlArgs),

    /// Continue a guest from a snapshot file, exactly where it was.
    ///
    /// The snapshot (written by `hv ctl PATH snapshot FILE`) holds the vCPU's state, each
    /// device's ring index and the guest's non-zero pages. Its memory is mapped lazily
    /// and copy-on-write, so the guest starts at once and the file is never changed. The
    /// guest's disk must be the same file, of the same size, at the same path. With
    /// --mmu the guest continues in the other memory mode: its memory is the same, only
    /// hv's translation of it changes. Exit codes as for `hv run`.
    #[command(after_help = RESTORE_HELP)]
    Restore(RestoreArgs),

    /// Measure what moving a VM costs, in one run: a snapshot's pause and size, restore
    /// against boot, live migration's downtime, and the overhead of recording.
    ///
    /// Restore to the first instruction is set against booting the same guest, in each
    /// memory mode and across modes; migration on loopback against RAM size ÷ the
    /// loopback bandwidth measured first; recording against the same guest run plain,
    /// alternately. Medians of --reps runs. See docs/vm-state.md.
    StateBench(StateBenchArgs),

    /// Read a trace file back (one written with `--trace PATH`).
    #[command(subcommand)]
    Trace(TraceCommand),

    /// Watch a running hv live, in the terminal: VM exits per second by reason,
    /// hypercalls by name, trapped page-table writes and shadow syncs, each device's ring,
    /// doorbells, upcalls and suppressed upcalls, hv's resident memory; one line under each
    /// panel says what it means. q, Esc or Ctrl-C quits.
    ///
    /// It samples through the control socket (`hv run --control PATH`): each sample is one
    /// `stats` request, which costs the guest one exit; nothing is locked on the guest's
    /// paths. In the spirit of kvm_stat and xentop.
    Top(TopArgs),

    /// The course's concepts shown on real VMs, narrated and paced for a classroom.
    ///
    /// Without NAME, lists the demos. Each step says what is about to happen and why it
    /// matters, runs real guests, and shows the trace lines or counters that prove it; it
    /// then waits for Enter (a standard input that is not a terminal goes on by itself).
    /// docs/classroom.md says which demo belongs to which lecture.
    Demo(DemoArgs),

    /// The inside of `hv demo vm-vs-container`'s container (started by hv itself, in new
    /// namespaces): not for people.
    #[command(name = "__container-init", hide = true)]
    ContainerInit {
        /// System calls to time.
        rounds: u64,
    },
}

/// Options of `hv demo`.
#[derive(Debug, Args)]
pub struct DemoArgs {
    /// The demo to run (none: list them).
    #[arg(value_name = "NAME")]
    pub name: Option<String>,
    /// Go on after a short pause instead of waiting for Enter.
    #[arg(long)]
    pub auto: bool,
    /// No pauses and small sizes (for tests and rehearsals; figures are less steady).
    #[arg(long)]
    pub fast: bool,
}

/// Options of `hv top`.
#[derive(Debug, Args)]
pub struct TopArgs {
    /// The control socket of the hv to watch.
    #[arg(value_name = "PATH")]
    pub socket: PathBuf,
    /// Seconds between samples.
    #[arg(long, value_name = "SECS", default_value = "1", value_parser = parse_timeout)]
    pub interval: std::time::Duration,
    /// Print one frame as text (two samples INTERVAL apart) instead of a live screen: for
    /// scripts, logs and terminals that cannot redraw. Also what happens when standard
    /// output is not a terminal.
    #[arg(long)]
    pub once: bool,
}

/// `hv trace` subcommands.
#[derive(Debug, Subcommand)]
pub enum TraceCommand {
    /// Print a text trace with a short explanation after the first line of each kind of
    /// event: what an `mmio-write` exit is, what a shadow sync did, why a flush happened,
    /// what a suppressed upcall saves. Ends with a count of each kind.
    ///
    /// For reading the trace of your own run (`hv run --trace t.txt -- …`, or a lab's).
    /// The file is treated as untrusted text: control characters are replaced and lines
    /// are read at most 64 KiB long.
    Explain(TraceExplainArgs),
}

/// Options of `hv trace explain`.
#[derive(Debug, Args)]
pub struct TraceExplainArgs {
    /// The trace file (text format, hv's default).
    #[arg(value_name = "FILE")]
    pub file: PathBuf,
    /// Print only the first line of each kind with its explanation: a glossary of the
    /// trace instead of the whole of it.
    #[arg(long)]
    pub first_only: bool,
}

/// Options of `hv state-bench`.
#[derive(Debug, Args)]
pub struct StateBenchArgs {
    /// Guest RAM in MiB.
    #[arg(long, value_name = "MIB", default_value_t = DEFAULT_MEM_MIB)]
    pub mem: u64,
    /// Repetitions of each timing; the median is reported.
    #[arg(long, value_name = "N", default_value_t = 5)]
    pub reps: usize,
}

const RESTORE_HELP: &str = "\
Examples:
  hv run --control /tmp/hv.sock -- count 1000 &
  hv ctl /tmp/hv.sock snapshot /tmp/guest.snap --stop
  hv restore /tmp/guest.snap                      continues counting where it stopped
  hv restore --mmu shadow /tmp/guest.snap         the same, in the other memory mode
  hv restore --tap hvtap0 /tmp/web.snap           a guest that had a network device, on a TAP's switch
See docs/vm-state.md for what a snapshot holds and how restore works, and docs/network.md
(\"A network guest is a whole VM\") for a guest with a network device.";

/// Options of `hv restore`.
#[derive(Debug, Args)]
pub struct RestoreArgs {
    /// The snapshot file.
    #[arg(value_name = "FILE")]
    pub file: PathBuf,

    /// Memory mode to continue in (default: the one the snapshot was taken in).
    #[arg(long, value_name = "MODE", value_enum)]
    pub mmu: Option<MmuArg>,

    /// The trace of the restored run (it starts with a `restore` line).
    #[command(flatten)]
    pub trace: TraceArgs,

    /// Stop the guest if it is still running after SECS seconds (exit code 124).
    #[arg(long, value_name = "SECS", value_parser = parse_timeout)]
    pub timeout: Option<std::time::Duration>,

    /// When the guest stops, print the run's figures to standard error, and how long the
    /// restore took (from hv's start to the guest's first instruction).
    #[arg(long)]
    pub stats: bool,

    /// Serve a control socket at PATH while the restored guest runs, as `hv run
    /// --control` does (see `hv ctl --help`).
    #[arg(long, value_name = "PATH")]
    pub control: Option<PathBuf>,

    /// Plug the guest's network device into a virtual switch with the existing host TAP
    /// device NAME, as `hv run --tap NAME` does. Needed exactly when the snapshot is of a
    /// guest with a network device (one started with --tap, --guests or --guest): it
    /// keeps its address and MAC; frames that were on their way when the snapshot was
    /// taken are lost (docs/network.md, "Snapshots and migration").
    #[arg(long, value_name = "NAME")]
    pub tap: Option<String>,

    /// Run without the seccomp filters that otherwise confine each of hv's threads to
    /// the system calls it needs (docs/security.md). For debugging hv only: a guest that
    /// found a bug in hv would then hold a thread that may do anything hv's user may.
    #[arg(long)]
    pub no_seccomp: bool,
}

/// Options of `hv ctl`.
#[derive(Debug, Args)]
pub struct CtlArgs {
    /// Print the reply as the JSON line the server sent (may also come after COMMAND).
    #[arg(long)]
    pub json: bool,

    /// Give up if the server sends nothing for SECS seconds (default: wait as long as
    /// the command takes).
    #[arg(long, value_name = "SECS", value_parser = parse_timeout)]
    pub timeout: Option<std::time::Duration>,

    /// The control socket (the PATH given to `hv run --control`).
    #[arg(value_name = "PATH")]
    pub path: PathBuf,

    /// The command (see the list below).
    #[arg(value_name = "COMMAND")]
    pub command: String,

    /// The command's arguments and options.
    #[arg(value_name = "ARGS", trailing_var_arg = true, allow_hyphen_values = true)]
    pub args: Vec<String>,
}

const BENCH_HELP: &str = "\
Workloads (--workload NAME selects a workload with all its variants, or NAME/VARIANT one):
  pt-update   map, touch and unmap pages; variants direct, batched (mmu_update)
  aspace      create an address space, populate 8 pages, destroy it
  ctxswitch   two tasks yielding to each other (CR3 loads)
  pagefault   first touches of fresh memory (demand-zero faults)
  tlb-miss    dependent random reads over a large working set; variants 4k, 2m (page size)
  hypercall   the null hypercall round trip
  blk         reads through the block ring by a ring-3 task, one system call per batch; variants 4k, 64k (request size)
  blk-direct  the same reads by pv-blkd, a ring-3 task driving the ring itself; variants 4k, 64k

With --network, the network and the balloon instead (needs root, iproute2; curl for the TCP row):
  ping host -> guest and guest -> guest (baseline: the host's loopback ping), the switch's
  frames/s (baseline: a port queue alone), TCP through curl (baseline: a host server on
  loopback), balloon reclaim and hv's RSS (baseline: madvise of as much host memory).

Examples:
  hv bench --quick                                   both modes, all workloads, about 11 s here
  hv bench --mmu ept --workload tlb-miss             one mode, one workload, full size
  hv bench --json bench.json --plot bench.svg        the full run (under 3 minutes), saved
  hv bench --network --quick                         the network figures, under a minute
See docs/bench.md for what each figure means and what the literature predicts.";

/// Options of `hv bench`.
#[derive(Debug, Args)]
pub struct BenchArgs {
    /// Memory modes to measure.
    #[arg(long, value_name = "MODE", value_enum, default_value_t = BenchMmuArg::Both)]
    pub mmu: BenchMmuArg,

    /// Run only this workload (repeat the option for several); see the list below.
    #[arg(long = "workload", value_name = "NAME", value_parser = parse_workload)]
    pub workloads: Vec<String>,

    /// Measure the network and the balloon instead of the memory modes: pings, the
    /// switch, TCP through curl, balloon reclaim, each against a baseline from the same
    /// run. Makes (and always removes) its own network namespace with a TAP: needs root
    /// and iproute2. docs/bench.md, "Network figures".
    #[arg(long, conflicts_with_all = ["mmu", "workloads", "plot"])]
    pub network: bool,

    /// Small sizes and 3 repetitions: a check that everything works (under 20 s), not
    /// figures to quote.
    #[arg(long)]
    pub quick: bool,

    /// Write every figure, with units and the host description, as JSON to PATH.
    #[arg(long, value_name = "PATH")]
    pub json: Option<PathBuf>,

    /// Draw time per operation per workload for each mode as an SVG chart to PATH.
    #[arg(long, value_name = "PATH")]
    pub plot: Option<PathBuf>,
    /// Run the measured VMs without seccomp filters (each VM otherwise runs on a thread
    /// of its own, confined as `hv run`'s are; see docs/security.md). For debugging hv only.
    #[arg(long)]
    pub no_seccomp: bool,
}

/// `hv bench --mmu` values.
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum BenchMmuArg {
    /// Both modes, side by side (ept first).
    Both,
    /// KVM's translation only.
    Ept,
    /// hv's shadow page tables only.
    Shadow,
}

/// `--workload`: a known workload name or NAME/VARIANT.
fn parse_workload(s: &str) -> Result<String, String> {
    if crate::bench::workloads::select(s).is_empty() {
        let ids: Vec<&str> = crate::bench::workloads::ALL.iter().map(|w| w.id).collect();
        return Err(format!("unknown workload '{s}'; known: {} (or one of {})", crate::bench::workloads::names().join(", "), ids.join(", ")));
    }
    Ok(s.to_string())
}

/// Options of `hv blk-bench`.
#[derive(Debug, Args)]
pub struct BlkBenchArgs {
    /// Image to read (read-only); without it, a 64 MiB scratch image is made and removed.
    #[arg(long, value_name = "PATH")]
    pub disk: Option<PathBuf>,

    /// Requests per configuration.
    #[arg(long, value_name = "N", default_value_t = 2000)]
    pub requests: u64,
    /// Run the measured VMs without seccomp filters (each VM otherwise runs on a thread
    /// of its own, confined as `hv run`'s are; see docs/security.md). For debugging hv only.
    #[arg(long)]
    pub no_seccomp: bool,
}

const GUEST_COMMANDS_HELP: &str = "\
Guest commands (the words after `--`, read by the built-in pv-guest; chain several with a
quoted ';' word, e.g. `-- blk-fill 0 8 7 ';' count 5`: they run in order until one fails):
  (none)                  print a greeting that names the memory mode, then shut down with 0
  selftest                run the in-guest self-tests; prints `selftest: N passed, M failed`
  echo WORDS...           print the words back (shows how the command line reaches the guest)
  bad-hypercalls          make deliberately bad hypercalls; each must come back as an error code
  hypercall-bench [N]     time N null hypercalls (default 10000) and print the round trip
  panic                   panic in the guest kernel (hv reports `guest panicked at ...`)
  fault ud|gp|pf|de       raise a CPU exception in the guest (hv reports `guest exception ...`)
  triple-fault            make the virtual CPU shut down (hv prints a register dump)
  blk-read-sum LBA COUNT  (--disk) read COUNT sectors from LBA and print their FNV-1a hash
  blk-fill LBA COUNT BYTE (--disk) fill COUNT sectors from LBA with BYTE
  blk-bench SECTORS COUNT read COUNT requests of SECTORS sectors (used by `hv blk-bench`)
  task-demo               run one small ring-3 task (a short trace: compare --mmu ept and shadow)
  count N [MS]            print count: 1..N, MS ms apart (default 10): watch a snapshot or migration
  count-user N [SPIN]     the same from a ring-3 task, spinning SPIN times between lines
  hostile-ptes            (--mmu shadow) write page-table entries hv must refuse; each is refused
  overflow-shadow [N]     (--mmu shadow) ask for more shadow tables than the area holds; each call gets E2BIG
  dirty-loop MIB PAGES_PER_S [SECONDS]
                          write PAGES_PER_S pages a second (0: as fast as it can) of a MIB
                          buffer for SECONDS (default 5): a working set to migrate
  checksum-loop MIB STEPS [MS_PER_STEP]
                          STEPS steps over a MIB buffer (and the disk, with --disk), MS_PER_STEP
                          apart (default 10); prints a result a migration must not change
  touch-mem MIB           take MIB of free frames, write each, give them back (resident memory)
  balloon-wait [MIB [SECONDS]]
                          serve the balloon until hv's target is MIB and met (default 30 s at most)
  balloon-status          the balloon: target, floor, size as the guest and hv count it
  balloon-hostile         send the balloon backend batches it must refuse; each is refused
  net-ping IP [COUNT]     (network: --guests, --guest, --tap) ping IP COUNT times (default 4)
  net-serve [SECONDS]     (network) answer ping and serve HTTP on port 80 for SECONDS (default 30)
                          both run the stack in a ring-3 task (pv-netd); add --ring0 for the kernel's
  net-bench loopback|IP [COUNT]
                          the TCP/IP stack's cost in the guest, over a loopback wire or the network
  net-selftest            two stacks in the guest, joined by a loopback wire: ping and HTTP checks
  sensitive [umip]        ring-3 pushf, popf, smsw, sgdt, sidt, str: what each reveals (Popek-Goldberg)
  lines uart|pv N         N lines through the emulated 16550 UART or the PV console, time per line
  shadow-storm [N]        (--mmu shadow, with --timeout) the costliest shadow exits, forever
  blk-user-read-sum LBA COUNT
                          (--disk) a ring-3 task reads into its own frames (zero copy); prints the hash

Examples:
  hv run
  hv run --stats -- selftest
  hv run --mmu shadow --stats -- selftest
  hv run --trace boot.trace -- echo hello
  hv run --control /tmp/hv.sock -- count 1000   (then: hv ctl /tmp/hv.sock pause)
  hv run --balloon-target 32 --stats -- balloon-wait 32   (see docs/balloon.md)
  hv run --guest 'net-serve 10' --guest 'net-ping 10.0.0.2 3'   (two guests, one switch)
  hv run --tap hvtap0 -- net-serve 60   (then, on the host: curl http://10.0.0.2/)";

const REPLAY_HELP: &str = "\
Examples:
  hv run --record run.log --trace a.trace -- selftest
  hv replay run.log --trace b.trace          (then: cmp a.trace b.trace)
  hv replay run.log --until 200              stop after the guest's 200th exit
  hv replay run.log --until 200 --snapshot s.snap; hv restore s.snap   go on from there
See docs/vm-state.md (\"Record and replay\") for what is guaranteed and what is not.";

/// Options of `hv replay`.
#[derive(Debug, Args)]
pub struct ReplayArgs {
    /// The log written by `hv run --record`.
    #[arg(value_name = "LOG")]
    pub log: PathBuf,

    /// Boot this kernel ELF file (it must be the one recorded: its hash is checked);
    /// without it, the recorded --kernel path, or the built-in pv-guest.
    #[arg(long, value_name = "ELF")]
    pub kernel: Option<PathBuf>,

    /// Stop after the guest's Nth exit (exits are numbered from 1 in the log, which
    /// counts only exits the guest made) and say where the guest is.
    #[arg(long, value_name = "EXIT", value_parser = clap::value_parser!(u64).range(1..))]
    pub until: Option<u64>,

    /// With --until: write a snapshot of the VM where the replay stopped (time travel:
    /// `hv restore FILE` continues the guest from that exit, with its devices live).
    /// Not for a run recorded with --disk (the replay has no disk to name).
    #[arg(long, value_name = "FILE", requires = "until")]
    pub snapshot: Option<PathBuf>,

    /// The replay's trace; give the recorded run's --trace-format and --trace-max to
    /// compare the two.
    #[command(flatten)]
    pub trace: TraceArgs,

    /// Stop the replay if it is still running after SECS seconds (exit code 124).
    #[arg(long, value_name = "SECS", value_parser = parse_timeout)]
    pub timeout: Option<std::time::Duration>,

    /// When the guest stops, print the --stats table to standard error.
    #[arg(long)]
    pub stats: bool,
}

/// The trace options `hv run`, `hv restore` and `hv replay` share.
#[derive(Debug, Args)]
pub struct TraceArgs {
    /// Write a trace of every VM exit, hypercall and the guest's stop to PATH.
    #[arg(long = "trace", value_name = "PATH")]
    pub path: Option<PathBuf>,

    /// Trace file format: `text` is one deterministic line per event (same run, same
    /// bytes); `jsonl` is one JSON object per line.
    #[arg(long = "trace-format", value_name = "FORMAT", value_enum, default_value_t = TraceFormat::Text)]
    pub format: TraceFormat,

    /// Write at most N trace events; the trace then ends with a `trace-cut` line, so a
    /// guest in an exit storm cannot fill the disk.
    #[arg(long = "trace-max", value_name = "N", default_value_t = DEFAULT_TRACE_MAX_EVENTS)]
    pub max_events: u64,
}

impl TraceArgs {
    /// Where the trace goes and in which format (`VmConfig::trace`).
    pub fn destination(&self) -> Option<(PathBuf, TraceFormat)> {
        self.path.clone().map(|p| (p, self.format))
    }
}

/// Options of `hv run`.
#[derive(Debug, Args)]
pub struct RunArgs {
    /// Boot this kernel ELF file instead of the built-in pv-guest.
    ///
    /// It must be a static x86-64 ELF executable whose segments are loaded at or above
    /// 1 MiB and linked at 0xffffffff80000000 + their physical address (see pv-abi's
    /// layout). hv checks all of that before loading and names any problem.
    #[arg(long, value_name = "ELF")]
    pub kernel: Option<PathBuf>,

    /// Attach a raw disk image as the guest's block device; `,ro` makes it read-only.
    ///
    /// The image is a plain file of 512-byte sectors (create one with `truncate -s 64M
    /// disk.img`). The guest's block frontend reaches it through a shared ring; the
    /// backend runs on its own thread. See the blk-* guest commands below.
    #[arg(long, value_name = "PATH[,ro]")]
    pub disk: Option<DiskConfig>,

    /// How guest memory is translated.
    ///
    /// `ept`: one read-write memslot; the guest writes its own page tables and loads CR3
    /// itself, and KVM translates guest-physical addresses (hardware EPT/NPT where the
    /// host has it). `shadow`: hv places guest frames at machine addresses of its own
    /// choosing, keeps the page-table pool read-only so every guest page-table write
    /// exits to hv, and points the CPU at shadow page tables it builds from the guest's.
    /// See docs/memory-modes.md.
    ///
    /// With several guests (--guests, --guest), a comma-separated list gives each guest
    /// its own mode in order (`--mmu shadow,ept`); one mode applies to all.
    #[arg(long, value_name = "MODE[,MODE...]", value_enum, value_delimiter = ',', default_value = "ept")]
    pub mmu: Vec<MmuArg>,

    /// Guest RAM in MiB: 8 to 3072, a multiple of 2.
    #[arg(long, value_name = "MIB", default_value_t = DEFAULT_MEM_MIB)]
    pub mem: u64,

    /// Run N guests at once in this hv, each running the GUEST ARGS.
    ///
    /// Each guest has its own vCPU thread, RAM, devices, memory mode (see --mmu) and
    /// console; each console line is prefixed with the guest's name (`g0 | …`, `g1 | …`).
    /// hv ends when the last guest stops, with the first non-zero exit code in guest
    /// order (0 if all succeeded). --trace PATH writes one trace per guest and --control
    /// PATH serves one control socket per guest, the name put before the extension
    /// (`t.g0.txt`, `hv.g1.sock`); --stats prints a table per guest. Not with --disk (the
    /// guests would share one image), --record (the network cannot be replayed),
    /// --incoming or --migrate-to (they move one guest: use --tap, or migrate one guest of
    /// the group through its control socket); hv says so and exits with 2.
    #[arg(long, value_name = "N", value_parser = clap::value_parser!(u8).range(1..=16), conflicts_with = "guest")]
    pub guests: Option<u8>,

    /// Attach the existing host TAP device NAME to the guests' virtual switch, so that the
    /// host reaches them with its own tools (`ping 10.0.0.2`, `curl http://10.0.0.2/`).
    ///
    /// Every guest of `hv run` with --guests, --guest or --tap has a network device on one
    /// virtual switch (MAC learning, flooding, bounded queues), and its address from its
    /// boot-info page: guest i is 10.0.0.(i+2)/24; give the TAP 10.0.0.1/24. Create the TAP
    /// first (`ip tuntap add dev NAME mode tap`, then an address and `ip link set NAME up`),
    /// in hv's network namespace. See docs/network.md.
    ///
    /// With one guest (no --guests or --guest) everything else of `hv run` works as without
    /// a network: --disk, --control (snapshot, migrate), --incoming (a guest migrating
    /// here is plugged into this TAP's switch), --migrate-to. Not with --record.
    #[arg(long, value_name = "NAME")]
    pub tap: Option<String>,

    /// Add a guest that runs WORDS (split at spaces), instead of the GUEST ARGS; repeat it
    /// for each guest, e.g. `--guest 'count 3' --guest 'echo hi'`. Everything --guests
    /// says about several guests applies.
    #[arg(long, value_name = "WORDS", conflicts_with = "guest_args")]
    pub guest: Vec<String>,
    /// The balloon's first target: MIB of RAM the guest should keep (it gives the rest
    /// back to the host, down to the floor it announces). Without it the guest keeps all
    /// of its RAM until `hv ctl PATH balloon MIB` asks otherwise. See docs/balloon.md.
    #[arg(long, value_name = "MIB")]
    pub balloon_target: Option<u64>,

    /// The trace: where, in which format, how long at most.
    #[command(flatten)]
    pub trace: TraceArgs,

    /// Stop the guest if it is still running after SECS seconds (exit code 124), with a
    /// register dump showing where it was. Use it when running a kernel that might hang,
    /// e.g. one that halts with interrupts off: such a guest never exits to hv by itself.
    #[arg(long, value_name = "SECS", value_parser = parse_timeout)]
    pub timeout: Option<std::time::Duration>,

    /// When the guest stops, print a table to standard error: wall time, time to the
    /// guest's first console line, VM exits by reason, hypercalls by name.
    #[arg(long)]
    pub stats: bool,

    /// Receive a running guest from another hv instead of booting one: listen on
    /// ADDR:PORT (e.g. 127.0.0.1:7000) for one live migration, then continue the guest
    /// here, in the --mmu mode given (either, whatever the source ran). --mem must be the
    /// source's RAM size and the kernel the source's; the disk is the source's (the same
    /// image path, checked). See docs/vm-state.md, "Live migration".
    #[arg(long, value_name = "ADDR:PORT", conflicts_with_all = ["guest_args", "disk"])]
    pub incoming: Option<String>,

    /// Send the guest to the hv listening at HOST:PORT (`hv run --incoming`) by pre-copy
    /// live migration, --migrate-after seconds after it starts. The rounds' figures are
    /// printed to standard error; on success this hv ends and the guest runs on there;
    /// if anything fails, the guest runs on here.
    #[arg(long, value_name = "HOST:PORT")]
    pub migrate_to: Option<String>,

    /// With --migrate-to: seconds after the start to begin the migration.
    #[arg(long, value_name = "SECS", default_value = "1", value_parser = parse_timeout, requires = "migrate_to")]
    pub migrate_after: std::time::Duration,

    /// With --migrate-to: the migration's options.
    #[command(flatten)]
    pub migrate: super::migrate::MigrateOptions,

    /// Serve a control socket at PATH while the guest runs (see `hv ctl --help`).
    ///
    /// The socket is created owner-only (mode 0600); a stale socket left at PATH by an
    /// hv that was killed is replaced, anything else there is refused. It is removed when
    /// hv ends. hv prints one line on standard error saying where it listens. With a
    /// control socket, Ctrl-C (SIGINT) and SIGTERM stop the guest cleanly and hv exits
    /// with 128 + the signal's number.
    #[arg(long, value_name = "PATH")]
    pub control: Option<PathBuf>,

    /// Run without the seccomp filters that otherwise confine each of hv's threads to
    /// the system calls it needs (docs/security.md). For debugging hv only: a guest that
    /// found a bug in hv would then hold a thread that may do anything hv's user may.
    #[arg(long)]
    pub no_seccomp: bool,

    /// Record the run to LOG for `hv replay`: every input the guest receives from
    /// outside its own instructions (device responses, upcalls, clock reads).
    ///
    /// The devices are then served on the vCPU thread when the guest rings a doorbell
    /// (no ioeventfd, no backend thread), the upcall is raised at that exit, and the
    /// guest reads its clock through hv. Exits caused by signals are left out of the
    /// trace. hv prints the guest's memory hash at the end (`hv: memory hash …`). A
    /// recording starts at boot and stays on this host: not with --incoming or
    /// --migrate-to; and a network cannot be replayed: not with --tap, --guests or
    /// --guest (hv says so and exits with 2).
    #[arg(long, value_name = "LOG", conflicts_with_all = ["incoming", "migrate_to"])]
    pub record: Option<PathBuf>,

    /// Words passed to the guest kernel (see "Guest commands" below).
    #[arg(last = true, value_name = "GUEST ARGS")]
    pub guest_args: Vec<String>,
}

/// `--mmu` values.
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum MmuArg {
    /// KVM's two-dimensional paging (EPT/NPT, or KVM's own MMU where the host has none).
    Ept,
    /// hv's shadow page tables.
    Shadow,
}

impl From<MmuArg> for pv_abi::MmuMode {
    fn from(m: MmuArg) -> Self {
        match m {
            MmuArg::Ept => pv_abi::MmuMode::Ept,
            MmuArg::Shadow => pv_abi::MmuMode::Shadow,
        }
    }
}

/// `--timeout`: positive seconds, fractions allowed.
fn parse_timeout(s: &str) -> Result<std::time::Duration, String> {
    match s.parse::<f64>() {
        Ok(secs) if secs > 0.0 && secs.is_finite() && secs <= 1e6 => Ok(std::time::Duration::from_secs_f64(secs)),
        _ => Err(format!("'{s}' is not a number of seconds greater than 0 (and at most 1000000)")),
    }
}

/// Whether to confine hv's threads (`crate::sandbox`): yes unless `--no-seccomp`, which
/// is said on standard error so that nobody runs unconfined without knowing.
pub fn seccomp_wanted(no_seccomp: bool) -> bool {
    if no_seccomp {
        eprintln!("hv: --no-seccomp: hv's threads run without seccomp filters (for debugging hv only)");
    }
    !no_seccomp
}
