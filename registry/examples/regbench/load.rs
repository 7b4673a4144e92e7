//! Blob data for the pushes, and what the machine and the server under test
//! did meanwhile (`/proc`).

use bytes::Bytes;
use sha2::Digest as _;

/// Appends `seed`'s deterministic pseudo-random MiB number `i` to `out`.
/// Generated before the clock starts, so the client spends no CPU on data
/// while the server is timed.
fn push_mib(out: &mut Vec<u8>, seed: u64, i: u64) {
    let mut x = seed.wrapping_mul(0x9E37_79B9_7F4A_7C15)
        ^ i.wrapping_add(1).wrapping_mul(0xD1B5_4A32_D192_ED03);
    for _ in 0..(1 << 17) {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        out.extend_from_slice(&x.to_le_bytes());
    }
}

const MIB: usize = 1 << 20;

/// A blob of `mib` MiB in one buffer, and its digest. Every body a push
/// sends (the whole blob, a 16 MiB chunk, the 1 MiB pieces of a streamed
/// PATCH) is a slice of that buffer: no copy is made while the clock runs,
/// so a push times the server and the network, not the client's memcpy.
pub struct Blob {
    data: Bytes,
    pub digest: String,
}

impl Blob {
    pub fn new(seed: u64, size_mib: u64) -> Blob {
        let mut data = Vec::with_capacity(size_mib as usize * MIB);
        for i in 0..size_mib {
            push_mib(&mut data, seed, i);
        }
        Blob::small(data)
    }

    pub fn small(data: Vec<u8>) -> Blob {
        let digest = format!("sha256:{}", hex::encode(sha2::Sha256::digest(&data)));
        Blob {
            data: Bytes::from(data),
            digest,
        }
    }

    pub fn len(&self) -> u64 {
        self.data.len() as u64
    }

    pub fn whole(&self) -> Bytes {
        self.data.clone()
    }

    /// The blob in consecutive slices of `size` bytes (the last shorter).
    pub fn slices(&self, size: usize) -> Vec<Bytes> {
        (0..self.data.len())
            .step_by(size)
            .map(|at| self.data.slice(at..(at + size).min(self.data.len())))
            .collect()
    }

    /// 1 MiB pieces, as a streamed body arrives.
    pub fn pieces(&self) -> Vec<Bytes> {
        self.slices(MIB)
    }
}

/// CPU time and bytes read of a process, from `/proc/<pid>`.
#[derive(Clone, Copy, Default)]
pub struct ProcSample {
    pub cpu_seconds: f64,
    /// `rchar`: bytes the process read through read-like system calls
    /// (page cache or disk), the storage reads of a file-backed registry.
    pub read_bytes: u64,
}

pub fn sample_process(pid: Option<u32>) -> Option<ProcSample> {
    let pid = pid?;
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // Fields after the command name (which may hold spaces) in parentheses.
    let after = &stat[stat.rfind(')')? + 2..];
    let fields: Vec<&str> = after.split(' ').collect();
    let ticks = |i: usize| fields.get(i).and_then(|f| f.parse::<f64>().ok());
    // utime and stime are fields 14 and 15 of the whole line: 11 and 12 here.
    let tck = unsafe { libc::sysconf(libc::_SC_CLK_TCK) } as f64;
    let cpu_seconds = (ticks(11)? + ticks(12)?) / tck;
    let io = std::fs::read_to_string(format!("/proc/{pid}/io")).ok()?;
    let read_bytes = io
        .lines()
        .find_map(|l| l.strip_prefix("rchar: "))
        .and_then(|v| v.trim().parse().ok())?;
    Some(ProcSample {
        cpu_seconds,
        read_bytes,
    })
}

/// The fraction of the machine's CPU time not idle over `window`: the
/// registry under test is idle when this is sampled, so a high figure means
/// something else is running and the figures that follow are suspect.
pub async fn machine_busy(window: std::time::Duration) -> f64 {
    fn read() -> Option<(u64, u64)> {
        let text = std::fs::read_to_string("/proc/stat").ok()?;
        let cpu = text.lines().next()?;
        let v: Vec<u64> = cpu
            .split_whitespace()
            .skip(1)
            .filter_map(|f| f.parse().ok())
            .collect();
        let idle = v.get(3)? + v.get(4).unwrap_or(&0);
        Some((v.iter().sum(), idle))
    }
    let Some((t0, i0)) = read() else { return 0.0 };
    tokio::time::sleep(window).await;
    let Some((t1, i1)) = read() else { return 0.0 };
    let total = t1.saturating_sub(t0).max(1);
    1.0 - i1.saturating_sub(i0) as f64 / total as f64
}

pub fn median(v: &mut [f64]) -> f64 {
    v.sort_by(|a, b| a.total_cmp(b));
    match v.len() {
        0 => f64::NAN,
        n if n % 2 == 1 => v[n / 2],
        n => (v[n / 2 - 1] + v[n / 2]) / 2.0,
    }
}

/// The `q` quantile (0..=1) of sorted `v`, nearest rank.
pub fn quantile(sorted: &[f64], q: f64) -> f64 {
    if sorted.is_empty() {
        return f64::NAN;
    }
    let rank = ((q * sorted.len() as f64).ceil() as usize).clamp(1, sorted.len());
    sorted[rank - 1]
}
