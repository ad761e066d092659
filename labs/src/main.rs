//! `labs`: list the course labs, generate a student's starter, grade a tree.
//!
//! The commands are thin: the ideas live in the library's modules (see its crate
//! documentation). Exit codes: 0 success (for `grade`: full score only), 1 a grade below
//! full, 2 the tool could not do what was asked (bad manifest, marker error, bad folder).

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::Duration;

use clap::{Parser, Subcommand};

use labs::grade::{grade, Options};
use labs::manifest::{lab_dirs, load_all, Lab};
use labs::report::{render, Format};
use labs::starter::{tree_regions, write_starter};

/// Course labs on hv: list them, generate a student's starting tree, grade a tree.
///
/// The labs, their tests and the reference code come from the instructor's checkout
/// (--reference, by default the checkout this binary was built from); the graded tree is
/// only ever compiled against them. See labs/README.md (the instructor's guide).
#[derive(Parser)]
#[command(name = "labs", version)]
struct Cli {
    /// The instructor's reference checkout (holding labs/ and the reference code).
    #[arg(long, global = true, value_name = "DIR", default_value_os_t = default_reference())]
    reference: PathBuf,
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Every lab: number, title, concepts, expected hours, points (visible + hidden).
    List,
    /// Write lab N's starter to DIR: a complete buildable workspace with lab N's solution
    /// regions replaced by stubs, no hidden tests, and the handout as DIR/LAB.md.
    Start {
        /// The lab's number.
        n: u32,
        /// A new or empty folder.
        dir: PathBuf,
    },
    /// Build lab N's tests against a tree, run each with its time limit, and score it.
    /// Exit code 0 only at full score.
    Grade {
        /// The lab's number.
        n: u32,
        /// The tree to grade (a student's submission or the reference).
        #[arg(long, value_name = "DIR", default_value = ".")]
        tree: PathBuf,
        /// Output format.
        #[arg(long, value_enum, default_value_t = Format::Text)]
        format: Format,
        /// Write the output here (the text table is still printed); without it, print it.
        #[arg(long, value_name = "FILE")]
        out: Option<PathBuf>,
        /// Leave out the hidden tests (what a student runs locally).
        #[arg(long)]
        visible_only: bool,
        /// CARGO_TARGET_DIR for the build [default: <tree>/target].
        #[arg(long, value_name = "DIR")]
        target_dir: Option<PathBuf>,
        /// Time limit for building the tree and the tests, in seconds.
        #[arg(long, value_name = "SECS", default_value_t = 1800)]
        build_timeout_secs: u64,
    },
    /// Check every solution marker of the reference (balanced, known labs) and every
    /// lab's manifest; print the regions per lab.
    Check,
}

/// The checkout this binary was built from (labs/ is one of its crates).
fn default_reference() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).parent().map(Path::to_path_buf).unwrap_or_else(|| PathBuf::from("."))
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    match run(&cli) {
        Ok(code) => code,
        Err(message) => {
            eprintln!("labs: {message}");
            ExitCode::from(2)
        }
    }
}

fn known_labs(reference: &Path) -> BTreeSet<u32> {
    lab_dirs(reference).into_keys().collect()
}

fn load_lab(reference: &Path, n: u32) -> Result<Lab, String> {
    let dir = lab_dirs(reference).remove(&n).ok_or_else(|| format!("no lab {n}: no {}/labs/{n:02}-*/ folder (`labs list` shows the labs)", reference.display()))?;
    Lab::load(&dir).map_err(|e| e.to_string())
}

fn run(cli: &Cli) -> Result<ExitCode, String> {
    let reference = &cli.reference;
    match &cli.command {
        Command::List => {
            let labs = load_all(reference).map_err(|e| e.to_string())?;
            if labs.is_empty() {
                println!("no labs yet under {}/labs/", reference.display());
            }
            for lab in labs.values() {
                let m = &lab.manifest;
                let (visible, hidden) = lab.points();
                println!("{:>2}  {}  ({} h, {} points: {visible} visible + {hidden} hidden)\n    concepts: {}", m.number, m.title, m.hours, visible + hidden, m.concepts.join(", "));
            }
            Ok(ExitCode::SUCCESS)
        }
        Command::Start { n, dir } => {
            let lab = load_lab(reference, *n)?;
            let replaced = write_starter(reference, &lab, &known_labs(reference), dir)?;
            println!("wrote lab {n}'s starter to {} ({replaced} solution regions replaced by stubs); the handout is {}", dir.display(), dir.join("LAB.md").display());
            Ok(ExitCode::SUCCESS)
        }
        Command::Grade { n, tree, format, out, visible_only, target_dir, build_timeout_secs } => {
            let lab = load_lab(reference, *n)?;
            let tree = std::fs::canonicalize(tree).map_err(|e| format!("{}: {e}", tree.display()))?;
            let mut options = Options::for_tree(&tree);
            options.include_hidden = !visible_only;
            options.build_limit = Duration::from_secs(*build_timeout_secs);
            if let Some(dir) = target_dir {
                options.target_dir = dir.clone();
            }
            let result = grade(&lab, &tree, &options);
            let rendered = render(&result, *format);
            match out {
                Some(path) => {
                    std::fs::write(path, &rendered).map_err(|e| format!("{}: {e}", path.display()))?;
                    print!("{}", render(&result, Format::Text));
                    println!("results written to {}", path.display());
                }
                None => print!("{rendered}"),
            }
            Ok(if result.is_full() { ExitCode::SUCCESS } else { ExitCode::from(1) })
        }
        Command::Check => {
            load_all(reference).map_err(|e| e.to_string())?;
            let regions = tree_regions(reference, &known_labs(reference))?;
            let count: usize = regions.iter().map(|(_, r)| r.len()).sum();
            for (file, file_regions) in &regions {
                for r in file_regions {
                    println!("lab {}: {}:{}-{}: {}", r.lab, file.display(), r.begin_line, r.end_line, r.what);
                }
            }
            println!("{count} solution regions, all markers balanced");
            Ok(ExitCode::SUCCESS)
        }
    }
}
