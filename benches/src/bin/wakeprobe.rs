//! wakeprobe: what a thread wake-up costs on this machine.
//!
//! Two threads pass one byte back and forth through a pair of pipes, each
//! blocking in `read` until the other writes: every round trip is two
//! sleeps and two wake-ups. Run once with the two threads pinned to
//! different CPUs (each wake-up crosses CPUs; on a VM it may have to wake a
//! halted vCPU) and once with both pinned to the first CPU (a plain context
//! switch). Reports the time per round trip and the process's CPU time
//! (user + system, `getrusage`) per round trip, for each.
//!
//! ```sh
//! cargo run --release -p benches --bin wakeprobe -- --round-trips 20000
//! ```

use std::io::{pipe, Read, Write};
use std::process::ExitCode;
use std::time::{Duration, Instant};

use benches::db::process_cpu;
use clap::Parser;

#[derive(Parser, Debug)]
#[command(about = "Time and CPU of a pipe round trip between two threads, across CPUs and on one")]
struct Args {
    /// Round trips per measurement (bounded: at most 1,000,000).
    #[arg(long, default_value_t = 20_000, value_parser = clap::value_parser!(u32).range(1..=1_000_000))]
    round_trips: u32,
    /// Print one JSON object instead of text.
    #[arg(long)]
    json: bool,
}

/// Pins the calling thread to `cpu`.
#[allow(
    unsafe_code,
    reason = "sched_setaffinity only reads the set it is given"
)]
fn pin(cpu: usize) -> std::io::Result<()> {
    // SAFETY: an all-zero cpu_set_t is a valid empty set; CPU_SET writes
    // within it for any cpu below CPU_SETSIZE (checked by the caller's
    // choice of 0 or 1); pid 0 names the calling thread.
    unsafe {
        let mut set: libc::cpu_set_t = std::mem::zeroed();
        libc::CPU_SET(cpu, &mut set);
        if libc::sched_setaffinity(0, std::mem::size_of::<libc::cpu_set_t>(), &set) != 0 {
            return Err(std::io::Error::last_os_error());
        }
    }
    Ok(())
}

struct Measured {
    /// Wall time per round trip.
    wall: Duration,
    /// Process CPU per round trip.
    cpu: Duration,
}

/// `n` round trips between this thread (pinned to `cpu_a`) and a helper
/// pinned to `cpu_b`.
fn ping_pong(n: u32, cpu_a: usize, cpu_b: usize) -> Result<Measured, String> {
    let io = |e: std::io::Error| e.to_string();
    let (mut to_helper_r, mut to_helper_w) = pipe().map_err(io)?;
    let (mut from_helper_r, mut from_helper_w) = pipe().map_err(io)?;
    let helper = std::thread::spawn(move || -> std::io::Result<()> {
        pin(cpu_b)?;
        let mut b = [0u8; 1];
        for _ in 0..n {
            to_helper_r.read_exact(&mut b)?;
            from_helper_w.write_all(&b)?;
        }
        Ok(())
    });
    pin(cpu_a).map_err(|e| format!("pinning to CPU {cpu_a}: {e}"))?;
    // One round trip first, so the helper is pinned and waiting.
    let mut b = [7u8; 1];
    let mut one = |b: &mut [u8; 1]| -> std::io::Result<()> {
        to_helper_w.write_all(b)?;
        from_helper_r.read_exact(b)
    };
    one(&mut b).map_err(io)?;
    let cpu0 = process_cpu();
    let t0 = Instant::now();
    for _ in 1..n {
        one(&mut b).map_err(io)?;
    }
    let wall = t0.elapsed();
    let cpu = process_cpu().saturating_sub(cpu0);
    helper
        .join()
        .map_err(|_| "the helper thread panicked".to_string())?
        .map_err(|e| format!("helper (CPU {cpu_b}): {e}"))?;
    let timed = (n - 1).max(1);
    Ok(Measured {
        wall: wall / timed,
        cpu: cpu / timed,
    })
}

fn main() -> ExitCode {
    let args = Args::parse();
    let cpus = std::thread::available_parallelism().map_or(1, |n| n.get());
    let one = match ping_pong(args.round_trips, 0, 0) {
        Ok(m) => m,
        Err(e) => {
            eprintln!("wakeprobe: {e}");
            return ExitCode::FAILURE;
        }
    };
    let across = if cpus >= 2 {
        match ping_pong(args.round_trips, 0, 1) {
            Ok(m) => Some(m),
            Err(e) => {
                eprintln!("wakeprobe: {e}");
                return ExitCode::FAILURE;
            }
        }
    } else {
        None
    };
    let us = |d: Duration| d.as_secs_f64() * 1e6;
    if args.json {
        let across_json = across.as_ref().map(|m| {
            serde_json::json!({"round_trip_us": us(m.wall), "cpu_per_round_trip_us": us(m.cpu)})
        });
        let report = serde_json::json!({
            "cpus": cpus,
            "round_trips": args.round_trips,
            "one_cpu": {"round_trip_us": us(one.wall), "cpu_per_round_trip_us": us(one.cpu)},
            "across_cpus": across_json,
        });
        println!("{report}");
    } else {
        println!(
            "pipe round trip, both threads on CPU 0: {:.1} us, {:.1} us of CPU",
            us(one.wall),
            us(one.cpu)
        );
        match across {
            Some(m) => println!(
                "pipe round trip, CPU 0 <-> CPU 1:       {:.1} us, {:.1} us of CPU",
                us(m.wall),
                us(m.cpu)
            ),
            None => println!("one CPU only: no cross-CPU measurement"),
        }
    }
    ExitCode::SUCCESS
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_round_trip_on_one_cpu_takes_time_and_cpu() {
        let m = ping_pong(200, 0, 0).unwrap();
        assert!(m.wall > Duration::ZERO, "{:?}", m.wall);
        // CPU time is counted in coarse steps, so a short run may show
        // none; never more than a second per round trip.
        assert!(m.cpu < Duration::from_secs(1), "{:?}", m.cpu);
    }
}
