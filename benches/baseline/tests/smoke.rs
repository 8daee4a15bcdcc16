//! The benchmark on a small load: every run finishes with every record where it belongs
//! (the program fails otherwise) and the summary names every case and ratio.

use std::process::Command;

#[test]
fn a_small_load_runs_every_case_and_prints_the_ratios() {
    let out = Command::new(env!("CARGO_BIN_EXE_end_to_end"))
        .args(["--mib", "16", "--partitions", "4", "--rounds", "1"])
        .output()
        .expect("the benchmark starts");
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{}\n{stdout}", out.status);
    let rows = [
        "| node → node, shadowlink, persist \"os\" | 1 |",
        "| node → node, shadowlink, default persist | 1 |",
        "| node → node, librdkafka pipeline | 1 |",
        "| consumer reading the node | 1 |",
    ];
    for row in rows {
        assert!(stdout.contains(row), "no row {row:?} in:\n{stdout}");
    }
    assert_eq!(stdout.matches("× less CPU").count(), 2, "{stdout}");
    assert!(stdout.contains("/ page-cache write:"), "{stdout}");
    assert!(stdout.contains("/ write + fdatasync loop:"), "{stdout}");
}
