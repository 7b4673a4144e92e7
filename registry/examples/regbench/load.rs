//! Blob data for the pushes, and what the machine and the server under test
//! did meanwhile (`/proc`).

use bytes::Bytes;
use sha2::Digest as _;

/// Deterministic pseudo-random MiB: `seed` picks the blob, `i` the MiB.
/// Generated before the clock starts, so the client spends no CPU on data
/// while the server is timed.
pub fn mib(seed: u64, i: u64) -> Bytes {
    let mut x = seed.wrapping_mul(0x9E37_79B9_7F4A_7C15)
        ^ i.wrapping_add(1).wrapping_mul(0xD1B5_4A32_D192_ED03);
    let mut out = Vec::with_capacity(1 << 20);
    for _ in 0..(1 << 17) {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        out.extend_from_slice(&x.to_le_bytes());
    }
    Bytes::from(out)
}

/// A blob of `mib` MiB (one `Bytes` per MiB) and its digest.
pub struct Blob {
    pub pieces: Vec<Bytes>,
    pub digest: String,
}

impl Blob {
    pub fn new(seed: u64, size_mib: u64) -> Blob {
        let pieces: Vec<Bytes> = (0..size_mib).map(|i| mib(seed, i)).collect();
        let mut h = sha2::Sha256::new();
        for p in &pieces {
            h.update(p);
        }
        Blob {
            pieces,
            digest: format!("sha256:{}", hex::encode(h.finalize())),
        }
    }

    pub fn small(data: Vec<u8>) -> Blob {
        let digest = format!("sha256:{}", hex::encode(sha2::Sha256::digest(&data)));
        Blob {
            pieces: vec![Bytes::from(data)],
            digest,
        }
    }

    pub fn len(&self) -> u64 {
        self.pieces.iter().map(|p| p.len() as u64).sum()
    }

    pub fn whole(&self) -> Bytes {
        if self.pieces.len() == 1 {
            return self.pieces[0].clone();
        }
        let mut v = Vec::with_capacity(self.len() as usize);
        for p in &self.pieces {
            v.extend_from_slice(p);
        }
        Bytes::from(v)
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
