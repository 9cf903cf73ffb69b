//! Facts about the machine and its load, read from `/proc`.

use std::fs;

/// Returns the load averages of `/proc/loadavg` (1, 5 and 15 minutes), or
/// "unknown" where `/proc` is missing.
pub fn load_average() -> String {
    fs::read_to_string("/proc/loadavg")
        .map(|text| {
            text.split_whitespace()
                .take(3)
                .collect::<Vec<_>>()
                .join(" ")
        })
        .unwrap_or_else(|_| "unknown".into())
}

/// Describes the machine: logical CPUs, CPU model and memory.
pub fn machine() -> String {
    let cpus = std::thread::available_parallelism().map_or(0, |count| count.get());
    let cpuinfo = fs::read_to_string("/proc/cpuinfo").unwrap_or_default();
    let model = field(&cpuinfo, "model name").unwrap_or_else(|| "unknown CPU".into());
    let meminfo = fs::read_to_string("/proc/meminfo").unwrap_or_default();
    let memory = field(&meminfo, "MemTotal").unwrap_or_else(|| "unknown".into());
    format!("{cpus} CPUs ({model}), memory {memory}")
}

/// Returns the resident set size of process `pid` in KiB, from the `VmRSS`
/// line of `/proc/PID/status`.
pub fn rss_kib(pid: u32) -> Option<u64> {
    let status = fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    field(&status, "VmRSS")?
        .trim_end_matches("kB")
        .trim()
        .parse()
        .ok()
}

/// Prints the machine and the load, the header of every benchmark's
/// output.
pub fn print_header(benchmark: &str) {
    println!("# {benchmark}");
    println!("machine: {}", machine());
    println!("load average before: {}", load_average());
}

/// Prints the load at the end of a benchmark.
pub fn print_footer() {
    println!("load average after: {}", load_average());
}

fn field(text: &str, name: &str) -> Option<String> {
    text.lines()
        .find(|line| line.split(':').next().map(str::trim) == Some(name))
        .and_then(|line| line.split_once(':'))
        .map(|(_, value)| value.trim().to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn field_reads_colon_lines() {
        let text = "VmPeak:\t  2000 kB\nVmRSS:\t  1234 kB\n";
        assert_eq!(field(text, "VmRSS").as_deref(), Some("1234 kB"));
        assert_eq!(field(text, "VmSize"), None);
    }

    #[test]
    fn rss_of_this_process_is_known() {
        assert!(rss_kib(std::process::id()).is_some_and(|kib| kib > 0));
    }
}
