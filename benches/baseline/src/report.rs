//! The figures of every round, printed as Markdown tables with the ratios and goals.

use crate::disk::PlainWrites;
use crate::runs::Measured;

const GIB: f64 = (1u64 << 30) as f64;

#[derive(Clone, Copy, Debug, PartialEq)]
pub enum Case {
    NodeMirrorOs,
    NodeMirrorDefault,
    NodePipeline,
    TansuMirrorOs,
    TansuMirrorDefault,
    TansuPipeline,
    ServeNode,
    ServeTansu,
}

impl Case {
    fn label(self) -> &'static str {
        match self {
            Case::NodeMirrorOs => "node → node, shadowlink, persist \"os\"",
            Case::NodeMirrorDefault => "node → node, shadowlink, default persist",
            Case::NodePipeline => "node → node, librdkafka pipeline",
            Case::TansuMirrorOs => "tansu → node, shadowlink, persist \"os\"",
            Case::TansuMirrorDefault => "tansu → node, shadowlink, default persist",
            Case::TansuPipeline => "tansu → tansu, librdkafka pipeline",
            Case::ServeNode => "consumer reading the node",
            Case::ServeTansu => "consumer reading tansu",
        }
    }
}

pub struct Report {
    /// Bytes of record values loaded: what "per GiB" divides by.
    values: u64,
    /// Bytes of record batches the source node stores, and the plain writes write.
    stored: u64,
    plain: Vec<PlainWrites>,
    runs: Vec<(usize, Case, Measured)>,
}

impl Report {
    pub fn new(values: u64, stored: u64) -> Report {
        Report {
            values,
            stored,
            plain: Vec::new(),
            runs: Vec::new(),
        }
    }

    pub fn plain(&mut self, plain: PlainWrites) {
        println!(
            "  plain write of {} B: page cache {:.2?} ({:.0} MB/s), fdatasync loop {:.2?} ({:.0} MB/s)",
            self.stored,
            plain.page_cache,
            self.rate(plain.page_cache.as_secs_f64()),
            plain.fdatasync,
            self.rate(plain.fdatasync.as_secs_f64()),
        );
        self.plain.push(plain);
    }

    pub fn add(&mut self, round: usize, case: Case, m: Measured) {
        println!(
            "  {}: {:.2?}, {:.0} MB/s, {:.2} CPU-s counted, {:.2} CPU-s beside",
            case.label(),
            m.wall,
            self.rate(m.wall.as_secs_f64()),
            m.cpu,
            m.other_cpu
        );
        self.runs.push((round, case, m));
    }

    /// Stored bytes per second, in MB/s.
    fn rate(&self, seconds: f64) -> f64 {
        self.stored as f64 / seconds / 1e6
    }

    fn get(&self, round: usize, case: Case) -> Option<&Measured> {
        self.runs
            .iter()
            .find(|(r, c, _)| *r == round && *c == case)
            .map(|(_, _, m)| m)
    }

    pub fn print(&self) {
        println!(
            "\nrecord values: {} B ({:.3} GiB, the unit of CPU-s/GiB); stored record batches: {} B",
            self.values,
            self.values as f64 / GIB,
            self.stored
        );
        self.print_plain();
        self.print_runs();
        for round in 1..=self.plain.len() {
            self.print_ratios(round);
        }
    }

    fn print_plain(&self) {
        println!("\n| round | page-cache write | MB/s | write + fdatasync every 100 ms | MB/s |");
        println!("|---|---|---|---|---|");
        for (i, p) in self.plain.iter().enumerate() {
            let (pc, fs) = (p.page_cache.as_secs_f64(), p.fdatasync.as_secs_f64());
            println!(
                "| {} | {pc:.2} s | {:.0} | {fs:.2} s | {:.0} |",
                i + 1,
                self.rate(pc),
                self.rate(fs)
            );
        }
    }

    fn print_runs(&self) {
        println!(
            "\n| run | round | wall | MB/s stored | CPU-s counted | CPU-s/GiB | CPU-s beside |"
        );
        println!("|---|---|---|---|---|---|---|");
        for (round, case, m) in &self.runs {
            let wall = m.wall.as_secs_f64();
            println!(
                "| {} | {round} | {wall:.2} s | {:.0} | {:.2} | {:.2} | {:.2} |",
                case.label(),
                self.rate(wall),
                m.cpu,
                m.cpu / (self.values as f64 / GIB),
                m.other_cpu
            );
        }
    }

    fn print_ratios(&self, round: usize) {
        println!("\nround {round}:");
        let pairs = [
            (Case::NodeMirrorOs, Case::NodePipeline, Some((5.0, 8.0))),
            (
                Case::NodeMirrorDefault,
                Case::NodePipeline,
                Some((5.0, 8.0)),
            ),
            (Case::TansuMirrorOs, Case::TansuPipeline, None),
            (Case::TansuMirrorDefault, Case::TansuPipeline, None),
            (Case::ServeNode, Case::ServeTansu, None),
        ];
        for (ours, theirs, goal) in pairs {
            let (Some(a), Some(b)) = (self.get(round, ours), self.get(round, theirs)) else {
                continue;
            };
            let faster = b.wall.as_secs_f64() / a.wall.as_secs_f64();
            let less_cpu = b.cpu / a.cpu;
            let verdict = goal.map_or(String::new(), |(f, c)| {
                format!(
                    " (goals ≥ {f} and ≥ {c}: {}, {})",
                    met(faster >= f),
                    met(less_cpu >= c)
                )
            });
            println!(
                "  {} vs {}: {faster:.2} × faster, {less_cpu:.2} × less CPU{verdict}",
                ours.label(),
                theirs.label()
            );
        }
        self.print_disk_ratios(round);
    }

    fn print_disk_ratios(&self, round: usize) {
        let Some(plain) = self.plain.get(round - 1) else {
            return;
        };
        let checks = [
            (
                Case::NodeMirrorOs,
                plain.page_cache,
                "page-cache write",
                0.8,
            ),
            (
                Case::NodeMirrorDefault,
                plain.fdatasync,
                "write + fdatasync loop",
                0.9,
            ),
        ];
        for (case, plain, name, goal) in checks {
            if let Some(m) = self.get(round, case) {
                let ratio = plain.as_secs_f64() / m.wall.as_secs_f64();
                println!(
                    "  {} / {name}: {ratio:.2} × the rate (goal ≥ {goal}: {})",
                    case.label(),
                    met(ratio >= goal)
                );
            }
        }
    }
}

fn met(yes: bool) -> &'static str {
    if yes {
        "met"
    } else {
        "not met"
    }
}
