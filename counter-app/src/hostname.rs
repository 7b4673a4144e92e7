//! The name of the replica that answers, shown to clients so a load-balanced
//! deployment can be seen spreading requests.

/// The kernel's hostname (the container ID's prefix under Docker, the pod name
/// under Kubernetes). Read from /proc so it needs no libc call; `HOSTNAME`
/// covers systems without /proc.
pub fn hostname() -> String {
    std::fs::read_to_string("/proc/sys/kernel/hostname")
        .ok()
        .map(|s| s.trim().to_owned())
        .filter(|s| !s.is_empty())
        .or_else(|| std::env::var("HOSTNAME").ok().filter(|s| !s.is_empty()))
        .unwrap_or_else(|| "unknown".to_owned())
}

#[cfg(test)]
mod tests {
    #[test]
    fn hostname_is_not_empty_and_single_line() {
        let name = super::hostname();
        assert!(!name.is_empty());
        assert!(!name.contains('\n'));
    }
}
