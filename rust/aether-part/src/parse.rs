//! Pure parsers: PCI addresses, CPU lists and masks, mountinfo, swaps, cmdline.

use std::collections::BTreeSet;
use std::fmt;

/// A PCI address (domain:bus:device.function).
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Bdf {
    pub domain: u32,
    pub bus: u8,
    pub dev: u8,
    pub func: u8,
}

impl fmt::Display for Bdf {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{:04x}:{:02x}:{:02x}.{:x}", self.domain, self.bus, self.dev, self.func)
    }
}

fn hex_field(s: &str, what: &str, max_digits: usize, max: u32, input: &str) -> Result<u32, String> {
    if s.is_empty() || s.len() > max_digits || !s.chars().all(|c| c.is_ascii_hexdigit()) {
        return Err(format!(
            "malformed PCI address '{input}': {what} '{s}' must be 1-{max_digits} hex digits \
             (expected [DDDD:]BB:DD.F, e.g. 0000:00:04.0)"
        ));
    }
    let v = u32::from_str_radix(s, 16).unwrap();
    if v > max {
        return Err(format!(
            "malformed PCI address '{input}': {what} 0x{v:x} is out of range (max 0x{max:x})"
        ));
    }
    Ok(v)
}

impl std::str::FromStr for Bdf {
    type Err = String;
    /// Accepts `DDDD:BB:DD.F` or `BB:DD.F` (domain 0).
    fn from_str(input: &str) -> Result<Self, String> {
        let s = input.trim();
        let (rest, func) = s.rsplit_once('.').ok_or_else(|| {
            format!("malformed PCI address '{input}': missing '.function' (expected [DDDD:]BB:DD.F)")
        })?;
        let parts: Vec<&str> = rest.split(':').collect();
        let (dom, bus, dev) = match parts.as_slice() {
            [b, d] => ("0", *b, *d),
            [dm, b, d] => (*dm, *b, *d),
            _ => {
                return Err(format!(
                    "malformed PCI address '{input}': expected [DDDD:]BB:DD.F, e.g. 0000:00:04.0"
                ))
            }
        };
        Ok(Bdf {
            domain: hex_field(dom, "domain", 4, 0xffff, input)?,
            bus: hex_field(bus, "bus", 2, 0xff, input)? as u8,
            dev: hex_field(dev, "device", 2, 0x1f, input)? as u8,
            func: hex_field(func, "function", 1, 7, input)? as u8,
        })
    }
}

/// Parse a Linux cpulist ("0-3,5,8-9"). Empty or whitespace gives an empty set.
pub fn parse_cpulist(s: &str) -> Result<BTreeSet<u32>, String> {
    let mut out = BTreeSet::new();
    let s = s.trim();
    if s.is_empty() || s == "(null)" {
        return Ok(out);
    }
    for part in s.split(',') {
        let part = part.trim();
        let num = |x: &str| -> Result<u32, String> {
            x.parse::<u32>()
                .map_err(|_| format!("malformed CPU list '{s}': '{x}' is not a CPU number"))
        };
        if let Some((a, b)) = part.split_once('-') {
            // Allow the a-b:stride/group syntax's simple form only.
            let (a, b) = (num(a)?, num(b)?);
            if a > b {
                return Err(format!("malformed CPU list '{s}': range {a}-{b} is reversed"));
            }
            if b - a > 65536 {
                return Err(format!("malformed CPU list '{s}': range {a}-{b} is too large"));
            }
            out.extend(a..=b);
        } else {
            out.insert(num(part)?);
        }
    }
    Ok(out)
}

/// Format a CPU set as a compact cpulist ("0-3,5").
pub fn format_cpulist(set: &BTreeSet<u32>) -> String {
    let mut out = Vec::new();
    let mut it = set.iter().copied().peekable();
    while let Some(start) = it.next() {
        let mut end = start;
        while it.peek() == Some(&(end + 1)) {
            end = it.next().unwrap();
        }
        out.push(if start == end { start.to_string() } else { format!("{start}-{end}") });
    }
    out.join(",")
}

/// Format a CPU set as a /proc/irq mask ("ff" or "1,00000000" with 32-bit groups).
pub fn format_cpumask(set: &BTreeSet<u32>) -> String {
    let max = set.iter().next_back().copied().unwrap_or(0);
    let words = (max / 32 + 1) as usize;
    let mut w = vec![0u32; words];
    for &c in set {
        w[(c / 32) as usize] |= 1 << (c % 32);
    }
    let mut parts: Vec<String> = w.iter().rev().map(|x| format!("{x:08x}")).collect();
    // The kernel accepts leading zeros; keep the top word short for readability.
    parts[0] = format!("{:x}", w[words - 1]);
    parts.join(",")
}

/// Parse a /proc/irq mask ("00000000,0000000f") into a CPU set.
pub fn parse_cpumask(s: &str) -> Result<BTreeSet<u32>, String> {
    let mut out = BTreeSet::new();
    let words: Vec<&str> = s.trim().split(',').collect();
    for (i, w) in words.iter().rev().enumerate() {
        let v = u32::from_str_radix(w, 16).map_err(|_| format!("malformed CPU mask '{s}'"))?;
        for b in 0..32 {
            if v & (1 << b) != 0 {
                out.insert(i as u32 * 32 + b);
            }
        }
    }
    Ok(out)
}

/// One line of /proc/self/mountinfo, the fields we use.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize)]
pub struct Mount {
    pub major: u32,
    pub minor: u32,
    pub mount_point: String,
    pub fstype: String,
    pub source: String,
}

fn unescape_octal(s: &str) -> String {
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        if b[i] == b'\\' && i + 3 < b.len() && b[i + 1..i + 4].iter().all(|c| (b'0'..=b'7').contains(c)) {
            let v = (b[i + 1] - b'0') * 64 + (b[i + 2] - b'0') * 8 + (b[i + 3] - b'0');
            out.push(v);
            i += 4;
        } else {
            out.push(b[i]);
            i += 1;
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// Parse /proc/self/mountinfo. Malformed lines are skipped.
pub fn parse_mountinfo(text: &str) -> Vec<Mount> {
    let mut out = Vec::new();
    for line in text.lines() {
        let f: Vec<&str> = line.split(' ').collect();
        if f.len() < 10 {
            continue;
        }
        let Some((maj, min)) = f[2].split_once(':') else { continue };
        let (Ok(major), Ok(minor)) = (maj.parse(), min.parse()) else { continue };
        let Some(sep) = f.iter().skip(6).position(|x| *x == "-") else { continue };
        let sep = sep + 6;
        if f.len() < sep + 3 {
            continue;
        }
        out.push(Mount {
            major,
            minor,
            mount_point: unescape_octal(f[4]),
            fstype: f[sep + 1].to_string(),
            source: unescape_octal(f[sep + 2]),
        });
    }
    out
}

/// Parse /proc/swaps; returns the device/file names of active swap areas.
pub fn parse_swaps(text: &str) -> Vec<String> {
    text.lines()
        .skip(1)
        .filter_map(|l| l.split_whitespace().next())
        .map(unescape_octal)
        .collect()
}

/// Find `key=value` on a kernel command line; the last occurrence wins.
pub fn cmdline_param(cmdline: &str, key: &str) -> Option<String> {
    let mut found = None;
    for tok in cmdline.split_whitespace() {
        if let Some(v) = tok.strip_prefix(key).and_then(|r| r.strip_prefix('=')) {
            found = Some(v.to_string());
        } else if tok == key {
            found = Some(String::new());
        }
    }
    found
}

/// CPUs named by isolcpus=, which may carry flags ("isolcpus=nohz,domain,2-3").
pub fn isolcpus_list(v: &str) -> BTreeSet<u32> {
    let list: Vec<&str> = v
        .split(',')
        .filter(|p| p.chars().next().is_some_and(|c| c.is_ascii_digit()))
        .collect();
    parse_cpulist(&list.join(",")).unwrap_or_default()
}

/// Parse a size such as "2M", "1G", "2048kB", "2097152" into kB.
pub fn parse_size_kb(s: &str) -> Result<u64, String> {
    let t = s.trim();
    let lower = t.to_ascii_lowercase();
    let (num, mul) = if let Some(n) = lower.strip_suffix("kb").or_else(|| lower.strip_suffix('k')) {
        (n, 1)
    } else if let Some(n) = lower.strip_suffix("mb").or_else(|| lower.strip_suffix('m')) {
        (n, 1024)
    } else if let Some(n) = lower.strip_suffix("gb").or_else(|| lower.strip_suffix('g')) {
        (n, 1024 * 1024)
    } else {
        return t
            .parse::<u64>()
            .map(|b| b / 1024)
            .map_err(|_| format!("malformed size '{s}' (use e.g. 2M or 1G)"));
    };
    num.trim()
        .parse::<u64>()
        .map(|n| n * mul)
        .map_err(|_| format!("malformed size '{s}' (use e.g. 2M or 1G)"))
}

/// Parse a byte count such as "4096", "4k", "128K", "16M" or "1G" (binary multiples).
pub fn parse_bytes(s: &str) -> Result<u64, String> {
    let t = s.trim().to_ascii_lowercase();
    let t = t.strip_suffix("ib").or_else(|| t.strip_suffix('b')).unwrap_or(&t);
    let (num, shift) = match t.as_bytes().last() {
        Some(b'k') => (&t[..t.len() - 1], 10),
        Some(b'm') => (&t[..t.len() - 1], 20),
        Some(b'g') => (&t[..t.len() - 1], 30),
        _ => (t, 0),
    };
    num.parse::<u64>()
        .ok()
        .and_then(|n| n.checked_mul(1 << shift))
        .ok_or_else(|| format!("malformed size '{s}' (use e.g. 4096, 4k, 128k or 16M)"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn byte_sizes() {
        assert_eq!(parse_bytes("4096"), Ok(4096));
        assert_eq!(parse_bytes("4k"), Ok(4096));
        assert_eq!(parse_bytes("128KiB"), Ok(128 << 10));
        assert_eq!(parse_bytes("16M"), Ok(16 << 20));
        assert_eq!(parse_bytes("1g"), Ok(1 << 30));
        assert!(parse_bytes("4x").unwrap_err().contains("malformed size '4x'"));
        assert!(parse_bytes("").is_err());
        assert!(parse_bytes("99999999999999999999g").is_err());
    }

    #[test]
    fn bdf_full_and_short() {
        let b: Bdf = "0000:00:04.0".parse().unwrap();
        assert_eq!(b, Bdf { domain: 0, bus: 0, dev: 4, func: 0 });
        let b: Bdf = "3a:1F.7".parse().unwrap();
        assert_eq!(b.to_string(), "0000:3a:1f.7");
        assert_eq!(b.bus, 0x3a);
        assert_eq!("ABCD:01:02.3".parse::<Bdf>().unwrap().to_string(), "abcd:01:02.3");
    }

    #[test]
    fn bdf_rejects_malformed() {
        for bad in ["", "00:04", "0000:00:04", "00:20.0", "00:04.8", "zz:00.0", "0:0:0:0.0",
                    "00000:00:04.0", "000:0g:04.0", "00:04.", ":04.0", "00:04.0x"] {
            let e = bad.parse::<Bdf>().unwrap_err();
            assert!(e.contains("malformed PCI address"), "{bad}: {e}");
            assert!(e.contains(&format!("'{bad}'")), "message names the input: {e}");
        }
        assert!("00:20.0".parse::<Bdf>().unwrap_err().contains("device 0x20 is out of range"));
    }

    #[test]
    fn cpulist_roundtrip() {
        let s = parse_cpulist("0-3,5,7-8\n").unwrap();
        assert_eq!(s.iter().copied().collect::<Vec<_>>(), vec![0, 1, 2, 3, 5, 7, 8]);
        assert_eq!(format_cpulist(&s), "0-3,5,7-8");
        assert!(parse_cpulist("").unwrap().is_empty());
        assert!(parse_cpulist("(null)\n").unwrap().is_empty());
        assert_eq!(format_cpulist(&parse_cpulist("1").unwrap()), "1");
        for bad in ["a", "1-", "3-1", "1,,2", "-1", "1-2-3"] {
            assert!(parse_cpulist(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn cpumask_roundtrip() {
        let s: BTreeSet<u32> = [0, 1, 33].into_iter().collect();
        assert_eq!(format_cpumask(&s), "2,00000003");
        assert_eq!(parse_cpumask("00000002,00000003").unwrap(), s);
        assert_eq!(parse_cpumask("f\n").unwrap(), parse_cpulist("0-3").unwrap());
        assert_eq!(format_cpumask(&parse_cpulist("0-3").unwrap()), "f");
    }

    #[test]
    fn mountinfo_parses_fields_and_escapes() {
        let t = "22 1 0:21 / / rw,relatime shared:1 - ext4 /dev/root rw\n\
                 35 22 259:1 / /mnt/my\\040data rw,relatime - ext2 /dev/nvme0n1p1 rw\n\
                 36 22 253:0 / /srv rw master:3 shared:9 - xfs /dev/mapper/x rw\n\
                 garbage line\n";
        let m = parse_mountinfo(t);
        assert_eq!(m.len(), 3);
        assert_eq!((m[1].major, m[1].minor), (259, 1));
        assert_eq!(m[1].mount_point, "/mnt/my data");
        assert_eq!(m[1].fstype, "ext2");
        assert_eq!(m[2].source, "/dev/mapper/x");
        assert_eq!(m[2].fstype, "xfs");
    }

    #[test]
    fn swaps_and_cmdline() {
        let s = "Filename\tType\tSize\tUsed\tPriority\n/dev/nvme0n1p2 partition 1024 0 -2\n/swap\\040file file 8 0 -3\n";
        assert_eq!(parse_swaps(s), vec!["/dev/nvme0n1p2", "/swap file"]);
        let c = "console=ttyS0 nohz_full=2-3 rcu_nocbs=2 quiet isolcpus=nohz,domain,2-3 nohz_full=1-3";
        assert_eq!(cmdline_param(c, "nohz_full").as_deref(), Some("1-3"));
        assert_eq!(cmdline_param(c, "rcu_nocbs").as_deref(), Some("2"));
        assert_eq!(cmdline_param(c, "quiet").as_deref(), Some(""));
        assert_eq!(cmdline_param(c, "intel_iommu"), None);
        assert_eq!(isolcpus_list("nohz,domain,2-3"), parse_cpulist("2-3").unwrap());
    }

    #[test]
    fn sizes() {
        assert_eq!(parse_size_kb("2M").unwrap(), 2048);
        assert_eq!(parse_size_kb("1G").unwrap(), 1048576);
        assert_eq!(parse_size_kb("2048kB").unwrap(), 2048);
        assert!(parse_size_kb("2X").is_err());
    }
}
