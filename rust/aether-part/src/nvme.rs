//! NVMe command encoding and the device-independent half of `bench`: read patterns, PRP lists,
//! status decoding, the DMA layout, latency percentiles and the self-checking data pattern.
//!
//! Nothing here touches a device, so all of it is tested on the host; `vfio.rs` drives the
//! controller with it.

use serde::Serialize;

pub const PAGE: u64 = 4096;
/// Largest transfer `bench` issues: one PRP list page (512 entries) per command.
pub const MAX_BS: u64 = 2 << 20;
/// Deepest queue `bench` creates.
pub const MAX_QD: u32 = 1024;

/// Admin and NVM opcodes used here.
pub mod op {
    pub const DELETE_SQ: u8 = 0x00;
    pub const CREATE_SQ: u8 = 0x01;
    pub const DELETE_CQ: u8 = 0x04;
    pub const CREATE_CQ: u8 = 0x05;
    pub const IDENTIFY: u8 = 0x06;
    pub const SET_FEATURES: u8 = 0x09;
    pub const READ: u8 = 0x02;
}

/// A 64-byte submission queue entry as 16 little-endian dwords.
pub type Sqe = [u32; 16];

fn sqe(opcode: u8, cid: u16, nsid: u32, prp1: u64, prp2: u64) -> Sqe {
    let mut e = [0u32; 16];
    e[0] = opcode as u32 | ((cid as u32) << 16);
    e[1] = nsid;
    e[6] = prp1 as u32;
    e[7] = (prp1 >> 32) as u32;
    e[8] = prp2 as u32;
    e[9] = (prp2 >> 32) as u32;
    e
}

/// Identify with CNS `cns` (0 = namespace `nsid`, 1 = controller) into the page at `prp1`.
pub fn identify_cmd(cid: u16, cns: u32, nsid: u32, prp1: u64) -> Sqe {
    let mut e = sqe(op::IDENTIFY, cid, nsid, prp1, 0);
    e[10] = cns;
    e
}

/// Set Features, Number of Queues: ask for `n` I/O submission and `n` completion queues.
pub fn set_num_queues_cmd(cid: u16, n: u16) -> Sqe {
    let mut e = sqe(op::SET_FEATURES, cid, 0, 0, 0);
    e[10] = 0x07;
    let z = (n - 1) as u32;
    e[11] = (z << 16) | z;
    e
}

/// Create I/O Completion Queue `qid` of `size` entries at `iova`, physically contiguous,
/// interrupts disabled: `bench` polls it.
pub fn create_cq_cmd(cid: u16, qid: u16, size: u32, iova: u64) -> Sqe {
    let mut e = sqe(op::CREATE_CQ, cid, 0, iova, 0);
    e[10] = ((size - 1) << 16) | qid as u32;
    e[11] = 1; // PC=1, IEN=0, IV=0
    e
}

/// Create I/O Submission Queue `qid` of `size` entries at `iova`, completing to `cqid`.
pub fn create_sq_cmd(cid: u16, qid: u16, size: u32, iova: u64, cqid: u16) -> Sqe {
    let mut e = sqe(op::CREATE_SQ, cid, 0, iova, 0);
    e[10] = ((size - 1) << 16) | qid as u32;
    e[11] = ((cqid as u32) << 16) | 1; // PC=1, QPRIO=urgent/ignored under round robin
    e
}

pub fn delete_queue_cmd(cid: u16, opcode: u8, qid: u16) -> Sqe {
    let mut e = sqe(opcode, cid, 0, 0, 0);
    e[10] = qid as u32;
    e
}

/// NVM Read of `nlb` (>= 1) logical blocks from `slba` of namespace `nsid`.
pub fn read_cmd(cid: u16, nsid: u32, slba: u64, nlb: u32, prp1: u64, prp2: u64) -> Sqe {
    let mut e = sqe(op::READ, cid, nsid, prp1, prp2);
    e[10] = slba as u32;
    e[11] = (slba >> 32) as u32;
    e[12] = nlb - 1;
    e
}

/// PRP entries for a transfer of `len` bytes into the page-aligned buffer at `buf`, with the
/// PRP list (if one is needed) at `list`: (PRP1, PRP2, list entries). One page needs PRP1 only,
/// two pages put the second page in PRP2, more pages put the list's address in PRP2.
pub fn prps(buf: u64, len: u64, list: u64) -> (u64, u64, Vec<u64>) {
    debug_assert!(buf % PAGE == 0 && len > 0);
    let pages = len.div_ceil(PAGE);
    match pages {
        1 => (buf, 0, vec![]),
        2 => (buf, buf + PAGE, vec![]),
        _ => (buf, list, (1..pages).map(|i| buf + i * PAGE).collect()),
    }
}

/// A completion's status field (CQE dword 3, bits 31:17).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub struct Status {
    pub sct: u8,
    pub sc: u8,
    pub more: bool,
    pub dnr: bool,
}

impl Status {
    pub fn from_dw3(dw3: u32) -> Status {
        let f = dw3 >> 17;
        Status { sct: ((f >> 8) & 7) as u8, sc: (f & 0xff) as u8, more: f & (1 << 13) != 0, dnr: f & (1 << 14) != 0 }
    }
    pub fn ok(&self) -> bool {
        self.sct == 0 && self.sc == 0
    }
    /// The NVMe name of the common codes, for messages.
    pub fn name(&self) -> &'static str {
        match (self.sct, self.sc) {
            (0, 0x00) => "Successful Completion",
            (0, 0x01) => "Invalid Command Opcode",
            (0, 0x02) => "Invalid Field in Command",
            (0, 0x03) => "Command ID Conflict",
            (0, 0x04) => "Data Transfer Error",
            (0, 0x06) => "Internal Error",
            (0, 0x07) => "Command Abort Requested",
            (0, 0x08) => "Command Aborted due to SQ Deletion",
            (0, 0x0b) => "Invalid Namespace or Format",
            (0, 0x13) => "Invalid PRP Offset",
            (0, 0x80) => "LBA Out of Range",
            (0, 0x81) => "Capacity Exceeded",
            (0, 0x82) => "Namespace Not Ready",
            (1, 0x00) => "Completion Queue Invalid",
            (1, 0x01) => "Invalid Queue Identifier",
            (1, 0x02) => "Invalid Queue Size",
            (1, 0x0c) => "Invalid Queue Deletion",
            (2, 0x81) => "Unrecovered Read Error",
            (2, 0x86) => "Access Denied",
            (0, _) => "generic command status",
            (1, _) => "command specific status",
            (2, _) => "media and data integrity error",
            (3, _) => "path related status",
            (7, _) => "vendor specific",
            _ => "reserved status code type",
        }
    }
}

impl std::fmt::Display for Status {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "SCT 0x{:x} SC 0x{:02x} ({}){}", self.sct, self.sc, self.name(), if self.dnr { ", DNR" } else { "" })
    }
}

/// What Identify Namespace says about the namespace `bench` reads.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub struct Namespace {
    pub nsid: u32,
    pub blocks: u64,
    pub lba_bytes: u64,
}

/// Decode an Identify Namespace data structure: NSZE, and the LBA size of the format FLBAS
/// selects. `None` for an inactive namespace (NSZE 0) or a nonsensical LBA size.
pub fn parse_namespace(nsid: u32, d: &[u8]) -> Option<Namespace> {
    let blocks = u64::from_le_bytes(d[0..8].try_into().ok()?);
    let fmt = (d[26] & 0xf) as usize;
    let lbads = d[128 + 4 * fmt + 2];
    if blocks == 0 || !(9..=16).contains(&lbads) {
        return None;
    }
    Some(Namespace { nsid, blocks, lba_bytes: 1 << lbads })
}

/// Read pattern of `bench`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Pattern {
    Seq,
    Random,
    /// Each read starts N blocks (of the transfer size) after the previous one.
    Stride(u64),
}

impl std::str::FromStr for Pattern {
    type Err = String;
    fn from_str(s: &str) -> Result<Pattern, String> {
        match s {
            "seq" => Ok(Pattern::Seq),
            "random" => Ok(Pattern::Random),
            _ => match s.strip_prefix("stride:").map(|n| n.parse::<u64>()) {
                Some(Ok(n)) if n >= 1 => Ok(Pattern::Stride(n)),
                _ => Err(format!("unknown pattern '{s}': expected seq, random or stride:N with N >= 1")),
            },
        }
    }
}

impl std::fmt::Display for Pattern {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Pattern::Seq => write!(f, "seq"),
            Pattern::Random => write!(f, "random"),
            Pattern::Stride(n) => write!(f, "stride:{n}"),
        }
    }
}

/// The byte offsets a pattern visits inside a span of `slots` transfers of `bs` bytes
/// starting at `base`. Sequential and strided patterns wrap at the end of the span; a stride
/// that shares a factor with the slot count moves on by one slot per lap so every slot is read.
pub struct Offsets {
    pattern: Pattern,
    base: u64,
    bs: u64,
    slots: u64,
    next: u64,
    lap_start: u64,
    visited: u64,
    rng: u64,
}

impl Offsets {
    pub fn new(pattern: Pattern, base: u64, bs: u64, span: u64, seed: u64) -> Offsets {
        let slots = (span / bs).max(1);
        Offsets { pattern, base, bs, slots, next: 0, lap_start: 0, visited: 0, rng: seed | 1 }
    }
    pub fn slots(&self) -> u64 {
        self.slots
    }
}

impl Iterator for Offsets {
    type Item = u64;
    fn next(&mut self) -> Option<u64> {
        let slot = match self.pattern {
            Pattern::Random => {
                // xorshift64*: cheap and reproducible from the seed.
                self.rng ^= self.rng >> 12;
                self.rng ^= self.rng << 25;
                self.rng ^= self.rng >> 27;
                (self.rng.wrapping_mul(0x2545_f491_4f6c_dd1d) >> 11) % self.slots
            }
            Pattern::Seq | Pattern::Stride(_) => {
                let step = if let Pattern::Stride(n) = self.pattern { n % self.slots } else { 1 };
                let s = self.next;
                self.visited += 1;
                self.next = if self.visited == self.slots {
                    (self.visited, self.lap_start) = (0, 0);
                    0
                } else {
                    let n = (s + step.max(1)) % self.slots;
                    if n == self.lap_start {
                        self.lap_start += 1;
                        self.lap_start
                    } else {
                        n
                    }
                };
                s
            }
        };
        Some(self.base + slot * self.bs)
    }
}

/// Where everything `bench` shares with the controller lives in its one DMA buffer, as byte
/// offsets (the IOVA is the buffer's IOVA plus the offset).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Layout {
    pub admin_sq: u64,
    pub admin_cq: u64,
    pub identify: u64,
    pub io_sq: u64,
    pub io_cq: u64,
    pub prp_lists: u64,
    pub data: u64,
    pub len: u64,
    pub qsize: u32,
}

pub const ADMIN_QSIZE: u32 = 8;

impl Layout {
    /// `qd` commands in flight of `bs` bytes each; the I/O queues get `qd + 1` entries (a full
    /// queue keeps one slot empty).
    pub fn new(qd: u32, bs: u64) -> Layout {
        let pages = |b: u64| b.div_ceil(PAGE) * PAGE;
        let qsize = qd + 1;
        let admin_sq = 0;
        let admin_cq = admin_sq + pages(64 * ADMIN_QSIZE as u64);
        let identify = admin_cq + pages(16 * ADMIN_QSIZE as u64);
        let io_sq = identify + PAGE;
        let io_cq = io_sq + pages(64 * qsize as u64);
        let prp_lists = io_cq + pages(16 * qsize as u64);
        let data = prp_lists + PAGE * qd as u64;
        let len = data + pages(bs) * qd as u64;
        Layout { admin_sq, admin_cq, identify, io_sq, io_cq, prp_lists, data, len, qsize }
    }
    pub fn data_of(&self, slot: u32, bs: u64) -> u64 {
        self.data + slot as u64 * bs.div_ceil(PAGE) * PAGE
    }
    pub fn prp_list_of(&self, slot: u32) -> u64 {
        self.prp_lists + slot as u64 * PAGE
    }
}

/// Doorbell offsets in BAR0 for queue `qid` with stride `4 << dstrd`: (SQ tail, CQ head).
pub fn doorbells(qid: u16, dstrd: u32) -> (usize, usize) {
    let stride = 4usize << dstrd;
    (0x1000 + 2 * qid as usize * stride, 0x1000 + (2 * qid as usize + 1) * stride)
}

/// Latency percentiles in microseconds (nearest rank on the sorted samples).
#[derive(Debug, Clone, Copy, Default, PartialEq, Serialize)]
pub struct Latency {
    pub mean_us: f64,
    pub p50_us: f64,
    pub p99_us: f64,
    pub p999_us: f64,
    pub max_us: f64,
}

pub fn latency(ns: &mut [u64]) -> Latency {
    if ns.is_empty() {
        return Latency::default();
    }
    ns.sort_unstable();
    // Percentile in per mille, integer arithmetic: (999 * 1000) / 1000 must be exactly 999.
    let rank = |permille: usize| {
        let k = (permille * ns.len()).div_ceil(1000);
        ns[k.clamp(1, ns.len()) - 1] as f64 / 1000.0
    };
    Latency {
        mean_us: ns.iter().sum::<u64>() as f64 / ns.len() as f64 / 1000.0,
        p50_us: rank(500),
        p99_us: rank(990),
        p999_us: rank(999),
        max_us: *ns.last().unwrap() as f64 / 1000.0,
    }
}

/// CRC-32 (IEEE 802.3, reflected, as zlib's crc32).
pub fn crc32(data: &[u8]) -> u32 {
    let mut c = !0u32;
    for &b in data {
        c ^= b as u32;
        for _ in 0..8 {
            c = (c >> 1) ^ (0xedb8_8320 & (c & 1).wrapping_neg());
        }
    }
    !c
}

/// Size of one self-checking block of the `--verify-crc` pattern.
pub const CHECK_BLOCK: usize = 4096;

/// Fill `buf` (a multiple of [`CHECK_BLOCK`]) with the self-checking pattern for device byte
/// offset `offset`: each 4 KiB block holds its own byte offset (u64 LE), filler derived from
/// it, and a CRC-32 of the first 4092 bytes in its last 4. A block read back from the wrong
/// place, torn, stale or zero fails [`check_block`].
pub fn fill_pattern(buf: &mut [u8], offset: u64) {
    for (i, b) in buf.chunks_exact_mut(CHECK_BLOCK).enumerate() {
        let off = offset + (i * CHECK_BLOCK) as u64;
        let mut x = off ^ 0x6165_7468_6572_2121; // "aether!!"
        for w in b[..CHECK_BLOCK - 4].chunks_exact_mut(8) {
            w.copy_from_slice(&x.to_le_bytes());
            x = x.rotate_left(7).wrapping_add(0x9e37_79b9_7f4a_7c15);
        }
        b[..8].copy_from_slice(&off.to_le_bytes());
        let c = crc32(&b[..CHECK_BLOCK - 4]);
        b[CHECK_BLOCK - 4..].copy_from_slice(&c.to_le_bytes());
    }
}

/// Check one pattern block expected at device byte offset `offset`.
pub fn check_block(b: &[u8], offset: u64) -> Result<(), String> {
    let crc = u32::from_le_bytes(b[CHECK_BLOCK - 4..].try_into().unwrap());
    if crc32(&b[..CHECK_BLOCK - 4]) != crc {
        return Err(format!("block at byte {offset}: CRC mismatch (not the pattern, or torn)"));
    }
    let tag = u64::from_le_bytes(b[..8].try_into().unwrap());
    if tag != offset {
        return Err(format!("block at byte {offset} holds the pattern block of byte {tag}"));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn command_encoding() {
        let r = read_cmd(5, 1, 0x1_0000_0002, 32, 0x1000_0000, 0x2000_0000);
        assert_eq!(r[0], 0x0005_0002);
        assert_eq!(r[1], 1);
        assert_eq!((r[6], r[7], r[8], r[9]), (0x1000_0000, 0, 0x2000_0000, 0));
        assert_eq!((r[10], r[11], r[12]), (2, 1, 31), "SLBA split in two dwords, NLB 0-based");
        let c = create_cq_cmd(1, 1, 33, 0xabc000);
        assert_eq!((c[0] & 0xff, c[10], c[11]), (0x05, (32 << 16) | 1, 1), "PC set, interrupts off");
        let s = create_sq_cmd(2, 1, 33, 0xdef000, 1);
        assert_eq!((s[0] & 0xff, s[10], s[11]), (0x01, (32 << 16) | 1, (1 << 16) | 1));
        assert_eq!(delete_queue_cmd(3, op::DELETE_SQ, 1)[10], 1);
        let n = set_num_queues_cmd(4, 1);
        assert_eq!((n[10], n[11]), (7, 0));
        let i = identify_cmd(6, 0, 1, 0x5000);
        assert_eq!((i[0] & 0xff, i[1], i[10]), (0x06, 1, 0));
    }

    #[test]
    fn prp_rules() {
        assert_eq!(prps(0x10000, 4096, 0x9000), (0x10000, 0, vec![]));
        assert_eq!(prps(0x10000, 8192, 0x9000), (0x10000, 0x11000, vec![]));
        let (p1, p2, l) = prps(0x10000, 128 << 10, 0x9000);
        assert_eq!((p1, p2, l.len()), (0x10000, 0x9000, 31));
        assert_eq!((l[0], l[30]), (0x11000, 0x10000 + 31 * 4096));
    }

    #[test]
    fn status_decoding() {
        // Phase bit (16) and the command id do not leak into the status.
        let dw3 = (1 << 16) | (0x80 << 17) | 7;
        let s = Status::from_dw3(dw3);
        assert_eq!((s.sct, s.sc, s.dnr, s.more), (0, 0x80, false, false));
        assert_eq!(s.to_string(), "SCT 0x0 SC 0x80 (LBA Out of Range)");
        let s = Status::from_dw3((1u32 << 31) | (1 << 25) | (0x01 << 17));
        assert_eq!((s.sct, s.sc, s.dnr), (1, 1, true));
        assert!(s.to_string().contains("(Invalid Queue Identifier), DNR"));
        assert!(Status::from_dw3(1 << 16).ok());
    }

    #[test]
    fn namespace_decoding() {
        let mut d = vec![0u8; 4096];
        d[0..8].copy_from_slice(&524288u64.to_le_bytes());
        d[26] = 1; // format 1
        d[128 + 4 + 2] = 12; // LBAF1: 4096-byte blocks
        d[128 + 2] = 9;
        assert_eq!(parse_namespace(1, &d), Some(Namespace { nsid: 1, blocks: 524288, lba_bytes: 4096 }));
        d[26] = 0;
        assert_eq!(parse_namespace(1, &d).unwrap().lba_bytes, 512);
        d[0..8].copy_from_slice(&0u64.to_le_bytes());
        assert_eq!(parse_namespace(1, &d), None, "NSZE 0: inactive namespace");
    }

    #[test]
    fn patterns_parse_and_visit() {
        assert_eq!("seq".parse(), Ok(Pattern::Seq));
        assert_eq!("stride:8".parse(), Ok(Pattern::Stride(8)));
        assert!("stride:0".parse::<Pattern>().is_err());
        assert!("zigzag".parse::<Pattern>().unwrap_err().contains("zigzag"));
        let v: Vec<u64> = Offsets::new(Pattern::Seq, 4096, 4096, 3 * 4096, 1).take(4).collect();
        assert_eq!(v, [4096, 8192, 12288, 4096], "wraps at the span end");
        // Stride 2 over 4 slots: 0 2, then the next lap starts one further: 1 3, then 0 2 again.
        let v: Vec<u64> = Offsets::new(Pattern::Stride(2), 0, 1, 4, 1).take(6).collect();
        assert_eq!(v, [0, 2, 1, 3, 0, 2]);
        let v: Vec<u64> = Offsets::new(Pattern::Stride(3), 0, 1, 4, 1).take(4).collect();
        assert_eq!(v, [0, 3, 2, 1], "coprime stride visits every slot in one lap");
        let mut seen = [0u32; 16];
        for o in Offsets::new(Pattern::Random, 0, 4096, 16 * 4096, 42).take(16000) {
            assert_eq!(o % 4096, 0);
            seen[(o / 4096) as usize] += 1;
        }
        assert!(seen.iter().all(|&n| n > 800 && n < 1200), "random is roughly uniform: {seen:?}");
        let a: Vec<u64> = Offsets::new(Pattern::Random, 0, 1, 1000, 7).take(10).collect();
        let b: Vec<u64> = Offsets::new(Pattern::Random, 0, 1, 1000, 7).take(10).collect();
        assert_eq!(a, b, "reproducible from the seed");
    }

    #[test]
    fn layout_is_page_aligned_and_disjoint() {
        let l = Layout::new(32, 128 << 10);
        let starts = [l.admin_sq, l.admin_cq, l.identify, l.io_sq, l.io_cq, l.prp_lists, l.data, l.len];
        assert!(starts.windows(2).all(|w| w[0] < w[1]), "{l:?}");
        assert!(starts.iter().all(|s| s % PAGE == 0));
        assert_eq!(l.qsize, 33);
        assert!(l.io_cq - l.io_sq >= 64 * 33 && l.prp_lists - l.io_cq >= 16 * 33);
        assert_eq!(l.data_of(31, 128 << 10) + (128 << 10), l.len);
        assert_eq!(l.prp_list_of(31) + PAGE, l.data);
    }

    #[test]
    fn doorbell_stride() {
        assert_eq!(doorbells(0, 0), (0x1000, 0x1004));
        assert_eq!(doorbells(1, 0), (0x1008, 0x100c));
        assert_eq!(doorbells(1, 2), (0x1020, 0x1030), "DSTRD 2: 16-byte stride");
    }

    #[test]
    fn percentiles() {
        let mut v: Vec<u64> = (1..=1000).map(|i| i * 1000).collect();
        v.reverse();
        let l = latency(&mut v);
        assert_eq!((l.p50_us, l.p99_us, l.p999_us, l.max_us), (500.0, 990.0, 999.0, 1000.0));
        assert_eq!(l.mean_us, 500.5);
        assert_eq!(latency(&mut []), Latency::default());
    }

    #[test]
    fn crc_and_pattern() {
        assert_eq!(crc32(b"123456789"), 0xcbf4_3926, "the CRC-32 check value");
        let mut b = vec![0u8; 2 * CHECK_BLOCK];
        fill_pattern(&mut b, 1 << 20);
        assert!(check_block(&b[..CHECK_BLOCK], 1 << 20).is_ok());
        assert!(check_block(&b[CHECK_BLOCK..], (1 << 20) + 4096).is_ok());
        assert!(check_block(&b[CHECK_BLOCK..], 1 << 20).unwrap_err().contains("holds the pattern block of byte"));
        b[100] ^= 1;
        assert!(check_block(&b[..CHECK_BLOCK], 1 << 20).unwrap_err().contains("CRC mismatch"));
        assert!(check_block(&[0u8; CHECK_BLOCK], 0).is_err(), "zeroes are not the pattern");
    }
}
